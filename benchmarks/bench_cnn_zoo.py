"""CNN zoo training: one model at a time (a plain nn.Module with dropout and its own torch.optim optimizer) vs the
batched trainer, same recipe, hyper-parameters and data, interleaved in one run. Writes runs/bench/cnn_zoo.json.
Goal: ratio >= 5 on a 2-core CPU.

`max_abs_diff` checks that the two compute the same training: a few steps of both from the same initial weights on the
same minibatches, dropout off (the trainer draws dropout masks and minibatches at random), compared weight by weight.
`ratio_bound_convolutions`: the ratio if everything but the batched step's convolutions cost nothing (they are timed
alone in the same rounds), the limit of any work on the rest of the step. On CUDA the batched trainer is also timed
with cuDNN's algorithm search on (`torch.backends.cudnn.benchmark`, which nothing else sets): the grouped convolution
of hundreds of models may get a slow default algorithm (the trainer ran at 0.8-1.2x the loop on an H200 against a 35x
convolution bound). The CPU has no such search (oneDNN picks its own), so there that row is skipped.

    python benchmarks/bench_cnn_zoo.py            # about 1 min on a 2-core CPU
    python benchmarks/bench_cnn_zoo.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from probegen_nb.core.arch.cnn import CNN_ACTIVATIONS, CNNSpec, cnn_forward, probe_tile
from probegen_nb.core.data import ImageDataset, load_dataset
from probegen_nb.core.device import describe_device, resolve_device, synchronize
from probegen_nb.core.memory import peak_memory
from probegen_nb.zoos.cnn import (
    CNNZooRecipe,
    PerModelOptimizer,
    images_to_inputs,
    init_cnn_params,
    sample_hparams,
    train_cnns,
)

REPO = Path(__file__).resolve().parents[1]


class ReferenceCNN(nn.Module):
    """The Small CNN Zoo network as one plain module, with dropout after each convolution's activation."""

    def __init__(self, spec: CNNSpec, dropout: float) -> None:
        super().__init__()
        self.net, self.spec, self.dropout = spec.build_module(), spec, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, act in zip(self.net.layers, self.spec.activation):
            x = F.dropout(CNN_ACTIVATIONS[act](layer(x)), self.dropout, self.training)
        return self.net.fc(x.mean(dim=(2, 3)))


