"""CPU thread policies beside busy neighbours: probe training and INR fitting, each alone and beside one neighbour.

Workloads: the quickstart's ProbeGen training (2 epochs on the embedded MNIST INR zoo, Q = 128, batch 32) and one
INR-fitting chunk (`fit_inrs` on 64 random 28×28 images, 150 steps). Neighbours, started before the measurement and
killed after it: a second copy of the same job under the same policy, a spinning pure-Python process, and the
project's batched CNN forward (`cnn_forward`) in a loop with today's threads. Policies: today's (one thread per core,
OpenMP's default wait policy), one thread, one thread per core with OMP_WAIT_POLICY=PASSIVE, and the new default
($PROBEGEN_THREADS unset: `core.threads.ThreadGovernor`'s "auto"). Every measured run is a fresh subprocess, so OpenMP
reads its environment before torch starts; a run still going after 15 s is stopped and reported as ">= 15 s" (today's
policy beside some neighbours: 10-30× its quiet time). Writes runs/bench/contention.json (every time, the ratios, the
goals, the policy) and prints a table. Goals: the new default within 1.25× of the best policy of every situation, and
no situation with one neighbour over 2× the best quiet time.

    python benchmarks/bench_contention.py            # about 3-4 min on a 2-core CPU
    python benchmarks/bench_contention.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "data" / "zoos" / "mnist-inr-small"
SITUATIONS = ("quiet", "copy", "python_spin", "cnn_forward")
ONE_NEIGHBOUR = SITUATIONS[1:]
OMP_VARS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT", "PROBEGEN_THREADS")
NEW_DEFAULT = "new_default"
GOAL_RATIO_TO_BEST, GOAL_RATIO_TO_QUIET = 1.25, 2.0
INR_STEPS = 150  # Adam steps of the INR-fitting chunk (64 INRs)
CAP_S = 15.0  # a measured run still going after this long is stopped and reported as >= CAP_S


def policies(n_cpus: int) -> dict[str, dict[str, str]]:
    """Environment of each policy (on top of one with every OpenMP/thread variable removed)."""
    return {"today": {"PROBEGEN_THREADS": str(n_cpus)},
            "1_thread": {"PROBEGEN_THREADS": "1"},
            f"{n_cpus}_passive": {"PROBEGEN_THREADS": str(n_cpus), "OMP_WAIT_POLICY": "PASSIVE"},
            NEW_DEFAULT: {}}


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **extra}


# --- what the subprocesses run ---------------------------------------------------------------------------------------

def prepare(workload: str, smoke: bool) -> Callable[[], dict[str, Any]]:
    """Import and load what `workload` needs; return one timed run of it (wall seconds, the threads it recorded)."""
    import numpy as np
    import torch

    if workload == "train":
        from probegen_nb.core.zoo_io import load_zoo
        from probegen_nb.experiment.config import RunConfig
        from probegen_nb.experiment.train import train

        zoo = load_zoo(ZOO)
        if smoke:  # 32 models of each split: a few steps and a small evaluation
            zoo = zoo.subset(np.concatenate([np.flatnonzero(zoo.table["split"].to_numpy() == s)[:32]
                                             for s in ("train", "val", "test")]))
        config = RunConfig(epochs=1, device="cpu") if smoke else RunConfig(epochs=2, device="cpu")

        def job() -> dict[str, Any]:
            return train(config, zoo, progress=False).metrics["threads"]
    elif workload == "inr_fit":
        from probegen_nb.zoos.inr import PUBLIC_RECIPE, SirenRecipe, fit_inrs

        b, steps = (8, 5) if smoke else (64, INR_STEPS)
        images = torch.randint(0, 256, (b, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        recipe = SirenRecipe(**{**asdict(PUBLIC_RECIPE), "steps": steps, "target_psnr": float("inf")})

        def job() -> dict[str, Any]:
            return fit_inrs(images, recipe=recipe, device="cpu").threads
    else:
        raise ValueError(f"unknown workload {workload!r}")

    def timed() -> dict[str, Any]:
        t0 = time.perf_counter()
        threads = job()
        return {"seconds": time.perf_counter() - t0, "threads": threads}
    return timed


def neighbour(kind: str, workload: str, smoke: bool) -> None:
    """Busy forever (until killed): prints 'ready' once it is doing its steady-state work."""
    if kind == "python_spin":
        print("ready", flush=True)
        x = 0
        while True:
            x += 1
    if kind == "cnn_forward":
        import torch

        from probegen_nb.core.arch.cnn import CNNSpec, cnn_forward

        spec, g = CNNSpec(), torch.Generator().manual_seed(0)
        params = {k: torch.randn(32, *s, generator=g) * 0.1 for k, s in spec.param_shapes().items()}
        x = torch.randn(64, spec.in_channels, spec.image_size, spec.image_size, generator=g)
        cnn_forward(spec, params, x)
        print("ready", flush=True)
        while True:
            cnn_forward(spec, params, x)
    if kind == "copy":
        job = prepare(workload, smoke)
        print("ready", flush=True)
        while True:
            job()
    raise ValueError(f"unknown neighbour {kind!r}")


# --- the parent: start neighbours, time each configuration in a fresh process ----------------------------------------

def start_neighbour(kind: str, workload: str, env: dict[str, str], smoke: bool) -> subprocess.Popen:
    args = [sys.executable, __file__, "--neighbour", kind, "--workload", workload] + (["--smoke"] if smoke else [])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"neighbour {kind} did not start (said {line!r}, exit {proc.wait()})")
    return proc


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()
    procs.clear()


def start_measure(workload: str, env: dict[str, str], smoke: bool) -> subprocess.Popen:
    """A fresh process that loads `workload` and waits for 'go' on stdin (so its start-up overlaps a neighbour's)."""
    args = [sys.executable, __file__, "--measure", workload] + (["--smoke"] if smoke else [])
    return subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)


