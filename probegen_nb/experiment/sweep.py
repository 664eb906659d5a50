"""Sweeps: many `train()` runs, each in its own folder named by its config, resumable, on any engine.

A sweep is a name, a list of runs (a `RunConfig` and the name of its variant) and one folder:

    <folder>/sweep.json        the grid: name, variants, every run's id and config
    <folder>/results.csv       one row per finished run (done or failed), rewritten atomically after each
    <folder>/<run id>/         a `train()` run folder; the id is a stable hash of the run's config
    <folder>/<run id>/zoo.sha256   the fingerprint of the zoo files the run was trained on

Rerunning a sweep skips the runs whose folders are finished (their results read back from `metrics.json`) on the
zoo that is there now (a run whose recorded zoo fingerprint differs is trained again, with a warning), continues
any run that was killed mid-way after its last finished epoch (`run_folder.ResumeState`; one killed in its first
epoch starts again), and retries failed runs from scratch; a run
is in `results.csv` once, whatever happened before. A run that raises (a NaN loss, a zoo that is not there, a probe
config that does not fit) is recorded as failed with its error and the sweep goes on. Runs go through
`probegen_nb.core.engine` (in this process, or as Dask tasks), each trained with the engine's fixed thread count, so
the results do not depend on the engine. Two sweeps writing the same folder at once are not supported.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from probegen_nb.baselines.registry import BASELINE_CONFIGS
from probegen_nb.core.device import resolve_device
from probegen_nb.core.engine import EngineConfig, TaskError, map_tasks, run_task
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.core.zoo_io import load_zoo, resolve_zoo_dir, zoo_fingerprint
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.config import MethodConfig, ProbingConfig, RunConfig
from probegen_nb.experiment.grouped import group_runs, train_group
from probegen_nb.experiment.run_folder import FAILED_FILE, RESULTS_FILE, ZOO_FILE, is_run_folder, run_id
from probegen_nb.experiment.train import train
from probegen_nb.probes.registry import ProbeConfig

__all__ = ["FAILED_FILE", "RESULTS_FILE", "ZOO_FILE", "Sweep", "SweepRun", "grid", "run_id", "run_sweep",
           "seconds_per_run"]
SUMMARY_KEYS = ("best_epoch", "flops_per_model", "n_params", "train_seconds")  # besides the metric's three numbers


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its config and the name of the variant it belongs to."""

    variant: str
    config: RunConfig

    @property
    def run_id(self) -> str:
        return run_id(self.config)


@dataclass(frozen=True)
class Sweep:
    """A named list of runs and the folder they live in."""

    name: str
    runs: Sequence[SweepRun]  # kept as a tuple
    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(self.runs))
        object.__setattr__(self, "folder", Path(self.folder))
        seen: dict[str, SweepRun] = {}
        for run in self.runs:
            if run.run_id in seen:
                raise ValueError(f"sweep {self.name!r}: runs {seen[run.run_id].variant!r} and {run.variant!r} "
                                 f"(seed {run.config.seed}) have the same config (run id {run.run_id})")
            seen[run.run_id] = run

    def run_folder(self, run: SweepRun) -> Path:
        return self.folder / run.run_id

    def metrics(self, run: SweepRun) -> dict[str, Any]:
        """The run's `metrics.json`; a clear error when the run failed or has not finished."""
        folder = self.run_folder(run)
        if not is_run_folder(folder):
            why = rf.read_failure(folder) or "it has not finished"
            raise RuntimeError(f"run {run.run_id} ({run.variant}, seed {run.config.seed}) has no results: {why}")
        return rf.read_metrics(folder)


Variant = Mapping[str, Any] | ProbeConfig | MethodConfig  # RunConfig overrides, or a method or probe config


