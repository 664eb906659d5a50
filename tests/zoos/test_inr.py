"""Batched INR fitting equals independent per-model training; builds are balanced, resumable and deterministic."""

import json
import math
import warnings
from dataclasses import replace

import pytest
import torch

import probegen_nb.zoos.inr as inr
from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.siren import SirenSpec, pixel_grid, reconstruct
from probegen_nb.core.data import ImageDataset
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.zoos.inr import (
    PUBLIC_RECIPE,
    fit_inrs,
    init_siren_params,
    plan_from_splits_json,
    plan_inr_zoo,
    psnr_from_mse,
)


@pytest.fixture(scope="module")
def digits(fake_images) -> ImageDataset:
    """Blobs whose position depends on the class (fit quickly, like digits)."""
    return fake_images.blobs(200, 60)


def test_init_follows_recipe() -> None:
    spec = SirenSpec()
    p = init_siren_params(spec, 2000, torch.Generator().manual_seed(0))
    for i, fan_in in enumerate((2, 32)):
        bound = math.sqrt(6 / fan_in) / 30
        w = p[f"seq.{i}.weight"]
        assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
        assert p[f"seq.{i}.bias"].abs().max() == 0
    w_last = p["seq.2.weight"]
    assert w_last.abs().max() <= 1 / math.sqrt(32) and w_last.abs().max() > 0.98 / math.sqrt(32)
    assert p["seq.2.bias"].abs().max() > 0  # nn.Linear's default bias init, not zero


def test_batched_fit_equals_independent_adam(digits: ImageDataset) -> None:
    """Per-model torch.optim.Adam on an nn.Module, started from the same init, gives the same weights."""
    recipe = replace(PUBLIC_RECIPE, steps=25, target_psnr=float("inf"))
    gen_seed = 3
    res = fit_inrs(digits.train_images[:3], recipe=recipe, generator=torch.Generator().manual_seed(gen_seed),
                   device="cpu")
    init = init_siren_params(SirenSpec(), 3, torch.Generator().manual_seed(gen_seed))
    coords = pixel_grid(28, 28)
    for i in range(3):
        module = SirenSpec().build_module()
        module.load_state_dict({k: v[i] for k, v in init.items()})
        opt = torch.optim.Adam(module.parameters(), lr=recipe.lr)
        target = torch.as_tensor(digits.train_images[i]).float().reshape(-1, 1) / 255
        for _ in range(recipe.steps):
            opt.zero_grad()
            ((module(coords) - target) ** 2).mean().backward()
            opt.step()
        for k, v in module.state_dict().items():
            torch.testing.assert_close(res.params[k][i], v, atol=2e-5, rtol=1e-4)
        with torch.no_grad():
            mse = ((module(coords) - target) ** 2).mean()
        assert float(res.psnr[i]) == pytest.approx(float(psnr_from_mse(mse)), abs=1e-3)


def test_fit_improves_and_early_stop_keeps_the_target_weights(digits: ImageDataset) -> None:
    images = digits.train_images[:6]
    short = fit_inrs(images, recipe=replace(PUBLIC_RECIPE, steps=5, target_psnr=float("inf")), device="cpu")
    longer = fit_inrs(images, recipe=replace(PUBLIC_RECIPE, steps=120, target_psnr=float("inf")), device="cpu")
    assert (longer.psnr > short.psnr + 3).all()
    target = float(longer.psnr.min()) - 1.0  # every INR passes this before its last step
    stopped = fit_inrs(images, recipe=replace(PUBLIC_RECIPE, steps=120, target_psnr=target), device="cpu")
    assert (stopped.steps < 120).all()
    assert (stopped.psnr >= target).all() and (stopped.psnr < target + 1.0).all()
    # the kept weights really reconstruct at the reported PSNR
    coords = pixel_grid(28, 28)
    for i in range(len(images)):
        module = SirenSpec().build_module()
        module.load_state_dict({k: v[i] for k, v in stopped.params.items()})
        with torch.no_grad():
            mse = ((module(coords) - torch.as_tensor(images[i]).float().reshape(-1, 1) / 255) ** 2).mean()
        assert float(psnr_from_mse(mse)) == pytest.approx(float(stopped.psnr[i]), abs=1e-3)


