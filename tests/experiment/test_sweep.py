"""Sweeps: stable run ids, a grid of variants × seeds, failures recorded, a SIGKILLed sweep resumed with every run
once and the same numbers, the same results through the local and the dask engine, and `cli seeds` on top."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

import probegen_nb.experiment.sweep as sweep_mod
from probegen_nb import cli
from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.zoo_io import load_zoo, save_zoo, zoo_fingerprint
from probegen_nb.experiment import quickstart
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.runs import find_runs
from probegen_nb.experiment.stats import compare_variants
from probegen_nb.experiment.sweep import Sweep, grid, run_id, run_sweep
from probegen_nb.probes.coords import ProbeGenConfig, UniformConfig, VanillaConfig

from paths import REPO, ZOOS

TIMING = ["train_seconds", "seconds_per_run"]  # the only columns allowed to differ between two runs of the same config
VARIANTS = {"probegen": {"probes": ProbeGenConfig()}, "vanilla": {"probes": VanillaConfig()}}


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 256 train, 64 val and 64 test INRs of the embedded MNIST zoo, as a zoo folder of its own."""
    zoo = load_zoo(ZOOS / "mnist-inr-small")
    split = zoo.table["split"].to_numpy()
    index = np.concatenate([np.flatnonzero(split == s)[:n] for s, n in (("train", 256), ("val", 64), ("test", 64))])
    return save_zoo(zoo.subset(index), tmp_path_factory.mktemp("zoo") / "tiny")


def small(zoo_dir: Path, **kw) -> RunConfig:
    """A config that trains in a few hundredths of a second on the tiny zoo (and still learns something)."""
    return RunConfig().override({"zoo_dir": str(zoo_dir), "n_probes": 8, "epochs": 2, "hidden": 32, "n_hidden": 1,
                        "lr": 3e-3, "max_train_models": 64, "device": "cpu", **kw})


def read_results(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "results.csv")


def run_metrics(folder: Path, run_ids: list[str]) -> dict[str, dict]:
    """Each run's metrics.json without what depends on the clock or the machine's load."""
    out = {}
    for rid in run_ids:
        m = json.loads((folder / rid / "metrics.json").read_text())
        out[rid] = {k: v for k, v in m.items() if k not in ("train_seconds", "threads", "device")}
    return out


def test_grid_is_variants_times_seeds_with_names(zoo_dir: Path) -> None:
    base = small(zoo_dir)
    runs = grid(base, {**VARIANTS, "q16": {"n_probes": 16}}, seeds=[3, 4])
    assert [(r.variant, r.config.seed) for r in runs] == [("probegen", 3), ("vanilla", 3), ("q16", 3),
                                                          ("probegen", 4), ("vanilla", 4), ("q16", 4)]
    methods = [r.config.method for r in runs]
    assert isinstance(methods[1], ProbingConfig) and isinstance(methods[1].probes, VanillaConfig)
    assert isinstance(methods[2], ProbingConfig) and methods[2].n_probes == 16
    assert isinstance(base.method, ProbingConfig) and methods[2].probes == base.method.probes
    assert runs[0].config.lr == base.lr
    by_kind = grid(base, [UniformConfig(), {"n_probes": 4, "probes": VanillaConfig()}], seeds=[0])
    assert [r.variant for r in by_kind] == ["uniform", "n_probes=4,probes=vanilla"]
    with pytest.raises(ValueError, match="n_prbes"):
        grid(base, {"typo": {"n_prbes": 4}}, seeds=[0])
    with pytest.raises(ValueError, match="seed"):
        grid(base, {"seeded": {"seed": 1}}, seeds=[0])
    with pytest.raises(ValueError, match="same config"):
        Sweep("twice", grid(base, {"a": {}, "b": {}}, seeds=[0]), zoo_dir)


