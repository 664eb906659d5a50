"""A run killed part-way continues after its last finished epoch, exactly as if never stopped: alone (`train`), as a
group (`train_group`), and in a sweep; a resume state of another config, or a damaged one, is never used."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import probegen_nb.experiment.grouped as grouped_mod
import probegen_nb.experiment.train as train_mod
from probegen_nb.core.zoo import Zoo
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.grouped import train_group
from probegen_nb.experiment.sweep import Sweep, SweepRun, run_sweep
from probegen_nb.experiment.train import train
from probegen_nb.probes.coords import ProbeGenConfig, UniformConfig

TIMING = ("train_seconds", "threads", "device")  # what may differ between a resumed and an uninterrupted run


@pytest.fixture(scope="module")
def zoo(bias_sign_zoo: Zoo) -> Zoo:
    return bias_sign_zoo


def small(**kw) -> RunConfig:
    return RunConfig().override({"n_probes": 8, "epochs": 4, "hidden": 32, "n_hidden": 1, "device": "cpu",
                                 "probes": ProbeGenConfig(), **kw})


class Killed(BaseException):
    """Stands for SIGKILL / Ctrl-C: not an Exception, so nothing on the way catches it."""


def kill_at_epoch(monkeypatch, epoch: int) -> list[int]:
    """Make a solo run die (Killed) as it starts `epoch` (-1: never); returns the epochs it started."""
    seen: list[int] = []
    real_run_epoch = train_mod.GradientFit.run_epoch

    def run_epoch(self, e):
        seen.append(e)
        if e == epoch:
            raise Killed
        return real_run_epoch(self, e)

    monkeypatch.setattr(train_mod.GradientFit, "run_epoch", run_epoch)
    return seen


def same_run(a: Path, b: Path) -> None:
    """Two finished run folders with the same numbers and tensors (timing aside)."""
    ma, mb = rf.read_metrics(a), rf.read_metrics(b)
    assert {k: v for k, v in ma.items() if k not in TIMING} == {k: v for k, v in mb.items() if k not in TIMING}
    for name in (rf.BEST_FILE, rf.LAST_FILE, rf.PROBES_FILE, rf.TEST_REPS_FILE):
        ta, tb = load_file(a / name), load_file(b / name)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), name
    assert not (a / rf.RESUME_FILE).exists() and not (b / rf.RESUME_FILE).exists()


@pytest.mark.parametrize("probes", [ProbeGenConfig(), UniformConfig()], ids=["learned", "fixed"])
def test_a_killed_run_resumes_after_its_last_epoch_as_if_never_stopped(zoo: Zoo, probes, tmp_path,
                                                                       monkeypatch) -> None:
    config = small(probes=probes)
    train(config, zoo, out_dir=tmp_path / "whole", progress=False)
    with monkeypatch.context() as m:
        kill_at_epoch(m, 2)
        with pytest.raises(Killed):
            train(config, zoo, out_dir=tmp_path / "killed", progress=False)
    assert rf.read_resume(tmp_path / "killed", config).epoch == 1 and not rf.is_run_folder(tmp_path / "killed")
    with monkeypatch.context() as m:
        seen = kill_at_epoch(m, -1)
        train(config, zoo, out_dir=tmp_path / "killed", progress=False)
    assert seen == [2, 3]  # negative control: it continued, it did not train epochs 0 and 1 again
    same_run(tmp_path / "whole", tmp_path / "killed")


def test_a_resume_state_of_another_config_or_a_damaged_one_is_not_used(zoo: Zoo, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "run"
    with monkeypatch.context() as m:
        kill_at_epoch(m, 2)
        with pytest.raises(Killed):
            train(small(seed=1), zoo, out_dir=folder, progress=False)
    assert rf.read_resume(folder, small(seed=2)) is None  # another seed: another run
    with monkeypatch.context() as m:
        seen = kill_at_epoch(m, -1)
        train(small(seed=2), zoo, out_dir=folder, progress=False)
    assert seen == [0, 1, 2, 3]
    same_run(folder, train(small(seed=2), zoo, out_dir=tmp_path / "fresh", progress=False).out_dir)
    # a truncated resume file is no state: the run starts again
    with monkeypatch.context() as m:
        kill_at_epoch(m, 2)
        with pytest.raises(Killed):
            train(small(seed=3), zoo, out_dir=tmp_path / "cut", progress=False)
    path = tmp_path / "cut" / rf.RESUME_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert rf.read_resume(tmp_path / "cut", small(seed=3)) is None


def test_a_killed_group_resumes_as_if_never_stopped(zoo: Zoo, tmp_path, monkeypatch) -> None:
    configs = [small(seed=s) for s in (0, 1)]
    whole = [tmp_path / "whole" / str(s) for s in (0, 1)]
    train_group(configs, zoo, whole)
    killed = [tmp_path / "killed" / str(s) for s in (0, 1)]
    real = grouped_mod.metric
    calls = {"n": 0}

    def dies_in_epoch_2(*args, **kwargs):  # 3 splits × 2 runs a epoch: the 13th call is epoch 2's
        calls["n"] += 1
        if calls["n"] > 12:
            raise Killed
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(grouped_mod, "metric", dies_in_epoch_2)
        with pytest.raises(Killed):
            train_group(configs, zoo, killed)
    assert [rf.read_resume(k, c).epoch for k, c in zip(killed, configs)] == [1, 1]
    steps = {"n": 0}
    real_losses = grouped_mod.run_losses

    def counted(*args, **kwargs):
        steps["n"] += 1
        return real_losses(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(grouped_mod, "run_losses", counted)
        train_group(configs, zoo, killed)
    assert steps["n"] == 2 * 3  # negative control: epochs 2 and 3 of 3 steps (80 models, 32 a step), not 4 epochs
    for a, b in zip(whole, killed):
        same_run(a, b)


def test_a_sweep_continues_a_killed_run_instead_of_starting_it_again(zoo: Zoo, tmp_path, monkeypatch) -> None:
    config = small(seed=5)
    sweep = Sweep("resume", [SweepRun("probegen", config)], tmp_path / "sweep")
    with monkeypatch.context() as m:
        kill_at_epoch(m, 3)
        with pytest.raises(Killed):
            run_sweep(sweep, zoo=zoo, progress=False, group=False)
    with monkeypatch.context() as m:
        seen = kill_at_epoch(m, -1)
        results = run_sweep(sweep, zoo=zoo, progress=False, group=False)
    assert seen == [3] and list(results["status"]) == ["done"]
    same_run(sweep.run_folder(sweep.runs[0]), train(config, zoo, out_dir=tmp_path / "fresh", progress=False).out_dir)
