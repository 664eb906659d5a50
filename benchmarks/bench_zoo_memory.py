"""Host memory of a public-size INR zoo: the peak resident-set growth of `save_zoo`, `load_zoo` and one epoch of
`train()` on it, each as a multiple of the zoo's weight bytes (a 70,000-INR zoo holds 332 MB of float32 weights), so
"no host-memory blow-up" is a ratio measured in the same run. Writes runs/bench/zoo_memory.json.

The zoo is `--zoo DIR` (e.g. the public-size zoo gpu_check.sh builds), or a synthetic one of `--n-models` SIRENs with
the public split's proportions (55 : 5 : 10) and freshly initialised weights: memory depends on the sizes, not on
what the weights learned. Training runs on `--device` (its host side is what is measured here; on a GPU the zoo
itself moves to the device).

    python benchmarks/bench_zoo_memory.py                       # 70,000 synthetic INRs, about 2 min on a 2-core CPU
    python benchmarks/bench_zoo_memory.py --zoo runs/bench/gpu-zoo --device cuda
    python benchmarks/bench_zoo_memory.py --smoke               # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.device import describe_device, resolve_device
from probegen_nb.core.memory import peak_memory
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.core.zoo_io import load_zoo, save_zoo
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.train import train
from probegen_nb.zoos.inr import init_siren_params

REPO = Path(__file__).resolve().parents[1]
HOST = torch.device("cpu")  # the host's resident set, wherever training runs


def synthetic_zoo(n_models: int) -> Zoo:
    """`n_models` freshly initialised SIRENs split 55 : 5 : 10 as the public zoos, labels cycling over 10 classes."""
    params = init_siren_params(SirenSpec(), n_models, torch.Generator().manual_seed(0))
    n_val, n_test = round(n_models * 5 / 70), round(n_models * 10 / 70)
    split = ["train"] * (n_models - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
    table = pd.DataFrame({"model_id": np.arange(n_models), "split": split, "label": np.arange(n_models) % 10})
    return Zoo(SirenSpec(), params, table, Task("label", 10), {"builder": "bench_zoo_memory.synthetic_zoo"})


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", type=Path, help="a zoo folder (default: a synthetic one of --n-models SIRENs)")
    p.add_argument("--n-models", type=int, default=70_000)
    p.add_argument("--epochs", type=int, default=1, help="epochs of the measured train() run")
    p.add_argument("--device", default="auto", help="where train() runs")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "zoo_memory.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.n_models = 700
    dev = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.zoo
        seconds: dict[str, float] = {}
        save_peak = None
        if folder is None:
            zoo = synthetic_zoo(args.n_models)
            folder = Path(tmp) / "zoo"
            t0 = time.perf_counter()
            with peak_memory(HOST) as save_peak:
                save_zoo(zoo, folder)
            seconds["save"] = time.perf_counter() - t0
            del zoo
        t0 = time.perf_counter()
        with peak_memory(HOST) as load_peak:
            zoo = load_zoo(folder)
        seconds["load"] = time.perf_counter() - t0
        weight_bytes = sum(v.numel() * v.element_size() for v in zoo.params.values())
        with peak_memory(HOST) as train_peak:
            run = train(RunConfig(zoo_dir=str(folder), epochs=args.epochs, device=str(dev)), zoo, progress=False)
        seconds["train"] = run.metrics["train_seconds"]
    result = {"n_models": len(zoo), "weight_bytes": weight_bytes, "zoo": str(args.zoo or "synthetic"),
              "save_peak_bytes": None if save_peak is None else save_peak.bytes,
              "load_peak_bytes": load_peak.bytes, "train_peak_bytes": train_peak.bytes,
              "save_peak_over_weights": None if save_peak is None else save_peak.bytes / weight_bytes,
              "load_peak_over_weights": load_peak.bytes / weight_bytes,
              "train_peak_over_weights": train_peak.bytes / weight_bytes,
              "how": load_peak.how, "seconds": seconds, "train_epochs": args.epochs,
              "train_test_accuracy": run.metrics["test_accuracy"], "device": describe_device(dev),
              "torch": torch.__version__, "smoke": args.smoke}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    mib = 2**20
    print(f"{len(zoo):,} INRs, {weight_bytes / mib:,.0f} MiB of weights; peak host memory growth "
          f"({load_peak.how}):")
    for name in ("save", "load", "train"):
        peak = result[f"{name}_peak_bytes"]
        if peak is not None:
            print(f"  {name:6}{peak / mib:>9,.0f} MiB = {peak / weight_bytes:.2f}x the weights  "
                  f"({seconds[name]:.1f} s)")
    print(f"train() ran {args.epochs} epoch(s) on {result['device']}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
