"""The committed CIFAR10-GS CNN zoo follows the public Small CNN Zoo's recipe (issue 14): measured on the files."""

import json

import numpy as np
import pytest
import torch

from probegen_nb.core.data import images_to_inputs, load_dataset
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.zoos.rounding import rounding_effect
from probegen_nb.zoos.weightstats import layer_weight_std, public_layer_weight_std

from paths import SHARED, ZOOS

ZOO = ZOOS / "cifar10-gs-cnn-small"
PUBLIC_STATS = SHARED / "reference" / "public-zoo-statistics" / "cifar10_gs_small_cnn_zoo_statistics.pth"


@pytest.fixture(scope="module")
def zoo():
    return load_zoo(ZOO)


def test_thousands_of_runs_one_final_row_each_split_by_run(zoo) -> None:
    table = zoo.table
    assert table["run"].nunique() == len(table) >= 2000  # one row per run: its final checkpoint
    assert table.groupby("split")["run"].nunique()["test"] >= 400
    assert sum(f.stat().st_size for f in ZOO.iterdir()) <= 30 * 2**20


def test_the_public_recipe(zoo) -> None:
    text = (ZOO / "zoo.json").read_text()
    meta = json.loads(text)
    recipe = meta["build"]["recipe"]
    assert recipe["epochs"] >= 4 and recipe["batch_size"] == 512 and recipe["padding"] == 0
    assert recipe["n_eval"] is None and recipe["checkpoint_epochs"] == []  # labels on every test image
    assert meta["build"]["dataset"] == "cifar10-gs" and meta["build"]["data"]["n_test"] == 10000
    assert all(a["padding"] == [0, 0, 0] for a in meta["archs"])
    assert meta["weights_dtype"] == "float24"  # float16 moved labels by up to 0.27 points (docs/zoos.md)
    assert "/work" not in text and "/home" not in text and "/tmp" not in text  # no machine paths
    assert np.allclose(zoo.table["epoch"], recipe["epochs"])


def test_the_label_spread_readme_reports(zoo) -> None:
    """docs/zoos.md's accuracy distribution is this file's (median, IQR, max), and it is a zoo to rank."""
    acc = zoo.table["test_acc"]
    assert acc.median() == pytest.approx(0.198, abs=5e-4) and acc.max() == pytest.approx(0.408, abs=5e-4)
    assert acc.quantile(0.75) - acc.quantile(0.25) == pytest.approx(0.142, abs=5e-4)
    assert np.allclose(zoo.table["gap"], zoo.table["train_acc"] - zoo.table["test_acc"], atol=1e-6)  # float32


def test_the_weight_std_readme_reports_against_the_public_zoo(zoo) -> None:
    """Per-layer std of the train split over the public zoo's: docs/zoos.md's ratios. They are below 1 because 4 epochs
    at 512 images a step are 39-391 steps, where the public zoo's 86 epochs are 20x more (docs/zoos.md explains)."""
    ours, public = layer_weight_std(zoo, "train"), public_layer_weight_std(PUBLIC_STATS)
    ratios = [a / b for a, b in zip(ours, public)]
    assert ratios == pytest.approx([0.478, 0.647, 0.420, 0.410], abs=1e-3)


def test_the_float24_weights_keep_the_float32_labels() -> None:
    """The labels were measured with the float32 weights during the build; the committed float24 weights,
    recomputed on all 10,000 test images for 64 runs of each activation, give them back within 1e-3."""
    zoo = load_zoo(ZOO)
    data = load_dataset(zoo.info["dataset"])
    x, y = images_to_inputs(data.test_images), torch.as_tensor(data.test_labels)
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(zoo.table["activation"] == a), 64, replace=False)
                           for a in ("relu", "tanh")])
    sample = zoo.subset(rows)
    effect = rounding_effect(sample, sample, x[:1], x, y)
    assert effect.n_models == 128 and effect.max_accuracy_diff <= 1e-3
    for group in sample.groups:  # negative control: labels these weights did not give
        group.table["test_acc"] = group.table["test_acc"] + 2e-3
    assert rounding_effect(sample, sample, x[:1], x, y).max_accuracy_diff > 1e-3
