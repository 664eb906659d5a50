"""Every file a run or a sweep writes and reads, in one place: names, formats, atomic writes, labels, migration.

A run folder (`train()`):

    config.json                        the RunConfig, with `schema_version`
    metrics.json                       written last: the record that the run finished (strict JSON: NaN as null),
                                       naming the config it completes (`config_sha256`)
    best.safetensors, last.safetensors the best-validation and the last checkpoint (torch learners)
    probes.safetensors                 probing: the best-validation probes and one snapshot per epoch
    test_representations.safetensors   the best-validation model's test outputs and representations
    zoo.sha256                         in a sweep: the fingerprint of the zoo files the run was trained on
    failed.json                        in a sweep: the error of a run that failed
    resume.safetensors                 while a run trains: everything it needs to continue after its last finished
                                       epoch exactly as if never stopped (`ResumeState`); removed when it finishes

A sweep folder holds `sweep.json` (the grid, with `schema_version`), `results.csv`, one run folder per run, named
by its run id, and (`cli seeds`) `summary.json`. Folders written before `schema_version` existed (version 0) are
migrated in place by `migrate_sweep_folder`, which `run_sweep` calls first, so they resume without retraining.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from probegen_nb.core.jobs import save_tensors_atomic, write_text_atomic
from probegen_nb.experiment.config import RunConfig, config_from_v0

SCHEMA_VERSION = 1  # 0: no field (before this module); 1: RunConfig(method=...)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
BEST_FILE = "best.safetensors"
LAST_FILE = "last.safetensors"
PROBES_FILE = "probes.safetensors"
TEST_REPS_FILE = "test_representations.safetensors"
ZOO_FILE = "zoo.sha256"
FAILED_FILE = "failed.json"
SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.csv"
RESUME_FILE = "resume.safetensors"
SUMMARY_FILE = "summary.json"  # `cli seeds`: the seeds' comparison beside a sweep's results.csv

# What a run writes besides config.json; metrics.json, written last, is the record that the run finished
RESULT_FILES = (METRICS_FILE, BEST_FILE, PROBES_FILE, TEST_REPS_FILE, LAST_FILE, RESUME_FILE)
RUN_FILES = (CONFIG_FILE, METRICS_FILE)  # what every finished run has
PROBE_RUN_FILES = (*RUN_FILES, BEST_FILE, PROBES_FILE)  # what a finished probing run has (`load_run` reads them)


# --- JSON: strict, atomic ----------------------------------------------------------------------------------------

def json_values(obj: Any) -> Any:
    """`obj` as strict JSON values: NaN and ±inf become None (JSON has no such numbers; Python's NaN token is not
    JSON), numpy scalars and arrays plain numbers and lists, tuples lists."""
    if isinstance(obj, Mapping):
        return {str(k): json_values(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_values(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_values(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as strict JSON (NaN/inf as null), atomically: a reader never sees half a file."""
    path = Path(path)
    write_text_atomic(path, json.dumps(json_values(obj), indent=2, allow_nan=False) + "\n")
    return path


def write_metrics(folder: str | Path, metrics: Mapping[str, Any]) -> Path:
    """A notebook's or a run's `metrics.json` in `folder`, strict and atomic."""
    return write_json(Path(folder) / METRICS_FILE, metrics)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _nan_for_none(record: Mapping[str, Any], keys: Any) -> dict[str, Any]:
    return {k: (math.nan if v is None and k in keys else v) for k, v in record.items()}


def metrics_from_json(d: Mapping[str, Any]) -> dict[str, Any]:
    """A run's metrics as written by `train()`, its metric values null in the file read back as NaN."""
    name = d.get("metric")
    if name is None:
        return dict(d)
    values = {f"best_val_{name}", f"test_{name}", f"last_test_{name}"}
    per_epoch = {"train_loss", "lr", *(f"{s}_{name}" for s in ("train", "val", "test"))}
    out = _nan_for_none(d, values)
    if isinstance(out.get("history"), list):
        out["history"] = [_nan_for_none(r, per_epoch) for r in out["history"]]
    return out


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: unreadable safetensors file ({e})") from e


# --- a run folder --------------------------------------------------------------------------------------------------

