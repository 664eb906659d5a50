"""Finished run folders, loaded back: the config, the best-validation probing model, its probe snapshots, metrics.

`train()` writes a run folder; the probe explorer (notebook 04) and anything else that looks at a run after the kernel
that trained it has gone reads it back through `load_run`. A notebook's output folder usually holds several runs
(00: probegen/vanilla/uniform, 03: probegen/vanilla/dead-leaves): `find_runs` lists them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from probegen_nb.core.zoo import AnyZoo
from probegen_nb.core.zoo_io import load_zoo, resolve_zoo_dir
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.train import build_model, config_digest
from probegen_nb.methods.probing import ProbingModel

RUN_FILES = ("config.json", "metrics.json")  # what every finished run has (`train()` writes metrics.json last)
PROBE_RUN_FILES = (*RUN_FILES, "best.safetensors", "probes.safetensors")  # what `load_run` reads back
SWEEP_FILE = "sweep.json"  # a sweep's grid (experiment.sweep): names its run folders by variant


@dataclass
class LoadedRun:
    """A run folder read back; `model` holds the best-validation state (what the run reports) in eval mode."""

    folder: Path
    config: RunConfig
    metrics: dict[str, Any]
    model: ProbingModel
    zoo: AnyZoo
    snapshots: torch.Tensor  # [epochs + 1, Q, *input_shape]: the probes at init and after every epoch

    @property
    def name(self) -> str:
        return self.folder.name


def is_run_folder(path: str | Path) -> bool:
    """A finished run of any method (probing, or a baseline: those have no probes, StatNN's trees no checkpoint)."""
    return all((Path(path) / f).is_file() for f in RUN_FILES)


def is_probe_run_folder(path: str | Path) -> bool:
    """A finished probing run, which `load_run` reads back."""
    return all((Path(path) / f).is_file() for f in PROBE_RUN_FILES)


def find_runs(root: str | Path) -> dict[str, Path]:
    """{name: folder} of the probing run folders at `root`: root itself if it is one, else its sub-folders that are
    (a sweep's by variant; baseline runs beside them are left out, `load_run` does not read them)."""
    root = Path(root)
    if is_probe_run_folder(root):
        return {root.name: root}
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder")
    runs = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and is_probe_run_folder(p)}
    if not runs:
        raise FileNotFoundError(f"{root}: neither a run folder nor a folder of runs (a run folder holds "
                                f"{PROBE_RUN_FILES})")
    return _sweep_names(root, runs) if (root / SWEEP_FILE).is_file() else runs


def _sweep_names(root: Path, runs: dict[str, Path]) -> dict[str, Path]:
    """A sweep's run folders are named by config hash: show them by variant ("probegen"), with the seed where a
    variant has several ("probegen seed 1"); folders the sweep does not list keep their names."""
    listed = {r["run_id"]: r for r in _read_json(root / SWEEP_FILE).get("runs", []) if r.get("run_id") in runs}
    per_variant: dict[str, int] = {}
    for r in listed.values():
        per_variant[r["variant"]] = per_variant.get(r["variant"], 0) + 1
    named = {}
    for name, path in runs.items():
        r = listed.get(name)
        if r is None:
            label = name
        elif per_variant[r["variant"]] == 1:
            label = r["variant"]
        else:
            label = f"{r['variant']} seed {r['config']['seed']}"
        named[label if label not in named else name] = path
    return named


def load_run(folder: str | Path, zoo: AnyZoo | None = None, device: str | torch.device = "cpu",
             zoo_search: Sequence[str | Path] = ()) -> LoadedRun:
    """Read a run folder; `zoo` (the one it was trained on) defaults to the zoo named in its config.json, found
    as `resolve_zoo_dir` says."""
    folder = Path(folder)
    config = RunConfig.from_dict(_read_json(folder / "config.json")) if (folder / "config.json").is_file() else None
    if config is not None and config.baseline is not None:
        raise ValueError(f"{folder}: a {config.baseline.kind} baseline run; load_run reads probing runs (a baseline "
                         f"run's results are its metrics.json and test_representations.safetensors)")
    missing = [f for f in PROBE_RUN_FILES if not (folder / f).is_file()]
    if missing or config is None:
        raise FileNotFoundError(f"{folder}: not a finished run folder, missing {missing}")
    metrics = _read_json(folder / "metrics.json")
    if "config_sha256" in metrics and metrics["config_sha256"] != config_digest(config):  # runs before it lack one
        raise ValueError(f"{folder}: metrics.json completes another config than config.json holds (a run that "
                         f"was stopped after writing its config, or files copied in); train it again")
    zoo = (zoo if zoo is not None else load_zoo(resolve_zoo_dir(config.zoo_dir, zoo_search))).to(device)
    model = build_model(config, zoo, torch.Generator().manual_seed(config.seed))  # weights replaced just below
    assert isinstance(model, ProbingModel)
    state = _read_tensors(folder / "best.safetensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{folder / 'best.safetensors'} does not fit the run's config.json: {e}") from e
    snapshots = _read_tensors(folder / "probes.safetensors").get("snapshots")
    if snapshots is None:
        raise ValueError(f"{folder / 'probes.safetensors'}: no 'snapshots' tensor")
    return LoadedRun(folder, config, metrics, model.to(device).eval(), zoo, snapshots)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: unreadable safetensors file ({e})") from e
