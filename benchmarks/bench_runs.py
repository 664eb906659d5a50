"""R runs as one program (a leading run axis, `experiment.grouped.train_group`) vs the same R runs one after another
with `train()`, same seeds, in one process, on the embedded MNIST INR zoo (ProbeGen, Q = 128). Reports each path's
median wall time (rounds interleaved, after one warm-up of each), their ratio, the solo run's own time (to watch that
`train()` did not get slower) and each run's largest metric difference from its solo run. Writes
runs/bench/runs.json.

    python benchmarks/bench_runs.py                    # about 15 s on a 2-core CPU
    python benchmarks/bench_runs.py --zoo cifar10-gs-cnn-small --probes dead-leaves --runs 2
    python benchmarks/bench_runs.py --device cuda      # on a GPU
    python benchmarks/bench_runs.py --smoke            # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from probegen_nb.core.device import describe_device, resolve_device, synchronize
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.grouped import train_group
from probegen_nb.experiment.train import train
from probegen_nb.probes.registry import PROBE_CONFIGS

REPO = Path(__file__).resolve().parents[1]
ZOOS = {"mnist-inr-small": "probegen", "cifar10-gs-cnn-small": "probegen-conv"}  # embedded zoo → default probes


def timed(fn, device: torch.device):  # noqa: ANN001, ANN201
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="R: seeds 0..R-1")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-train-models", type=int, default=1024)
    p.add_argument("--n-probes", type=int, default=128)
    p.add_argument("--zoo", choices=sorted(ZOOS), default="mnist-inr-small", help="an embedded zoo")
    p.add_argument("--probes", choices=sorted(PROBE_CONFIGS), help="probe source (default: ProbeGen for the zoo)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "runs.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.epochs, args.max_train_models, args.n_probes, args.rounds = 1, 64, 8, 1
    dev = resolve_device(args.device)
    zoo = load_zoo(REPO / "data" / "zoos" / args.zoo).to(dev)
    probes = PROBE_CONFIGS[args.probes or ZOOS[args.zoo]]()
    configs = [RunConfig(method=ProbingConfig(probes, n_probes=args.n_probes), epochs=args.epochs,
                         max_train_models=args.max_train_models, device=str(dev), seed=s) for s in range(args.runs)]
    solo_fn = lambda: [train(c, zoo, progress=False) for c in configs]  # noqa: E731
    group_fn = lambda: train_group(configs, zoo)  # noqa: E731
    solo_fn(), group_fn()  # warm-up: first-call costs (allocator, kernels, thread pool) out of the timings
    seconds: dict[str, list[float]] = {"sequence": [], "group": [], "solo_train": []}
    solo, group = [], []
    for _ in range(args.rounds):
        solo, t_solo = timed(solo_fn, dev)
        group, t_group = timed(group_fn, dev)
        seconds["sequence"].append(t_solo)
        seconds["group"].append(t_group)
        seconds["solo_train"].append(statistics.mean(r.metrics["train_seconds"] for r in solo))
    diffs = []
    for s, g in zip(solo, group, strict=True):
        diffs.append(max(abs(a[k] - b[k]) for a, b in zip(s.metrics["history"], g.metrics["history"], strict=True)
                         for k in a if k not in ("epoch", "lr")))
    sequence, grouped = statistics.median(seconds["sequence"]), statistics.median(seconds["group"])
    result = {"zoo": args.zoo, "runs": args.runs, "epochs": args.epochs,
              "n_train_models": solo[0].metrics["n_train_models"],
              "n_probes": args.n_probes, "probes": configs[0].method.label,
              "steps_per_run": solo[0].metrics["steps"], "sequence_seconds": sequence, "group_seconds": grouped,
              "ratio": sequence / grouped, "solo_train_seconds": statistics.median(seconds["solo_train"]),
              "max_metric_diff_per_run": diffs, "best_epoch_equal": [s.metrics["best_epoch"] == g.metrics["best_epoch"]
                                                                     for s, g in zip(solo, group)],
              "device": describe_device(dev), "torch": torch.__version__, "smoke": args.smoke}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.zoo}, {configs[0].method.label}, {args.runs} runs ({result['steps_per_run']} steps each): "
          f"in sequence {sequence:.2f} s, as one program {grouped:.2f} s, {result['ratio']:.2f}x; "
          f"one solo train() {result['solo_train_seconds']:.2f} s;"
          f" largest metric difference per run {', '.join(f'{d:.1e}' for d in diffs)}")
    print(f"on {result['device']}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