def finish_measure(proc: subprocess.Popen, cap_s: float) -> dict[str, Any]:
    """Start the loaded run and wait for its result; a run still going after `cap_s` is killed and reported as
    taking `cap_s` (a lower bound, `capped`), which keeps the pathological cases from eating the time budget."""
    if proc.stdout.readline().strip() != "loaded":
        proc.kill()
        raise RuntimeError(f"measured process failed to load (exit {proc.wait()})")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    t0 = time.perf_counter()
    try:
        out, _ = proc.communicate(timeout=cap_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"seconds": cap_s, "capped": True, "threads": None, "wall_s": time.perf_counter() - t0}
    if proc.returncode:
        raise RuntimeError(f"measured process exited {proc.returncode}")
    return {**json.loads(out.strip().splitlines()[-1]), "capped": False}


def summarise(times: dict[str, dict[str, dict[str, float]]]) -> tuple[dict, dict]:
    """Ratios to the best policy of each situation and to the best quiet time; whether the goals hold."""
    ratios: dict[str, Any] = {}
    goals: dict[str, Any] = {"new_default_within_of_best": GOAL_RATIO_TO_BEST,
                             "one_neighbour_within_of_quiet": GOAL_RATIO_TO_QUIET, "misses": []}
    for workload, by_situation in times.items():
        quiet_best = min(by_situation["quiet"].values()) if "quiet" in by_situation else None
        ratios[workload] = {}
        for situation, by_policy in by_situation.items():
            best = min(by_policy.values())
            ratios[workload][situation] = {
                "to_best": {p: round(t / best, 3) for p, t in by_policy.items()},
                "to_quiet_best": ({p: round(t / quiet_best, 3) for p, t in by_policy.items()} if quiet_best else None)}
            new = by_policy.get(NEW_DEFAULT)
            if new is None:
                continue
            if new / best > GOAL_RATIO_TO_BEST:
                goals["misses"].append(f"{workload}/{situation}: new default {new / best:.2f}x the best")
            if situation in ONE_NEIGHBOUR and quiet_best and new / quiet_best > GOAL_RATIO_TO_QUIET:
                goals["misses"].append(f"{workload}/{situation}: new default {new / quiet_best:.2f}x the quiet time")
    goals["met"] = not goals["misses"]
    return ratios, goals


