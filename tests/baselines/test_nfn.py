"""The NFN baseline (nfn's NP/HNP layers): invariant to every model's hidden-neuron permutations (and a version with
the pooling replaced by a flatten fails that check), trained by `train()` into a decodable label, FLOPs counted."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from probegen_nb.baselines.base import Baseline
from probegen_nb.baselines.nfn import NFN, NFNConfig
from probegen_nb.baselines.registry import baseline_config_from_dict, baseline_config_to_dict
from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.arch.symmetry import permute_hidden, random_hidden_permutations
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.train import train

pytest.importorskip("nfn", reason="nfn is installed by `make setup` (pip install --no-deps nfn==0.1.2)")

WILD = CNNSpec(1, (8, 8, 8), 3, 1, 1, ("relu", "tanh", "gelu"), (-1, -1, 0), image_size=8)  # a residual link 0 → 2
SPECS = {"siren": SirenSpec(), "cnn": CNNSpec.small_cnn_zoo(), "residual": WILD}


def random_zoo(spec, m: int, seed: int = 0) -> Zoo:
    g = torch.Generator().manual_seed(seed)
    params = {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
    table = pd.DataFrame({"model_id": range(m), "split": ["train"] * m, "label": np.arange(m) % 2})
    return Zoo(spec, params, table, Task("label", 2))


def small(**kw) -> RunConfig:
    return RunConfig().override({"epochs": 2, "hidden": 32, "n_hidden": 1, "device": "cpu", **kw})


@pytest.fixture(scope="module")
def zoo(class_shift_zoo) -> Zoo:
    return class_shift_zoo


class FlattenAll(nn.Module):
    """WeightSpaceFeatures → [B, C·entries]: every entry in place, the order of the hidden neurons kept."""

    def forward(self, wsfeat) -> torch.Tensor:
        return torch.cat([t.flatten(1) for t in (*wsfeat.weights, *wsfeat.biases)], dim=1)


@pytest.mark.parametrize("mode", ["np", "hnp"])
@pytest.mark.parametrize("name", list(SPECS))
def test_nfn_is_invariant_to_hidden_permutations_and_a_flattening_one_is_not(name: str, mode: str) -> None:
    spec, m = SPECS[name], 6
    zoo = random_zoo(spec, m)
    model = NFNConfig(mode=mode).build(zoo, 2, 32, 1, torch.Generator().manual_seed(0)).eval()
    permuted = permute_hidden(spec, zoo.params, random_hidden_permutations(spec, m, torch.Generator().manual_seed(1)))
    with torch.no_grad():
        out, out_permuted = model(zoo.params), model(permuted)
        assert out.shape == (m, 2) and model.represent(zoo.params).shape == (m, model.rep_dim)
        assert (out_permuted - out).abs().max() < 1e-5
        # negative control: the invariant pooling replaced by a flatten of every entry + Linear
        n_entries = sum(math.prod(s) for s in spec.param_shapes().values())
        model.pool = nn.Sequential(FlattenAll(), nn.Linear(n_entries * NFNConfig().hidden_channels[-1], model.rep_dim))
        rep = model.represent(zoo.params)  # [B, R]
        change = (model.represent(permuted) - rep).abs().max() / rep.abs().max()
        assert change > 1e-3, change  # relative change of the representation; the invariant one's is ~1e-7


def test_nfn_normalises_per_tensor_from_the_train_split() -> None:
    zoo = random_zoo(SirenSpec(), 10)
    model = NFNConfig().build(zoo, 2, 32, 1, torch.Generator())
    assert isinstance(model, NFN) and not model.fixed_representation
    feats = model.features(zoo.params)
    assert feats.weights[0].shape == (10, 1, 32, 2) and feats.biases[2].shape == (10, 1, 1)
    for w, b in feats:  # every tensor standardised over the train models' entries
        for x in (w, b):
            assert abs(float(x.mean())) < 1e-5 and float(x.std()) == pytest.approx(1.0, abs=1e-4)
    cnn = NFNConfig().build(random_zoo(CNNSpec.small_cnn_zoo(), 4), 2, 32, 1, torch.Generator())
    conv = cnn.features(random_zoo(CNNSpec.small_cnn_zoo(), 4).params)
    assert conv.weights[1].shape == (4, 1, 16, 16, 3, 3) and conv.weights[3].shape == (4, 1, 10, 16)


def test_nfn_config_round_trips_and_refuses_bad_values() -> None:
    for config in (NFNConfig(), NFNConfig(mode="np", hidden_channels=(8, 4))):
        run = RunConfig(method=config)
        assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict()))) == run
        assert baseline_config_from_dict(baseline_config_to_dict(config)) == config
    with pytest.raises(ValueError, match="mode 'nphnp'"):
        NFNConfig(mode="nphnp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"positive entries, got \(16, 0\)"):
        NFNConfig(hidden_channels=(16, 0))


@pytest.mark.parametrize("mode", ["np", "hnp"])
def test_nfn_learns_a_decodable_label_through_train(zoo: Zoo, mode: str) -> None:
    run = train(small(baseline=NFNConfig(mode=mode), epochs=15, lr=3e-3, batch_size=16), zoo, progress=False)
    assert isinstance(run.model, Baseline) and run.metrics["flops_per_model"] > 0
    assert run.metrics["best_val_accuracy"] >= 0.75 and run.metrics["test_accuracy"] >= 0.7, run.metrics  # chance 1/3


def test_nfn_regresses_on_a_cnn_zoo() -> None:
    g = torch.Generator().manual_seed(1)
    spec, m = CNNSpec.small_cnn_zoo(), 48
    params = {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
    table = pd.DataFrame({"model_id": range(m), "split": (["train"] * 4 + ["val", "test"]) * (m // 6),
                          "test_acc": params["fc.bias"].mean(1).numpy()})
    run = train(small(baseline=NFNConfig(), epochs=2), Zoo(spec, params, table, Task("test_acc", None)),
                progress=False)
    assert run.metrics["metric"] == "kendall_tau" and math.isfinite(run.metrics["test_kendall_tau"])
    assert run.metrics["flops_per_model"] > 0
