"""Batched CNN zoo builder with the public Small CNN Zoo recipe (Unterthiner et al. 2020, google-research
`dnn_predict_accuracy/train_network.py`): many small CNNs trained at once, each with its own hyper-parameters, data
subset and optimizer, for a number of epochs over its subset, in mini-batches of 512, labelled on the whole test set.

All models of a chunk share one architecture (activation included), so one grouped convolution runs them all, and one
train fraction, so they take the same number of steps; per-model learning rates, optimizers, L2, dropout and data
subsets are tensors with a leading model axis. Chunks are saved as they finish, so a killed build resumes; they can
run as tasks of an engine (`core.engine`: here, or on Dask workers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from probegen_nb.core.allocator import tune_cpu_allocator
from probegen_nb.core.arch.cnn import CNNSpec, cnn_forward
from probegen_nb.core.data import DatasetName, ImageDataset, images_to_inputs, load_dataset
from probegen_nb.core.device import resolve_device
from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.jobs import ResumableJob, engine_info, software_versions
from probegen_nb.core.threads import ThreadGovernor
from probegen_nb.core.zoo import MixedZoo, Task, Zoo
from probegen_nb.core.zoo_io import save_zoo

INITS = ("he_normal", "glorot_normal", "orthogonal", "normal", "truncated_normal")


OPTIMIZERS = ("adam", "sgd", "rmsprop")


TRAIN_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class CNNZooRecipe:
    """How each CNN is trained and labelled: the public zoo's batch size, padding and labels, for fewer epochs than
    its 86 (a CPU budget). By default one zoo row per run, at its final checkpoint."""

    epochs: float = 8.0  # passes over the run's own train subset: round(epochs · f · N / batch_size) steps
    batch_size: int = 512  # images per model per step (the public `batchsize`)
    checkpoint_epochs: tuple[float, ...] = ()  # extra rows per run at these epochs (< epochs), besides the final one
    padding: int = 0  # of the default architecture: 0 Keras "valid" (32→15→7→3) as the public zoo; 1 PyTorch rebuilds'
    n_eval: int | None = None  # None: labels on every test image and the run's whole subset; k: a sample of k of each
    steps: int | None = None  # a fixed step count for every run instead of `epochs` (smoke runs, benchmarks)
    checkpoints: tuple[int, ...] = ()  # with `steps`: extra rows at these steps
    activations: tuple[str, ...] = ("relu", "tanh")  # sampled per model

    def __post_init__(self) -> None:
        if not self.epochs > 0 or self.batch_size < 1 or self.padding < 0:
            raise ValueError(f"CNNZooRecipe: epochs (={self.epochs}) must be > 0, batch_size (={self.batch_size}) "
                             f"≥ 1 and padding (={self.padding}) ≥ 0")
        bad = [e for e in self.checkpoint_epochs if not 0 < e <= self.epochs]
        if bad:
            raise ValueError(f"CNNZooRecipe.checkpoint_epochs {bad} must lie in (0, epochs (={self.epochs})]")
        if self.steps is None and self.checkpoints:
            raise ValueError(f"CNNZooRecipe.checkpoints {self.checkpoints} are steps: they need `steps`; "
                             f"use checkpoint_epochs with epochs")
        if self.steps is not None and (self.steps < 1 or any(not 1 <= c <= self.steps for c in self.checkpoints)):
            raise ValueError(f"CNNZooRecipe: steps (={self.steps}) must be ≥ 1 and checkpoints {self.checkpoints} "
                             f"within 1 … steps")
        if self.n_eval is not None and self.n_eval < 1:
            raise ValueError(f"CNNZooRecipe.n_eval (={self.n_eval}) must be ≥ 1 or None (all images)")

    def schedule(self, n_subset: int) -> dict[int, float]:
        """Checkpoint steps → the epoch each stands for, for a run with `n_subset` train images; the last is the
        final step. Epochs are the nominal ones asked for (a step is their rounding); with `steps`, the epochs those
        steps amount to. Checkpoints that round to the same step are one."""
        if self.steps is not None:
            return {s: s * self.batch_size / n_subset for s in sorted({*self.checkpoints, self.steps})}
        out: dict[int, float] = {}
        for e in sorted({*self.checkpoint_epochs, self.epochs}):
            out.setdefault(max(1, round(e * n_subset / self.batch_size)), e)
        return dict(sorted(out.items()))


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


class Checkpoint(TypedDict):
    """One checkpoint of `train_cnns`: stacked params [M, …] and per-model labels [M]."""

    step: int
    params: dict[str, torch.Tensor]
    test_acc: torch.Tensor
    train_acc: torch.Tensor
    epoch: torch.Tensor


def train_cnns(spec: CNNSpec, hp: pd.DataFrame, train_x: torch.Tensor, train_y: torch.Tensor,
               test_x: torch.Tensor, test_y: torch.Tensor, recipe: CNNZooRecipe, generator: torch.Generator,
               device: torch.device) -> list[Checkpoint]:
    """Train len(hp) CNNs of one architecture at once; return one dict per checkpoint of `recipe.schedule` with the
    stacked params [M, …], the labels `test_acc`, `train_acc` [M] and `epoch` [M]. Every model must have the same
    checkpoint steps (same train fraction, or a fixed `recipe.steps`): `build_cnn_zoo` chunks by train fraction.

    Each model draws its mini-batches from its own subset (a random `train_fraction` of train_x), epoch by epoch:
    a fresh shuffle of the subset each epoch, one stream across epoch ends so every batch is full."""
    m, n_train = len(hp), len(train_x)
    if device.type == "cpu":  # GPU: torch's CUDA caching allocator already reuses the activations' memory
        tune_cpu_allocator()
    subset_sizes = [max(1, round(f * n_train)) for f in hp["train_fraction"].to_numpy()]
    schedules = [recipe.schedule(n) for n in subset_sizes]
    if any(list(sch) != list(schedules[0]) for sch in schedules):
        raise ValueError(f"train_cnns: models of one call must share checkpoint steps, but train fractions "
                         f"{sorted(set(hp['train_fraction']))} give {sorted({tuple(sch) for sch in schedules})}")
    steps = list(schedules[0])
    params = [v.to(device).requires_grad_() for v in init_cnn_params(spec, hp, generator).values()]
    names = list(spec.param_shapes())
    lr = torch.tensor(hp["lr"].to_numpy(), dtype=torch.float32, device=device)
    l2 = torch.tensor(hp["l2"].to_numpy(), dtype=torch.float32, device=device)
    dropout = torch.tensor(hp["dropout"].to_numpy(), dtype=torch.float32, device=device)
    opt = PerModelOptimizer(params, hp["optimizer"].to_numpy(), lr)
    drop = per_model_dropout(spec, dropout, generator)
    sizes = torch.tensor(subset_sizes)  # [M]
    order = torch.rand(m, n_train, generator=generator).argsort(1)  # [M, N]: model m's subset is its first n_m
    streams = EpochStreams(order[:, : int(sizes.max())], sizes, generator)
    n_test = len(test_x) if recipe.n_eval is None else min(recipe.n_eval, len(test_x))
    eval_test = torch.randperm(len(test_x), generator=generator)[:n_test].to(device)  # [n_test]
    n_own = sizes if recipe.n_eval is None else sizes.clamp(max=recipe.n_eval)  # [M] own images labelled
    eval_train = order[:, : int(n_own.max())].to(device)  # [M, n]: model m's first n_own[m] columns count
    n_own = n_own.to(device)
    weights = [i for i, k in enumerate(names) if k.endswith("weight")]
    checkpoints: list[Checkpoint] = []
    for step in range(1, steps[-1] + 1):
        idx = streams.next(recipe.batch_size).to(device)  # [M, B] each model's next images of its own subset
        logits = cnn_forward(spec, dict(zip(names, params)), train_x[idx], after_activation=drop)  # [M, B, 10]
        ce = F.cross_entropy(logits.flatten(0, 1), train_y[idx].flatten(), reduction="none").view(m, -1).mean(1)
        reg = sum((params[i] ** 2).flatten(1).sum(1) for i in weights)
        loss = (ce + l2 * reg).sum()  # per-model losses: each model's gradient is its own
        opt.step(torch.autograd.grad(loss, params))
        if step in schedules[0]:
            with torch.no_grad():
                ps = {k: p.detach().clone() for k, p in zip(names, params)}
                test_acc = _accuracy(spec, ps, test_x, test_y, eval_test[None].expand(m, -1),
                                     torch.full((m,), n_test, device=device))
                train_acc = _accuracy(spec, ps, train_x, train_y, eval_train, n_own)
            checkpoints.append({"step": step, "params": {k: v.cpu() for k, v in ps.items()},
                                "test_acc": test_acc.cpu(), "train_acc": train_acc.cpu(),
                                "epoch": torch.tensor([sch[step] for sch in schedules], dtype=torch.float64)})
    return checkpoints


class EpochStreams:
    """Each model's mini-batches from its own subset, epoch by epoch: a fresh shuffle of the subset every epoch, as
    one stream across epoch ends so every batch is full. All M models' bookkeeping is [M, ·] tensors (no loop over
    models); a model whose epoch ends gets a new shuffle, the others keep theirs."""

    def __init__(self, subsets: torch.Tensor, sizes: torch.Tensor, generator: torch.Generator) -> None:
        self.subsets, self.sizes, self.generator = subsets, sizes, generator  # [M, n_max] (first sizes[m] count), [M]
        self.perm = self._shuffle()  # [M, n_max]: the current epoch's order of positions into each subset
        self.pos = torch.zeros_like(sizes)  # [M]: the next position of the current epoch

    def _shuffle(self) -> torch.Tensor:
        keys = torch.rand(self.subsets.shape, generator=self.generator)  # [M, n_max]
        keys[torch.arange(keys.shape[1])[None] >= self.sizes[:, None]] = 2.0  # padding sorts after every real key
        return keys.argsort(1)

    def next(self, b: int) -> torch.Tensor:
        """[M, b] image indices: each model's next b images."""
        slots = torch.arange(b)[None]  # [1, b]
        out = torch.zeros(len(self.sizes), b, dtype=torch.long)  # positions into each subset
        filled = torch.zeros_like(self.sizes)  # [M] slots filled so far
        while bool((filled < b).any()):  # once, or again at an epoch end (more when b exceeds a subset)
            take = torch.minimum(self.sizes - self.pos, b - filled)  # [M]
            here = (slots >= filled[:, None]) & (slots < (filled + take)[:, None])  # [M, b]
            src = (self.pos[:, None] + slots - filled[:, None]).clamp(0, self.perm.shape[1] - 1)
            out = torch.where(here, self.perm.gather(1, src), out)
            filled, self.pos = filled + take, self.pos + take
            ended = self.pos >= self.sizes  # [M]
            if bool(ended.any()):
                self.perm = torch.where(ended[:, None], self._shuffle(), self.perm)
                self.pos = torch.where(ended, 0, self.pos)
        return self.subsets.gather(1, out)