def config_digest(config: RunConfig) -> str:
    """sha256 of what the run is (its config without where the zoo lies and which device ran it, which a user may
    edit when moving things): metrics.json names the config it completes."""
    return _digest_of(config.to_dict())


def _digest_of(config_dict: Mapping[str, Any]) -> str:
    what = {k: v for k, v in config_dict.items() if k not in ("zoo_dir", "device", "schema_version")}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def run_id(config: RunConfig) -> str:
    """12 hex digits of the SHA-256 of the config's sorted JSON: the same in every process (unlike `hash()`), and
    different for any change of any field. A sweep names its run folders by it."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def is_run_folder(path: str | Path) -> bool:
    """A finished run of any method (probing, or a baseline: those have no probes, StatNN's trees no checkpoint)."""
    return all((Path(path) / f).is_file() for f in RUN_FILES)


def is_probe_run_folder(path: str | Path) -> bool:
    """A finished probing run, which `load_run` reads back."""
    return all((Path(path) / f).is_file() for f in PROBE_RUN_FILES)


def start_run(out: Path, config: RunConfig) -> None:
    """Start a run in `out`: an earlier run's results there are removed first (its completion record, metrics.json,
    before anything else), so a run that is stopped part-way leaves a folder that reads as unfinished, never as the
    old run under the new config."""
    out.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    write_json(out / CONFIG_FILE, {"schema_version": SCHEMA_VERSION, **config.to_dict()})


def read_config(folder: str | Path) -> RunConfig:
    """A run's config.json; one written before `schema_version` (version 0) is read as today's RunConfig."""
    d = read_json(Path(folder) / CONFIG_FILE)
    version = d.pop("schema_version", 0)
    if version == 0:
        return config_from_v0(d)
    if version != SCHEMA_VERSION:
        raise ValueError(f"{Path(folder) / CONFIG_FILE}: schema_version {version!r}, this code reads up to "
                         f"{SCHEMA_VERSION}")
    return RunConfig.from_dict(d)


def save_last(out: Path, state: Mapping[str, torch.Tensor]) -> None:
    save_tensors_atomic(out / LAST_FILE, dict(state))


def save_best(out: Path, state: Mapping[str, torch.Tensor]) -> None:
    save_tensors_atomic(out / BEST_FILE, dict(state))


def save_probes(out: Path, probes: torch.Tensor, snapshots: torch.Tensor) -> None:
    """probes: (Q, *input_shape) the best-validation probes; snapshots: (epochs + 1, Q, *input_shape)."""
    save_tensors_atomic(out / PROBES_FILE, {"probes": probes.detach(), "snapshots": snapshots})


def save_test_representations(out: Path, outputs: torch.Tensor, reps: torch.Tensor, labels: torch.Tensor,
                              model_ids: torch.Tensor) -> None:
    """outputs: (M, d_out); reps: (M, D); labels: (M,); model_ids: (M,) of the test split."""
    save_tensors_atomic(out / TEST_REPS_FILE, {"representations": reps, "outputs": outputs, "labels": labels,
                                               "model_id": model_ids})


def finish_run(out: Path, metrics: Mapping[str, Any]) -> None:
    """Write metrics.json, the completion record: last, after everything else the run writes (the resume state,
    no longer needed, goes after it)."""
    write_json(out / METRICS_FILE, {"schema_version": SCHEMA_VERSION, **metrics})
    (out / RESUME_FILE).unlink(missing_ok=True)


# --- resuming a run killed part-way --------------------------------------------------------------------------------

@dataclass
class ResumeState:
    """A run after its epoch `epoch`: all it needs to continue exactly as if it had not stopped (the same batch order,
    optimizer moments and schedule, model selection and history). One safetensors file: tensors, and the rest as
    JSON in its metadata, written atomically, so a kill leaves the previous epoch's state or this one, never half."""

    epoch: int  # the last finished epoch
    model: dict[str, torch.Tensor]  # the learner's state_dict
    optimizer: dict[str, Any]  # torch.optim state_dict
    schedule: dict[str, Any]  # the lr scheduler's state_dict
    rng: torch.Tensor  # the run's torch.Generator state (its batch order)
    history: list[dict[str, Any]]
    best: dict[str, Any]  # val, epoch, test, state (a state_dict, or None)
    snapshots: list[torch.Tensor]  # probing: the probes at init and after every epoch so far
    n_steps: int
    seconds: float  # training time so far
    queries: int = 0  # the learner's queries so far (`Learner.queries`)


def save_resume(out: Path, config: RunConfig, state: ResumeState) -> None:
    tensors = {f"model/{k}": v for k, v in state.model.items()}
    tensors.update({f"best/{k}": v for k, v in (state.best["state"] or {}).items()})
    tensors["rng"] = state.rng
    if state.snapshots:
        tensors["snapshots"] = torch.stack(state.snapshots)
    opt_scalars: dict[str, dict[str, Any]] = {}
    for i, per_param in state.optimizer["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{i}/{name}"] = value
            else:
                opt_scalars.setdefault(str(i), {})[name] = value
    record = {"config_sha256": config_digest(config), "epoch": state.epoch, "history": state.history,
              "best": {k: v for k, v in state.best.items() if k != "state"},
              "has_best_state": state.best["state"] is not None,
              "optimizer_groups": state.optimizer["param_groups"], "optimizer_scalars": opt_scalars,
              "schedule": state.schedule, "n_steps": state.n_steps, "seconds": state.seconds,
              "queries": state.queries}
    save_tensors_atomic(out / RESUME_FILE, tensors, {"resume": json.dumps(record)})  # NaN kept: our own file


def read_resume(out: Path, config: RunConfig) -> ResumeState | None:
    """The resume state of a run of `config` killed part-way in `out`; None when there is none, or it was written for
    another config, or it cannot be read (a damaged file is no state: the run starts again)."""
    path = out / RESUME_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            record = json.loads((f.metadata() or {})["resume"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, KeyError, ValueError):
        return None
    if record.get("config_sha256") != config_digest(config):
        return None
    part = lambda prefix: {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in part("optimizer/").items():
        i, name = key.split("/", 1)
        opt_state.setdefault(int(i), {})[name] = value
    for i, scalars in record["optimizer_scalars"].items():
        opt_state.setdefault(int(i), {}).update(scalars)
    best = {**record["best"], "state": part("best/") if record["has_best_state"] else None}
    snapshots = list(tensors["snapshots"].unbind(0)) if "snapshots" in tensors else []
    optimizer = {"state": opt_state, "param_groups": record["optimizer_groups"]}
    return ResumeState(record["epoch"], part("model/"), optimizer, record["schedule"], tensors["rng"],
                       record["history"], best, snapshots, record["n_steps"], record["seconds"],
                       record["queries"])


def has_resume(folder: Path) -> bool:
    return (folder / RESUME_FILE).is_file()


def read_metrics(folder: str | Path, config: RunConfig | None = None) -> dict[str, Any]:
    """A finished run's metrics.json (NaN where the file has null); with `config`, checked to complete it."""
    folder = Path(folder)
    metrics = metrics_from_json(read_json(folder / METRICS_FILE))
    version = metrics.pop("schema_version", 0)
    if config is None or "config_sha256" not in metrics:  # runs from before the completion record lack one
        return metrics
    expected = config_digest(config) if version else _digest_of(read_json(folder / CONFIG_FILE))
    if metrics["config_sha256"] != expected:
        raise ValueError(f"{folder}: metrics.json completes another config than config.json holds (a run that "
                         f"was stopped after writing its config, or files copied in); train it again")
    return metrics


def write_failure(folder: Path, error: str, traceback: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / FAILED_FILE, {"error": error, "traceback": traceback})


def read_failure(folder: Path) -> str | None:
    """The error a failed run recorded, or None."""
    file = folder / FAILED_FILE
    return str(read_json(file)["error"]) if file.is_file() else None


def write_zoo_fingerprint(folder: Path, fingerprint: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / ZOO_FILE, fingerprint + "\n")


def read_zoo_fingerprint(folder: Path) -> str | None:
    """The fingerprint of the zoo a run was trained on; None for runs from before sweeps recorded it."""
    file = folder / ZOO_FILE
    return file.read_text().strip() if file.is_file() else None


# --- a sweep folder ------------------------------------------------------------------------------------------------

def write_sweep(folder: Path, sweep: Mapping[str, Any]) -> None:
    write_json(folder / SWEEP_FILE, {"schema_version": SCHEMA_VERSION, **sweep})


def read_sweep(folder: str | Path) -> dict[str, Any]:
    """A sweep folder's sweep.json ({} where there is none)."""
    file = Path(folder) / SWEEP_FILE
    return read_json(file) if file.is_file() else {}


def write_results_csv(folder: Path, csv_text: str) -> None:
    write_text_atomic(folder / RESULTS_FILE, csv_text)


def read_results(folder: str | Path) -> pd.DataFrame | None:
    """A sweep folder's `results.csv` as `run_sweep` returned it, without running anything; None when the sweep has
    not written one yet (the docs say "not generated yet" instead of failing)."""
    path = Path(folder) / RESULTS_FILE
    return pd.read_csv(path, keep_default_na=True) if path.is_file() else None


def run_labels(folder: str | Path) -> dict[str, str]:
    """{run folder name: label} for a sweep folder's runs, as every view shows them: the variant ("probegen"), with
    the seed where the sweep has several seeds of that variant ("probegen seed 1"). Not a sweep: {}."""
    listed = [r for r in read_sweep(folder).get("runs", [])
              if isinstance(r, dict) and {"run_id", "variant", "config"} <= set(r)]
    per_variant: dict[str, int] = {}
    for r in listed:
        per_variant[r["variant"]] = per_variant.get(r["variant"], 0) + 1
    return {r["run_id"]: (r["variant"] if per_variant[r["variant"]] == 1
                          else f"{r['variant']} seed {r['config'].get('seed')}") for r in listed}


# --- migration -----------------------------------------------------------------------------------------------------

def migrate_sweep_folder(folder: str | Path) -> dict[str, str]:
    """Bring a sweep folder written by older code to `SCHEMA_VERSION`, in place; returns {old run id: new run id}.

    Version 0 → 1: every listed run's config is read into today's RunConfig; its folder is renamed to the new run
    id; config.json, metrics.json (its `config_sha256` re-computed, only where it completed the old config) and
    sweep.json are rewritten. A folder already at the current version is left as it is."""
    folder = Path(folder)
    sweep = read_sweep(folder)
    if not sweep or sweep.get("schema_version", 0) == SCHEMA_VERSION:
        return {}
    if sweep.get("schema_version", 0) != 0:
        raise ValueError(f"{folder / SWEEP_FILE}: unknown schema_version {sweep['schema_version']!r}")
    renamed: dict[str, str] = {}
    runs = []
    for r in sweep.get("runs", []):
        config = config_from_v0(r["config"])
        new = run_id(config)
        if new in renamed.values():  # differed only in fields v0 kept but never used: one run now; the other's
            continue                 # folder stays as it was, unlisted
        renamed[r["run_id"]] = new
        runs.append({"run_id": new, "variant": r["variant"], "config": config.to_dict()})
        old_dir, new_dir = folder / r["run_id"], folder / new
        if old_dir.is_dir() and old_dir != new_dir:
            if new_dir.exists():
                shutil.rmtree(new_dir)
            old_dir.rename(new_dir)
        if new_dir.is_dir():
            _migrate_run_v0(new_dir, config)
    variants: dict[str, list[str]] = {}
    for r in runs:
        variants.setdefault(r["variant"], []).append(r["run_id"])
    write_sweep(folder, {"name": sweep.get("name", folder.name), "variants": variants, "runs": runs})
    return renamed


def _migrate_run_v0(run_dir: Path, config: RunConfig) -> None:
    """One v0 run folder: config.json and metrics.json rewritten for `config` (metrics.json last)."""
    old = read_json(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else None
    write_json(run_dir / CONFIG_FILE, {"schema_version": SCHEMA_VERSION, **config.to_dict()})
    if not (run_dir / METRICS_FILE).is_file():
        return
    metrics = read_json(run_dir / METRICS_FILE)
    if old is not None and metrics.get("config_sha256") == _digest_of(old):
        metrics["config_sha256"] = config_digest(config)
    elif "config_sha256" in metrics:  # completed another config than its config.json: unfinished, train again
        (run_dir / METRICS_FILE).unlink()
        return
    metrics.pop("schema_version", None)
    if "n_params" not in metrics and "predictor_params" in metrics:  # a probing run from before it was recorded
        metrics["n_params"] = metrics.get("probe_params", 0) + metrics["predictor_params"]
    finish_run(run_dir, metrics_from_json(metrics))
