"""Methods as `RunConfig.method` and as `Learner`s: every method config builds a learner `train()` drives without
asking its type, overrides reach into probing only where the run probes, and train.py asks no method its type."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from probegen_nb.baselines.registry import BASELINE_CONFIGS
from probegen_nb.baselines.statnn import StatNNConfig
from probegen_nb.core.zoo import Zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.train import build_model, train
from probegen_nb.methods.learner import Learner
from probegen_nb.probes.coords import UniformConfig

from paths import REPO

METHODS = {"probing": ProbingConfig(UniformConfig(), 4), "statnn_gbt": StatNNConfig(n_trees=3),
           "statnn_mlp": StatNNConfig(head="mlp"),
           **{kind: config() for kind, config in BASELINE_CONFIGS.items() if kind != "statnn"}}
TRAIN_PY = REPO / "probegen_nb" / "experiment" / "train.py"


def isinstance_calls(source: str) -> list[int]:
    return [n.lineno for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "isinstance"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_builds_a_learner(name: str, class_shift_zoo: Zoo) -> None:
    config = RunConfig(epochs=1, hidden=8, n_hidden=1, device="cpu", method=METHODS[name])
    learner = build_model(config, class_shift_zoo, torch.Generator().manual_seed(0))
    assert isinstance(learner, Learner), type(learner)


def test_method_labels_tell_the_methods_apart() -> None:
    labels = [m.label for m in METHODS.values()] + [ProbingConfig(n_probes=8).label]
    assert len(set(labels)) == len(labels), labels
    assert ProbingConfig(UniformConfig(), 4).label == "uniform Q=4"


def test_train_py_asks_no_method_its_type() -> None:
    assert isinstance_calls(TRAIN_PY.read_text()) == []
    assert isinstance_calls("if isinstance(model, ProbingModel): pass") == [1]  # negative control: the scan sees one


def test_trees_are_one_epoch_per_boosting_stage_and_keep_the_best(class_shift_zoo: Zoo, tmp_path: Path) -> None:
    config = RunConfig(epochs=2, device="cpu", method=StatNNConfig(n_trees=6))  # epochs: not the trees
    run = train(config, class_shift_zoo, out_dir=tmp_path, progress=False)
    m = run.metrics
    assert len(m["history"]) == 6 and m["steps"] == 6, "trees: n_trees epochs, whatever RunConfig.epochs says"
    assert m["test_accuracy"] == m["history"][m["best_epoch"]]["test_accuracy"]
    assert not (tmp_path / "best.safetensors").exists() and not (tmp_path / "last.safetensors").exists()
    assert run.model.state_dict()["n_stages"] == m["best_epoch"] + 1


def test_overrides_reach_into_probing_only_where_the_run_probes() -> None:
    base = RunConfig()
    q16 = base.override({"n_probes": 16, "lr": 1e-3})
    assert isinstance(q16.method, ProbingConfig) and q16.method.n_probes == 16 and q16.lr == 1e-3
    trees = base.override({"baseline": StatNNConfig()})
    assert trees.method == StatNNConfig()
    with pytest.raises(ValueError, match="probing fields; this run trains the statnn baseline"):
        base.override({"baseline": StatNNConfig(), "n_probes": 8})
    with pytest.raises(ValueError, match="unknown overrides \\['n_prbes'\\]"):
        base.override({"n_prbes": 8})
    with pytest.raises(ValueError, match="ProbingConfig.n_probes \\(=0\\)"):
        ProbingConfig(n_probes=0)
