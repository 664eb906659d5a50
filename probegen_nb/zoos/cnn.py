"""Batched CNN zoo builder with the Small CNN Zoo's recipe (Unterthiner et al. 2020): many small CNNs trained at
once, each with its own hyper-parameters, data subset and optimizer, checkpointed at several steps.

All models of a chunk share one architecture (activation included), so one grouped convolution runs them all;
per-model learning rates, optimizers, L2, dropout and data subsets are tensors with a leading model axis.
Chunks are saved as they finish, so a killed build resumes; they can run as tasks of an engine (`core.engine`: here,
or on Dask workers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from probegen_nb.core.arch.cnn import CNNSpec, cnn_forward
from probegen_nb.core.data import DatasetName, ImageDataset, images_to_inputs, load_dataset
from probegen_nb.core.device import ThreadGovernor, resolve_device, tune_cpu_allocator
from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.jobs import ResumableJob, engine_info, software_versions
from probegen_nb.core.zoo import MixedZoo, Task, Zoo
from probegen_nb.core.zoo_io import save_zoo

INITS = ("he_normal", "glorot_normal", "orthogonal", "normal", "truncated_normal")


OPTIMIZERS = ("adam", "sgd", "rmsprop")


TRAIN_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class CNNZooRecipe:
    """How each CNN is trained and labelled. Fewer steps than the public zoo (86 epochs), same hyper-parameters."""

    steps: int = 1800  # optimizer steps per model
    batch_size: int = 32  # images per model per step
    checkpoints: tuple[int, ...] = (50, 300, 900, 1800)  # steps at which a checkpoint (a zoo row) is kept
    n_eval: int = 2000  # test images (and own-subset train images) used for each checkpoint's accuracy labels
    activations: tuple[str, ...] = ("relu", "tanh")  # sampled per model


def sample_hparams(n: int, seed: int, recipe: CNNZooRecipe = CNNZooRecipe()) -> pd.DataFrame:
    """Per-model hyper-parameters drawn as in the Small CNN Zoo: activation, initialiser and its std, bias init,
    log-uniform learning rate and L2, optimizer, dropout, train fraction."""
    rng = np.random.default_rng(seed)
    log_uniform = lambda lo, hi: np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return pd.DataFrame({
        "run": np.arange(n),
        "activation": rng.choice(recipe.activations, n),
        "init": rng.choice(INITS, n),
        "init_std": log_uniform(1e-3, 0.5),  # used by the normal and truncated-normal initialisers
        "bias_init": rng.choice(["zeros", "ones"], n, p=[0.8, 0.2]),
        "optimizer": rng.choice(OPTIMIZERS, n),
        "lr": log_uniform(5e-4, 5e-2),
        "l2": log_uniform(1e-8, 1e-2),
        "dropout": rng.uniform(0.0, 0.5, n),
        "train_fraction": rng.choice(TRAIN_FRACTIONS, n),
    })


def init_cnn_params(spec: CNNSpec, hp: pd.DataFrame, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Stacked initial weights, each model with its own initialiser (fan-in/out computed per layer)."""
    m = len(hp)
    std = torch.tensor(hp["init_std"].to_numpy(), dtype=torch.float32)
    params = {}
    for name, shape in spec.param_shapes().items():
        if name.endswith("bias"):
            ones = torch.tensor((hp["bias_init"] == "ones").to_numpy(), dtype=torch.float32)
            params[name] = ones[:, None].expand(m, *shape).clone()
            continue
        fan_in = math.prod(shape[1:])
        fan_out = shape[0] * math.prod(shape[2:])
        z = torch.randn(m, *shape, generator=generator)
        out = torch.empty(m, *shape)
        for kind in INITS:  # one vectorised draw per initialiser kind, not per model
            sel = torch.tensor((hp["init"] == kind).to_numpy())
            if not sel.any():
                continue
            if kind == "he_normal":
                out[sel] = z[sel] * math.sqrt(2 / fan_in)
            elif kind == "glorot_normal":
                out[sel] = z[sel] * math.sqrt(2 / (fan_in + fan_out))
            elif kind == "normal":
                out[sel] = z[sel] * std[sel].view(-1, *[1] * len(shape))
            elif kind == "truncated_normal":
                out[sel] = z[sel].clamp(-2, 2) * std[sel].view(-1, *[1] * len(shape))
            else:  # orthogonal: orthonormal rows (or columns, when there are more rows) of the flattened kernel
                flat = z[sel].flatten(2)  # [k, out, fan_in]
                if shape[0] <= fan_in:
                    w = torch.linalg.qr(flat.transpose(1, 2)).Q.transpose(1, 2)
                else:
                    w = torch.linalg.qr(flat).Q
                out[sel] = w.reshape(-1, *shape)
        params[name] = out
    return params


