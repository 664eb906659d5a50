"""Training steps replayed as a CUDA graph (`experiment.step_graph`) vs eager steps, same seeds, in one process: one
ProbeGen run with `train()`, and R runs as one program with `train_group()`, each both ways. Reports each row's
median wall time and milliseconds per optimizer step (evaluation included, rounds interleaved after one warm-up of
each), the graphs' speed-up and each run's largest metric difference from its eager run. The per-step figure projects
a paper-protocol run on a public-size zoo: 30 epochs x 1,719 steps (55,000 train INRs, batches of 32).
Writes runs/bench/train_step.json.

CUDA only: on a CPU there is no launch overhead to save, so only the eager rows run (the `graphs` rows say why not).

    python benchmarks/bench_train_step.py --device cuda     # about 15 s on an H200
    python benchmarks/bench_train_step.py --smoke           # seconds, for the test suite
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
PUBLIC_STEPS = 30 * 1719  # the paper's protocol on a public-size MNIST zoo: 30 epochs of ceil(55,000 / 32) steps


def largest_metric_diff(a: dict, b: dict) -> float:
    """The largest difference of any per-epoch metric (loss, accuracies) between two runs' histories."""
    return max(abs(x[k] - y[k]) for x, y in zip(a["history"], b["history"], strict=True)
               for k in x if k not in ("epoch", "lr"))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", type=Path, default=REPO / "data" / "zoos" / "mnist-inr-small", help="an INR zoo folder")
    p.add_argument("--runs", type=int, default=3, help="R of the grouped rows: seeds 0..R-1")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-train-models", type=int, default=None, help="default: the whole train split")
    p.add_argument("--n-probes", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "train_step.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.epochs, args.max_train_models, args.n_probes, args.rounds = 2, 1, 64, 8, 1
    dev = resolve_device(args.device)
    zoo = load_zoo(args.zoo).to(dev)
    configs = [RunConfig(method=ProbingConfig(PROBE_CONFIGS["probegen"](), n_probes=args.n_probes),
                         epochs=args.epochs, max_train_models=args.max_train_models, device=str(dev), seed=s)
               for s in range(args.runs)]
    paths = {"solo": lambda graphs: [train(configs[0], zoo, progress=False, cuda_graphs=graphs)],
             "group": lambda graphs: train_group(configs, zoo, cuda_graphs=graphs)}
    modes = [False, True] if dev.type == "cuda" else [False]
    seconds: dict[str, list[float]] = {f"{path}_{'graphs' if g else 'eager'}": [] for path in paths for g in modes}
    results: dict[str, list] = {}
    for fn in paths.values():
        for g in modes:
            fn(g)  # warm-up: first-call costs (allocator, kernels, cuBLAS) out of the timings
    for _ in range(args.rounds):
        for path, fn in paths.items():
            for g in modes:
                key = f"{path}_{'graphs' if g else 'eager'}"
                synchronize(dev)
                t0 = time.perf_counter()
                results[key] = fn(g)
                synchronize(dev)
                seconds[key].append(time.perf_counter() - t0)
    steps = results["solo_eager"][0].metrics["steps"]
    rows = {}
    for key, times in seconds.items():
        median = statistics.median(times)
        rows[key] = {"seconds": median, "ms_per_step": 1e3 * median / steps,
                     "cuda_graphs": [r.metrics["cuda_graphs"] for r in results[key]]}
    result: dict = {"zoo": str(args.zoo), "runs": args.runs, "epochs": args.epochs, "steps_per_run": steps,
                    "n_train_models": results["solo_eager"][0].metrics["n_train_models"], "n_probes": args.n_probes,
                    "rows": rows, "device": describe_device(dev), "torch": torch.__version__, "smoke": args.smoke}
    if dev.type == "cuda":
        for path in paths:
            eager, graphs = results[f"{path}_eager"], results[f"{path}_graphs"]
            result[f"{path}_speedup"] = rows[f"{path}_eager"]["seconds"] / rows[f"{path}_graphs"]["seconds"]
            result[f"{path}_max_metric_diff_per_run"] = [largest_metric_diff(e.metrics, g.metrics)
                                                         for e, g in zip(eager, graphs, strict=True)]
            result[f"{path}_best_epoch_equal"] = [e.metrics["best_epoch"] == g.metrics["best_epoch"]
                                                  for e, g in zip(eager, graphs, strict=True)]
        result["projected_public_run_seconds"] = {
            mode: rows[f"solo_{mode}"]["ms_per_step"] * PUBLIC_STEPS / 1e3 for mode in ("eager", "graphs")}
    else:
        result["graphs_skipped"] = f"CUDA graphs need a CUDA device; this is {dev.type}: eager rows only"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key, row in rows.items():
        print(f"{key:14} {row['seconds']:8.2f} s  {row['ms_per_step']:7.3f} ms a step")
    if dev.type == "cuda":
        solo_diff, group_diff = (max(result[f"{path}_max_metric_diff_per_run"]) for path in paths)
        projected = result["projected_public_run_seconds"]
        print(f"graphs vs eager: one run {result['solo_speedup']:.2f}x, {args.runs} runs as one program "
              f"{result['group_speedup']:.2f}x; largest metric difference {solo_diff:.1e} (one run), "
              f"{group_diff:.1e} (grouped); a public-size paper-protocol run projected at {projected['graphs']:.0f} s "
              f"(eager {projected['eager']:.0f} s)")
    else:
        print(result["graphs_skipped"])
    print(f"on {result['device']}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
