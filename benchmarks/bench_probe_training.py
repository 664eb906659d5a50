"""Probe training steps: the public code's pattern (a Python loop over per-model nn.Modules) vs the batched forward.

Both run the paper's protocol (Q = 128 ProbeGen probes, the 6-layer MLP, Adam) on the same zoo, interleaved in one
run: the INR zoo at 32 and at 256 models a batch, and the CNN zoo (Q = 128 generated probe images) at 32 under
`cnn` (and at 256, `cnn.by_batch`). Goals on a 2-core CPU: ratio >= 2 at 32 and >= 4 at 256.
`ratio_bound`: the ratio if the zoo cost nothing, since the probes' own forward + backward is shared by both paths.

`wild_park`: a mixed zoo of 32 CNN Wild Park architectures (in memory, random weights), a batch of 32 with one model
of each, stepped by `represent_rows` (`batched`, as it runs by default on this device) and by the per-group loop it
replaced (`per_group_loop`, the reference); the same for 32 architectures that share one architecture's layer shapes
and differ in activations, also forced to one forward for all (`one_forward`), and that architecture as one group
(`one_group`: the same convolutions on the same weights).

Every case records `max_abs_diff`: the largest difference between the reference's and the batched path's
representations and loss gradients on the case's own batch. Writes runs/bench/probe_training.json.

    python benchmarks/bench_probe_training.py            # about 5 min on a 2-core CPU (wild_park: 3.5)
    python benchmarks/bench_probe_training.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.core.allocator import tune_cpu_allocator
from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.registry import forward
from probegen_nb.core.device import describe_device, resolve_device, synchronize
from probegen_nb.core.memory import peak_memory
from probegen_nb.core.zoo import MixedZoo, Task, Zoo
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.train import build_model, loss_fn
from probegen_nb.methods.probing import ProbingModel, shares_forwards
from probegen_nb.probes.coords import ProbeGenConfig
from probegen_nb.probes.images import ConvProbeGenConfig
from probegen_nb.probes.registry import ProbeConfig
from probegen_nb.zoos.cnn import sample_wild_park_specs

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "data" / "zoos" / "mnist-inr-small"
CNN_ZOO = REPO / "data" / "zoos" / "cifar10-gs-cnn-small"


def reference_step(model, modules: list[torch.nn.Module], labels: torch.Tensor, optimizer) -> None:
    """The public code's pattern: every model's own nn.Module called on the probes, outputs concatenated."""
    probes = model.probes()
    rep = torch.stack([m(probes).flatten() for m in modules])  # [B, Q·K]
    loss = loss_fn(model.predictor(rep), labels, not labels.is_floating_point())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def batched_step(model, params: dict[str, torch.Tensor], labels: torch.Tensor, optimizer) -> None:
    loss = loss_fn(model(params), labels, not labels.is_floating_point())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


Represent = Callable[[torch.Tensor], torch.Tensor]  # probes [Q, …] → representations [B, Q·K]


def outputs_and_grads(model: ProbingModel, represent: Represent, labels: torch.Tensor) -> list[torch.Tensor]:
    """The representations of one batch and the loss gradients w.r.t. every trainable parameter (probes, predictor)."""
    rep = represent(model.probes())
    loss = loss_fn(model.predictor(rep), labels, not labels.is_floating_point())
    return [rep.detach(), *torch.autograd.grad(loss, list(model.parameters()))]


def outputs_and_input_grads(represent: Represent, probes: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """The representations of `probes` and the gradient of <representations, c> w.r.t. the probes, for a random
    cotangent c drawn from `seed` (the same c for every path with the same representation shape)."""
    x = probes.detach().requires_grad_()
    rep = represent(x)
    cotangent = torch.randn(rep.shape, generator=torch.Generator().manual_seed(seed)).to(rep.device)
    return [rep.detach(), torch.autograd.grad((rep * cotangent).sum(), x)[0]]


def max_abs_diff(model: ProbingModel, reference: Represent, batched: Represent, labels: torch.Tensor) -> float:
    """The agreement check each case records: the largest difference between the two paths' representations and
    gradients on the same batch, same probes and predictor; and on spread-out probes (uniform in [-1, 1], the
    input range), since untrained generators' probes are nearly constant (pre-tanh std 0.03 for the conv one).
    The spread probes' input gradients are compared as a share of the reference's largest one: they reach O(100)
    for SIRENs (w0 = 30 scales each sine layer's derivative)."""
    pairs = list(zip(outputs_and_grads(model, reference, labels), outputs_and_grads(model, batched, labels)))
    probes = model.probes().detach()
    spread = (torch.rand(probes.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(probes.device)
    (rep_a, grad_a), (rep_b, grad_b) = (outputs_and_input_grads(r, spread, seed=1) for r in (reference, batched))
    scale = grad_a.abs().max().clamp_min(1e-12)
    pairs += [(rep_a, rep_b), (grad_a / scale, grad_b / scale)]
    return max(float((a - b).abs().max()) for a, b in pairs)


def as_modules(zoo: Zoo, device: torch.device) -> list[torch.nn.Module]:
    modules = []
    for i in range(len(zoo)):
        m = zoo.spec.build_module().to(device)
        m.load_state_dict(zoo.model_params(i))
        modules.append(m.requires_grad_(False))
    return modules


def measure(zoo: Zoo, batch: int, n_probes: int, steps: int, rounds: int, dev: torch.device,
            probes: ProbeConfig = ProbeGenConfig()) -> dict:
    model = build_model(RunConfig(method=ProbingConfig(probes, n_probes)), zoo, torch.Generator().manual_seed(0))
    model = model.to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    sub = zoo.subset(range(batch)).to(dev)
    modules, labels = as_modules(sub, dev), sub.labels.to(dev)
    with FlopCounterMode(display=False) as counter:
        batched_step(model, sub.params, labels, optimizer)
    flops_per_model = counter.get_total_flops() / batch
    with peak_memory(dev) as peak:  # one batched training step (forward, backward, Adam) of `batch` models
        batched_step(model, sub.params, labels, optimizer)
    agreement = max_abs_diff(model, lambda x: torch.stack([m(x).flatten() for m in modules]),
                             lambda x: model.represent(sub.params, x), labels)
    reference_step(model, modules, labels, optimizer)  # warm-up
    ref, bat = [], []
    for _ in range(rounds):
        for fn, args, rates in ((reference_step, modules, ref), (batched_step, sub.params, bat)):
            synchronize(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn(model, args, labels, optimizer)
            synchronize(dev)
            rates.append(batch * steps / (time.perf_counter() - t0))
    r, b = statistics.median(ref), statistics.median(bat)
    source = probe_source_seconds(model, rounds)
    return {"reference_models_per_s": r, "batched_models_per_s": b, "ratio": b / r,
            # the probes' own forward + backward, the same in both paths: no batching of the zoo beats this bound
            "probe_source_seconds_per_step": source, "ratio_bound": batch / r / source,
            "flops_per_model_step": flops_per_model, "batched_gflop_per_s": b * flops_per_model / 1e9,
            "max_abs_diff": agreement, "peak_bytes_per_model": peak.per(batch), "peak_memory_measured": peak.how}


def probe_source_seconds(model: ProbingModel, rounds: int) -> float:
    """Median seconds of one forward + backward of the probe source alone (shared by every model of a step)."""
    times = []
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        model.probes().square().sum().backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return statistics.median(times[1:])


def per_group_loop(zoo: MixedZoo) -> Callable[[ProbingModel, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The reference: `represent_rows` as it was before batching across architectures (its `MixedZoo.parts` inlined).
    A Python loop over the groups present, found with torch.unique(…).tolist() and nonzero (host syncs on a GPU), one
    batched forward per group, assembled with one index_copy per group."""
    group_of_row = torch.tensor(zoo.table["arch"].to_numpy())
    row_in_group = torch.cat([torch.arange(len(z)) for z in zoo.groups])

    def represent_rows(model: ProbingModel, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        group, row = group_of_row.to(index.device)[index], row_in_group.to(index.device)[index]
        out = x.new_zeros(len(index), model.rep_dim)
        for g in torch.unique(group).tolist():
            positions = (group == g).nonzero().squeeze(1)
            sub = zoo.groups[g]
            params = {k: v[row[positions].to(v.device)] for k, v in sub.params.items()}
            out = out.index_copy(0, positions, model.represent(params, x, sub.spec))
        return out

    return represent_rows


def random_cnn_group(spec: CNNSpec, n: int, first_id: int, generator: torch.Generator) -> Zoo:
    """n CNNs of one architecture with He-normal weights, small biases and random test accuracies as labels: speed
    and agreement need no trained weights."""
    params = {k: torch.randn(n, *shape, generator=generator) * (0.05 if k.endswith("bias") else
                                                              math.sqrt(2 / math.prod(shape[1:])))
              for k, shape in spec.param_shapes().items()}
    table = pd.DataFrame({"model_id": np.arange(first_id, first_id + n), "split": "train",
                          "test_acc": (0.2 + 0.6 * torch.rand(n, generator=generator)).numpy()})
    return Zoo(spec, params, table, Task("test_acc", None))


def random_mixed_zoo(specs: list[CNNSpec], n_per_arch: int, seed: int) -> MixedZoo:
    g = torch.Generator().manual_seed(seed)
    groups = tuple(random_cnn_group(s, n_per_arch, i * n_per_arch, g) for i, s in enumerate(specs))
    return MixedZoo(groups, Task("test_acc", None))


def forward_flops(spec: CNNSpec, x: torch.Tensor) -> int:
    params = {k: torch.zeros(1, *shape, device=x.device) for k, shape in spec.param_shapes().items()}
    with FlopCounterMode(display=False) as counter:
        forward(spec, params, x)
    return counter.get_total_flops()


def activation_variants(spec: CNNSpec, n: int, seed: int) -> list[CNNSpec]:
    """`spec` and n - 1 more architectures with its layer shapes and other per-layer activations."""
    rng, names = np.random.default_rng(seed), ("relu", "gelu", "tanh", "sigmoid", "leaky_relu", "none")
    variants = [spec]
    while len(variants) < n:
        v = replace(spec, activation=tuple(str(a) for a in rng.choice(names, spec.n_layers)))
        if v not in variants:
            variants.append(v)
    return variants


def measure_wild_park(n_archs: int, n_probes: int, steps: int, rounds: int, dev: torch.device,
                      depths: tuple[int, ...] = (2, 3, 4, 5)) -> dict:
    """Steps/s of a batch with one model of each of `n_archs` Wild Park architectures (batch = n_archs), by the
    per-group loop and by `represent_rows`; the same for `n_archs` architectures sharing the layer shapes of the one
    whose forward costs closest to the mean (`shared_shapes`), and that architecture as one group (`one_group`: the
    same convolutions on the same weights, one activation per layer)."""
    specs = sample_wild_park_specs(n_archs, seed=0, in_channels=3, depths=depths)
    zoos = {"distinct": random_mixed_zoo(specs, 4, seed=0)}
    model = build_model(RunConfig(method=ProbingConfig(ConvProbeGenConfig(), n_probes)), zoos["distinct"],
                        torch.Generator().manual_seed(0)).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    flops = [forward_flops(s, model.probes().detach()) for s in specs]
    typical = specs[int(np.argmin(np.abs(np.array(flops) - np.mean(flops))))]
    zoos["shared_shapes"] = random_mixed_zoo(activation_variants(typical, n_archs, seed=1), 4, seed=1)
    zoos = {name: z.to(dev) for name, z in zoos.items()}
    g = torch.Generator().manual_seed(2)  # rows are grouped 4 per architecture: one model of each, in a random order
    index = (4 * torch.randperm(n_archs, generator=g) + torch.randint(4, (n_archs,), generator=g)).to(dev)  # [n_archs]
    labels = zoos["distinct"].labels.to(dev)[index]
    shared = zoos["shared_shapes"]
    single = Zoo(typical, {k: torch.cat([z.params[k] for z in shared.groups])[index] for k in typical.param_shapes()},
                 shared.table.iloc[index.cpu().numpy()].reset_index(drop=True), shared.task)
    whole = torch.arange(n_archs, device=dev)

    # Paths: the reference loop; `represent_rows` as it is by default on this device (`batched`); for the shared
    # shapes also forced to one forward for all (`one_forward`), whichever the device's default.
    paths: dict[str, Represent] = {"one_group": lambda x: model.represent_rows(single, whole, x)}
    out: dict = {"n_architectures": n_archs, "batch": n_archs, "n_probes": n_probes, "steps": steps,
                 "rounds": rounds, "one_group_spec": typical.to_dict(), "shares_forwards": shares_forwards(dev)}
    for name, zoo in zoos.items():
        loop = per_group_loop(zoo)
        paths[f"{name}/reference"] = lambda x, loop=loop: loop(model, index, x)
        paths[f"{name}/batched"] = lambda x, zoo=zoo: model.represent_rows(zoo, index, x)
        out[name] = {"max_abs_diff": max_abs_diff(model, paths[f"{name}/reference"], paths[f"{name}/batched"], labels),
                     "forwards_reference": len(zoo.batches(index, by_layer_shapes=False)),
                     "forwards_batched": len(zoo.batches(index, shares_forwards(dev)))}
    paths["shared_shapes/one_forward"] = lambda x: model.represent_rows(shared, index, x, by_layer_shapes=True)
    out["shared_shapes"].update({
        "one_forward_max_abs_diff": max_abs_diff(model, paths["shared_shapes/reference"],
                                                 paths["shared_shapes/one_forward"], labels),
        "forwards_one_forward": len(shared.batches(index, by_layer_shapes=True))})
    out["gflop_per_step"] = {}  # the agreement checks above warmed the paths up but for `one_group`
    for name in ("one_group", *(f"{name}/batched" for name in zoos)):
        with FlopCounterMode(display=False) as counter:
            rows_step(model, paths[name], labels, optimizer)
        out["gflop_per_step"][name.removesuffix("/batched")] = counter.get_total_flops() / 1e9
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, represent in paths.items():
            synchronize(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                rows_step(model, represent, labels, optimizer)
            synchronize(dev)
            rates[name].append(steps / (time.perf_counter() - t0))
    median = {name: statistics.median(r) for name, r in rates.items()}
    out["one_group_steps_per_s"] = median["one_group"]
    for name in zoos:
        ref, bat = median[f"{name}/reference"], median[f"{name}/batched"]
        out[name].update({"reference_steps_per_s": ref, "batched_steps_per_s": bat, "ratio": bat / ref})
    one_forward = median["shared_shapes/one_forward"]
    out["shared_shapes"].update({"one_forward_steps_per_s": one_forward,
                                 "one_forward_ratio": one_forward / median["shared_shapes/reference"]})
    return out


def rows_step(model: ProbingModel, represent: Represent, labels: torch.Tensor, optimizer) -> None:
    loss = loss_fn(model.predictor(represent(model.probes())), labels, False)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", type=Path, default=ZOO)
    p.add_argument("--cnn-zoo", type=Path, default=CNN_ZOO)
    p.add_argument("--n-probes", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="training steps per timed round (a tenth for wild_park)")
    p.add_argument("--wild-park-archs", type=int, default=32, help="architectures (and batch size) of wild_park")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "probe_training.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = p.parse_args(argv)
    batches = (32, 256)
    if args.smoke:
        args.n_probes, args.steps, args.rounds, batches, args.wild_park_archs = 8, 1, 1, (4, 8), 3
    dev = resolve_device(args.device)
    if dev.type == "cpu":
        tune_cpu_allocator()  # as train() does, for both paths
    zoo = load_zoo(args.zoo).split("train")
    at = {b: measure(zoo, b, args.n_probes, args.steps, args.rounds, dev) for b in batches}
    small, large = at[batches[0]], at[batches[1]]
    cnn_zoo = load_zoo(args.cnn_zoo).split("train")
    cnn_group = cnn_zoo.groups[0] if isinstance(cnn_zoo, MixedZoo) else cnn_zoo  # one architecture
    cnn_at = {b: measure(cnn_group, b, args.n_probes, max(1, args.steps // (4 if b == batches[0] else 20)),
                         args.rounds, dev, ConvProbeGenConfig()) for b in batches}
    cnn = {**cnn_at[batches[0]], "batch": batches[0], "ratio_b256": cnn_at[batches[1]]["ratio"], "by_batch": cnn_at}
    wild_park = measure_wild_park(args.wild_park_archs, args.n_probes, max(1, args.steps // 10), args.rounds, dev,
                                  (2,) if args.smoke else (2, 3, 4, 5))
    result = {"reference_models_per_s": small["reference_models_per_s"],
              "batched_models_per_s": small["batched_models_per_s"], "ratio": small["ratio"],
              "ratio_b256": large["ratio"], "batched_gflop_per_s": small["batched_gflop_per_s"],
              "batched_gflop_per_s_b256": large["batched_gflop_per_s"], "by_batch": at, "cnn": cnn,
              "wild_park": wild_park, "n_probes": args.n_probes,
              "device": describe_device(dev), "torch": torch.__version__, "smoke": args.smoke}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'batch':>6}{'loop models/s':>16}{'batched models/s':>18}{'ratio':>8}{'GFLOP/s':>9}")
    for b, r in at.items():
        print(f"{b:>6}{r['reference_models_per_s']:>16,.0f}{r['batched_models_per_s']:>18,.0f}{r['ratio']:>8.1f}"
              f"{r['batched_gflop_per_s']:>9.2f}")
    for b, r in cnn_at.items():
        print(f"{'CNN ' + str(b):>6}{r['reference_models_per_s']:>16,.0f}{r['batched_models_per_s']:>18,.0f}"
              f"{r['ratio']:>8.1f}{r['batched_gflop_per_s']:>9.2f}  (bound {r['ratio_bound']:.1f}: the probe "
              f"generator's {r['probe_source_seconds_per_step'] * 1e3:.0f} ms a step is shared)")
    n = wild_park["n_architectures"]
    print(f"wild_park, a batch of one model of each of {n} architectures: steps/s (per-group loop → batched, ratio)")
    for name, what in (("distinct", f"{n} Wild Park architectures"), ("shared_shapes", f"{n} sharing layer shapes")):
        r = wild_park[name]
        print(f"  {what:34}{r['reference_steps_per_s']:8.3f} →{r['batched_steps_per_s']:8.3f}{r['ratio']:7.2f}× "
              f"({r['forwards_reference']} → {r['forwards_batched']} forwards, max |Δ| {r['max_abs_diff']:.1e})")
    r = wild_park["shared_shapes"]
    print(f"  {'same, forced to one forward':34}{r['reference_steps_per_s']:8.3f} →{r['one_forward_steps_per_s']:8.3f}"
          f"{r['one_forward_ratio']:7.2f}× (max |Δ| {r['one_forward_max_abs_diff']:.1e})")
    print(f"  {'one group (equal compute)':34}{wild_park['one_group_steps_per_s']:17.3f}")
    print(f"on {result['device']}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