def test_a_read_only_image_array_fits_without_a_warning(digits: ImageDataset) -> None:
    """Data sets load memory-mapped (read-only): fitting one must not make torch warn about non-writable arrays,
    and must leave the array as it was."""
    images = digits.train_images[:2].copy()
    images.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_inrs(images, recipe=replace(PUBLIC_RECIPE, steps=3), device="cpu")
    assert res.psnr.shape == (2,) and not images.flags.writeable
    assert (images == digits.train_images[:2]).all()


def test_plan_is_balanced_and_disjoint(digits: ImageDataset) -> None:
    plan = plan_inr_zoo(digits, n_train=50, n_val=20, n_test=30, seed=1)
    assert plan["split"].value_counts().to_dict() == {"train": 50, "val": 20, "test": 30}
    assert list(plan["model_id"]) == list(range(100))
    for split, n in (("train", 50), ("val", 20), ("test", 30)):
        counts = plan[plan.split == split]["label"].value_counts()
        assert counts.max() - counts.min() <= 1 and counts.sum() == n
    from_train = plan[plan.image_split == "train"]
    assert set(from_train["split"]) == {"train", "val"} and not from_train["image_index"].duplicated().any()
    assert set(plan[plan.split == "test"]["image_split"]) == {"test"}
    labels_ok = [digits.labels(s)[i] == lab for s, i, lab in zip(plan.image_split, plan.image_index, plan.label)]
    assert all(labels_ok)


