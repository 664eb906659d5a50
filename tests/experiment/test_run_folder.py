"""Run and sweep folders (experiment.run_folder): strict JSON metrics, one set of labels for every view, and a
sweep folder written by the previous code (tests/fixtures/sweep_v0, commit 780776b) migrated and resumed with
nothing retrained."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

import probegen_nb.experiment.sweep as sweep_mod
from probegen_nb.baselines.statnn import StatNNConfig
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.runs import find_runs, load_run
from probegen_nb.experiment.sweep import Sweep, grid, run_sweep
from probegen_nb.probes.coords import ProbeGenConfig
from probegen_nb.viz.report import write_index

from paths import FIXTURES

FIXTURE = FIXTURES / "sweep_v0"
NUMBERS = ["best_val_accuracy", "test_accuracy", "last_test_accuracy", "best_epoch", "flops_per_model", "n_params",
           "train_seconds"]


def v0_grid() -> list[sweep_mod.SweepRun]:
    """The fixture's grid (tests/fixtures/make_sweep_v0.py), written in today's config."""
    base = RunConfig(zoo_dir="zoo", epochs=2, hidden=8, n_hidden=1, lr=3e-3, batch_size=8, device="cpu",
                     method=ProbingConfig(n_probes=4))
    return grid(base, {"probegen": {"probes": ProbeGenConfig(latent_dim=4, width=4)},
                       "statnn": StatNNConfig(head="gbt", n_trees=5)}, seeds=[0, 1])


@pytest.fixture
def old_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture, the working directory at its root (its configs name the zoo "zoo")."""
    root = tmp_path / "sweep_v0"
    shutil.copytree(FIXTURE, root)
    monkeypatch.chdir(root)
    return root / "sweep"


def test_metrics_json_is_strict_json_and_nan_reads_back_as_nan(tmp_path: Path) -> None:
    metrics = {"metric": "accuracy", "best_val_accuracy": math.nan, "test_accuracy": math.inf,
               "last_test_accuracy": 0.5, "history": [{"epoch": 0, "train_loss": math.nan, "val_accuracy": 0.25}]}
    rf.finish_run(tmp_path, metrics)
    text = (tmp_path / rf.METRICS_FILE).read_text()
    def refuse(token: str) -> float:
        raise AssertionError(f"{token} in metrics.json: not JSON")
    written = json.loads(text, parse_constant=refuse)
    assert written["best_val_accuracy"] is None and written["schema_version"] == rf.SCHEMA_VERSION
    back = rf.read_metrics(tmp_path)
    assert math.isnan(back["best_val_accuracy"]) and math.isnan(back["test_accuracy"])
    assert math.isnan(back["history"][0]["train_loss"]) and back["last_test_accuracy"] == 0.5
    assert back["history"][0]["val_accuracy"] == 0.25 and "schema_version" not in back