def grid(base: RunConfig, variants: Mapping[str, Variant] | Sequence[Variant], seeds: Sequence[int]
         ) -> list[SweepRun]:
    """Every variant × every seed, seed by seed (so an interrupted sweep has whole seeds to compare).

    `variants` maps a name to overrides (`RunConfig.override`), e.g. `{"probegen": {"probes": ProbeGenConfig()},
    "q16": {"n_probes": 16}, "trees": {"baseline": StatNNConfig()}}` (a probe config alone stands for
    `{"probes": it}`, a method config for `{"method": it}`); in a list, configs are named by kind, overrides by
    their values."""
    if isinstance(variants, Mapping):
        named = dict(variants)
    else:
        named = {_variant_name(v): v for v in variants}
        if len(named) < len(variants):
            raise ValueError(f"variants with the same name: {[_variant_name(v) for v in variants]}; pass a dict")
    configs: dict[str, RunConfig] = {}
    for name, v in named.items():
        overrides = v if isinstance(v, Mapping) else _method_override(v)
        if "seed" in overrides:
            raise ValueError(f"variant {name!r} overrides seed (seeds come from `seeds`)")
        try:
            configs[name] = base.override(overrides)
        except ValueError as e:
            raise ValueError(f"variant {name!r}: {e}") from e
    if not seeds:
        raise ValueError("grid: no seeds")
    return [SweepRun(name, replace(c, seed=int(seed))) for seed in seeds for name, c in configs.items()]


def _method_override(v: ProbeConfig | MethodConfig) -> dict[str, Any]:
    """A config given alone as a variant: a method (probing or a baseline), or a probe source."""
    return {"method": v} if isinstance(v, (ProbingConfig, *BASELINE_CONFIGS.values())) else {"probes": v}


def _variant_name(v: Variant) -> str:
    if not isinstance(v, Mapping):
        return v.kind
    return ",".join(f"{k}={x.kind if hasattr(x, 'kind') else x}" for k, x in v.items())


def summarize_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of a `metrics.json` that go into `results.csv`: best-val metric, test metric at that epoch,
    last-step test metric, best epoch, FLOPs per model, trained parameters, train seconds, and `seconds_per_run`:
    the run's share of that wall time (a group's runs trained together, each carries the group's seconds; a solo
    run is a group of one), which is what a cost comparison between methods should read."""
    name = metrics["metric"]
    keys = (f"best_val_{name}", f"test_{name}", f"last_test_{name}", *SUMMARY_KEYS)
    return {**{k: metrics[k] for k in keys}, "seconds_per_run": seconds_per_run(metrics)}


def seconds_per_run(metrics: Mapping[str, Any]) -> float:
    """A run's share of the wall time it trained in: a group's runs each carry the group's seconds and its size."""
    return metrics["train_seconds"] / metrics.get("group_size", 1)


def train_task(config: RunConfig, folder: str, zoo_search: tuple[str, ...], zoo: AnyZoo | None = None,
               fingerprint: str | None = None) -> dict[str, Any]:
    """What an engine runs: train one config into its folder and return its summary. The zoo is loaded from
    `config.zoo_dir` (relative paths also from `zoo_search`) unless given (local engine); `fingerprint` (the
    zoo's, when its folder was found) is written first, so every finished run has it."""
    if fingerprint is not None:
        rf.write_zoo_fingerprint(Path(folder), fingerprint)
    if zoo is None:
        zoo = load_zoo(resolve_zoo_dir(config.zoo_dir, zoo_search))
    return summarize_metrics(train(config, zoo, out_dir=folder, progress=False).metrics)


# --- run axis: a group of runs as one engine task ---
def group_task(configs: Sequence[RunConfig], folders: Sequence[str], zoo_search: tuple[str, ...],
               zoo: AnyZoo | None = None, fingerprints: Sequence[str | None] | None = None
               ) -> list[dict[str, Any] | TaskError]:
    """What an engine runs: train the runs (one `group_runs` group) into their folders, as one program where there
    are several; each run's summary, or its error. A group that raises trains its runs one by one instead, so a run
    fails (a NaN loss) or succeeds exactly as it would alone."""
    prints = list(fingerprints) if fingerprints is not None else [None] * len(configs)
    if len(configs) == 1:
        return [run_task(train_task, (configs[0], folders[0], zoo_search, zoo, prints[0]), None)]
    for folder, fingerprint in zip(folders, prints):
        if fingerprint is not None:
            rf.write_zoo_fingerprint(Path(folder), fingerprint)
    try:
        group_zoo = zoo if zoo is not None else load_zoo(resolve_zoo_dir(configs[0].zoo_dir, zoo_search))
        return [summarize_metrics(r.metrics) for r in train_group(configs, group_zoo, folders)]
    except Exception:  # noqa: BLE001 (each unfinished run again alone, each with its own outcome)
        return [summarize_metrics(rf.read_metrics(f)) if is_run_folder(Path(f))
                else run_task(train_task, (c, f, zoo_search, zoo, p), None)
                for c, f, p in zip(configs, folders, prints)]


