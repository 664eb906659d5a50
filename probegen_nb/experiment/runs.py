"""Finished run folders, loaded back: the config, the best-validation probing model, its probe snapshots, metrics.

`train()` writes a run folder; the probe explorer (notebook 04) and anything else that looks at a run after the kernel
that trained it has gone reads it back through `load_run`. A notebook's output folder usually holds several runs
(00: probegen/vanilla/uniform, 03: probegen/vanilla/dead-leaves): `find_runs` lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from probegen_nb.core.zoo import AnyZoo
from probegen_nb.core.zoo_io import load_zoo, resolve_zoo_dir
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.run_folder import PROBE_RUN_FILES, is_probe_run_folder, is_run_folder
from probegen_nb.experiment.train import build_model
from probegen_nb.methods.probing import ProbingModel

__all__ = ["LoadedRun", "find_runs", "is_probe_run_folder", "is_run_folder", "load_run"]


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
    labels = rf.run_labels(root)
    named: dict[str, Path] = {}
    for name, path in runs.items():  # folders the sweep does not list keep their names
        label = labels.get(name, name)
        named[label if label not in named else name] = path
    return named


def load_run(folder: str | Path, zoo: AnyZoo | None = None, device: str | torch.device = "cpu",
             zoo_search: Sequence[str | Path] = ()) -> LoadedRun:
    """Read a run folder; `zoo` (the one it was trained on) defaults to the zoo named in its config.json, found
    as `resolve_zoo_dir` says."""
    folder = Path(folder)
    config = rf.read_config(folder) if (folder / rf.CONFIG_FILE).is_file() else None
    if config is not None and not isinstance(config.method, ProbingConfig):
        raise ValueError(f"{folder}: a {config.method.kind} baseline run; load_run reads probing runs (a baseline "
                         f"run's results are its metrics.json and test_representations.safetensors)")
    missing = [f for f in PROBE_RUN_FILES if not (folder / f).is_file()]
    if missing or config is None:
        raise FileNotFoundError(f"{folder}: not a finished run folder, missing {missing}")
    metrics = rf.read_metrics(folder, config)
    zoo = (zoo if zoo is not None else load_zoo(resolve_zoo_dir(config.zoo_dir, zoo_search))).to(device)
    model = build_model(config, zoo, torch.Generator().manual_seed(config.seed))  # weights replaced just below
    assert isinstance(model, ProbingModel)
    state = rf.read_tensors(folder / rf.BEST_FILE)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{folder / 'best.safetensors'} does not fit the run's config.json: {e}") from e
    snapshots = rf.read_tensors(folder / rf.PROBES_FILE).get("snapshots")
    if snapshots is None:
        raise ValueError(f"{folder / 'probes.safetensors'}: no 'snapshots' tensor")
    return LoadedRun(folder, config, metrics, model.to(device).eval(), zoo, snapshots)