class PerModelOptimizer:
    """Adam, SGD or RMSprop chosen per model, each with its own learning rate, applied as masked elementwise updates
    (every rule is computed for every model: parameters are tiny next to the activations)."""

    def __init__(self, params: list[torch.Tensor], kinds: np.ndarray, lr: torch.Tensor) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.is_adam = torch.tensor(kinds == "adam", device=lr.device)
        self.is_rms = torch.tensor(kinds == "rmsprop", device=lr.device)
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: tuple[torch.Tensor, ...]) -> None:
        self.t += 1
        b1, b2, rho, eps = 0.9, 0.999, 0.9, 1e-7  # Keras defaults, as in the public zoo
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            view = (-1,) + (1,) * (p.dim() - 1)
            adam, rms = self.is_adam.view(view), self.is_rms.view(view)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.copy_(torch.where(adam, b2 * v + (1 - b2) * g * g, rho * v + (1 - rho) * g * g))
            adam_step = (m / (1 - b1**self.t)) / ((v / (1 - b2**self.t)).sqrt() + eps)
            rms_step = g / (v.sqrt() + eps)
            p.sub_(self.lr.view(view) * torch.where(adam, adam_step, torch.where(rms, rms_step, g)))


def train_cnns(spec: CNNSpec, hp: pd.DataFrame, train_x: torch.Tensor, train_y: torch.Tensor,
               test_x: torch.Tensor, test_y: torch.Tensor, recipe: CNNZooRecipe, generator: torch.Generator,
               device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Train len(hp) CNNs of one architecture at once; return one dict per checkpoint step with the stacked
    params [M, …] and the labels `test_acc`, `train_acc` [M]."""
    m, n_train = len(hp), len(train_x)
    if device.type == "cpu":
        tune_cpu_allocator()
    params = [v.to(device).requires_grad_() for v in init_cnn_params(spec, hp, generator).values()]
    names = list(spec.param_shapes())
    lr = torch.tensor(hp["lr"].to_numpy(), dtype=torch.float32, device=device)
    l2 = torch.tensor(hp["l2"].to_numpy(), dtype=torch.float32, device=device)
    dropout = torch.tensor(hp["dropout"].to_numpy(), dtype=torch.float32, device=device)
    opt = PerModelOptimizer(params, hp["optimizer"].to_numpy(), lr)
    drop = per_model_dropout(spec, dropout, generator)
    subset_size = torch.tensor(np.round(hp["train_fraction"].to_numpy() * n_train), device=device)
    order = torch.stack([torch.randperm(n_train, generator=generator) for _ in range(m)]).to(device)  # [M, N]
    eval_test = torch.randperm(len(test_x), generator=generator)[: recipe.n_eval].to(device)
    eval_pos = (torch.rand(m, recipe.n_eval, generator=generator).to(device) * subset_size[:, None]).long()
    eval_train = torch.gather(order, 1, eval_pos)  # [M, n_eval] images from each model's own subset
    weights = [i for i, k in enumerate(names) if k.endswith("weight")]
    checkpoints = []
    for step in range(1, recipe.steps + 1):
        pos = (torch.rand(m, recipe.batch_size, generator=generator).to(device) * subset_size[:, None]).long()
        idx = torch.gather(order, 1, pos)  # [M, B] each model's minibatch from its own subset
        logits = cnn_forward(spec, dict(zip(names, params)), train_x[idx], after_activation=drop)  # [M, B, 10]
        ce = F.cross_entropy(logits.flatten(0, 1), train_y[idx].flatten(), reduction="none").view(m, -1).mean(1)
        reg = sum((params[i] ** 2).flatten(1).sum(1) for i in weights)
        loss = (ce + l2 * reg).sum()  # per-model losses: each model's gradient is its own
        opt.step(torch.autograd.grad(loss, params))
        if step in recipe.checkpoints:
            with torch.no_grad():
                ps = {k: p.detach().clone() for k, p in zip(names, params)}
                test_acc = _accuracy(spec, ps, test_x[eval_test], test_y[eval_test])
                train_acc = _accuracy(spec, ps, train_x[eval_train], train_y[eval_train])
            checkpoints.append({"step": step, "params": {k: v.cpu() for k, v in ps.items()},
                                "test_acc": test_acc.cpu(), "train_acc": train_acc.cpu()})
    return checkpoints


def per_model_dropout(spec: CNNSpec, rates: torch.Tensor,
                      generator: torch.Generator | None) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """The `after_activation` hook of `cnn_forward` that drops each model's conv activations with its own rate
    (rates [M]), as the Small CNN Zoo's dropout after every convolution. Zoo training only, never probing."""
    return lambda i, h: _dropout(h, rates.repeat_interleave(spec.channels[i])[None, :, None, None], generator)


def _dropout(h: torch.Tensor, rate: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout with a rate per channel (rates quantised to 1/256). Random bytes come eight to an int64
    draw: the random number generator, not the arithmetic, is what dropout costs on a CPU."""
    n = h.numel()
    bits = torch.randint(-2**63, 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, generator=generator, device="cpu")
    u8 = bits.view(torch.uint8)[:n].view(h.shape).to(h.device)  # uniform in 0..255
    threshold = (rate * 256).round().clamp(0, 255).to(torch.uint8)
    # one multiply by a float keep/scale mask: 4x faster forward + backward than torch.where on these broadcasts
    return h * ((u8 >= threshold) * (1 / (1 - threshold.float() / 256)))


@torch.no_grad()
def _accuracy(spec: CNNSpec, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              chunk: int = 500) -> torch.Tensor:
    """[M] accuracies; x shared [N, C, H, W] with y [N], or per-model [M, N, C, H, W] with y [M, N]."""
    n = x.shape[-4]
    correct = 0
    for s in range(0, n, chunk):
        xs = x[s:s + chunk] if x.dim() == 4 else x[:, s:s + chunk]
        ys = y[s:s + chunk] if y.dim() == 1 else y[:, s:s + chunk]
        pred = cnn_forward(spec, params, xs).argmax(-1)  # [M, n]
        correct = correct + (pred == ys).float().sum(-1)
    return correct / n


def sample_wild_park_specs(n: int, seed: int, in_channels: int = 3, depths: tuple[int, ...] = (2, 3, 4, 5),
                           channels: tuple[int, ...] = (4, 8, 16, 32), kernels: tuple[int, ...] = (3, 5, 7),
                           activations: tuple[str, ...] = ("relu", "gelu", "tanh", "sigmoid", "leaky_relu", "none"),
                           residual_prob: float = 0.5) -> list[CNNSpec]:
    """`n` distinct CNN Wild Park architectures: depth, per-layer channels, odd kernels (stride 1, 'same' padding),
    per-layer activations, and residual links from an earlier, non-adjacent layer with probability `residual_prob`."""
    space = wild_park_space_size(depths, channels, kernels, activations, residual_prob)
    if n > space:
        raise ValueError(f"asked for {n} distinct Wild Park architectures, but depths {depths}, channels {channels}, "
                         f"kernels {kernels}, {len(activations)} activations and residual_prob {residual_prob} "
                         f"allow only {space}")
    rng = np.random.default_rng(seed)
    specs: list[CNNSpec] = []
    while len(specs) < n:
        depth = int(rng.choice(depths))
        ks = tuple(int(k) for k in rng.choice(kernels, depth))
        residual = tuple([-1] + [int(rng.integers(0, i - 1)) if i >= 2 and rng.random() < residual_prob else -1
                                 for i in range(1, depth)])
        spec = CNNSpec(in_channels, tuple(int(c) for c in rng.choice(channels, depth)), ks, 1,
                       tuple(k // 2 for k in ks), tuple(str(a) for a in rng.choice(activations, depth)), residual)
        if spec not in specs:
            specs.append(spec)
    return specs


def wild_park_space_size(depths: tuple[int, ...], channels: tuple[int, ...], kernels: tuple[int, ...],
                         activations: tuple[str, ...], residual_prob: float) -> int:
    """How many distinct architectures `sample_wild_park_specs` can draw: per layer a channel count, a kernel and an
    activation; layer i ≥ 2 links back to one of layers 0 … i−2 or (unless residual_prob is 1) to none."""
    per_layer = len(set(channels)) * len(set(kernels)) * len(set(activations))
    total = 0
    for depth in set(depths):
        links = math.prod((i - 1) + (residual_prob < 1) if residual_prob > 0 else 1 for i in range(2, depth))
        total += per_layer**depth * links
    return total


def build_cnn_zoo(dataset: ImageDataset | DatasetName, out_dir: str | Path, n_runs: int,
                  recipe: CNNZooRecipe = CNNZooRecipe(), split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  chunk_size: int = 32, seed: int = 0, device: str | torch.device = "auto", overwrite: bool = False,
                  architectures: list[CNNSpec] | None = None, engine: EngineConfig | None = None) -> MixedZoo:
    """Train `n_runs` CNNs, keep `recipe.checkpoints` per run, and write a mixed zoo with one group per architecture.

    By default the Small CNN Zoo's architecture with the activation drawn per run (a group per activation); with
    `architectures` (e.g. `sample_wild_park_specs`), each run gets one of them at random (a CNN Wild Park-style zoo).
    Splits are by run, so no run has checkpoints on both sides. Labels per row: `test_acc`, `train_acc`, `gap`
    (train − test), with provenance `run`, `step`, `epoch` and the hyper-parameters.

    `engine`: None trains the chunks here, one after another, at this process's torch threads; an `EngineConfig`
    makes each chunk one of its tasks (local or Dask), trained at `engine.threads_per_worker` threads. Every task
    needs the whole data set: given by name (`load_dataset`), Dask workers load it themselves; an `ImageDataset`
    travels with each task (fine for small ones, e.g. a `sample`). The same parameters give the same zoo whatever
    the engine, bit for bit on the CPU at the same thread count (convolutions round differently at another count).
    Resumable through any engine, like `build_inr_zoo`; a failing chunk raises a `ChunkError` after the others."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True to rebuild it")
    dev = resolve_device(device)
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    task_data = dataset if isinstance(dataset, str) and engine is not None and engine.kind == "dask" else data
    hp = sample_hparams(n_runs, seed, recipe)
    rng = np.random.default_rng(seed + 1)
    n_train_runs, n_val_runs = int(split_fractions[0] * n_runs), int(split_fractions[1] * n_runs)
    hp["split"] = np.array(["train"] * n_train_runs + ["val"] * n_val_runs +
                           ["test"] * (n_runs - n_train_runs - n_val_runs))[rng.permutation(n_runs)]
    input_shape = tuple(images_to_inputs(data.train_images[:1]).shape[1:])  # (C, 32, 32)
    if architectures is None:  # Small CNN Zoo: the architecture differs only by the run's activation
        acts = sorted(hp["activation"].unique())
        specs = [CNNSpec.small_cnn_zoo(input_shape[0], a) for a in acts]
        hp["arch"] = hp["activation"].map({a: i for i, a in enumerate(acts)})
    else:
        bad = [s for s in architectures if s.input_shape != input_shape]
        if bad:
            raise ValueError(f"architecture input {bad[0].input_shape} does not fit {data.name} images "
                             f"{input_shape}")
        used = np.unique(rng.integers(len(architectures), size=n_runs), return_inverse=True)
        specs, hp["arch"] = [architectures[i] for i in used[0]], used[1]
        hp["activation"] = ["-".join(specs[a].activation) for a in hp["arch"]]

    job = ResumableJob(out_dir, {"n_runs": n_runs, "recipe": asdict(recipe), "seed": seed, "chunk_size": chunk_size,
                                 "dataset": data.name, "split_fractions": list(split_fractions),
                                 "architectures": [s.to_dict() for s in specs]})

    t0 = time.perf_counter()
    chunks = [(arch, rows[i:i + chunk_size]) for arch, rows in hp.groupby("arch", sort=True).groups.items()
              for i in range(0, len(rows), chunk_size)]
    todo = [c for c in range(len(chunks)) if not job.done(c)]
    threads = None if engine is None else engine.threads_per_worker
    bar = tqdm(total=n_runs, desc=f"CNN zoo {out_dir.name}", unit="CNN")
    bar.update(n_runs - sum(len(chunks[c][1]) for c in todo))
    try:
        job.run(train_cnn_chunk, {c: (task_data, specs[arch], hp.loc[rows].reset_index(drop=True), recipe,
                                      seed * 100_003 + c, str(dev), threads)
                                  for c, (arch, rows) in enumerate(chunks) if c in todo},
                engine, on_done=lambda c: bar.update(len(chunks[c][1])),
                describe=lambda c: f"chunk {c} (runs {', '.join(str(r) for r in chunks[c][1])})")
    finally:
        bar.close()

    groups, model_id = [], 0
    for arch, spec in enumerate(specs):
        parts_params, parts_rows = [], []
        for c, (a, rows) in enumerate(chunks):
            if a != arch:
                continue
            t = job.load(c)
            for step in recipe.checkpoints:
                parts_params.append({k: t[f"step{step}.{k}"] for k in spec.param_shapes()})
                rows_df = hp.loc[rows].drop(columns="arch").reset_index(drop=True)
                rows_df["step"] = step
                rows_df["epoch"] = step * recipe.batch_size / np.round(rows_df["train_fraction"]
                                                                       * len(data.train_labels))
                rows_df["test_acc"] = t[f"step{step}.test_acc"].numpy()
                rows_df["train_acc"] = t[f"step{step}.train_acc"].numpy()
                parts_rows.append(rows_df)
        table = pd.concat(parts_rows, ignore_index=True)
        table["gap"] = table["train_acc"] - table["test_acc"]
        table.insert(0, "model_id", np.arange(model_id, model_id + len(table)))
        model_id += len(table)
        params = {k: torch.cat([p[k] for p in parts_params]) for k in spec.param_shapes()}
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
    info = {"builder": "probegen_nb.zoos.cnn.build_cnn_zoo", "dataset": data.name, "data_source": data.source,
            "recipe": asdict(recipe), "seed": seed, "n_runs": n_runs, "device": str(dev), **engine_info(engine),
            "build_seconds_this_run": round(time.perf_counter() - t0, 1), "software": software_versions()}
    zoo = MixedZoo(tuple(groups), Task("test_acc", None), info)
    save_zoo(zoo, out_dir, overwrite=overwrite)
    job.finish()
    return zoo


def train_cnn_chunk(dataset: ImageDataset | DatasetName, spec: CNNSpec, hp: pd.DataFrame, recipe: CNNZooRecipe,
                    seed: int, device: str, threads: int | None) -> dict[str, torch.Tensor]:
    """One chunk of `build_cnn_zoo`, a task of its engine: the len(hp) CNNs of `spec` trained on `dataset` (by name:
    loaded here) from the chunk's own seed, at `threads` CPU threads (None: this process's count); returns what the
    chunk file holds (`step{s}.{param}` [M, …], `step{s}.test_acc` and `step{s}.train_acc` [M])."""
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    dev = torch.device(device)
    train_x, test_x = images_to_inputs(data.train_images).to(dev), images_to_inputs(data.test_images).to(dev)
    train_y, test_y = torch.as_tensor(data.train_labels).to(dev), torch.as_tensor(data.test_labels).to(dev)
    governor = ThreadGovernor.start("cnn_zoo", dev, threads) if threads is not None else None
    try:
        cps = train_cnns(spec, hp, train_x, train_y, test_x, test_y, recipe, torch.Generator().manual_seed(seed), dev)
    finally:
        if governor is not None:
            governor.finish()
    return {f"step{cp['step']}.{k}": v for cp in cps
            for k, v in {**cp["params"], "test_acc": cp["test_acc"], "train_acc": cp["train_acc"]}.items()}
