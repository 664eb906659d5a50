"""Mixed-architecture zoos: one batched forward per architecture, one format, one training path."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.zoo import MixedZoo, Task, Zoo, ZooFormatError
from probegen_nb.core.zoo_io import load_zoo, save_zoo
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.train import build_model, train
from probegen_nb.probes.coords import VanillaConfig

SPECS = [CNNSpec.small_cnn_zoo(activation="relu"), CNNSpec.small_cnn_zoo(activation="tanh"),
         CNNSpec(1, (4, 8, 4), (3, 5, 3), 1, (1, 2, 1), ("gelu", "sigmoid", "none"), (-1, -1, 0))]


def make_mixed(sizes=(5, 4, 3), seed=0) -> MixedZoo:
    g = torch.Generator().manual_seed(seed)
    groups, start = [], 0
    for spec, m in zip(SPECS, sizes):
        params = {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
        ids = np.arange(start, start + m)
        table = pd.DataFrame({"model_id": ids, "split": ["train", "val", "test"] * (m // 3) + ["train"] * (m % 3),
                              "test_acc": np.linspace(0.1, 0.9, m)})
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
        start += m
    return MixedZoo(tuple(groups), Task("test_acc", None))


def test_round_trip(tmp_path) -> None:
    zoo = make_mixed()
    save_zoo(zoo, tmp_path / "z")
    meta = json.loads((tmp_path / "z" / "zoo.json").read_text())
    assert len(meta["archs"]) == 3 and "arch" not in meta
    back = load_zoo(tmp_path / "z")
    assert isinstance(back, MixedZoo) and back.specs == zoo.specs
    for a, b in zip(zoo.groups, back.groups):
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert back.table["model_id"].tolist() == list(range(12))


def test_represent_rows_equals_per_model_modules_in_any_order() -> None:
    zoo = make_mixed()
    model = build_model(RunConfig(probes=VanillaConfig(), n_probes=3, hidden=16, n_hidden=1), zoo,
                        torch.Generator().manual_seed(0))
    index = torch.tensor([11, 0, 6, 3, 9, 5, 1])  # interleaves the three architectures
    rep = model.represent_rows(zoo, index).detach()
    probes = model.probes().detach()
    group, row = zoo.table["arch"].to_numpy(), np.concatenate([np.arange(len(z)) for z in zoo.groups])
    for j, i in enumerate(index.tolist()):
        sub = zoo.groups[group[i]]
        module = sub.spec.build_module()
        module.load_state_dict(sub.model_params(row[i]))
        torch.testing.assert_close(rep[j], module(probes).flatten(), atol=1e-5, rtol=1e-5)


def test_split_subset_and_training() -> None:
    zoo = make_mixed((6, 6, 6))
    assert len(zoo.split("train")) == 6 and set(zoo.split("test").table["arch"]) == {0, 1, 2}
    sub = zoo.subset([17, 2, 8])
    assert sorted(sub.table["model_id"]) == [2, 8, 17]
    run = train(RunConfig(probes=VanillaConfig(), n_probes=4, epochs=2, hidden=16, n_hidden=1, device="cpu"), zoo,
                progress=False)
    assert run.metrics["metric"] == "kendall_tau" and len(run.metrics["history"]) == 2
    assert run.metrics["flops_per_model"] > 0


def test_errors(tmp_path) -> None:
    zoo = make_mixed()
    save_zoo(zoo, tmp_path / "z")
    table = pd.read_csv(tmp_path / "z" / "models.csv")
    table.loc[4, "arch"] = 7
    table.to_csv(tmp_path / "z" / "models.csv", index=False)
    with pytest.raises(ZooFormatError, match=r"models.csv: arch 7 of row 4"):
        load_zoo(tmp_path / "z")
    table.loc[4, "arch"] = 1  # now arch 0 has 4 rows for 5 weight rows, arch 1 has 5 for 4
    table.to_csv(tmp_path / "z" / "models.csv", index=False)
    with pytest.raises(ZooFormatError, match=r"weights.safetensors: arch 0: 'layers.0.weight' has shape"):
        load_zoo(tmp_path / "z")
    with pytest.raises(ValueError, match="at least one"):
        MixedZoo(())