def test_run_id_is_stable_across_processes_and_changes_with_the_config(zoo_dir: Path) -> None:
    base = small(zoo_dir)
    code = ("from probegen_nb.experiment.config import RunConfig; from probegen_nb.experiment.sweep import run_id; "
            f"print(run_id(RunConfig.from_dict({base.to_dict()!r})))")
    other_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # str hashes differ from this process's
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": other_seed}).stdout.strip()
    assert there == run_id(base), "a hash() of the config would differ between the two processes"
    assert run_id(RunConfig.from_dict(base.to_dict())) == run_id(base)
    changed = [small(zoo_dir, lr=1e-3), small(zoo_dir, seed=1), small(zoo_dir, probes=ProbeGenConfig(depth=3)),
               small(zoo_dir, max_train_models=None)]
    assert len({run_id(c) for c in [base, *changed]}) == 5


def test_run_ids_hash_every_field_even_at_its_default() -> None:
    """No field leaves the config's dict at its default (folders written before are migrated instead, see
    tests/experiment/test_run_folder.py): the id is the hash of the whole config."""
    d = RunConfig().to_dict()
    assert d["method"]["probes"]["init_spread"] is None and d["method"]["kind"] == "probing"
    whole = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    assert run_id(RunConfig()) == whole
    spread = RunConfig(method=ProbingConfig(ProbeGenConfig(init_spread=0.58)))
    assert spread.to_dict()["method"]["probes"]["init_spread"] == 0.58
    assert RunConfig.from_dict(spread.to_dict()) == spread and run_id(spread) != run_id(RunConfig())


def test_results_csv_has_a_row_per_run_and_the_varied_fields(zoo_dir: Path, tmp_path: Path) -> None:
    zoo = load_zoo(zoo_dir)
    runs = grid(small(zoo_dir), {**VARIANTS, "q4": {"n_probes": 4}}, seeds=[0, 1])
    results = run_sweep(Sweep("csv", runs, tmp_path), zoo=zoo, progress=False)
    assert list(results["run_id"]) == [r.run_id for r in runs]
    assert list(results["variant"]) == [r.variant for r in runs] and list(results["seed"]) == [0, 0, 0, 1, 1, 1]
    assert {"method.probes.kind", "method.n_probes"} <= set(results.columns) and "lr" not in results.columns
    assert list(results["method.n_probes"]) == [8, 8, 4] * 2
    assert (results["status"] == "done").all() and results["test_accuracy"].between(0, 1).all()
    assert results["test_accuracy"].nunique() > 1
    on_disk = read_results(tmp_path)
    assert list(on_disk.columns) == list(results.columns)
    for column in ("run_id", "variant", "seed", "method.n_probes", "test_accuracy", "last_test_accuracy", "best_epoch"):
        assert on_disk[column].tolist() == results[column].tolist(), column
    sweep_json = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep_json["variants"]["q4"] == [runs[2].run_id, runs[5].run_id]
    assert [RunConfig.from_dict(r["config"]) for r in sweep_json["runs"]] == [r.config for r in runs]
    assert set(find_runs(tmp_path)) == {f"{v} seed {s}" for v in ("probegen", "vanilla", "q4") for s in (0, 1)}


