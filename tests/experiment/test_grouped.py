"""Runs as one program (a leading run axis): each run of a group equals its solo run (parameters after its steps,
metrics, model selection, folder), runs never share state, grouping never joins runs of different shapes, and a
sweep that groups resumes after a kill without retraining finished runs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import probegen_nb.experiment.grouped as grouped_mod
import probegen_nb.experiment.sweep as sweep_mod
from probegen_nb.baselines.weight_mlp import WeightMLPConfig
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.core.zoo_io import save_zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.grouped import group_key, group_runs, train_group
from probegen_nb.experiment.sweep import Sweep, SweepRun, run_sweep
from probegen_nb.experiment.train import build_model, train
from probegen_nb.methods.run_axis import RunStack
from probegen_nb.probes.coords import GaussianConfig, ProbeGenConfig, UniformConfig, VanillaConfig
from probegen_nb.zoos.inr import init_siren_params

from paths import ZOOS

# Grouped vs solo tolerances. The same float32 arithmetic in another order (a batched matmul over R·B models or R
# predictors instead of B or one, the loss as a sum of per-run means): a few ulps per step. Measured: parameters
# after 6 Adam steps 0 to 3e-8 apart (Adam's steps are ~lr = 3e-4 per weight, so a gradient mixed up between runs,
# or a wrong batch, moves them by ~1e-4), metrics 0 to 2.4e-7 (one model's argmax of 20 is 0.05).
PARAMS_RTOL, PARAMS_ATOL = 1e-5, 1e-6
METRIC_ATOL = 1e-6
# CNNs: Adam turns a few ulps of a near-zero gradient into up to ~lr of a weight's step
# (tests/project/test_benchmarks.py, TRAINED_CNNS); measured 1.6e-6 on 5 of 65,536 generator weights after 2 steps at
# lr 3e-3; a real error moves weights by ~lr = 3e-3.
CNN_PARAMS_ATOL = 1e-5
# Kendall τ (the CNN zoo's scalar labels) moves by 2/(n(n-1)) ≈ 1.3e-5 (400 test models) when float noise swaps two
# near-equal predictions (measured 2e-6 after tie correction); 1e-4 allows a few such swaps, a real error moves τ by
# 1e-2 or more.
TAU_ATOL = 1e-4


@pytest.fixture(scope="module")
def zoo(bias_sign_zoo: Zoo) -> Zoo:
    """The shared bias-sign SIREN zoo (conftest)."""
    return bias_sign_zoo


def small(**kw) -> RunConfig:
    return RunConfig(epochs=2, hidden=32, n_hidden=1, lr=3e-3, device="cpu",
                     method=ProbingConfig(n_probes=8)).override(kw)


def metrics_close(a: dict, b: dict, atol: float = METRIC_ATOL) -> None:
    assert a["best_epoch"] == b["best_epoch"]
    assert len(a["history"]) == len(b["history"])
    for x, y in zip(a["history"], b["history"]):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == pytest.approx(y[k], abs=atol, nan_ok=True), k


def states_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = PARAMS_ATOL) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=PARAMS_RTOL, atol=atol)


@pytest.mark.parametrize("probes", [ProbeGenConfig(), UniformConfig()], ids=["learned", "fixed"])
def test_each_run_of_a_group_equals_its_solo_run(zoo: Zoo, probes, tmp_path: Path) -> None:
    configs = [small(probes=probes, seed=s, lr=lr) for s, lr in ((0, 3e-3), (1, 3e-3), (2, 1e-3))]
    solo = [train(c, zoo, out_dir=tmp_path / f"solo{i}", progress=False) for i, c in enumerate(configs)]
    group = train_group(configs, zoo, [tmp_path / f"group{i}" for i in range(3)])
    for i, (s, g) in enumerate(zip(solo, group)):
        metrics_close(s.metrics, g.metrics)
        assert g.metrics["group_size"] == 3 and g.metrics["steps"] == s.metrics["steps"] == 6
        assert sorted(p.name for p in (tmp_path / f"solo{i}").iterdir()) == \
               sorted(p.name for p in (tmp_path / f"group{i}").iterdir())
        for name in ("last.safetensors", "best.safetensors"):  # after all steps, and the selected model
            states_close(load_file(tmp_path / f"solo{i}" / name), load_file(tmp_path / f"group{i}" / name))
        solo_m = json.loads((tmp_path / f"solo{i}" / "metrics.json").read_text())
        group_m = json.loads((tmp_path / f"group{i}" / "metrics.json").read_text())
        assert set(group_m) - set(solo_m) == {"group_size"} and group_m["config_sha256"] == solo_m["config_sha256"]
    # not vacuous: the seeds (and the third run's lr) make the runs differ by far more than the tolerance
    assert group[0].metrics["history"] != group[1].metrics["history"]
    last = [load_file(tmp_path / f"group{i}" / "last.safetensors") for i in range(3)]
    assert any((last[0][k] - last[1][k]).abs().max() > 1e-3 for k in last[0])


def test_two_runs_with_one_seed_are_identical_and_share_nothing(zoo: Zoo) -> None:
    """Negative control: equal seeds give equal runs, yet the runs' tensors are their own."""
    a, b = train_group([small(seed=5), small(seed=5)], zoo)
    assert a.metrics["history"] == b.metrics["history"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        for p in a.model.parameters():
            p.add_(1.0)
    assert all(torch.equal(sb[k], b.model.state_dict()[k]) for k in sb)
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_a_run_gets_only_its_own_gradient_and_outputs(zoo: Zoo) -> None:
    models = [build_model(small(seed=7), zoo, torch.Generator().manual_seed(7)) for _ in range(2)]
    stack = RunStack(models)
    idx = torch.arange(16).repeat(2, 1)  # [R, B]: both runs on the same models
    out = stack.predict_rows(zoo, idx)  # [R, B, d_out]
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)
    out[0].sum().backward()  # run 0's loss only
    assert all(p.grad is None or not p.grad.any() for p in models[1].parameters())
    assert any(p.grad is not None and p.grad.any() for p in models[0].parameters())
    with torch.no_grad():
        models[0].probes.latents.add_(1.0)  # type: ignore[operator]
        changed = stack.predict_rows(zoo, idx)
    torch.testing.assert_close(changed[1], out[1].detach(), rtol=0, atol=0)
    assert not torch.allclose(changed[0], out[0].detach())


