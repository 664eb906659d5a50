"""Public-size INR zoos: one INR per image (70,000), split 55,000 / 5,000 / 10,000 by the documented positional rule
for MNIST and by the public split file for Fashion-MNIST; `--dry-run` prints the plan and a measured estimate without
fitting; a 2,000-image preview of the full build is built on the CPU."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from probegen_nb.core.data import load_dataset
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.zoos.inr import (
    PUBLIC_RECIPE,
    build_inr_zoo,
    describe_plan,
    gather_images,
    plan_all_images,
    plan_one_per_image,
)

from paths import SHARED

SPLITS_JSON = Path(os.environ.get("PROBEGEN_SHARED", SHARED)) / \
    "data" / "splits" / "fmnist_inr_splits.json"


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probegen_nb.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_mnist_one_inr_per_image_is_55k_5k_10k_by_position(mnist) -> None:
    plan = plan_all_images(mnist)
    counts = describe_plan(plan, mnist.classes)
    assert counts["total"].to_dict() == {"train": 55_000, "val": 5_000, "test": 10_000, "total": 70_000}
    # every image once; val is official train images 55,000-59,999, in order
    for split, image_split, first, last in (("train", "train", 0, 54_999), ("val", "train", 55_000, 59_999),
                                            ("test", "test", 0, 9_999)):
        rows = plan[plan["split"] == split]
        assert (rows["image_split"] == image_split).all()
        assert rows["image_index"].tolist() == list(range(first, last + 1))
        assert (rows["label"].to_numpy() == mnist.labels(image_split)[first:last + 1]).all()
    assert plan["model_id"].tolist() == list(range(70_000))


def test_the_dry_run_prints_the_plan_and_an_estimate_and_fits_nothing(tmp_path) -> None:
    res = cli("build-inr-zoo", "--dataset", "mnist", "--all-images", "--dry-run", "--device", "cpu",
              "--out", str(tmp_path / "zoo"))
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert lines[0].startswith("mnist INR zoo, 70,000 INRs (one INR per image")
    totals = {line.split()[0]: int(line.split()[-1]) for line in lines if line.split()[0] in ("train", "val", "test")}
    assert totals == {"train": 55_000, "val": 5_000, "test": 10_000}
    estimate = next(line for line in lines if line.startswith("estimated fitting time on cpu"))
    assert "70,000 INRs x 1000 steps at" in estimate and "INR-steps/s" in estimate
    assert not (tmp_path / "zoo").exists()


@pytest.mark.skipif(not SPLITS_JSON.is_file(), reason=f"no public FMNIST split file at {SPLITS_JSON}")
def test_fmnist_one_inr_per_image_follows_the_public_split_file() -> None:
    res = cli("build-inr-zoo", "--dataset", "fmnist", "--all-images", "--splits-json", str(SPLITS_JSON),
              "--dry-run", "--device", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert "70,000 INRs (one INR per image of the public split file fmnist_inr_splits.json)" in lines[0]
    totals = {line.split()[0]: int(line.split()[-1]) for line in lines if line.split()[0] in ("train", "val", "test")}
    assert totals == {"train": 55_000, "val": 5_000, "test": 10_000}


def test_first_images_preview_keeps_the_rule_and_is_refused_out_of_range(mnist) -> None:
    plan, rule = plan_one_per_image(mnist, first_images=2_000)
    # 2,000 images in MNIST's 6 : 1 proportion: 1,714 train images (val: their last twelfth, 143) and 286 test
    assert plan["split"].value_counts().to_dict() == {"train": 1_571, "val": 143, "test": 286}
    assert plan[plan["split"] == "val"]["image_index"].tolist() == list(range(1_571, 1_714))
    assert "1,714 official train images" in rule
    with pytest.raises(ValueError, match=r"first_images \(=0\) must be in 1\.\.70000"):
        plan_one_per_image(mnist, first_images=0)
    res = cli("build-inr-zoo", "--dataset", "mnist", "--first-images", "10", "--dry-run")
    assert res.returncode != 0 and "--first-images N needs --all-images" in res.stderr


def test_a_2000_image_one_per_image_build_on_the_cpu(mnist, tmp_path) -> None:
    """The full build's code path on its first 2,000 images (a short recipe: the plan, the chunks, the folder and the
    image each INR was fitted to are what is tested here, not the fit's quality)."""
    plan, _ = plan_one_per_image(mnist, first_images=2_000)
    recipe = replace(PUBLIC_RECIPE, steps=3)
    build_inr_zoo(plan, mnist, tmp_path / "zoo", recipe=recipe, chunk_size=512, device="cpu", compile=False)
    zoo = load_zoo(tmp_path / "zoo")
    assert len(zoo) == 2_000
    assert zoo.table["split"].value_counts().to_dict() == {"train": 1_571, "val": 143, "test": 286}
    assert (zoo.table[["split", "label", "image_split", "image_index"]].to_numpy() ==
            plan[["split", "label", "image_split", "image_index"]].to_numpy()).all()
    images = gather_images(mnist, zoo.table)
    expected = np.concatenate([mnist.images("train")[:1_714], mnist.images("test")[:286]])
    assert (images == expected).all()
    assert (zoo.table["fit_steps"] == 3).all()


def test_the_recipe_s_steps_and_lr_can_be_set_and_are_recorded(tmp_path) -> None:
    """`--steps`/`--lr` (matching a public zoo's weight statistics takes another step count, docs/zoos.md): the
    INRs take that many steps and zoo.json records the recipe; a value that would fit nothing is one clear error."""
    res = cli("build-inr-zoo", "--dataset", "mnist", "--all-images", "--first-images", "12", "--steps", "4", "--lr",
              "1e-3", "--out", str(tmp_path / "zoo"), "--device", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    zoo = load_zoo(tmp_path / "zoo")
    assert (zoo.table["fit_steps"] == 4).all()
    recipe = json.loads((tmp_path / "zoo" / "zoo.json").read_text())["build"]["recipe"]
    assert recipe["steps"] == 4 and recipe["lr"] == 1e-3 and recipe["target_psnr"] == 40.0
    # the build ends with its faithfulness to the public zoo: the ratios of this zoo's per-layer weight std
    line = next(x for x in res.stdout.splitlines() if x.startswith("per-layer weight std / the public MNIST"))
    ratios = [float(r) for r in line.split(": ")[1].split(" (")[0].split(" / ")]
    train = zoo.split("train").params  # each weight entry's std across the train INRs, averaged over the entries
    ours = [float(train[f"seq.{i}.weight"].std(dim=0).mean()) for i in range(3)]
    assert ratios == pytest.approx([a / b for a, b in zip(ours, (0.0628, 0.0183, 0.118))], abs=0.006)
    for option, value in (("--steps", "0"), ("--lr", "-1e-3"), ("--lr", "nan"), ("--lr", "inf")):
        res = cli("build-inr-zoo", "--dataset", "mnist", f"{option}={value}", "--out", str(tmp_path / "bad"))
        assert res.returncode != 0 and f"SirenRecipe.{option[2:]}" in res.stderr, res.stderr[-500:]
        assert "Traceback" not in res.stderr and not (tmp_path / "bad").exists()