def test_rerun_skips_finished_runs_and_redoes_an_unfinished_one(zoo_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    runs = grid(small(zoo_dir), VARIANTS, seeds=[0, 1])
    sweep = Sweep("rerun", runs, tmp_path)
    first = run_sweep(sweep, progress=False)
    before = run_metrics(tmp_path, list(first["run_id"]))
    (tmp_path / runs[2].run_id / "metrics.json").unlink()  # as if killed while writing its last file
    trained = []
    real_train = sweep_mod.train
    monkeypatch.setattr(sweep_mod, "train", lambda config, *a, **kw: trained.append(config) or
                        real_train(config, *a, **kw))
    again = run_sweep(sweep, progress=False)
    assert trained == [runs[2].config], "only the unfinished run is trained again"
    pd.testing.assert_frame_equal(again.drop(columns=TIMING), first.drop(columns=TIMING))
    assert again["train_seconds"][[0, 1, 3]].tolist() == first["train_seconds"][[0, 1, 3]].tolist(), "read back"
    assert run_metrics(tmp_path, list(again["run_id"])) == before


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(zoo_dir: Path, tmp_path: Path) -> None:
    base = small(zoo_dir)
    runs = grid(base, {"ok": {}, "nan": {"lr": 1e9}, "nozoo": {"zoo_dir": str(tmp_path / "no-such-zoo")},
                       "also-ok": {"probes": UniformConfig()}}, seeds=[0])
    sweep = Sweep("fail", runs, tmp_path / "sweep")
    results = run_sweep(sweep, progress=False).set_index("variant")
    assert list(results["status"]) == ["done", "failed", "failed", "done"]
    assert results.loc["nan", "error"].startswith("NonFiniteLossError: loss became nan at epoch")
    assert results.loc["nozoo", "error"].startswith("FileNotFoundError") and "no-such-zoo" in results.loc["nozoo",
                                                                                                          "error"]
    assert results.loc[["ok", "also-ok"], "error"].tolist() == ["", ""]
    assert np.isfinite(results.loc[["ok", "also-ok"], "test_accuracy"]).all()
    assert results.loc[["nan", "nozoo"], "test_accuracy"].isna().all()
    failed = json.loads((tmp_path / "sweep" / runs[1].run_id / "failed.json").read_text())
    assert failed["error"] == results.loc["nan", "error"] and "Traceback" in failed["traceback"]
    with pytest.raises(RuntimeError, match="NonFiniteLossError"):
        sweep.metrics(runs[1])
    kept = run_sweep(sweep, progress=False, retry_failed=False).set_index("variant")
    pd.testing.assert_frame_equal(kept.drop(columns=TIMING), results.drop(columns=TIMING))


SWEEP_SCRIPT = """
import json, sys
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.sweep import Sweep, SweepRun, run_sweep
plan = json.load(open(sys.argv[1]))
runs = [SweepRun(r["variant"], RunConfig.from_dict(r["config"])) for r in plan["runs"]]
run_sweep(Sweep("killed", runs, plan["folder"]), progress=False)
"""


def test_a_sigkilled_sweep_resumes_with_every_run_once_and_the_same_numbers(zoo_dir: Path, tmp_path: Path) -> None:
    """Kill the sweep's process while a run is half done (its folder has config.json, not metrics.json, and
    results.csv has some runs but not all), rerun: every run is there once, equal to an uninterrupted sweep."""
    runs = grid(small(zoo_dir, epochs=25, max_train_models=256), VARIANTS, seeds=[0, 1])
    folder = tmp_path / "killed"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"folder": str(folder),
                                "runs": [{"variant": r.variant, "config": r.config.to_dict()} for r in runs]}))
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(plan)], stderr=subprocess.PIPE, text=True)
    half_done = None
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            csv = folder / "results.csv"
            rows = len(csv.read_text().splitlines()) - 1 if csv.is_file() else 0
            started = [r.run_id for r in runs if (folder / r.run_id / "config.json").is_file()
                       and not (folder / r.run_id / "metrics.json").is_file()]
            if 1 <= rows < len(runs) and started:
                proc.send_signal(signal.SIGKILL)
                half_done = started[0]
                break
            time.sleep(0.005)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert half_done is not None, f"never saw a half-done run before the sweep ended (rc {proc.returncode}): {err}"
    assert proc.returncode == -signal.SIGKILL
    killed_rows = read_results(folder)
    assert 1 <= len(killed_rows) < len(runs) and half_done not in set(killed_rows["run_id"])
    (folder / half_done / "stray").write_text("left by the killed run")  # gone once the run is redone from scratch

    resumed = run_sweep(Sweep("killed", runs, folder), progress=False)
    reference = run_sweep(Sweep("whole", runs, tmp_path / "whole"), progress=False)
    on_disk = read_results(folder)
    assert sorted(on_disk["run_id"]) == sorted(r.run_id for r in runs), "every run exactly once"
    pd.testing.assert_frame_equal(on_disk.drop(columns=TIMING), read_results(tmp_path / "whole").drop(columns=TIMING))
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMING), reference.drop(columns=TIMING))
    ids = [r.run_id for r in runs]
    assert run_metrics(folder, ids) == run_metrics(tmp_path / "whole", ids)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(ids)
    assert not (folder / half_done / "stray").exists()