def test_runs_of_different_shapes_are_refused(zoo: Zoo) -> None:
    with pytest.raises(ValueError, match="run 1 .*cannot share"):
        train_group([small(), small(n_probes=16)], zoo)
    models = [build_model(small(hidden=h), zoo, torch.Generator().manual_seed(0)) for h in (32, 16)]
    with pytest.raises(ValueError, match="run 1's predictor differ"):
        RunStack(models)


SHAPE_FIELDS = ("zoo_dir", "n_probes", "epochs", "batch_size", "hidden", "n_hidden", "max_train_models",
                "cache_responses", "device")
PROBES = [ProbeGenConfig(), ProbeGenConfig(depth=3), ProbeGenConfig(init_spread=0.5), ProbeGenConfig(width=16),
          ProbeGenConfig(activation="relu"), VanillaConfig(), UniformConfig(), UniformConfig(low=0.0),
          GaussianConfig(std=0.5)]


def random_config(rng: random.Random) -> RunConfig:
    """A few shapes, often varied in one field, with random values: near-misses that must stay apart."""
    pick = lambda *xs: rng.choice(xs)  # noqa: E731
    shape = dict(zoo_dir="a", n_probes=8, epochs=1, batch_size=32, hidden=32, n_hidden=1, max_train_models=None,
                 cache_responses=True, device="cpu")
    if rng.random() < 0.5:
        field = rng.choice(SHAPE_FIELDS)
        shape[field] = {"zoo_dir": "b", "n_probes": 16, "epochs": 2, "batch_size": 16, "hidden": 64, "n_hidden": 2,
                        "max_train_models": 64, "cache_responses": False, "device": "cuda"}[field]
    n_probes = shape.pop("n_probes")
    method = ProbingConfig(rng.choice(PROBES), n_probes, generator_weight_decay=pick(0.0, 0.1))
    return RunConfig(**shape, lr=pick(1e-3, 3e-4), weight_decay=pick(0.0, 0.1), seed=rng.randrange(5),
                     method=WeightMLPConfig() if rng.random() < 0.1 else method)