def test_plan_from_public_splits_json(tmp_path) -> None:
    splits = {"train": {"path": ["fmnist_inrs/train/model_5.pth", "fmnist_inrs/train/model_9.pth"], "label": [2, 9]},
              "val": {"path": ["fmnist_inrs/train/model_1.pth"], "label": [0]},
              "test": {"path": ["fmnist_inrs/test/model_7.pth"], "label": [9]}}
    f = tmp_path / "splits.json"
    f.write_text(json.dumps(splits))
    plan = plan_from_splits_json(f)
    assert plan[["split", "label", "image_split", "image_index"]].values.tolist() == [
        ["train", 2, "train", 5], ["train", 9, "train", 9], ["val", 0, "train", 1], ["test", 9, "test", 7]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": splits["train"]}))
    with pytest.raises(ValueError, match="unknown split 'training'"):
        plan_from_splits_json(bad)


def test_build_resumes_after_a_crash_without_loss_or_duplication(digits: ImageDataset, tmp_path, monkeypatch) -> None:
    plan = plan_inr_zoo(digits, n_train=10, n_val=5, n_test=5, seed=0)
    recipe = replace(PUBLIC_RECIPE, steps=20)
    whole = inr.build_inr_zoo(plan, digits, tmp_path / "whole", recipe=recipe, chunk_size=6, device="cpu")

    real_fit, calls = inr.fit_inrs, []

    def crashing_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(inr, "fit_inrs", crashing_fit)
    with pytest.raises(KeyboardInterrupt):
        inr.build_inr_zoo(plan, digits, tmp_path / "resumed", recipe=recipe, chunk_size=6, device="cpu")
    assert not (tmp_path / "resumed").exists()
    assert len(list((tmp_path / ".resumed.partial").glob("chunk_*.safetensors"))) == 2
    calls.clear()
    inr.build_inr_zoo(plan, digits, tmp_path / "resumed", recipe=recipe, chunk_size=6, device="cpu")
    assert len(calls) == 2  # only the two missing chunks of four were fitted
    assert not (tmp_path / ".resumed.partial").exists()
    loaded = load_zoo(tmp_path / "resumed")
    assert list(loaded.table["model_id"]) == list(range(20))
    for k in whole.params:
        assert torch.equal(loaded.params[k], whole.params[k])
    # a partial build of another plan is not silently mixed in
    (tmp_path / ".other.partial").mkdir()
    (tmp_path / ".other.partial" / "job.json").write_text('{"plan": {}}')
    with pytest.raises(ValueError, match="different plan"):
        inr.build_inr_zoo(plan, digits, tmp_path / "other", recipe=recipe, chunk_size=6, device="cpu")


def test_reconstruct_matches_the_fitted_image(digits: ImageDataset, tmp_path) -> None:
    plan = plan_inr_zoo(digits, n_train=10, n_val=0, n_test=0, seed=0)
    zoo = inr.build_inr_zoo(plan, digits, tmp_path / "z", recipe=replace(PUBLIC_RECIPE, steps=150), device="cpu")
    rec = reconstruct(zoo.spec, zoo.subset([0, 1]).params)
    for j in range(2):
        original = digits.train_images[zoo.table["image_index"][j]] / 255
        other = digits.train_images[zoo.table["image_index"][1 - j]] / 255
        mse = float(((rec[j] - original) ** 2).mean())
        # clipping to [0, 1] can only bring the reconstruction closer to the image
        assert 10 * math.log10(1 / mse) >= zoo.table["psnr"][j] - 1e-3
        assert mse < ((rec[j] - other) ** 2).mean()


def test_reconstruct_refuses_a_non_inr_zoo_with_a_clear_error() -> None:
    """User input is checked with an exception (an `assert` vanishes under `python -O`)."""
    spec = CNNSpec.small_cnn_zoo()
    params = {k: torch.zeros(2, *s) for k, s in spec.param_shapes().items()}
    with pytest.raises(TypeError, match="SIREN INRs; got a CNNSpec zoo"):
        reconstruct(spec, params)


def test_compiled_fit_equals_the_eager_fit(digits: ImageDataset) -> None:
    """Long builds fit through torch.compile. After 50 steps the weights agree to float32 rounding (measured 3e-8);
    sine networks with w0 = 30 amplify rounding chaotically, so over a full 1,000-step fit the test asks for the
    same reconstruction quality instead: PSNR within 0.05 dB per INR (measured 0.01 dB). Negative control: one Adam
    step more is far outside the first tolerance, so it can fail."""
    images = digits.train_images[:6]
    short = replace(PUBLIC_RECIPE, steps=50)
    fit = lambda recipe, compile: fit_inrs(images, recipe=recipe, generator=torch.Generator().manual_seed(0),
                                           compile=compile)
    eager, compiled, longer = fit(short, False), fit(short, True), fit(replace(short, steps=51), False)
    diff = lambda a, b: max(float((a.params[k] - b.params[k]).abs().max()) for k in a.params)
    assert compiled.compiled and not eager.compiled  # no silent fallback to eager (that would compare eager twice)
    assert diff(eager, compiled) < 1e-6
    assert diff(eager, longer) > 1e-4
    full_eager, full_compiled = fit(PUBLIC_RECIPE, False), fit(PUBLIC_RECIPE, True)
    assert (full_eager.psnr - full_compiled.psnr).abs().max() < 0.05
    assert torch.equal(full_eager.steps, full_compiled.steps)  # the same INRs stop early at the same step


def test_long_builds_compile_and_short_ones_stay_eager(digits: ImageDataset, tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(inr, "fit_inrs", lambda *a, **kw: calls.append(kw["compile"]) or fit_inrs(*a, **kw))
    plan = plan_inr_zoo(digits, 10, 0, 0)
    recipe = replace(PUBLIC_RECIPE, steps=2)
    inr.build_inr_zoo(plan, digits, tmp_path / "short", recipe=recipe, chunk_size=10)
    monkeypatch.setattr(inr, "COMPILE_MIN_INR_STEPS", 20)  # this plan is now a "long" build
    zoo = inr.build_inr_zoo(plan, digits, tmp_path / "long", recipe=recipe, chunk_size=10)
    assert calls == [False, True] and zoo.info["compiled_fitting"] is True


def test_the_embedded_zoo_build_compiles_and_small_builds_do_not() -> None:
    cpu = torch.device("cpu")
    assert inr.compiles_by_default(5_500, PUBLIC_RECIPE, cpu)  # `make zoos`: 5.5M INR-steps, about 13 min eager
    assert not inr.compiles_by_default(1_000, PUBLIC_RECIPE, cpu)  # 1M INR-steps: a 15 s compile would be > 5 %
    assert not inr.compiles_by_default(100_000, PUBLIC_RECIPE, torch.device("cuda"))  # GPUs: unmeasured, eager