def test_local_and_dask_engines_give_identical_results(zoo_dir: Path, tmp_path: Path) -> None:
    runs = grid(small(zoo_dir), VARIANTS, seeds=[0, 1])
    local = run_sweep(Sweep("local", runs, tmp_path / "local"), EngineConfig("local"), zoo=load_zoo(zoo_dir),
                      progress=False)
    with pytest.raises(ValueError, match="local engine"):
        run_sweep(Sweep("dask", runs, tmp_path / "dask"), EngineConfig("dask"), zoo=load_zoo(zoo_dir))
    dask = run_sweep(Sweep("dask", runs, tmp_path / "dask"), EngineConfig("dask", n_workers=2), progress=False)
    assert (dask["status"] == "done").all(), dask["error"].tolist()
    pd.testing.assert_frame_equal(read_results(tmp_path / "dask").drop(columns=TIMING),
                                  read_results(tmp_path / "local").drop(columns=TIMING))
    pd.testing.assert_frame_equal(dask.drop(columns=TIMING), local.drop(columns=TIMING))
    ids = [r.run_id for r in runs]
    assert run_metrics(tmp_path / "dask", ids) == run_metrics(tmp_path / "local", ids)
    for rid in ids:
        a, b = load_file(tmp_path / "dask" / rid / "best.safetensors"), load_file(tmp_path / "local" / rid /
                                                                                   "best.safetensors")
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
        threads = json.loads((tmp_path / "dask" / rid / "metrics.json").read_text())["threads"]
        assert (threads["threads"], threads["source"]) == ("1", "set_threads")


def test_cli_seeds_runs_the_quickstart_sweep_and_fails_on_a_broken_claim(zoo_dir: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture) -> None:
    tiny = ["--zoo", str(zoo_dir), "--seeds", "0", "1", "--max-train-models", "64", "--epochs", "1",
            "--n-probes", "8"]
    monkeypatch.setattr(quickstart, "EXPECTED", ())  # one epoch ranks nothing: no ordering is expected of it
    cli.main(["seeds", "00_quickstart", *tiny, "--out", str(tmp_path / "small")])
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "small" / "summary.json").read_text())
    table = {row["variant"]: row for row in summary["summary"]["test_accuracy"]}
    assert set(table) == set(quickstart.METHODS) and all(row["n"] == 2 for row in table.values())
    results = read_results(tmp_path / "small")
    assert len(results) == 6 and set(results["seed"]) == {0, 1}
    vanilla = results[results["variant"] == "vanilla"].set_index("seed")["test_accuracy"]
    probegen = results[results["variant"] == "probegen"].set_index("seed")["test_accuracy"]
    assert table["vanilla"]["diff"] == pytest.approx((vanilla - probegen).mean())
    assert "mean ± std" in out and "seed 1: uniform: test_accuracy" in out
    # one claim per method against probegen, read off its paired interval over the two seeds
    assert sum(("vanilla" in line) for line in summary["claims"] if " seeds" in line) == 1

    # An expected ordering the intervals contradict fails the command (resumed: nothing is trained again): vanilla's
    # interval is moved above 0, as a run where vanilla clearly beats probegen would have it.
    def vanilla_ahead(*args: Any, **kwargs: Any) -> pd.DataFrame:
        t = compare_variants(*args, **kwargs)
        t.loc["vanilla", ["diff", "diff_low", "diff_high"]] = [0.2, 0.1, 0.3]
        return t

    monkeypatch.setattr(quickstart, "compare_variants", vanilla_ahead)
    monkeypatch.setattr(quickstart, "EXPECTED", (("probegen", "vanilla"),))
    with pytest.raises(SystemExit) as failed:
        cli.main(["seeds", *tiny, "--out", str(tmp_path / "small")])
    assert "expected probegen > vanilla, but vanilla beats probegen on test_accuracy by +0.200" in str(
        failed.value.code)
    assert json.loads((tmp_path / "small" / "summary.json").read_text())["claim_failures"]
    monkeypatch.setattr(quickstart, "EXPECTED", ())  # nothing expected: the same finding is printed, not failed
    cli.main(["seeds", *tiny, "--out", str(tmp_path / "small")])
    assert "vanilla beats probegen on test_accuracy by +0.200 [+0.100, +0.300] over 2 seeds" in capsys.readouterr().out