def per_model_dropout(spec: CNNSpec, rates: torch.Tensor, generator: torch.Generator | None,
                      on_device: bool | None = None) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """The `after_activation` hook of `cnn_forward` that drops each model's conv activations with its own rate
    (rates [M]), as the Small CNN Zoo's dropout after every convolution. Zoo training only, never probing.
    Its random bytes come from `random_bytes` on the rates' device (`on_device`: see there)."""
    draw = random_bytes(rates.device, generator, on_device)
    return lambda i, h: _dropout(h, rates.repeat_interleave(spec.channels[i])[None, :, None, None], draw)


def random_bytes(device: torch.device, generator: torch.Generator | None,
                 on_device: bool | None = None) -> Callable[[torch.Size], torch.Tensor]:
    """shape → uniform uint8 on `device`. On a CPU from `generator`, eight bytes to an int64 draw (the random number
    generator, not the arithmetic, is what dropout costs there). On a GPU (`on_device`, by default off the CPU) from a
    generator on that device, seeded once from `generator`: drawn on the host and copied over, the bytes of 512 CNNs'
    activations (about 1.2 GB a step at 512 images each, at about 1 GB/s from the host's generator) made the batched
    trainer no faster than the per-model loop on an H200, whose dropout runs on the GPU."""
    on_device = device.type != "cpu" if on_device is None else on_device
    if on_device:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        device_generator = torch.Generator(device=device).manual_seed(seed)
        return lambda shape: torch.randint(0, 256, shape, dtype=torch.uint8, device=device,
                                           generator=device_generator)

    def from_host(shape: torch.Size) -> torch.Tensor:
        n = math.prod(shape)
        bits = torch.randint(-2**63, 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, generator=generator, device="cpu")
        return bits.view(torch.uint8)[:n].view(shape).to(device)

    return from_host


