"""Baselines: StatNN's features are the paper's statistics, the permutation augmentation keeps every model's function,
and baselines train through `train()` into the same run folder and metrics as probing runs, for INR and CNN zoos."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from probegen_nb.baselines.base import Baseline, rows_params
from probegen_nb.baselines.registry import baseline_config_from_dict, baseline_config_to_dict
from probegen_nb.baselines.statnn import STATISTICS, StatNNConfig, layer_statistics, zoo_statistics
from probegen_nb.baselines.weight_mlp import WeightMLPConfig, flatten
from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.registry import forward
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.arch.symmetry import permute_hidden, random_hidden_permutations, tied_layers
from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.zoo import MixedZoo, Task, Zoo
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.runs import find_runs, is_run_folder, load_run
from probegen_nb.experiment.sweep import Sweep, grid, run_id, run_sweep
from probegen_nb.experiment.train import build_model, train
from probegen_nb.probes.coords import VanillaConfig

from paths import ZOOS

WILD = CNNSpec(1, (8, 8, 8), 3, 1, 1, ("relu", "tanh", "gelu"), (-1, -1, 0), image_size=8)  # a residual link 0 → 2
BASELINES = {"statnn_gbt": StatNNConfig(), "statnn_mlp": StatNNConfig(head="mlp"), "mlp": WeightMLPConfig(),
             "mlp_aug": WeightMLPConfig(augment=True)}


@pytest.fixture(scope="module")
def zoo(class_shift_zoo) -> Zoo:
    return class_shift_zoo


def cnn_zoo(m: int = 120) -> MixedZoo:
    """relu and tanh Small CNNs labelled with a scalar (their last bias' mean, plus noise): the regression task."""
    g = torch.Generator().manual_seed(1)
    groups = []
    for a, activation in enumerate(("relu", "tanh")):
        spec = CNNSpec.small_cnn_zoo(activation=activation)
        params = {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
        acc = params["fc.bias"].mean(1) + 0.02 * torch.randn(m, generator=g)
        table = pd.DataFrame({"model_id": np.arange(m) + a * m, "split": (["train"] * 4 + ["val", "test"]) * (m // 6),
                              "test_acc": acc.numpy()})
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
    return MixedZoo(tuple(groups), Task("test_acc", None))


def small(**kw) -> RunConfig:
    return RunConfig().override({"epochs": 2, "hidden": 32, "n_hidden": 1, "device": "cpu", **kw})


# ---------------------------------------------------------------- StatNN's features


def test_statnn_features_equal_a_numpy_computation_on_two_models() -> None:
    spec = SirenSpec()
    g = torch.Generator().manual_seed(3)
    params = {k: torch.randn(2, *s, generator=g) for k, s in spec.param_shapes().items()}
    names = list(spec.param_shapes())
    expected = []
    for i in range(2):
        row = []
        for name in names:
            x = params[name][i].double().numpy().ravel()
            row += [x.mean(), x.var(), *np.quantile(x, [0, 0.25, 0.5, 0.75, 1])]
        expected.append(row)
    got = layer_statistics(params, names)
    assert got.shape == (2, len(STATISTICS) * len(names)) == (2, 42)
    np.testing.assert_allclose(got.numpy(), np.array(expected), rtol=1e-5, atol=1e-6)
    # a zoo's rows come out in row order, here from a mixed zoo's two groups
    mixed = cnn_zoo(6)  # 12 models
    rows = torch.tensor([7, 0, 11, 3])
    direct = layer_statistics(rows_params(mixed, rows), list(CNNSpec.small_cnn_zoo().param_shapes()))
    torch.testing.assert_close(zoo_statistics(mixed)[rows], direct)


@pytest.mark.parametrize("baseline", [WeightMLPConfig(), StatNNConfig(head="mlp")], ids=["mlp", "statnn_mlp"])
def test_baselines_on_a_shuffled_mixed_index_equal_the_per_row_results(baseline) -> None:
    """A baseline's represent_rows / predict_rows / rows_params on a shuffled index over two interleaved
    architecture groups give row j the result of index[j]'s model alone (the zoo's un-permute, seen from here)."""
    mixed = cnn_zoo(6)  # 12 models: rows 0-5 relu, 6-11 tanh
    model = build_model(small(baseline=baseline), mixed, torch.Generator().manual_seed(0)).eval()
    index = torch.randperm(len(mixed), generator=torch.Generator().manual_seed(4))
    assert len(set(mixed.table["arch"].to_numpy()[index[:6].numpy()])) == 2  # the groups interleave
    alone = [{k: v[i - 6 * g:i - 6 * g + 1] for k, v in mixed.groups[g].params.items()}
             for i, g in ((i, int(i >= 6)) for i in index.tolist())]  # each model's params [1, …], from its group
    with torch.no_grad():
        torch.testing.assert_close(model.represent_rows(mixed, index), torch.cat([model.represent(p) for p in alone]))
        torch.testing.assert_close(model.predict_rows(mixed, index), torch.cat([model(p) for p in alone]))
    params = rows_params(mixed, index)
    assert all(torch.equal(params[k], torch.cat([p[k] for p in alone])) for k in params)


# ---------------------------------------------------------------- the permutation augmentation


@pytest.mark.parametrize("spec", [SirenSpec(), CNNSpec.small_cnn_zoo(), WILD], ids=["siren", "cnn", "residual"])
def test_hidden_permutations_keep_every_models_function_and_change_its_weights(spec) -> None:
    m = 4
    g = torch.Generator().manual_seed(0)
    scale = 0.05 if isinstance(spec, SirenSpec) else 0.5  # SIREN: sin(30·(Wx + b)) at the zoos' weight scale
    params = {k: scale * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
    x = torch.rand(5, *spec.input_shape, generator=g) * 2 - 1
    permuted = permute_hidden(spec, params, random_hidden_permutations(spec, m, g))
    torch.testing.assert_close(forward(spec, permuted, x), forward(spec, params, x), atol=1e-5, rtol=1e-5)
    names = list(spec.param_shapes())
    assert (flatten(permuted, names) != flatten(params, names)).any(dim=1).all()  # every model's vector moved
    # negative control: the same permutation without the next layer's columns changes the function
    broken = dict(permuted, **{n: params[n] for n in names[2:3]})  # the second tensor's next layer: un-permuted
    assert (forward(spec, broken, x) - forward(spec, params, x)).abs().max() > 1e-3


def test_the_augmenting_baseline_permutes_in_training_only(zoo: Zoo) -> None:
    model = build_model(small(baseline=WeightMLPConfig(augment=True)), zoo, torch.Generator().manual_seed(0))
    index = torch.arange(8)
    params = {k: v[index] for k, v in zoo.params.items()}
    augmented = model.augment(zoo.spec, params)
    x = torch.rand(16, 2)
    torch.testing.assert_close(forward(zoo.spec, augmented, x), forward(zoo.spec, params, x), atol=1e-5, rtol=1e-5)
    assert not torch.equal(model.represent(augmented), model.represent(params))
    assert torch.equal(model.represent_rows(zoo, index), model.represent(params))  # evaluation: never augmented
    assert not torch.equal(model.represent_rows(zoo, index, augment=True), model.represent(params))
    assert not model.fixed_representation
    assert build_model(small(baseline=WeightMLPConfig()), zoo, torch.Generator()).fixed_representation


def test_residual_links_between_different_widths_are_refused() -> None:
    assert tied_layers(WILD) == (0, 1, 0)
    uneven = CNNSpec(1, (4, 8, 8), 3, 1, 1, "relu", (-1, -1, 0), image_size=8)
    with pytest.raises(ValueError, match=r"residual\[2\] \(=0\) adds layer 0's 4 channels to layer 2's 8"):
        tied_layers(uneven)


# ---------------------------------------------------------------- through train()


def test_a_baseline_run_writes_a_probing_runs_folder_and_metrics(zoo: Zoo, tmp_path) -> None:
    probing = train(small(probes=VanillaConfig(), n_probes=4), zoo, out_dir=tmp_path / "probing", progress=False)
    keys = set(rf.read_metrics(tmp_path / "probing"))
    for name, baseline in BASELINES.items():
        config = small(baseline=baseline)
        run = train(config, zoo, out_dir=tmp_path / name, progress=False)
        folder = tmp_path / name
        metrics = rf.read_metrics(folder, config)
        assert set(metrics) == keys == set(run.metrics) == set(probing.metrics), name
        assert rf.read_config(folder) == config
        assert not (folder / "probes.safetensors").exists() and is_run_folder(folder)
        trees = name == "statnn_gbt"
        assert (folder / "best.safetensors").is_file() != trees and (folder / "last.safetensors").is_file() != trees
        assert len(metrics["history"]) == (baseline.n_trees if trees else 2)
        best = max(metrics["history"], key=lambda h: h["val_accuracy"])  # first maximum, as train() keeps it
        assert metrics["best_epoch"] == best["epoch"] and metrics["test_accuracy"] == best["test_accuracy"]
        assert metrics["flops_per_model"] > 0 and metrics["predictor_params"] > 0 and metrics["probe_params"] == 0
        assert metrics["train_seconds"] > 0 and metrics["n_train_models"] == 80
        reps = load_file(folder / "test_representations.safetensors")
        assert reps["outputs"].shape == (20, 3) and torch.equal(reps["labels"], zoo.split("test").labels)
        # the reported test metric is what the saved outputs score
        assert float((reps["outputs"].argmax(1) == reps["labels"]).float().mean()) == pytest.approx(
            metrics["test_accuracy"])
    # the explorer lists and loads probing runs only, with a clear word for a baseline's folder
    assert set(find_runs(tmp_path)) == {"probing"}
    with pytest.raises(ValueError, match="statnn baseline run; load_run reads probing runs"):
        load_run(tmp_path / "statnn_mlp")


@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_learn_a_decodable_label(zoo: Zoo, name: str) -> None:
    run = train(small(baseline=BASELINES[name], epochs=20, lr=3e-3, batch_size=16), zoo, progress=False)
    assert run.metrics["best_val_accuracy"] >= 0.75 and run.metrics["test_accuracy"] >= 0.7, run.metrics  # chance 1/3


def test_cnn_zoos_regress_their_label_kendall_tau() -> None:
    zoo = cnn_zoo()
    for baseline in (StatNNConfig(), StatNNConfig(head="mlp"), WeightMLPConfig(augment=True)):
        run = train(small(baseline=baseline, epochs=10, lr=3e-3, batch_size=16), zoo, progress=False)
        assert run.metrics["metric"] == "kendall_tau" and run.metrics["n_train_models"] == 160
        assert math.isfinite(run.metrics["test_kendall_tau"]) and run.metrics["flops_per_model"] > 0
        if isinstance(baseline, StatNNConfig):  # the label is (nearly) one of the statistics; τ 0.6-0.9 measured
            assert run.metrics["test_kendall_tau"] > 0.5, (baseline, run.metrics["test_kendall_tau"])


def test_flops_statnn_far_below_the_weight_mlp(zoo: Zoo) -> None:
    h, d_out = 32, 3
    mlp = lambda d_in: 2 * (d_in * h + h * h + h * d_out)  # Linear FLOPs of the predictor with one hidden block
    flops = {n: train(small(baseline=b, epochs=1), zoo, progress=False).metrics["flops_per_model"]
             for n, b in BASELINES.items()}
    assert flops["mlp"] == flops["mlp_aug"] == mlp(SirenSpec().n_params())  # 1,153 weights in
    assert flops["statnn_mlp"] == mlp(42)  # 6 tensors × 7 statistics in; the statistics count 0 FLOPs
    assert flops["statnn_mlp"] < flops["mlp"] / 10
    assert 0 < flops["statnn_gbt"] <= 100 * 3 * 3  # at most depth 3 comparisons per tree, 3 trees per stage


def test_a_seed_reproduces_an_augmented_run(zoo: Zoo) -> None:
    runs = [train(small(baseline=WeightMLPConfig(augment=True), seed=s), zoo, progress=False) for s in (1, 1, 2)]
    assert runs[0].metrics["history"] == runs[1].metrics["history"] != runs[2].metrics["history"]


def test_a_sweep_runs_baselines_unchanged(zoo: Zoo, tmp_path) -> None:
    variants = {"vanilla": {"probes": VanillaConfig()}, "statnn": {"baseline": StatNNConfig(n_trees=5)},
                "mlp_aug": {"baseline": WeightMLPConfig(augment=True)}}
    sweep = Sweep("baselines", grid(small(n_probes=4, epochs=1), variants, seeds=[0]), tmp_path)
    results = run_sweep(sweep, EngineConfig(), zoo=zoo, progress=False)
    assert list(results["status"]) == ["done"] * 3 and "method.kind" in results
    again = run_sweep(sweep, EngineConfig(), zoo=zoo, progress=False)  # every run finished: read back, not rerun
    assert again["train_seconds"].tolist() == results["train_seconds"].tolist()


def test_configs_round_trip_and_probing_configs_are_unchanged() -> None:
    for baseline in BASELINES.values():
        config = RunConfig(method=baseline)
        assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert baseline_config_from_dict(baseline_config_to_dict(baseline)) == baseline
    assert RunConfig().to_dict()["method"]["kind"] == "probing"
    assert run_id(RunConfig()) != run_id(RunConfig(method=StatNNConfig()))
    with pytest.raises(ValueError, match="unknown baseline 'statn'"):
        baseline_config_from_dict({"kind": "statn"})
    with pytest.raises(ValueError, match="a baseline: pass it as RunConfig"):
        RunConfig(method=ProbingConfig(StatNNConfig()))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="head 'tree'"):
        StatNNConfig(head="tree")  # type: ignore[arg-type]


def test_architectures_with_different_weights_are_refused() -> None:
    g = torch.Generator().manual_seed(0)
    groups = []
    for a, spec in enumerate((CNNSpec.small_cnn_zoo(), CNNSpec(1, (8, 8), 3, 2, 1))):
        params = {k: torch.randn(6, *s, generator=g) for k, s in spec.param_shapes().items()}
        table = pd.DataFrame({"model_id": np.arange(6) + 6 * a, "split": ["train"] * 4 + ["val", "test"],
                              "test_acc": np.linspace(0, 1, 6)})
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
    zoo = MixedZoo(tuple(groups), Task("test_acc", None))
    with pytest.raises(ValueError, match="architecture 1 .* one shape for all models"):
        train(small(baseline=WeightMLPConfig()), zoo, progress=False)


@pytest.mark.parametrize("name", ["mnist-inr-small", "cifar10-gs-cnn-small"])
def test_smoke_on_the_embedded_zoos(name: str) -> None:
    zoo = load_zoo(ZOOS / name)
    for baseline in (StatNNConfig(n_trees=5), WeightMLPConfig(augment=True)):
        run = train(small(baseline=baseline, epochs=1, max_train_models=64), zoo, progress=False)
        assert math.isfinite(run.metrics[f"test_{run.metrics['metric']}"]), (name, baseline)
        assert isinstance(run.model, Baseline) != isinstance(baseline, StatNNConfig)
