"""Batched CNN zoo training: per-model optimizers equal torch.optim's, initialisers and dropout do what they say,
a tiny zoo learns, splits by run, and a killed build resumes; the public recipe's defaults (batch 512, "valid"
padding, epochs over each run's subset, one final row, labels on the whole test set) and path-free provenance."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("on_device", [False, True])  # True: the GPU's way (bytes from a device generator), here
def test_dropout_rates_per_model(on_device: bool) -> None:  # on the CPU
    spec = CNNSpec(1, (64,), 3, 1, 1, "none", image_size=8)
    params = {"layers.0.weight": torch.zeros(3, 64, 1, 3, 3), "layers.0.bias": torch.ones(3, 64),
              "fc.weight": torch.eye(10, 64).expand(3, 10, 64).clone(), "fc.bias": torch.zeros(3, 10)}
    x = torch.zeros(200, 1, 8, 8)
    rate = torch.tensor([0.0, 0.25, 0.5])
    drop = cz.per_model_dropout(spec, rate, torch.Generator().manual_seed(1), on_device)
    out = cnn_forward(spec, params, x, after_activation=drop)  # [3, 200, 10]
    torch.testing.assert_close(out[0], torch.ones(200, 10).mul(torch.eye(10, 64).sum(1)))  # rate 0: identity
    for m in (1, 2):
        assert out[m].mean().item() == pytest.approx(1.0, abs=0.05)  # inverted dropout keeps the mean
    assert out[2].std() > out[1].std() > 0


@pytest.mark.parametrize("on_device", [False, True])
def test_random_bytes_are_seeded_and_uniform(on_device: bool) -> None:
    """Dropout's bytes: the same seed draws the same bytes, another seed others, and every byte value is as likely
    (the device's way seeds its generator once from the run's: what a GPU does, run here on the CPU)."""
    cpu = torch.device("cpu")
    draws = [cz.random_bytes(cpu, torch.Generator().manual_seed(s), on_device)(torch.Size((64, 1024)))
             for s in (0, 0, 1)]
    assert draws[0].dtype == torch.uint8 and draws[0].shape == (64, 1024)
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    counts = torch.bincount(draws[0].flatten().long(), minlength=256).float()  # 256 bins, 256 expected in each
    assert counts.min() > 256 - 5 * 16 and counts.max() < 256 + 5 * 16  # within 5 binomial std (16) of uniform


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
    recipe = CNNZooRecipe(steps=60, checkpoints=(1,), batch_size=32, n_eval=200)
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
    groups = sample_hparams(10, 0).groupby(["activation", "train_fraction"]).size()  # a chunk per arch and fraction
    n_chunks = sum(math.ceil(n / 4) for n in groups)
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


def test_recipe_defaults_follow_the_public_small_cnn_zoo() -> None:
    """train_network.py: batch 512, Keras "valid" convolutions (32 → 15 → 7 → 3), one final checkpoint, labels on
    every test image; here 8 epochs (the public zoo trains 86)."""
    r = CNNZooRecipe()
    assert (r.batch_size, r.epochs, r.padding, r.checkpoint_epochs, r.n_eval, r.steps) == (512, 8.0, 0, (), None, None)
    assert CNNSpec.small_cnn_zoo(1, "relu", r.padding).feature_sizes() == [15, 7, 3]
    assert CNNSpec.small_cnn_zoo(1, "relu", 1).feature_sizes() == [16, 8, 4]
    assert CNNSpec.small_cnn_zoo(1, "relu", r.padding).n_params() == 4970  # padding changes no parameter count
    # a quarter of CIFAR-10's 50,000 train images for 8 epochs: 12,500 · 8 / 512 = 195.3 → 195 steps, one checkpoint
    assert r.schedule(12_500) == {195: 8.0}
    assert CNNZooRecipe(epochs=4).schedule(50_000) == {391: 4.0}  # 390.6 → 391
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        CNNZooRecipe(epochs=2, checkpoint_epochs=(3.0,))
    with pytest.raises(ValueError, match="need `steps`"):
        CNNZooRecipe(checkpoints=(5,))


@pytest.fixture(scope="module")
def small(fake_images) -> ImageDataset:
    """400 train images (subsets of 40, 100, 200, 400) and 130 test images: sizes no sample would have."""
    return fake_images.stripes(400, 130)


@pytest.fixture(scope="module")
def epoch_zoo(small, tmp_path_factory) -> tuple[MixedZoo, CNNZooRecipe, Path]:
    recipe = CNNZooRecipe(epochs=2.0, batch_size=50, checkpoint_epochs=(0.5,))
    out = tmp_path_factory.mktemp("epochs") / "zoo"
    return cz.build_cnn_zoo(small, out, n_runs=8, recipe=recipe, chunk_size=3, device="cpu"), recipe, out


def test_step_count_is_epochs_times_the_runs_subset_over_the_batch(epoch_zoo) -> None:
    zoo, recipe, _ = epoch_zoo
    t = zoo.table
    assert len(t) == 2 * 8 and set(t["epoch"]) == {0.5, 2.0}  # the final row and one at checkpoint_epochs
    assert set(t["train_fraction"]) == {0.1, 0.25, 0.5, 1.0}
    n_subset = np.round(t["train_fraction"] * 400)
    expected = np.maximum(1, np.round(t["epoch"] * n_subset / recipe.batch_size))  # e.g. 2 · 200 / 50 = 8 steps
    np.testing.assert_array_equal(t["step"], expected)
    assert t[t.train_fraction == 1.0]["step"].max() == 16 and t[t.train_fraction == 0.1]["step"].max() == 2
    assert t.groupby("run").size().eq(2).all()


def test_default_zoo_is_valid_padding_and_labelled_on_the_whole_test_set(epoch_zoo, small) -> None:
    zoo, _, _ = epoch_zoo
    assert all(g.spec.padding == (0, 0, 0) for g in zoo.groups)
    x, y = images_to_inputs(small.test_images), torch.as_tensor(small.test_labels)
    for g in zoo.groups:
        acc = (cnn_forward(g.spec, g.params, x).argmax(-1) == y).float().mean(1)  # [M] on all 130 test images
        np.testing.assert_allclose(acc.numpy(), g.table["test_acc"].to_numpy(), atol=1e-6)
    t = zoo.table
    own = np.round(t["train_fraction"] * 400)  # train accuracy on the run's whole subset: a multiple of 1/n
    np.testing.assert_allclose(t["train_acc"] * own, np.round(t["train_acc"] * own), atol=1e-4)
    np.testing.assert_allclose(t["gap"], t["train_acc"] - t["test_acc"])


def test_zoo_json_names_its_data_without_machine_paths(epoch_zoo, small) -> None:
    _, recipe, out = epoch_zoo
    text = (out / "zoo.json").read_text()
    meta = json.loads(text)

    def strings(v):  # every string value in the json
        if isinstance(v, dict):
            return [s for x in v.values() for s in strings(x)]
        if isinstance(v, list):
            return [s for x in v for s in strings(x)]
        return [v] if isinstance(v, str) else []

    assert "/work" not in text and not [s for s in strings(meta) if s.startswith("/") or "/home" in s]
    data = meta["build"]["data"]
    assert data["name"] == "stripes" and data["n_train"] == 400 and data["n_test"] == 130
    h = hashlib.sha256()
    for a in (small.train_images, small.train_labels, small.test_images, small.test_labels):
        h.update(f"{a.dtype.str}{a.shape};".encode() + np.ascontiguousarray(a).tobytes())
    assert data["sha256"] == h.hexdigest()
    assert meta["build"]["recipe"]["padding"] == 0 and meta["build"]["recipe"]["batch_size"] == recipe.batch_size
    assert all(a["padding"] == [0, 0, 0] for a in meta["archs"])


def test_chunks_share_a_train_fraction_and_padding_1_is_an_option(small, tmp_path, monkeypatch) -> None:
    seen, real = [], cz.train_cnns
    monkeypatch.setattr(cz, "train_cnns", lambda spec, hp, *a, **k: seen.append((spec, hp)) or real(spec, hp, *a, **k))
    zoo = cz.build_cnn_zoo(small, tmp_path / "p1", n_runs=8, recipe=CNNZooRecipe(epochs=1.0, batch_size=64, padding=1),
                           chunk_size=8, device="cpu")
    assert all(hp["train_fraction"].nunique() == 1 for _, hp in seen) and len(seen) >= 4  # 4 fractions, 2 activations
    assert all(spec.padding == (1, 1, 1) for spec, _ in seen) and all(g.spec.padding == (1, 1, 1) for g in zoo.groups)
    assert len(zoo) == 8 and zoo.table["epoch"].eq(1.0).all()  # final checkpoint only
    mixed = sample_hparams(8, 0).assign(train_fraction=[0.1, 1.0] * 4)
    x = images_to_inputs(small.train_images)
    with pytest.raises(ValueError, match="share checkpoint steps"):
        real(CNNSpec.small_cnn_zoo(1, "relu", 0), mixed, x, torch.as_tensor(small.train_labels), x[:10],
             torch.as_tensor(small.train_labels[:10]), CNNZooRecipe(epochs=1.0, batch_size=64),
             torch.Generator().manual_seed(0), torch.device("cpu"))


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
    zoo = cz.build_cnn_zoo(stripes, tmp_path / "wild", n_runs=9, recipe=CNNZooRecipe(steps=5, batch_size=32,
                           n_eval=50), chunk_size=4, device="cpu", architectures=archs)
    assert set(zoo.specs) <= set(archs) and len(zoo) == 9
    back = load_zoo(tmp_path / "wild")
    assert back.specs == zoo.specs and any(r >= 0 for s in back.specs for r in s.residual)
    with pytest.raises(ValueError, match="does not fit"):
        cz.build_cnn_zoo(stripes, tmp_path / "bad", n_runs=2, architectures=[CNNSpec.small_cnn_zoo(3)], device="cpu")


def test_epoch_streams_cover_each_models_subset_once_per_epoch() -> None:
    """Every model sees each image of its own subset exactly once per epoch, whatever the batch size (here one that
    does not divide the subsets, and one larger than a subset), and never an image outside it."""
    from probegen_nb.zoos.cnn import EpochStreams

    sizes = torch.tensor([10, 7, 3])
    subsets = torch.tensor([list(range(100, 110)), [*range(200, 207), -1, -1, -1], [300, 301, 302, *[-1] * 7]])
    for b in (4, 11):
        streams = EpochStreams(subsets, sizes, torch.Generator().manual_seed(0))
        seen = torch.cat([streams.next(b) for _ in range(70 // b + 1)], dim=1)  # [3, ≥ 70]: 7, 10 and 23 epochs
        for m, n in enumerate(sizes.tolist()):
            own = subsets[m, :n]
            for e in range(70 // n):
                epoch = seen[m, e * n:(e + 1) * n]
                assert sorted(epoch.tolist()) == sorted(own.tolist()), f"model {m}, epoch {e}, batch {b}"
        assert not (seen == -1).any()
    # a negative control: the epochs are shuffled afresh, not one order repeated
    streams = EpochStreams(subsets, sizes, torch.Generator().manual_seed(0))
    first, second = streams.next(10)[0], streams.next(10)[0]
    assert first.tolist() != second.tolist()