def table(times: dict[str, dict[str, dict[str, float]]], ratios: dict, capped: set[tuple[str, str, str]]) -> str:
    names = list(next(iter(next(iter(times.values())).values())))
    lines = [f"{'workload':<9} {'beside':<12} " + " ".join(f"{p:>19}" for p in names)]
    for workload, by_situation in times.items():
        for situation, by_policy in by_situation.items():
            r = ratios[workload][situation]["to_best"]
            cells = [f"{'>=' if (workload, situation, p) in capped else ''}{by_policy[p]:.2f}s ({r[p]:.2f}x)"
                     if p in by_policy else "" for p in names]
            lines.append(f"{workload:<9} {situation:<12} " + " ".join(f"{c:>19}" for c in cells))
    return "\n".join(lines) + "\n(seconds; in brackets: relative to the best policy beside the same neighbour)"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "contention.json")
    p.add_argument("--smoke", action="store_true", help="tiny workloads, two situations and two policies, for tests")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the subprocess that times one workload
    p.add_argument("--neighbour", help=argparse.SUPPRESS)  # internal: a busy neighbour
    p.add_argument("--workload", default="train", help=argparse.SUPPRESS)
    p.add_argument("--only", help=argparse.SUPPRESS)  # debugging: comma-separated situations to measure
    args = p.parse_args(argv)
    if args.measure:
        job = prepare(args.measure, args.smoke)
        print("loaded", flush=True)
        sys.stdin.readline()
        print(json.dumps(job()), flush=True)
        return {}
    if args.neighbour:
        neighbour(args.neighbour, args.workload, args.smoke)
        return {}

    from probegen_nb.core.threads import DEFAULT_THREAD_POLICY, usable_cpus

    n_cpus = len(usable_cpus())
    all_policies = policies(n_cpus)
    workloads = ("train", "inr_fit")
    situations = ("quiet", "python_spin") if args.smoke else SITUATIONS
    situations = tuple(args.only.split(",")) if args.only else situations
    chosen = {k: v for k, v in all_policies.items() if not args.smoke or k in ("today", NEW_DEFAULT)}
    cap_s = 60.0 if args.smoke else CAP_S
    times: dict[str, dict[str, dict[str, float]]] = {w: {s: {} for s in situations} for w in workloads}
    runs: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    neighbours: list[subprocess.Popen] = []
    try:
        for situation in situations:
            shared = situation in ("python_spin", "cnn_forward")  # the same neighbour whatever the policy measured
            if shared:
                neighbours.append(start_neighbour(situation, "train", clean_env({}), args.smoke))
            for workload in workloads:
                for name, extra in chosen.items():
                    env = clean_env(extra)
                    proc = start_measure(workload, env, args.smoke)
                    if situation == "copy":
                        neighbours.append(start_neighbour("copy", workload, env, args.smoke))
                    neighbours.append(proc)  # killed with the neighbours if anything goes wrong
                    result = finish_measure(proc, cap_s)
                    neighbours.remove(proc)
                    if situation == "copy":
                        stop(neighbours)
                    times[workload][situation][name] = round(result["seconds"], 3)
                    runs.append({"workload": workload, "situation": situation, "policy": name, "env": extra,
                                 **result})
                    used = ("capped: still running" if result["capped"] else
                            f"{result['threads']['seconds_by_threads']} (busy cores at start: "
                            f"{result['threads']['busy_cores_at_start']})")
                    print(f"  {workload:<8} {situation:<12} {name:<12} {result['seconds']:7.2f} s  threads {used}",
                          flush=True)
            stop(neighbours)
    finally:
        stop(neighbours)
    ratios, goals = summarise(times)
    result = {"cpus": n_cpus, "smoke": args.smoke, "situations": list(situations), "policies": chosen,
              "new_default": {"threads_env": "unset (auto)", "policy": asdict(DEFAULT_THREAD_POLICY),
                              "rule": "core.threads.choose_threads: all threads alone, one fewer per core other "
                                      "processes keep busy, re-read every interval_s"},
              "workloads": {"train": "RunConfig(epochs=1) on 32 models per split" if args.smoke else
                            "RunConfig(epochs=2) on data/zoos/mnist-inr-small (Q=128, batch 32)",
                            "inr_fit": "fit_inrs, 8 images x 5 steps" if args.smoke else
                            f"fit_inrs, 64 random 28x28 images x {INR_STEPS} steps"},
              "cap_s": cap_s, "seconds": times, "ratios": ratios, "goals": goals, "runs": runs,
              "total_seconds": round(time.perf_counter() - t_start, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(table(times, ratios, {(r["workload"], r["situation"], r["policy"]) for r in runs if r["capped"]}))
    print("goals met" if goals["met"] else "goals missed: " + "; ".join(goals["misses"]))
    print(f"total {result['total_seconds']} s -> {args.out}")
    return result


if __name__ == "__main__":
    main()