def _on_gpu(configs: Sequence[RunConfig]) -> bool:
    """Whether the runs train on an accelerator (where grouping is the default; on the CPU it measured no faster)."""
    return any(resolve_device(c.device).type != "cpu" for c in configs)
# --- end run axis ---


def run_sweep(sweep: Sweep, engine: EngineConfig = EngineConfig(), zoo: AnyZoo | None = None,
              progress: bool = True, retry_failed: bool = True, group: bool | None = None) -> pd.DataFrame:
    """Run every run of the sweep that is not finished yet; return `results.csv` as a DataFrame (grid order).

    `zoo` (local engine only) is the zoo every config's `zoo_dir` names, already in memory; otherwise each task
    loads it. With dask, `sweep.folder` must be a path the workers see too (a shared file system). `group`: pending
    runs of the same shapes train as one program, one engine task a group (`experiment.grouped`); None: where the
    runs' device is a GPU (on the 2-core CPU a group of 3 was no faster than its runs in sequence,
    benchmarks/bench_runs.py)."""
    if zoo is not None and engine.kind != "local":
        raise ValueError(f"run_sweep: zoo= is for the local engine; {engine.kind} workers load config.zoo_dir")
    folder = sweep.folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    rf.migrate_sweep_folder(folder)  # a folder written by older code: its runs renamed to today's ids, not retrained
    rf.write_sweep(folder, sweep_json(sweep))
    varied = varied_fields([run.config for run in sweep.runs])
    rows: dict[str, dict[str, Any]] = {}
    pending: list[SweepRun] = []
    fingerprints = _zoo_fingerprints(sweep)
    stale = [run for run in sweep.runs
             if _trained_on_another_zoo(folder / run.run_id, fingerprints[run.config.zoo_dir])]
    if stale:
        warnings.warn(f"sweep {sweep.name!r}: {len(stale)} finished run(s) were trained on another zoo at the same "
                      f"path ({stale[0].config.zoo_dir}: its files changed since); training them again", stacklevel=2)
    for run in stale:
        shutil.rmtree(folder / run.run_id)
    for run in sweep.runs:
        run_dir = folder / run.run_id
        if is_run_folder(run_dir):
            summary = summarize_metrics(rf.read_metrics(run_dir))
            rows[run.run_id] = _row(run, varied, summary, None)
        elif not retry_failed and (run_dir / FAILED_FILE).is_file():
            rows[run.run_id] = _row(run, varied, None, rf.read_failure(run_dir))
        else:
            if run_dir.exists() and not _resumable(run_dir, run, fingerprints[run.config.zoo_dir]):
                shutil.rmtree(run_dir)  # failed before, or killed before its first epoch ended: start again
            pending.append(run)  # a run killed later continues after its last finished epoch (`train`)
    _write_results(folder, sweep, rows)

    bar = tqdm(total=len(sweep.runs), initial=len(rows), desc=sweep.name, unit="run", disable=not progress)
    label = lambda run: f"{run.variant} seed {run.config.seed}"
    if pending:
        bar.set_postfix_str(label(pending[0]) if engine.kind == "local" else f"{len(pending)} runs pending")
    local_zoo = zoo if engine.kind == "local" else None
    # --- run axis: each task trains a group of pending runs (one run unless grouping) ---
    configs = [run.config for run in pending]
    groups = group_runs(configs) if (group if group is not None else _on_gpu(configs)) else [[i] for i in
                                                                                             range(len(pending))]
    args = [([configs[i] for i in g], [str(folder / pending[i].run_id) for i in g], (os.getcwd(),), local_zoo,
             [fingerprints[configs[i].zoo_dir] for i in g]) for g in groups]
    try:
        for t, results in map_tasks(group_task, args, engine):
            if isinstance(results, TaskError):  # the task itself failed (e.g. its worker died): all its runs
                results = [results] * len(groups[t])
            for i, result in zip(groups[t], results):
                run = pending[i]
                if isinstance(result, TaskError):
                    rf.write_failure(folder / run.run_id, str(result), result.traceback)
                    rows[run.run_id] = _row(run, varied, None, str(result))
                else:
                    rows[run.run_id] = _row(run, varied, result, None)
                _write_results(folder, sweep, rows)
                bar.update(1)
            nxt = pending[groups[t + 1][0]] if engine.kind == "local" and t + 1 < len(groups) else None
            bar.set_postfix_str(label(nxt) if nxt else f"done: {label(run)}")
    # --- end run axis ---
    finally:
        bar.close()
    return _results_frame(sweep, rows)


