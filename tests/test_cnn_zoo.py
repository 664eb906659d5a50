"""Batched CNN zoo training: per-model optimizers equal torch.optim's, initialisers and dropout do what they say,
a tiny zoo learns, splits by run, and a killed build resumes."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import probegen_nb.zoos.cnn as cz
from probegen_nb.core.arch.cnn import CNNSpec, cnn_forward
from probegen_nb.core.data import ImageDataset
from probegen_nb.core.zoo import MixedZoo
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.zoos.cnn import CNNZooRecipe, PerModelOptimizer, images_to_inputs, init_cnn_params, sample_hparams


@pytest.mark.parametrize("kind,reference", [
    ("adam", lambda p, lr: torch.optim.Adam(p, lr=lr, eps=1e-7)),
    ("sgd", lambda p, lr: torch.optim.SGD(p, lr=lr)),
    ("rmsprop", lambda p, lr: torch.optim.RMSprop(p, lr=lr, alpha=0.9, eps=1e-7)),
])
def test_per_model_optimizer_matches_torch_optim(kind, reference) -> None:
    g = torch.Generator().manual_seed(0)
    kinds = np.array(["adam", "sgd", "rmsprop", kind])
    lr = torch.tensor([1e-2, 5e-2, 3e-3, 2e-2])
    w = torch.randn(4, 3, 5, generator=g)
    targets = torch.randn(4, 3, 5, generator=g)
    batched = w.clone()
    opt = PerModelOptimizer([batched], kinds, lr)
    for _ in range(5):
        opt.step((2 * (batched - targets),))  # gradient of ||w - target||²
    p = torch.nn.Parameter(w[3].clone())
    ref = reference([p], 2e-2)
    for _ in range(5):
        ref.zero_grad()
        ((p - targets[3]) ** 2).sum().backward()
        ref.step()
    torch.testing.assert_close(batched[3], p.detach(), atol=1e-5, rtol=1e-5)


def test_initialisers() -> None:
    spec = CNNSpec.small_cnn_zoo()
    n = 40
    hp = pd.DataFrame({"init": ["he_normal"] * 10 + ["orthogonal"] * 10 + ["normal"] * 10 + ["glorot_normal"] * 10,
                       "init_std": [0.3] * n, "bias_init": ["zeros"] * 20 + ["ones"] * 20})
    p = init_cnn_params(spec, hp, torch.Generator().manual_seed(0))
    w = p["layers.1.weight"]  # [M, 16, 16, 3, 3], fan_in 144
    assert w[:10].std().item() == pytest.approx(math.sqrt(2 / 144), rel=0.1)
    rows = w[10:20].flatten(2)  # orthogonal: orthonormal rows
    torch.testing.assert_close(rows @ rows.transpose(1, 2), torch.eye(16).expand(10, 16, 16), atol=1e-5, rtol=0)
    assert w[20:30].std().item() == pytest.approx(0.3, rel=0.1)
    assert w[30:].std().item() == pytest.approx(math.sqrt(2 / (144 + 144)), rel=0.1)
    assert p["layers.0.bias"][:20].abs().max() == 0 and (p["layers.0.bias"][20:] == 1).all()


def test_dropout_rates_per_model() -> None:
    spec = CNNSpec(1, (64,), 3, 1, 1, "none", image_size=8)
    params = {"layers.0.weight": torch.zeros(3, 64, 1, 3, 3), "layers.0.bias": torch.ones(3, 64),
              "fc.weight": torch.eye(10, 64).expand(3, 10, 64).clone(), "fc.bias": torch.zeros(3, 10)}
    x = torch.zeros(200, 1, 8, 8)
    rate = torch.tensor([0.0, 0.25, 0.5])
    drop = cz.per_model_dropout(spec, rate, torch.Generator().manual_seed(1))
    out = cnn_forward(spec, params, x, after_activation=drop)  # [3, 200, 10]
    torch.testing.assert_close(out[0], torch.ones(200, 10).mul(torch.eye(10, 64).sum(1)))  # rate 0: identity
    for m in (1, 2):
        assert out[m].mean().item() == pytest.approx(1.0, abs=0.05)  # inverted dropout keeps the mean
    assert out[2].std() > out[1].std() > 0


def test_images_to_inputs() -> None:
    x = images_to_inputs(np.full((2, 28, 28), 255, dtype=np.uint8))
    assert x.shape == (2, 1, 32, 32) and x[:, :, 2:30, 2:30].eq(1).all() and x[:, :, :2].eq(-1).all()
    rgb = images_to_inputs(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    assert rgb.shape == (1, 3, 32, 32) and rgb.eq(-1).all()


@pytest.fixture(scope="module")
def stripes(fake_images) -> ImageDataset:
    """10 classes: a bright horizontal bar at a class-dependent height, plus noise."""
    return fake_images.stripes(600, 200)


def test_tiny_zoo_learns_splits_by_run_and_resumes(stripes, tmp_path, monkeypatch) -> None:
    recipe = CNNZooRecipe(steps=60, checkpoints=(1, 60), n_eval=200)
    real, calls, crash = cz.train_cnns, [], [True]

    def crashing(*a, **k):
        calls.append(1)
        if len(calls) == 2 and crash and crash.pop():
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cz, "train_cnns", crashing)
    with pytest.raises(KeyboardInterrupt):
        cz.build_cnn_zoo(stripes, tmp_path / "z", n_runs=10, recipe=recipe, chunk_size=4, device="cpu")
    calls.clear()
    zoo = cz.build_cnn_zoo(stripes, tmp_path / "z", n_runs=10, recipe=recipe, chunk_size=4, device="cpu")
    n_chunks = sum(math.ceil(n / 4) for n in sample_hparams(10, 0)["activation"].value_counts())
    assert len(calls) == n_chunks - 1  # the chunk finished before the crash is not trained again
    assert isinstance(zoo, MixedZoo) and isinstance(load_zoo(tmp_path / "z"), MixedZoo)
    t = zoo.table
    assert len(t) == 20 and set(t["step"]) == {1, 60}
    assert t.groupby("run")["split"].nunique().max() == 1  # both checkpoints of a run are in one split
    assert ((t["test_acc"] >= 0) & (t["test_acc"] <= 1)).all()
    np.testing.assert_allclose(t["gap"], t["train_acc"] - t["test_acc"])
    final, first = t[t.step == 60], t[t.step == 1]
    assert final["test_acc"].max() >= 0.5 > first["test_acc"].median()  # chance is 0.1
    assert {g.spec.activation[0] for g in zoo.groups} == set(t["activation"])


def test_hparams_cover_the_recipe() -> None:
    hp = sample_hparams(2000, 0)
    assert set(hp["optimizer"]) == {"adam", "sgd", "rmsprop"} and set(hp["activation"]) == {"relu", "tanh"}
    assert set(hp["train_fraction"]) == {0.1, 0.25, 0.5, 1.0}
    assert 5e-4 <= hp["lr"].min() and hp["lr"].max() <= 5e-2
    assert abs(np.log(hp["lr"]).mean() - np.log(np.sqrt(5e-4 * 5e-2))) < 0.1  # log-uniform


def test_wild_park_sampler_exhausts_a_small_space_and_refuses_more() -> None:
    """2 activations over depth 2 (4 architectures) and depth 3 (8, times a link from layer 2 to 0 or none): 20 in
    all. Asking for all 20 returns them all; asking for 21 must refuse at once, not loop forever (a subprocess with a
    time limit, so a regression fails instead of hanging the suite)."""
    space = {"depths": (2, 3), "channels": (4,), "kernels": (3,), "activations": ("relu", "tanh"), "residual_prob": 0.5}
    assert cz.wild_park_space_size(**space) == 20
    specs = cz.sample_wild_park_specs(20, seed=0, in_channels=1, **space)
    assert len(set(specs)) == 20
    code = ("import probegen_nb.zoos.cnn as cz\n"
            f"cz.sample_wild_park_specs(21, seed=0, in_channels=1, **{space!r})")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "allow only 20" in res.stderr, res.stderr[-500:]


def test_wild_park_specs_are_distinct_and_valid() -> None:
    specs = cz.sample_wild_park_specs(40, seed=3, in_channels=3)
    assert len(set(specs)) == 40
    assert {s.n_layers for s in specs} <= {2, 3, 4, 5} and all(set(s.stride) == {1} for s in specs)
    assert all(s.padding == tuple(k // 2 for k in s.kernel_size) for s in specs)
    assert any(r >= 0 for s in specs for r in s.residual)  # some residual links
    assert len({a for s in specs for a in s.activation}) >= 5


def test_heterogeneous_zoo_one_group_per_architecture(stripes, tmp_path) -> None:
    archs = cz.sample_wild_park_specs(3, seed=0, in_channels=1, channels=(4, 8), kernels=(3,), residual_prob=1.0)
    zoo = cz.build_cnn_zoo(stripes, tmp_path / "wild", n_runs=9, recipe=CNNZooRecipe(steps=5, checkpoints=(5,),
                           n_eval=50), chunk_size=4, device="cpu", architectures=archs)
    assert set(zoo.specs) <= set(archs) and len(zoo) == 9
    back = load_zoo(tmp_path / "wild")
    assert back.specs == zoo.specs and any(r >= 0 for s in back.specs for r in s.residual)
    with pytest.raises(ValueError, match="does not fit"):
        cz.build_cnn_zoo(stripes, tmp_path / "bad", n_runs=2, architectures=[CNNSpec.small_cnn_zoo(3)], device="cpu")