def test_a_sweep_folder_from_the_previous_code_resumes_with_nothing_trained(old_sweep: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before = pd.read_csv(old_sweep / rf.RESULTS_FILE)
    v0_ids = {r["run_id"] for r in json.loads((old_sweep / rf.SWEEP_FILE).read_text())["runs"]}
    assert "schema_version" not in json.loads((old_sweep / rf.SWEEP_FILE).read_text()), "the fixture is v0"

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run was trained")
    monkeypatch.setattr(sweep_mod, "train", no_training)
    runs = v0_grid()
    after = run_sweep(Sweep("v0", runs, old_sweep), progress=False)
    assert (after["status"] == "done").all(), after[["variant", "error"]]
    assert list(after["run_id"]) == [r.run_id for r in runs]
    assert all((old_sweep / r.run_id).is_dir() for r in runs)
    stale = v0_ids - {r.run_id for r in runs}
    assert not any((old_sweep / i).exists() for i in stale), "old run folders left beside the renamed ones"
    key = ["variant", "seed"]
    pd.testing.assert_frame_equal(after.set_index(key)[NUMBERS], before.set_index(key)[NUMBERS])
    assert pd.read_csv(old_sweep / rf.RESULTS_FILE)[NUMBERS].equals(before[NUMBERS])
    for r in runs:
        assert json.loads((old_sweep / r.run_id / rf.CONFIG_FILE).read_text())["schema_version"] == rf.SCHEMA_VERSION
        assert rf.read_config(old_sweep / r.run_id) == r.config
        rf.read_metrics(old_sweep / r.run_id, r.config)  # completes the migrated config
    assert rf.migrate_sweep_folder(old_sweep) == {}, "a migrated folder is migrated again"


def test_a_migrated_probing_run_loads_back(old_sweep: Path) -> None:
    rf.migrate_sweep_folder(old_sweep)
    runs = find_runs(old_sweep)
    assert sorted(runs) == ["probegen seed 0", "probegen seed 1"]
    loaded = load_run(runs["probegen seed 1"], zoo=load_zoo(old_sweep.parent / "zoo"))
    assert loaded.config.seed == 1 and loaded.snapshots.shape[0] == loaded.config.epochs + 1


def test_a_v0_run_folder_outside_a_sweep_loads_as_it_is(old_sweep: Path) -> None:
    """A run folder of the previous code that no sweep migrates (e.g. a notebook's) reads back unchanged."""
    v0 = json.loads((old_sweep / rf.SWEEP_FILE).read_text())["runs"]
    probing = next(r for r in v0 if r["variant"] == "probegen")
    loaded = load_run(old_sweep / probing["run_id"], zoo=load_zoo(old_sweep.parent / "zoo"))
    assert isinstance(loaded.config.method, ProbingConfig) and loaded.config.method.n_probes == 4
    assert loaded.metrics["test_accuracy"] == pd.read_csv(old_sweep / rf.RESULTS_FILE).set_index("run_id").loc[
        probing["run_id"], "test_accuracy"]


def test_find_runs_and_the_report_label_runs_alike(old_sweep: Path) -> None:
    """One label function: the explorer's run names and the report's are the same strings."""
    rf.migrate_sweep_folder(old_sweep)
    labels = rf.run_labels(old_sweep)
    assert sorted(labels.values()) == ["probegen seed 0", "probegen seed 1", "statnn seed 0", "statnn seed 1"]
    assert set(find_runs(old_sweep)) <= set(labels.values())
    out = old_sweep.parent / "report"
    shutil.copytree(old_sweep, out / "nb")
    page = write_index(out, ["nb"]).read_text()
    assert all(f">{label}</a>" in page for label in labels.values())


def test_v0_runs_that_differed_only_in_unused_fields_migrate_to_one(old_sweep: Path) -> None:
    """v0 kept probe fields on baseline runs (unused): two such runs are one run today, listed once, no folder lost."""
    sweep = json.loads((old_sweep / rf.SWEEP_FILE).read_text())
    trees = next(r for r in sweep["runs"] if r["variant"] == "statnn")
    twin = {"run_id": "000000000000", "variant": "statnn-q8", "config": {**trees["config"], "n_probes": 8}}
    shutil.copytree(old_sweep / trees["run_id"], old_sweep / twin["run_id"])
    config = json.loads((old_sweep / twin["run_id"] / rf.CONFIG_FILE).read_text())
    (old_sweep / twin["run_id"] / rf.CONFIG_FILE).write_text(json.dumps({**config, "n_probes": 8}))
    (old_sweep / rf.SWEEP_FILE).write_text(json.dumps({**sweep, "runs": [*sweep["runs"], twin]}))
    renamed = rf.migrate_sweep_folder(old_sweep)
    assert len(renamed) == 4 and twin["run_id"] not in renamed
    listed = [r["run_id"] for r in json.loads((old_sweep / rf.SWEEP_FILE).read_text())["runs"]]
    assert sorted(listed) == sorted(renamed.values()) and (old_sweep / twin["run_id"]).is_dir()
    assert all(rf.is_run_folder(old_sweep / i) for i in listed)