def test_notebook_00_trains_through_the_sweep() -> None:
    """One way to run many configs: notebook 00's training cell is the quickstart's sweep, not a loop of its own."""
    nb = json.loads((REPO / "notebooks" / "00_quickstart.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "run_sweep(" in code and "quickstart_sweep(" in code and "check_seeds(" in code
    assert "train(" not in code and "Claim(" not in code and "ProbeGenConfig" not in code


def test_a_zoo_rebuilt_at_the_same_path_makes_its_finished_runs_train_again(zoo_dir: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ids hash the config, which names the zoo by path: the recorded fingerprint is what tells a rebuilt zoo."""
    zoo_copy = tmp_path / "zoo"
    shutil.copytree(zoo_dir, zoo_copy)
    runs = grid(small(zoo_copy), VARIANTS, seeds=[0])
    sweep = Sweep("rebuilt", runs, tmp_path / "sweep")
    run_sweep(sweep, progress=False)
    recorded = {(tmp_path / "sweep" / r.run_id / sweep_mod.ZOO_FILE).read_text().strip() for r in runs}
    assert recorded == {zoo_fingerprint(zoo_copy)}
    trained = []
    real_train = sweep_mod.train
    monkeypatch.setattr(sweep_mod, "train", lambda config, *a, **kw: trained.append(config) or
                        real_train(config, *a, **kw))
    run_sweep(sweep, progress=False)
    assert trained == [], "the same zoo: every run is read back"

    zoo = load_zoo(zoo_copy)  # rebuilt in place: other labels, the same path
    zoo.table["label"] = (zoo.table["label"] + 1) % 10
    save_zoo(zoo, zoo_copy, overwrite=True)
    with pytest.warns(UserWarning, match=r"2 finished run\(s\) were trained on another zoo"):
        run_sweep(sweep, progress=False)
    assert trained == [r.config for r in runs]
    recorded = {(tmp_path / "sweep" / r.run_id / sweep_mod.ZOO_FILE).read_text().strip() for r in runs}
    assert recorded == {zoo_fingerprint(zoo_copy)}

    trained.clear()  # a run from before fingerprints were recorded is read back, whatever the zoo
    (tmp_path / "sweep" / runs[0].run_id / sweep_mod.ZOO_FILE).unlink()
    save_zoo(load_zoo(zoo_dir), zoo_copy, overwrite=True)
    with pytest.warns(UserWarning, match=r"1 finished run\(s\)"):
        run_sweep(sweep, progress=False)
    assert trained == [runs[1].config]


def test_the_zoo_fingerprint_reads_every_file_and_not_the_path(zoo_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(zoo_dir, copy)
    assert zoo_fingerprint(copy) == zoo_fingerprint(zoo_dir)
    for name in ("weights.safetensors", "models.csv", "zoo.json"):
        changed = tmp_path / name
        shutil.copytree(zoo_dir, changed)
        data = bytearray((changed / name).read_bytes())
        data[-2] ^= 1
        (changed / name).write_bytes(bytes(data))
        assert zoo_fingerprint(changed) != zoo_fingerprint(zoo_dir), name