def _dropout(h: torch.Tensor, rate: torch.Tensor, draw: Callable[[torch.Size], torch.Tensor]) -> torch.Tensor:
    """Inverted dropout with a rate per channel (rates quantised to 1/256), from uniform bytes `draw(h.shape)`."""
    u8 = draw(h.shape)  # uniform in 0..255, on h's device
    threshold = (rate * 256).round().clamp(0, 255).to(torch.uint8)
    # one multiply by a float keep/scale mask: 4x faster forward + backward than torch.where on these broadcasts
    return h * ((u8 >= threshold) * (1 / (1 - threshold.float() / 256)))


@torch.no_grad()
def _accuracy(spec: CNNSpec, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
              counts: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """[M] accuracies of each model on its own images: x [N, C, H, W], y [N], idx [M, n] (model m's first counts[m]
    columns count). Gathered `chunk` columns at a time, so memory stays at M · chunk images whatever n."""
    correct = torch.zeros(len(idx), device=idx.device)
    for s in range(0, idx.shape[1], chunk):
        cols = idx[:, s:s + chunk]  # [M, c]
        valid = torch.arange(s, s + cols.shape[1], device=idx.device)[None] < counts[:, None]  # [M, c]
        pred = cnn_forward(spec, params, x[cols]).argmax(-1)  # [M, c]
        correct += ((pred == y[cols]) & valid).sum(-1)
    return correct / counts


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
                  architectures: list[CNNSpec] | None = None, engine: EngineConfig | None = None,
                  weights_dtype: str = "float32") -> MixedZoo:
    """Train `n_runs` CNNs and write a mixed zoo with one group per architecture: one row per run at its final
    checkpoint, plus one per `recipe.checkpoint_epochs` (or `recipe.checkpoints` with fixed `steps`).

    By default the Small CNN Zoo's architecture (padding `recipe.padding`) with the activation drawn per run (a group
    per activation); with `architectures` (e.g. `sample_wild_park_specs`), each run gets one of them at random (a CNN
    Wild Park-style zoo). Splits are by run, so no run has checkpoints on both sides. Labels per row: `test_acc` (on
    the whole test set unless `recipe.n_eval`), `train_acc` (on the run's whole train subset), `gap` (train − test),
    with provenance `run`, `step`, `epoch` and the hyper-parameters. Chunks hold runs of one architecture and one
    train fraction (so one step count), in a fixed order, so a resumed build finds its chunks again.

    `engine`: None trains the chunks here, one after another, at this process's torch threads; an `EngineConfig`
    makes each chunk one of its tasks (local or Dask), trained at `engine.threads_per_worker` threads. Every task
    needs the whole data set: given by name (`load_dataset`), Dask workers load it themselves; an `ImageDataset`
    travels with each task (fine for small ones, e.g. a `sample`). The same parameters give the same zoo whatever
    the engine, bit for bit on the CPU at the same thread count (convolutions round differently at another count).
    Resumable through any engine, like `build_inr_zoo`; a failing chunk raises a `ChunkError` after the others.
    `weights_dtype="float24"` or "float16" stores the weights rounded (`save_zoo`), for zoos to commit; the labels
    are computed from the float32 weights (`zoos.rounding` measures what the rounding changes)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True to rebuild it")
    dev = resolve_device(device)
    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    task_data = dataset if isinstance(dataset, str) and engine is not None and engine.kind == "dask" else data
    provenance = data.provenance()  # name, source kind, content hash: no machine paths in zoo.json
    hp = sample_hparams(n_runs, seed, recipe)
    rng = np.random.default_rng(seed + 1)
    n_train_runs, n_val_runs = int(split_fractions[0] * n_runs), int(split_fractions[1] * n_runs)
    hp["split"] = np.array(["train"] * n_train_runs + ["val"] * n_val_runs +
                           ["test"] * (n_runs - n_train_runs - n_val_runs))[rng.permutation(n_runs)]
    input_shape = tuple(images_to_inputs(data.train_images[:1]).shape[1:])  # (C, 32, 32)
    if architectures is None:  # Small CNN Zoo: the architecture differs only by the run's activation
        acts = sorted(hp["activation"].unique())
        specs = [CNNSpec.small_cnn_zoo(input_shape[0], a, recipe.padding) for a in acts]
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
                                 "dataset": data.name, "data_sha256": provenance["sha256"],
                                 "split_fractions": list(split_fractions),
                                 "architectures": [s.to_dict() for s in specs]})

    t0 = time.perf_counter()
    chunks = [(arch, rows[i:i + chunk_size])  # sorted by (arch, train_fraction), runs in order: the same every time
              for (arch, _), rows in hp.groupby(["arch", "train_fraction"], sort=True).groups.items()
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
            for step in sorted(int(k[4:].split(".")[0]) for k in t if k.endswith(".epoch")):
                parts_params.append({k: t[f"step{step}.{k}"] for k in spec.param_shapes()})
                rows_df = hp.loc[rows].drop(columns="arch").reset_index(drop=True)
                rows_df["step"] = step
                rows_df["epoch"] = t[f"step{step}.epoch"].numpy()
                rows_df["test_acc"] = t[f"step{step}.test_acc"].numpy()
                rows_df["train_acc"] = t[f"step{step}.train_acc"].numpy()
                parts_rows.append(rows_df)
        table = pd.concat(parts_rows, ignore_index=True)
        table["gap"] = table["train_acc"] - table["test_acc"]
        table.insert(0, "model_id", np.arange(model_id, model_id + len(table)))
        model_id += len(table)
        params = {k: torch.cat([p[k] for p in parts_params]) for k in spec.param_shapes()}
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
    info = {"builder": "probegen_nb.zoos.cnn.build_cnn_zoo", "dataset": data.name, "data": provenance,
            "recipe": asdict(recipe), "seed": seed, "n_runs": n_runs, "device": str(dev), **engine_info(engine),
            "build_seconds_this_run": round(time.perf_counter() - t0, 1), "software": software_versions()}
    zoo = MixedZoo(tuple(groups), Task("test_acc", None), info)
    save_zoo(zoo, out_dir, overwrite=overwrite, weights_dtype=weights_dtype)
    job.finish()
    return zoo


def train_cnn_chunk(dataset: ImageDataset | DatasetName, spec: CNNSpec, hp: pd.DataFrame, recipe: CNNZooRecipe,
                    seed: int, device: str, threads: int | None) -> dict[str, torch.Tensor]:
    """One chunk of `build_cnn_zoo`, a task of its engine: the len(hp) CNNs of `spec` trained on `dataset` (by name:
    loaded here) from the chunk's own seed, at `threads` CPU threads (None: this process's count); returns what the
    chunk file holds (`step{s}.{param}` [M, …], `step{s}.test_acc`, `step{s}.train_acc` and `step{s}.epoch` [M])."""
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
    return {f"step{cp['step']}.{k}": v for cp in cps for k, v in
            {**cp["params"], "test_acc": cp["test_acc"], "train_acc": cp["train_acc"], "epoch": cp["epoch"]}.items()}