def make_optimizer(kind: str, params, lr: float) -> torch.optim.Optimizer:
    """The Keras-default optimizers of the public zoo, as torch.optim objects."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, eps=1e-7)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)
    return torch.optim.SGD(params, lr=lr)


def reference_train(spec: CNNSpec, hp, train_x: torch.Tensor, train_y: torch.Tensor, steps: int, batch: int,
                    generator: torch.Generator) -> None:
    """Each model trained alone: its own module, optimizer, L2 term and minibatches from its own data subset."""
    init = init_cnn_params(spec, hp, generator)
    for i, row in enumerate(hp.itertuples()):
        model = ReferenceCNN(spec, row.dropout).to(train_x.device)
        model.net.load_state_dict({k: v[i] for k, v in init.items()})
        opt = make_optimizer(row.optimizer, model.parameters(), row.lr)
        subset = torch.randperm(len(train_x), generator=generator)[: int(row.train_fraction * len(train_x))]
        for _ in range(steps):
            idx = subset[torch.randint(len(subset), (batch,), generator=generator)]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            loss = loss + row.l2 * sum((p**2).sum() for n, p in model.named_parameters() if n.endswith("weight"))
            opt.zero_grad()
            loss.backward()
            opt.step()


def max_abs_diff_after_steps(spec: CNNSpec, hp, train_x: torch.Tensor, train_y: torch.Tensor, steps: int, batch: int,
                             generator: torch.Generator) -> float:
    """The agreement check: `steps` updates of the models in `hp` from one init, on the same minibatches, with dropout
    off, by the reference (a module and a torch.optim optimizer each, as `reference_train`) and by the batched step
    `train_cnns` takes (`cnn_forward`, per-model losses with L2, `PerModelOptimizer`): max |Δ| of updated weights."""
    m, names = len(hp), list(spec.param_shapes())
    init = init_cnn_params(spec, hp, generator)
    idx = torch.randint(len(train_x), (steps, m, batch), generator=generator)  # [T, M, B] each model's minibatches
    reference = []
    for i, row in enumerate(hp.itertuples()):
        model = ReferenceCNN(spec, 0.0).to(train_x.device)
        model.net.load_state_dict({k: v[i] for k, v in init.items()})
        opt = make_optimizer(row.optimizer, model.parameters(), row.lr)
        for t in range(steps):
            loss = F.cross_entropy(model(train_x[idx[t, i]]), train_y[idx[t, i]])
            loss = loss + row.l2 * sum((p**2).sum() for n, p in model.named_parameters() if n.endswith("weight"))
            opt.zero_grad()
            loss.backward()
            opt.step()
        reference.append({k: v.detach().cpu() for k, v in model.net.state_dict().items()})  # compared on the host
    params = [init[k].to(train_x.device).requires_grad_() for k in names]
    lr, l2 = (torch.tensor(hp[c].to_numpy(), dtype=torch.float32, device=train_x.device) for c in ("lr", "l2"))
    opt = PerModelOptimizer(params, hp["optimizer"].to_numpy(), lr)
    for t in range(steps):
        logits = cnn_forward(spec, dict(zip(names, params)), train_x[idx[t]])  # [M, B, 10]
        ce = F.cross_entropy(logits.flatten(0, 1), train_y[idx[t]].flatten(), reduction="none").view(m, -1).mean(1)
        reg = sum((p**2).flatten(1).sum(1) for k, p in zip(names, params) if k.endswith("weight"))
        opt.step(torch.autograd.grad((ce + l2 * reg).sum(), params))
    return max(float((torch.stack([r[k] for r in reference]) - p.detach().cpu()).abs().max())
               for k, p in zip(names, params))


def step_convolutions(spec: CNNSpec, n_models: int, batch: int, device: torch.device) -> Callable[[], None]:
    """The convolutions of one batched training step alone, on random data: every layer of `n_models` models as
    `cnn_forward` runs it on per-model images (grouped, in the same tiles), forward and backward to the weights and
    biases (through every later layer's input); no activations, dropout, pooling, loss or update. Its time bounds what
    work on the rest of the step can gain."""
    params = {k: v.to(device).requires_grad_() for k, v in
              init_cnn_params(spec, sample_hparams(n_models, seed=0), torch.Generator().manual_seed(0)).items()}
    x = torch.randn(n_models, batch, *spec.input_shape, device=device)  # [M, B, C, H, W]
    tile = probe_tile(spec, n_models, batch, device)
    convs = [k for k in params if k.startswith("layers.")]

    def convolutions() -> None:
        for xs in x.split(tile, dim=1):
            h = xs.transpose(0, 1).reshape(xs.shape[1], -1, *xs.shape[3:])  # [P, M·C, H, W]
            for i in range(spec.n_layers):
                w, b = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
                h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=spec.stride[i],
                             padding=spec.padding[i], groups=n_models)
            torch.autograd.grad(h.sum(), [params[k] for k in convs])

    return convolutions


@contextmanager
def cudnn_autotuned() -> Iterator[None]:
    """cuDNN benchmark mode inside the block (set and restored directly: `torch.backends.cudnn.flags()` would also
    reset every flag it is not given to its own defaults, `enabled=False` among them)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cifar10-gs", help="cifar10-gs, or mnist / fmnist padded to 32×32")
    p.add_argument("--batched-models", type=int, default=32, help="CNNs trained at once")
    p.add_argument("--ref-models", type=int, default=2, help="CNNs trained one at a time per reference round")
    p.add_argument("--steps", type=int, default=40, help="training steps per model per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=CNNZooRecipe.batch_size, help="images per model per step")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "cnn_zoo.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.batched_models, args.ref_models, args.steps, args.rounds = 4, 1, 2, 1
    dev = resolve_device(args.device)
    data: ImageDataset = load_dataset(args.dataset).sample(10_000, 1_000, seed=0)
    train_x, train_y = images_to_inputs(data.train_images).to(dev), torch.as_tensor(data.train_labels).to(dev)
    test_x, test_y = images_to_inputs(data.test_images).to(dev), torch.as_tensor(data.test_labels).to(dev)
    spec = CNNSpec.small_cnn_zoo(train_x.shape[1], "relu", padding=CNNZooRecipe().padding)  # the zoo's layers
    hp = sample_hparams(max(args.batched_models, args.ref_models), seed=0).assign(activation="relu")
    # training only, as the reference: train_cnns labels its final checkpoint (test_acc, train_acc), which on all
    # images took 4x the 40 training steps at 32 images (ratio 1.4x instead of 3.5x); one image keeps that negligible
    recipe = replace(CNNZooRecipe(), steps=args.steps, checkpoints=(), batch_size=args.batch_size, n_eval=1)
    g = torch.Generator().manual_seed(0)

    with peak_memory(dev) as peak:  # warm-up both paths; the batched one's peak memory
        train_cnns(spec, hp[: args.batched_models], train_x, train_y, test_x, test_y, replace(recipe, steps=2), g,
                   dev)
    autotune = dev.type == "cuda"  # cuDNN's algorithm search: CUDA only (see the module docstring)
    if autotune:
        with cudnn_autotuned():  # the search runs on the first step of each shape: out of the timings
            train_cnns(spec, hp[: args.batched_models], train_x, train_y, test_x, test_y, replace(recipe, steps=2), g,
                       dev)
    reference_train(spec, hp[:1], train_x, train_y, 2, recipe.batch_size, g)  # warm both paths up
    convolutions = step_convolutions(spec, args.batched_models, recipe.batch_size, dev)
    convolutions()  # warm-up
    ref_rates, batched_rates, conv_rates, tuned_rates = [], [], [], []
    for _ in range(args.rounds):
        synchronize(dev)
        t0 = time.perf_counter()
        reference_train(spec, hp[: args.ref_models], train_x, train_y, args.steps, recipe.batch_size, g)
        synchronize(dev)
        ref_rates.append(args.ref_models * args.steps / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        train_cnns(spec, hp[: args.batched_models], train_x, train_y, test_x, test_y, recipe, g, dev)
        synchronize(dev)
        batched_rates.append(args.batched_models * args.steps / (time.perf_counter() - t0))
        if autotune:
            with cudnn_autotuned():
                t0 = time.perf_counter()
                train_cnns(spec, hp[: args.batched_models], train_x, train_y, test_x, test_y, recipe, g, dev)
                synchronize(dev)
                tuned_rates.append(args.batched_models * args.steps / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(args.steps):
            convolutions()
        synchronize(dev)
        conv_rates.append(args.batched_models * args.steps / (time.perf_counter() - t0))
    ref, batched, convs = (statistics.median(r) for r in (ref_rates, batched_rates, conv_rates))
    tuned = statistics.median(tuned_rates) if tuned_rates else None
    check = hp.groupby("optimizer", sort=False).head(1).reset_index(drop=True)  # one model per optimizer kind
    agreement = max_abs_diff_after_steps(spec, check, train_x, train_y, 3, recipe.batch_size,
                                         torch.Generator().manual_seed(1))
    result = {"reference_models_per_s": ref / args.steps, "batched_models_per_s": batched / args.steps,
              "max_abs_diff": agreement, "agreement_optimizers": list(check["optimizer"]), "agreement_steps": 3,
              "reference_model_steps_per_s": ref, "batched_model_steps_per_s": batched, "ratio": batched / ref,
              # the batched trainer with cuDNN's algorithm search on (None: not a CUDA device)
              "batched_autotuned_model_steps_per_s": tuned, "ratio_autotuned": tuned / ref if tuned else None,
              # the step's convolutions alone, as the batched step runs them: no work on the rest beats this bound
              "convolutions_only_model_steps_per_s": convs, "ratio_bound_convolutions": convs / ref,
              "batched_models": args.batched_models, "batch_size": args.batch_size, "steps": args.steps,
              "rounds": args.rounds,
              "peak_bytes_per_model": peak.per(args.batched_models), "peak_memory_measured": peak.how,
              "dataset": data.name, "device": describe_device(dev), "torch": torch.__version__, "smoke": args.smoke,
              "note": "models_per_s counts models trained for `steps` steps each"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':28}{'model-steps/s':>14}")
    print(f"{'one at a time':28}{ref:>14,.0f}")
    print(f"{f'batched ({args.batched_models} at once)':28}{batched:>14,.0f}")
    if tuned is not None:
        print(f"{'batched, cudnn.benchmark':28}{tuned:>14,.0f}   ({tuned / batched:.2f}x the batched default)")
    print(f"{'its convolutions alone':28}{convs:>14,.0f}   (bound: {convs / ref:.1f}x the one-at-a-time reference)")
    print(f"weights after 3 steps, one at a time vs batched: max |Δ| {agreement:.1e} "
          f"({', '.join(check['optimizer'])}; dropout off)")
    print(f"peak memory {peak.per(args.batched_models) / 2**20:,.2f} MiB per CNN ({peak.how})")
    print(f"ratio {result['ratio']:.1f}x on {result['device']}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
