"""Probe training steps: the public code's pattern (a Python loop over per-model nn.Modules) vs the batched forward.

Both run the paper's protocol (Q = 128 ProbeGen probes, the 6-layer MLP, Adam) on the same zoo, interleaved in one
run: the INR zoo at 32 and at 256 models a batch, and the CNN zoo (Q = 128 generated probe images) at 32 under
`cnn`. Writes runs/bench/probe_training.json. Goals on a 2-core CPU: ratio >= 2 at 32 and >= 4 at 256.

    python benchmarks/bench_probe_training.py            # about 1 min on a 2-core CPU
    python benchmarks/bench_probe_training.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.core.device import describe_device, resolve_device, synchronize
from probegen_nb.core.zoo import MixedZoo, Zoo
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.train import build_model, loss_fn
from probegen_nb.probes.coords import ProbeGenConfig
from probegen_nb.probes.images import ConvProbeGenConfig
from probegen_nb.probes.registry import ProbeConfig

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


def as_modules(zoo: Zoo, device: torch.device) -> list[torch.nn.Module]:
    modules = []
    for i in range(len(zoo)):
        m = zoo.spec.build_module().to(device)
        m.load_state_dict(zoo.model_params(i))
        modules.append(m.requires_grad_(False))
    return modules


def measure(zoo: Zoo, batch: int, n_probes: int, steps: int, rounds: int, dev: torch.device,
            probes: ProbeConfig = ProbeGenConfig()) -> dict:
    model = build_model(RunConfig(probes=probes, n_probes=n_probes), zoo, torch.Generator().manual_seed(0))
    model = model.to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    sub = zoo.subset(range(batch)).to(dev)
    modules, labels = as_modules(sub, dev), sub.labels.to(dev)
    with FlopCounterMode(display=False) as counter:
        batched_step(model, sub.params, labels, optimizer)
    flops_per_model = counter.get_total_flops() / batch
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
    return {"reference_models_per_s": r, "batched_models_per_s": b, "ratio": b / r,
            "flops_per_model_step": flops_per_model, "batched_gflop_per_s": b * flops_per_model / 1e9}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", type=Path, default=ZOO)
    p.add_argument("--cnn-zoo", type=Path, default=CNN_ZOO)
    p.add_argument("--n-probes", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="training steps per timed round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "probe_training.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = p.parse_args(argv)
    batches = (32, 256)
    if args.smoke:
        args.n_probes, args.steps, args.rounds, batches = 8, 1, 1, (4, 8)
    dev = resolve_device(args.device)
    zoo = load_zoo(args.zoo).split("train")
    at = {b: measure(zoo, b, args.n_probes, args.steps, args.rounds, dev) for b in batches}
    small, large = at[batches[0]], at[batches[1]]
    cnn_zoo = load_zoo(args.cnn_zoo).split("train")
    cnn_group = cnn_zoo.groups[0] if isinstance(cnn_zoo, MixedZoo) else cnn_zoo  # one architecture
    cnn = measure(cnn_group, batches[0], args.n_probes, max(1, args.steps // 4), args.rounds, dev, ConvProbeGenConfig())
    cnn["batch"] = batches[0]
    result = {"reference_models_per_s": small["reference_models_per_s"],
              "batched_models_per_s": small["batched_models_per_s"], "ratio": small["ratio"],
              "ratio_b256": large["ratio"], "batched_gflop_per_s": small["batched_gflop_per_s"],
              "batched_gflop_per_s_b256": large["batched_gflop_per_s"], "by_batch": at, "cnn": cnn,
              "n_probes": args.n_probes,
              "device": describe_device(dev), "torch": torch.__version__, "smoke": args.smoke}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'batch':>6}{'loop models/s':>16}{'batched models/s':>18}{'ratio':>8}{'GFLOP/s':>9}")
    for b, r in at.items():
        print(f"{b:>6}{r['reference_models_per_s']:>16,.0f}{r['batched_models_per_s']:>18,.0f}{r['ratio']:>8.1f}"
              f"{r['batched_gflop_per_s']:>9.2f}")
    print(f"{'CNN ' + str(batches[0]):>6}{cnn['reference_models_per_s']:>16,.0f}{cnn['batched_models_per_s']:>18,.0f}"
          f"{cnn['ratio']:>8.1f}{cnn['batched_gflop_per_s']:>9.2f}")
    print(f"on {result['device']}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