def _zoo_fingerprints(sweep: Sweep) -> dict[str, str | None]:
    """{config.zoo_dir: its zoo's fingerprint} for every zoo the sweep names (None where there is no such folder:
    that run fails with the loader's error, or trains on the zoo passed in)."""
    found: dict[str, str | None] = {}
    for zoo_dir in dict.fromkeys(run.config.zoo_dir for run in sweep.runs):
        try:
            found[zoo_dir] = zoo_fingerprint(resolve_zoo_dir(zoo_dir, (os.getcwd(),)))
        except (FileNotFoundError, OSError):
            found[zoo_dir] = None
    return found


def _resumable(run_dir: Path, run: SweepRun, current: str | None) -> bool:
    """Whether a killed run's folder holds a resume state of this config on the zoo that is there now (a failed
    run starts again: resuming it would fail the same way)."""
    return (not (run_dir / FAILED_FILE).is_file() and rf.read_resume(run_dir, run.config) is not None
            and rf.read_zoo_fingerprint(run_dir) == current)


def _trained_on_another_zoo(run_dir: Path, current: str | None) -> bool:
    """Whether a finished run recorded a zoo fingerprint other than `current` (the zoo there now). A run written
    before sweeps recorded it, or a zoo that is not there now, cannot tell: read back as before."""
    recorded = rf.read_zoo_fingerprint(run_dir)
    if current is None or not is_run_folder(run_dir) or recorded is None:
        return False
    return recorded != current


def sweep_json(sweep: Sweep) -> dict[str, Any]:
    """What `sweep.json` holds: the sweep's name, its variants (with their runs' ids) and every run's config."""
    variants: dict[str, list[str]] = {}
    for run in sweep.runs:
        variants.setdefault(run.variant, []).append(run.run_id)
    return {"name": sweep.name, "variants": variants,
            "runs": [{"run_id": r.run_id, "variant": r.variant, "config": r.config.to_dict()} for r in sweep.runs]}


def varied_fields(configs: Sequence[RunConfig]) -> dict[str, list[Any]]:
    """{field: value per config} of the config fields (probe fields as `probes.<name>`) that differ across the
    configs, seed excepted (it has its own column)."""
    flat = [_flatten(c.to_dict()) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))  # a field only some probe configs have is None elsewhere
    return {k: [f.get(k) for f in flat] for k in keys if k != "seed" and len({json.dumps(f.get(k)) for f in flat}) > 1}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _row(run: SweepRun, varied: dict[str, list[Any]], summary: Mapping[str, Any] | None,
         error: str | None) -> dict[str, Any]:
    """One line of `results.csv`: a done run's summary (`summarize_metrics`), or a failed run's error."""
    flat = _flatten(run.config.to_dict())
    row: dict[str, Any] = {"run_id": run.run_id, "variant": run.variant,
                           **{k: flat.get(k) for k in varied}, "seed": run.config.seed}
    row.update(summary or {})
    row.update(status="failed" if error is not None else "done", error=error or "")
    return row


def _results_frame(sweep: Sweep, rows: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    """Finished runs in grid order, status and error last (with no run finished yet: the columns alone)."""
    done = [rows[r.run_id] for r in sweep.runs if r.run_id in rows]
    if not done:
        varied = varied_fields([r.config for r in sweep.runs])
        return pd.DataFrame(columns=["run_id", "variant", *varied, "seed", "status", "error"])
    frame = pd.DataFrame(done)
    last = ["status", "error"]
    return frame[[c for c in frame.columns if c not in last] + last]


def _write_results(folder: Path, sweep: Sweep, rows: Mapping[str, dict[str, Any]]) -> None:
    rf.write_results_csv(folder, _results_frame(sweep, rows).to_csv(index=False))

