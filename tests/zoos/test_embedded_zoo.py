"""The committed MNIST INR zoo follows the public zoos' recipe: measured here, on the committed files."""


import pandas as pd
import pytest

from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.zoos.weightstats import PUBLIC_INR_WEIGHT_STD, layer_weight_std, public_layer_weight_std

from paths import SHARED, ZOOS

ZOO = ZOOS / "mnist-inr-small"
PUBLIC_STATS = SHARED / "reference" / "public-zoo-statistics" / "mnist_inr_statistics.pth"


@pytest.fixture(scope="module")
def zoo():
    return load_zoo(ZOO)


def test_size_and_balance(zoo) -> None:
    counts = zoo.table["split"].value_counts().to_dict()
    assert counts == {"train": 4000, "val": 500, "test": 1000}
    per_class = zoo.table.groupby("label").size()
    assert len(per_class) == 10 and per_class.min() >= 500
    assert set(zoo.table[zoo.table.split == "test"]["image_split"]) == {"test"}
    assert sum(f.stat().st_size for f in ZOO.iterdir()) <= 30 * 2**20


def test_weight_std_within_25_percent_of_public(zoo) -> None:
    public = public_layer_weight_std(PUBLIC_STATS) if PUBLIC_STATS.exists() else list(PUBLIC_INR_WEIGHT_STD["mnist"])
    ours = layer_weight_std(zoo, "train")
    for layer, (a, b) in enumerate(zip(ours, public)):
        assert abs(a / b - 1) <= 0.25, f"layer {layer}: std {a:.4f} vs public {b:.4f}"


def test_reconstructions_reach_20_db(zoo) -> None:
    assert zoo.table["psnr"].mean() >= 20.0
    assert zoo.info["recipe"]["steps"] == 1000 and zoo.info["recipe"]["lr"] == 5e-4


def test_layer_weight_std_of_a_mixed_zoo_pools_its_groups() -> None:
    """The Small CNN Zoo's relu and tanh groups are one weight space: their std is taken over both, which is not
    the mean of the two groups' (the negative control)."""
    import torch

    from probegen_nb.core.arch.cnn import CNNSpec
    from probegen_nb.core.zoo import MixedZoo, Task, Zoo

    spec_r, spec_t = CNNSpec.small_cnn_zoo(1, "relu"), CNNSpec.small_cnn_zoo(1, "tanh")
    g = torch.Generator().manual_seed(0)
    groups = []
    for spec, shift in ((spec_r, -1.0), (spec_t, 1.0)):
        params = {k: torch.randn(8, *s, generator=g) * 0.1 + shift for k, s in spec.param_shapes().items()}
        table = pd.DataFrame({"model_id": range(8), "split": "train", "test_acc": 0.5})
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
    groups[1].table["model_id"] += 8
    pooled = layer_weight_std(MixedZoo(tuple(groups), Task("test_acc", None)))
    assert len(pooled) == 4 and all(0.9 < s < 1.1 for s in pooled)  # the ±1 shift between groups dominates
    per_group = [layer_weight_std(z) for z in groups]
    assert all(max(a, b) < 0.15 for a, b in zip(*per_group))