def shape_of(c: RunConfig) -> tuple:
    """What a shared program needs to be equal, written out independently of group_key."""
    p = getattr(c.method, "probes", None)
    structure = (getattr(p, "kind", None), getattr(p, "depth", None), getattr(p, "width", None),
                 getattr(p, "latent_dim", None), getattr(p, "activation", None))
    return (*(getattr(c.method if f == "n_probes" else c, f, None) for f in SHAPE_FIELDS), structure)


@pytest.mark.parametrize("trial", range(20))
def test_group_runs_never_joins_runs_of_different_shapes(trial: int) -> None:
    rng = random.Random(trial)
    configs = [random_config(rng) for _ in range(60)]
    max_size = rng.choice((None, 2, 4))
    groups = group_runs(configs, max_size)
    assert sorted(i for g in groups for i in g) == list(range(len(configs)))  # a partition
    joined = 0
    for g in groups:
        assert max_size is None or len(g) <= max_size
        assert len({shape_of(configs[i]) for i in g}) == 1, [configs[i] for i in g]
        if len(g) > 1:
            assert all(isinstance(configs[i].method, ProbingConfig) for i in g)
            joined += 1
    # not vacuous: some values-only variants (seeds, lr, weight decay, init spread, uniform range) were joined
    assert joined > 0
    assert len({configs[i].lr for g in groups if len(g) > 1 for i in g}) > 1


def test_values_only_variants_share_a_key_and_shapes_do_not() -> None:
    base = small()
    for same in ({"seed": 3}, {"lr": 1e-4}, {"weight_decay": 0.1}, {"generator_weight_decay": 0.1},
                 {"probes": ProbeGenConfig(init_spread=0.3)}):
        assert group_key(base.override(same)) == group_key(base), same
    for other in ({"n_probes": 16}, {"hidden": 64}, {"probes": ProbeGenConfig(depth=3)}, {"probes": VanillaConfig()},
                  {"batch_size": 16}, {"epochs": 3}, {"device": "cuda"}):
        assert group_key(base.override(other)) != group_key(base), other
    assert group_key(base.override({"baseline": WeightMLPConfig()})) is None


class Killed(BaseException):
    """Stands for SIGKILL mid-group: not an Exception, so nothing records or retries it."""


def test_a_grouped_sweep_resumes_after_a_kill_without_retraining_finished_runs(zoo: Zoo, tmp_path: Path,
                                                                              monkeypatch) -> None:
    zoo_dir = save_zoo(zoo, tmp_path / "zoo")
    runs = [SweepRun("probegen", small(zoo_dir=str(zoo_dir), seed=s)) for s in range(3)]
    sweep = Sweep("grouped", runs, tmp_path / "sweep")
    write = grouped_mod._write_run_folder
    written: list[Path] = []

    def write_then_die(out, *args, **kw):
        if written:
            raise Killed
        write(out, *args, **kw)
        written.append(out)

    monkeypatch.setattr(grouped_mod, "_write_run_folder", write_then_die)
    with pytest.raises(Killed):
        run_sweep(sweep, progress=False, group=True)
    assert len(written) == 1 and (written[0] / "metrics.json").is_file()
    monkeypatch.setattr(grouped_mod, "_write_run_folder", write)
    trained: list[list[int]] = []
    real_group, real_train = sweep_mod.train_group, sweep_mod.train
    monkeypatch.setattr(sweep_mod, "train_group",
                        lambda cs, *a, **k: (trained.append([c.seed for c in cs]), real_group(cs, *a, **k))[1])
    monkeypatch.setattr(sweep_mod, "train",
                        lambda c, *a, **k: (trained.append([c.seed]), real_train(c, *a, **k))[1])
    results = run_sweep(sweep, progress=False, group=True)
    assert trained == [[1, 2]]  # the finished run 0 is not retrained; the rest are re-formed into one group
    assert list(results["status"]) == ["done"] * 3
    # and the resumed runs are their solo runs
    solo = train(runs[1].config, zoo, progress=False)
    metrics_close(solo.metrics, json.loads((sweep.run_folder(runs[1]) / "metrics.json").read_text()))


