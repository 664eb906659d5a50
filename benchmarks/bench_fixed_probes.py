"""Fixed probes: the zoo's answers computed once per run (cached) vs pushed through the zoo at every step.

Fixed probes (uniform points, dead-leaves images) never change, so neither do the models' answers; the public code
computes them once. Both paths run the same `train()` (RunConfig.cache_responses True / False), interleaved in one
process, on the embedded INR zoo (uniform, Q = 128) and the embedded CNN zoo (dead leaves, Q = 64), and must give the
same learning curves. Writes runs/bench/fixed_probes.json.

    python benchmarks/bench_fixed_probes.py            # about 3 min on a 2-core CPU
    python benchmarks/bench_fixed_probes.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch

from probegen_nb.core.device import describe_device, resolve_device
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.train import train
from probegen_nb.probes.coords import UniformConfig
from probegen_nb.probes.dead_leaves import DeadLeavesConfig

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "data" / "zoos" / "mnist-inr-small"
CNN_ZOO = REPO / "data" / "zoos" / "cifar10-gs-cnn-small"


def measure(zoo, config: RunConfig, rounds: int) -> dict:
    """Median train seconds of each path over `rounds` interleaved pairs, and how far their curves differ."""
    seconds: dict[bool, list[float]] = {True: [], False: []}
    histories = {}
    for _ in range(rounds):
        for cached in (False, True):
            run = train(dataclasses.replace(config, cache_responses=cached), zoo, progress=False)
            seconds[cached].append(run.metrics["train_seconds"])
            histories[cached] = run.metrics["history"]
    metric = [k for k in histories[True][0] if k.startswith("test_")][0]
    diff = max(abs(a[metric] - b[metric]) for a, b in zip(histories[True], histories[False], strict=True))
    per_step, once = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {"per_step_seconds": per_step, "cached_seconds": once, "ratio": per_step / once,
            "max_abs_metric_diff": diff, "metric": metric, "epochs": config.epochs, "n_probes": config.method.n_probes,
            "probes": config.method.probes.kind}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "fixed_probes.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = p.parse_args(argv)
    limit = 64 if args.smoke else None
    epochs, rounds = (1, 1) if args.smoke else (args.epochs, args.rounds)
    dev = resolve_device(args.device)
    inr = measure(load_zoo(ZOO), RunConfig(epochs=epochs, max_train_models=limit, device=str(dev),
                                           method=ProbingConfig(UniformConfig(), 8 if args.smoke else 128)), rounds)
    cnn_probing = ProbingConfig(DeadLeavesConfig(), 8 if args.smoke else 64)
    cnn = measure(load_zoo(CNN_ZOO), RunConfig(epochs=epochs, max_train_models=limit, device=str(dev),
                                               method=cnn_probing), rounds)
    result = {"inr": inr, "cnn": cnn, "device": describe_device(dev), "torch": torch.__version__,
              "smoke": args.smoke}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in (("INR uniform", inr), ("CNN dead leaves", cnn)):
        print(f"{name:>16}: every step {r['per_step_seconds']:.1f} s, cached {r['cached_seconds']:.1f} s, "
              f"{r['ratio']:.1f}x ({r['epochs']} epochs, Q = {r['n_probes']}; curves differ by "
              f"{r['max_abs_metric_diff']:.1e})")
    print(f"on {result['device']}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