def test_a_failing_group_trains_its_runs_alone(zoo: Zoo, tmp_path: Path, monkeypatch) -> None:
    zoo_dir = save_zoo(zoo, tmp_path / "zoo")
    runs = [SweepRun("probegen", small(zoo_dir=str(zoo_dir), seed=s)) for s in range(2)]

    def broken(*a, **k):
        raise RuntimeError("group broke")

    monkeypatch.setattr(sweep_mod, "train_group", broken)
    results = run_sweep(Sweep("fallback", runs, tmp_path / "sweep"), progress=False, group=True)
    assert list(results["status"]) == ["done", "done"]


def test_a_group_is_one_dask_task_with_the_local_engines_results(zoo: Zoo, tmp_path: Path) -> None:
    from probegen_nb.core.engine import EngineConfig

    zoo_dir = save_zoo(zoo, tmp_path / "zoo")
    runs = [SweepRun(v, small(zoo_dir=str(zoo_dir), seed=s, probes=p)) for s in range(2)
            for v, p in (("probegen", ProbeGenConfig()), ("vanilla", VanillaConfig()))]
    local = run_sweep(Sweep("local", runs, tmp_path / "local"), progress=False, group=True)
    dask = run_sweep(Sweep("dask", runs, tmp_path / "dask"), EngineConfig("dask", n_workers=2), progress=False,
                     group=True)
    assert (dask["status"] == "done").all(), dask["error"].tolist()
    timing = ["train_seconds", "seconds_per_run"]
    pd.testing.assert_frame_equal(dask.drop(columns=timing), local.drop(columns=timing))
    for run in runs:
        m = json.loads((tmp_path / "dask" / run.run_id / "metrics.json").read_text())
        assert m["group_size"] == 2  # probegen's two seeds as one task, vanilla's as another
        assert (tmp_path / "dask" / run.run_id / "zoo.sha256").is_file()


def test_cnn_runs_of_a_mixed_zoo_group_as_their_solo_runs(tmp_path: Path) -> None:
    """The embedded relu+tanh CNN zoo (a MixedZoo: rows regrouped by architecture), where each run's zoo forward
    takes its own shared probes; learned image probes and fixed dead leaves."""
    from probegen_nb.core.zoo_io import load_zoo
    from probegen_nb.probes.dead_leaves import DeadLeavesConfig
    from probegen_nb.probes.images import ConvProbeGenConfig

    zoo = load_zoo(ZOOS / "cifar10-gs-cnn-small")
    for probes in (ConvProbeGenConfig(), DeadLeavesConfig()):
        configs = [small(probes=probes, seed=s, max_train_models=48, epochs=1) for s in (0, 1)]
        solo = [train(c, zoo, progress=False) for c in configs]
        for s, g in zip(solo, train_group(configs, zoo)):
            metrics_close(s.metrics, g.metrics, TAU_ATOL)
            states_close(s.model.state_dict(), g.model.state_dict(), CNN_PARAMS_ATOL)


def test_inr_runs_of_a_mixed_zoo_group_as_their_solo_runs() -> None:
    """Two SIREN architectures interleaved in a MixedZoo: the folded forward puts each run's probes on its own models
    after the zoo regroups the rows by architecture."""
    from probegen_nb.core.zoo import MixedZoo

    parts = []
    for g, spec in enumerate((SirenSpec(), SirenSpec(hidden=(16, 16)))):
        m = 60
        params = init_siren_params(spec, m, torch.Generator().manual_seed(g))
        labels = np.arange(m) % 3
        params["seq.2.bias"] = torch.tensor(labels - 1.0, dtype=torch.float32)[:, None] * 1.5
        table = pd.DataFrame({"model_id": np.arange(m) + 100 * g, "label": labels,
                              "split": ["train"] * 40 + ["val"] * 10 + ["test"] * 10})
        parts.append(Zoo(spec, params, table, Task("label", 3)))
    zoo = MixedZoo(tuple(parts), Task("label", 3))
    configs = [small(seed=s) for s in (0, 1, 2)]
    solo = [train(c, zoo, progress=False) for c in configs]
    for s, g in zip(solo, train_group(configs, zoo)):
        metrics_close(s.metrics, g.metrics)
        states_close(s.model.state_dict(), g.model.state_dict())
