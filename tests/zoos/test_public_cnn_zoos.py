"""Converting the public CNN zoos' layouts: the Small CNN Zoo (flat TensorFlow rows in weights.npy + metrics.csv.gz +
layout.csv) and CNN Wild Park (one {"model", "config"} torch checkpoint per file + a splits json)."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.registry import forward
from probegen_nb.core.zoo import MixedZoo, ZooFormatError
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.zoos.public.cnn import convert_cnn_wild_park, convert_small_cnn_zoo, nfn_split

# ---------------------------------------------------------------- Small CNN Zoo fixture

# (activation, steps checkpointed) per run; the last run stopped before the end of training
RUNS = [("relu", (0, 20, 86)), ("tanh", (0, 20, 86)), ("relu", (0, 20, 86)), ("tanh", (0, 20, 86)), ("relu", (0, 20))]
FINAL_ROWS = [2, 5, 8, 11]  # rows of weights.npy at step 86
# TensorFlow variables in row order: each layer's bias, then its kernel ([kh, kw, in, out]; dense [in, out])
TF_LAYERS = [("sequential/conv2d", (3, 3, 1, 16)), ("sequential/conv2d_1", (3, 3, 16, 16)),
             ("sequential/conv2d_2", (3, 3, 16, 16)), ("sequential/dense", (16, 10))]


def torch_weights(seed: int) -> dict[str, torch.Tensor]:
    """A Small CNN Zoo model's parameters in PyTorch layout, made by hand (not from CNNSpec)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, c_in in enumerate((1, 16, 16)):
        sd[f"layers.{i}.weight"] = torch.randn(16, c_in, 3, 3, generator=g) / math.sqrt(9 * c_in)
        sd[f"layers.{i}.bias"] = 0.1 * torch.randn(16, generator=g)
    sd["fc.weight"] = torch.randn(10, 16, generator=g) / 4
    sd["fc.bias"] = 0.1 * torch.randn(10, generator=g)
    return sd


def tf_row(sd: dict[str, torch.Tensor]) -> np.ndarray:
    """The inverse of the loader's transpose, written with einsum: [out, in, kh, kw] → [kh, kw, in, out]."""
    parts = []
    for i, name in enumerate(["layers.0", "layers.1", "layers.2", "fc"]):
        w = sd[f"{name}.weight"].numpy()
        kernel = np.einsum("oihw->hwio", w) if i < 3 else np.einsum("oi->io", w)
        assert kernel.shape == TF_LAYERS[i][1]
        parts += [sd[f"{name}.bias"].numpy(), kernel.ravel()]
    return np.concatenate(parts).astype(np.float32)


def write_layout(path: Path) -> None:
    rows, start = [], 0
    for name, shape in TF_LAYERS:
        for var, s in ((f"{name}/bias:0", (shape[-1],)), (f"{name}/kernel:0", shape)):
            rows.append({"varname": var, "start_idx": start, "end_idx": start + math.prod(s), "shape": str(s)})
            start += math.prod(s)
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture
def small_zoo(tmp_path: Path) -> tuple[Path, list[dict[str, torch.Tensor]], pd.DataFrame]:
    """tmp/cifar10/{weights.npy, metrics.csv.gz, layout.csv}: 14 checkpoints of 5 runs, every row distinct."""
    root = tmp_path / "cifar10"
    root.mkdir()
    originals, metrics = [], []
    for run, (act, steps) in enumerate(RUNS):
        for step in steps:
            row = len(originals)
            originals.append(torch_weights(seed=100 + row))
            metrics.append({"config.activation": act, "config.learning_rate": 0.001 * (run + 1),
                            "config.w_init": "he_normal", "modeldir": f"runs/{run}", "step": step,
                            "test_accuracy": 0.1 + 0.02 * row, "test_loss": 2.0 - 0.01 * row,
                            "train_accuracy": 0.15 + 0.03 * row, "train_loss": 1.9 - 0.01 * row})
    np.save(root / "weights.npy", np.stack([tf_row(sd) for sd in originals]))
    table = pd.DataFrame(metrics)
    table.to_csv(root / "metrics.csv.gz", index=False, compression="gzip")
    write_layout(root / "layout.csv")
    return root, originals, table


def keras_forward(row: np.ndarray, activation: str, x: torch.Tensor) -> torch.Tensor:
    """The model as Keras runs it, straight from a flat TensorFlow row: three Conv2D 3×3 stride 2 with Keras' default
    'valid' padding, global average pooling, Dense. x: [P, 32, 32, 1] (NHWC) → [P, 10], in float64."""
    act = {"relu": torch.relu, "tanh": torch.tanh}[activation]
    flat, h, at = torch.from_numpy(row).double(), x.double(), 0
    for _, shape in TF_LAYERS:
        bias = flat[at: at + shape[-1]]
        kernel = flat[at + shape[-1]: at + shape[-1] + math.prod(shape)].reshape(shape)
        at += shape[-1] + math.prod(shape)
        if len(shape) == 4:
            patches = h.unfold(1, 3, 2).unfold(2, 3, 2)  # [P, H', W', C, kh, kw], windows from the top-left pixel
            h = act(torch.einsum("pyxcij,ijco->pyxo", patches, kernel) + bias)
        else:
            h = h.mean(dim=(1, 2)) @ kernel + bias
    return h


def sorted_table(zoo: MixedZoo) -> pd.DataFrame:
    return zoo.table.sort_values("model_id").reset_index(drop=True)


def test_nfn_split_rule() -> None:
    for n, sizes in [(30000, (12000, 3000, 15000)), (10, (4, 1, 5)), (7, (2, 1, 4)), (1, (0, 0, 1))]:
        split = nfn_split(n)
        assert tuple(int((split == s).sum()) for s in ("train", "val", "test")) == sizes
        assert (split[int(0.5 * n):] == "test").all() and (split[: int(0.5 * n)] != "test").all()
    # Python's random.Random(0) shuffles [0..4] into [2, 1, 0, 4, 3]: the first four train, the last val
    assert nfn_split(10).tolist() == ["train", "train", "train", "val", "train"] + ["test"] * 5


def test_convert_small_cnn_zoo(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, originals, metrics = small_zoo
    zoo = convert_small_cnn_zoo(root, tmp_path / "out")
    relu, tanh = (replace(CNNSpec.small_cnn_zoo(1, a), padding=0) for a in ("relu", "tanh"))
    assert zoo.specs == (relu, tanh) and zoo.task.label_column == "test_acc" and zoo.task.n_classes is None
    assert sorted(zoo.groups[0].table["source_row"]) == [2, 8] and sorted(zoo.groups[1].table["source_row"]) == [5, 11]
    for group, act in zip(zoo.groups, ("relu", "tanh")):
        t = group.table
        assert (t["config_activation"] == act).all() and (t["step"] == 86).all()
        for i, r in enumerate(t["source_row"]):
            for k, v in originals[r].items():
                assert torch.equal(group.params[k][i], v), (r, k)
            m = metrics.iloc[r]
            assert t["test_acc"][i] == pytest.approx(m["test_accuracy"])
            assert t["train_acc"][i] == pytest.approx(m["train_accuracy"])
            assert t["gap"][i] == pytest.approx(m["train_accuracy"] - m["test_accuracy"])
            assert t["config_learning_rate"][i] == pytest.approx(m["config.learning_rate"])
            assert t["modeldir"][i] == m["modeldir"] and t["test_loss"][i] == pytest.approx(m["test_loss"])
    t = sorted_table(zoo)
    assert t["split"].tolist() == nfn_split(4).tolist()  # seeded order, NFN's rule

    back = load_zoo(tmp_path / "out")
    assert isinstance(back, MixedZoo) and back.specs == zoo.specs
    for a, b in zip(zoo.groups, back.groups):
        for k in a.params:
            assert torch.equal(a.params[k], b.params[k])
    assert sorted_table(back)["source_row"].tolist() == t["source_row"].tolist()


def test_small_cnn_zoo_forward_matches_keras_and_torch(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, originals, _ = small_zoo
    rows = np.load(root / "weights.npy")
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # [P, 1, 32, 32]
    zoo = convert_small_cnn_zoo(root, tmp_path / "out")
    nfn_style = convert_small_cnn_zoo(root, tmp_path / "out1", padding=1)  # NFN's / ProbeGen's PyTorch padding
    for group, group1 in zip(zoo.groups, nfn_style.groups):
        out = forward(group.spec, group.params, x)  # [M, P, 10]
        out1 = forward(group1.spec, group1.params, x)
        act = group.spec.activation[0]
        for i, r in enumerate(group.table["source_row"]):
            keras = keras_forward(rows[r], act, x.permute(0, 2, 3, 1)).float()
            torch.testing.assert_close(out[i], keras, atol=1e-5, rtol=0)
            assert (out1[i] - keras).abs().max() > 1e-3, "padding 1 should compute another function"
            module = group.spec.build_module()
            module.load_state_dict(originals[r])
            with torch.no_grad():
                torch.testing.assert_close(out[i], module(x), atol=1e-5, rtol=0)


def test_nfn_order_permutes_then_splits(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = small_zoo
    perm = np.random.default_rng(1).permutation(14)
    order = tmp_path / "order.csv.gz"
    pd.Series(perm).to_csv(order, index=False, header=False, compression="gzip")
    zoo = convert_small_cnn_zoo(root, tmp_path / "out", nfn_order=order)
    t = sorted_table(zoo)
    assert t["source_row"].tolist() == [r for r in perm if r in FINAL_ROWS]
    assert t["split"].tolist() == nfn_split(4).tolist()

    # the public file's stray first line `0` (a header read as an index): harmless when row 0 is not kept
    quirk = tmp_path / "quirk.csv.gz"
    pd.Series([0, *perm]).to_csv(quirk, index=False, header=False, compression="gzip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = convert_small_cnn_zoo(root, tmp_path / "out2", nfn_order=quirk)
    assert sorted_table(same)[["source_row", "split"]].equals(t[["source_row", "split"]])

    # a kept row listed twice stays twice, as in NFN, and says so
    twice = tmp_path / "twice.csv.gz"
    pd.Series([8, *perm]).to_csv(twice, index=False, header=False, compression="gzip")
    with pytest.warns(UserWarning, match=r"row\(s\) \[8\] listed twice"):
        dup = convert_small_cnn_zoo(root, tmp_path / "out3", nfn_order=twice)
    assert sorted_table(dup)["source_row"].tolist() == [8] + [r for r in perm if r in FINAL_ROWS]
    assert sorted_table(dup)["split"].tolist() == nfn_split(5).tolist()


def test_step_choice(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = small_zoo
    last = convert_small_cnn_zoo(root, tmp_path / "last", step="last")
    assert sorted(last.table["source_row"]) == [2, 5, 8, 11, 13]  # the crashed run's last checkpoint is step 20
    early = convert_small_cnn_zoo(root, tmp_path / "early", step=20)
    assert sorted(early.table["source_row"]) == [1, 4, 7, 10, 13] and (early.table["step"] == 20).all()
    with pytest.raises(ZooFormatError, match="no checkpoint at step 50"):
        convert_small_cnn_zoo(root, tmp_path / "none", step=50)


@pytest.mark.parametrize("name", ["weights.npy", "metrics.csv.gz", "layout.csv"])
def test_small_zoo_missing_file(small_zoo, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = small_zoo
    (root / name).unlink()
    with pytest.raises(ZooFormatError, match="missing file") as e:
        convert_small_cnn_zoo(root, tmp_path / "out")
    assert str(root / name) in str(e.value)
    assert not (tmp_path / "out").exists()


def test_small_zoo_row_length_disagrees_with_layout(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = small_zoo
    w = np.load(root / "weights.npy")
    np.save(root / "weights.npy", np.concatenate([w, np.zeros((len(w), 1), np.float32)], axis=1))
    with pytest.raises(ZooFormatError) as e:
        convert_small_cnn_zoo(root, tmp_path / "out")
    msg = str(e.value)
    assert str(root / "weights.npy") in msg and "layout.csv" in msg and "4971" in msg and "4970" in msg


def test_small_zoo_row_count_mismatch(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, metrics = small_zoo
    metrics.iloc[:-1].to_csv(root / "metrics.csv.gz", index=False, compression="gzip")
    with pytest.raises(ZooFormatError) as e:
        convert_small_cnn_zoo(root, tmp_path / "out")
    msg = str(e.value)
    assert str(root / "weights.npy") in msg and "metrics.csv.gz has 13" in msg and "row 13" in msg


def test_small_zoo_nan_weights(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = small_zoo
    w = np.load(root / "weights.npy")
    w[0, 7] = np.nan  # a step-0 row: not kept, so not an error (as in NFN)
    np.save(root / "weights.npy", w)
    assert len(convert_small_cnn_zoo(root, tmp_path / "ok")) == 4
    w[8, 100] = np.nan
    np.save(root / "weights.npy", w)
    with pytest.raises(ZooFormatError, match=r"row 8 \(step 86\) has a non-finite value") as e:
        convert_small_cnn_zoo(root, tmp_path / "out")
    assert str(root / "weights.npy") in str(e.value)
    assert not (tmp_path / "out").exists()


def test_small_zoo_refuses_pickled_npy(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, _ = small_zoo
    np.save(root / "weights.npy", np.array([[1.0, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(ZooFormatError, match="unreadable") as e:
        convert_small_cnn_zoo(root, tmp_path / "out")
    assert str(root / "weights.npy") in str(e.value)


def test_small_zoo_bad_inputs_name_file_and_row(small_zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, metrics = small_zoo
    order = tmp_path / "order.csv.gz"
    pd.Series([*range(14), 14]).to_csv(order, index=False, header=False, compression="gzip")
    with pytest.raises(ZooFormatError, match=r"line 15: 14 is not a row") as e:
        convert_small_cnn_zoo(root, tmp_path / "out", nfn_order=order)
    assert str(order) in str(e.value)
    pd.Series(range(13)).to_csv(order, index=False, header=False, compression="gzip")
    with pytest.raises(ZooFormatError, match="does not list row 13"):
        convert_small_cnn_zoo(root, tmp_path / "out", nfn_order=order)

    layout = pd.read_csv(root / "layout.csv")
    layout.loc[1, "shape"] = "(3, 3, 2, 8)"  # same size, wrong shape
    layout.to_csv(root / "layout.csv", index=False)
    with pytest.raises(ZooFormatError, match=r"'sequential/conv2d/kernel:0' \(3, 3, 2, 8\).*layers.0") as e:
        convert_small_cnn_zoo(root, tmp_path / "out")
    assert str(root / "layout.csv") in str(e.value)
    write_layout(root / "layout.csv")

    metrics.loc[5, "config.activation"] = "selu"
    metrics.to_csv(root / "metrics.csv.gz", index=False, compression="gzip")
    with pytest.raises(ZooFormatError, match="row 5: config.activation 'selu'") as e:
        convert_small_cnn_zoo(root, tmp_path / "out")
    assert str(root / "metrics.csv.gz") in str(e.value)


# ---------------------------------------------------------------- CNN Wild Park fixture

# configs in the public checkpoint format (cnn_sampler.CNNConfig): channels = [in, c1, …], per-layer lists
ARCH_A = {"n_layers": 4, "n_classes": 10, "channels": [3, 8, 16, 8, 12], "kernel_size": [3, 5, 7, 3],
          "stride": [1, 1, 1, 1], "padding": [1, 2, 3, 1], "residual": [-1, -1, 0, 1],
          "activation": ["relu", "gelu", "tanh", "sigmoid"]}
ARCH_B = {"n_layers": 3, "n_classes": 10, "channels": [3, 4, 8, 4], "kernel_size": [3, 3, 5], "stride": [1, 1, 1],
          "padding": [1, 1, 2], "residual": [-1, -1, 0], "activation": ["leaky_relu", "relu", "tanh"]}
ARCH_C = {"n_layers": 2, "n_classes": 10, "channels": [3, 16, 4], "kernel_size": [7, 3], "stride": [1, 1],
          "padding": [3, 1], "residual": [-1, -1], "activation": ["gelu", "sigmoid"]}
SPEC_A = CNNSpec(3, (8, 16, 8, 12), (3, 5, 7, 3), 1, (1, 2, 3, 1), ("relu", "gelu", "tanh", "sigmoid"), (-1, -1, 0, 1))
SPEC_B = CNNSpec(3, (4, 8, 4), (3, 3, 5), 1, (1, 1, 2), ("leaky_relu", "relu", "tanh"), (-1, -1, 0))
SPEC_C = CNNSpec(3, (16, 4), (7, 3), 1, (3, 1), ("gelu", "sigmoid"), (-1, -1))
# (split, run folder, config, step), in the json's order; model_id is the position here
PARK = [("train", "trial_a", ARCH_A, 10), ("train", "trial_b", ARCH_B, 10), ("train", "trial_b", ARCH_B, 20),
        ("val", "trial_a", ARCH_A, 20), ("test", "trial_c", ARCH_C, 20), ("test", "trial_a2", ARCH_A, 20)]
ACT = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "leaky_relu": F.leaky_relu}


def park_path(run: str, step: int) -> str:
    return f"cifar10_zooV2/{run}/checkpoint_{step:06d}/checkpoint.pt"


def park_state_dict(cfg: dict, seed: int) -> dict[str, torch.Tensor]:
    g, c, sd = torch.Generator().manual_seed(seed), cfg["channels"], {}
    for i, k in enumerate(cfg["kernel_size"]):
        sd[f"layers.{i}.weight"] = torch.randn(c[i + 1], c[i], k, k, generator=g) / math.sqrt(c[i] * k * k)
        sd[f"layers.{i}.bias"] = 0.1 * torch.randn(c[i + 1], generator=g)
    sd["fc.weight"] = torch.randn(cfg["n_classes"], c[-1], generator=g) / math.sqrt(c[-1])
    sd["fc.bias"] = 0.1 * torch.randn(cfg["n_classes"], generator=g)
    return sd


def wild_park_forward(cfg: dict, sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The public Wild Park CNN (cnn_sampler.CNN.forward), restated: conv; add the kept post-activation output of
    layer residual[i] to the first min(channels) channels; activation; global average pooling; fc."""
    kept = {}
    for i in range(cfg["n_layers"]):
        x = F.conv2d(x, sd[f"layers.{i}.weight"], sd[f"layers.{i}.bias"], stride=cfg["stride"][i],
                     padding=cfg["padding"][i])
        r = cfg["residual"][i]
        if r > -1:
            ch = min(cfg["channels"][r + 1], cfg["channels"][i + 1])
            x = x.clone()
            x[:, :ch] += kept[r][:, :ch]
        x = ACT[cfg["activation"][i]](x)
        if i in cfg["residual"]:
            kept[i] = x
    return F.linear(x.mean(dim=(2, 3)), sd["fc.weight"], sd["fc.bias"])


@pytest.fixture
def park(tmp_path: Path) -> tuple[Path, Path, list[dict[str, torch.Tensor]]]:
    """tmp/dataset/cifar10_zooV2/<run>/checkpoint_<step>/checkpoint.pt and tmp/dataset/cnn_park_splits.json."""
    root = tmp_path / "dataset"
    splits: dict[str, dict[str, list]] = {s: {"path": [], "score": [], "step": []} for s in ("train", "val", "test")}
    originals = []
    for i, (split, run, cfg, step) in enumerate(PARK):
        sd = park_state_dict(cfg, seed=i)
        path = root / park_path(run, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": sd, "config": cfg, "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]},
                    "iteration": step}, path)
        originals.append(sd)
        splits[split]["path"].append(park_path(run, step))
        splits[split]["score"].append(0.3 + 0.05 * i)
        splits[split]["step"].append(step)
    splits_json = root / "cnn_park_splits.json"
    splits_json.write_text(json.dumps(splits))
    return root, splits_json, originals


def test_convert_wild_park_groups_by_architecture(park, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, originals = park
    zoo = convert_cnn_wild_park(root, splits_json, tmp_path / "out")
    assert zoo.specs == (SPEC_A, SPEC_B, SPEC_C)
    assert [g.table["model_id"].tolist() for g in zoo.groups] == [[0, 3, 5], [1, 2], [4]]
    t = sorted_table(zoo)
    assert t["split"].tolist() == [s for s, *_ in PARK]
    assert t["step"].tolist() == [s for *_, s in PARK]
    assert t["test_acc"].tolist() == pytest.approx([0.3 + 0.05 * i for i in range(6)])
    assert t["source_path"].tolist() == [park_path(r, s) for _, r, _, s in PARK]
    assert t["run"].tolist() == [r for _, r, _, _ in PARK]
    for group in zoo.groups:
        for i, m in enumerate(group.table["model_id"]):
            for k, v in originals[m].items():
                assert torch.equal(group.params[k][i], v), (m, k)

    back = load_zoo(tmp_path / "out")
    assert isinstance(back, MixedZoo) and back.specs == zoo.specs
    assert sorted_table(back)["source_path"].tolist() == t["source_path"].tolist()
    assert back.split("test").table["model_id"].tolist() == [5, 4]  # grouped: arch A first


def test_wild_park_forward_keeps_residuals(park, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, originals = park
    zoo = convert_cnn_wild_park(root, splits_json, tmp_path / "out")
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # [P, 3, 32, 32]
    for group in zoo.groups:
        out = forward(group.spec, group.params, x)  # [M, P, 10]
        no_residuals = forward(replace(group.spec, residual=-1), group.params, x)
        for i, m in enumerate(group.table["model_id"]):
            with torch.no_grad():
                ref = wild_park_forward(PARK[m][2], originals[m], x)
            torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
            if max(group.spec.residual) >= 0:
                assert (no_residuals[i] - ref).abs().max() > 1e-3, "dropping residuals should change the function"


class _Exploit:
    """A pickle payload: unpickling it calls `open(marker, "w")`, which leaves a file behind as evidence."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_wild_park_refuses_code(park, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, originals = park
    marker = tmp_path / "payload-ran"
    bad = root / park_path("trial_b", 20)
    torch.save({"model": originals[2], "config": ARCH_B, "extra": _Exploit(marker)}, bad)
    with pytest.raises(ZooFormatError, match="unreadable checkpoint") as e:
        convert_cnn_wild_park(root, splits_json, tmp_path / "out")
    assert str(bad) in str(e.value)
    assert not marker.exists(), "the converter executed code from a checkpoint"
    assert not (tmp_path / "out").exists()


@dataclass
class _Config:  # stands in for a config saved as an object (e.g. OmegaConf's), not as a plain dict
    n_layers: int


def test_wild_park_refuses_object_config(park, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, originals = park
    bad = root / park_path("trial_c", 20)
    torch.save({"model": originals[4], "config": _Config(2)}, bad)
    with pytest.raises(ZooFormatError, match="unreadable checkpoint") as e:
        convert_cnn_wild_park(root, splits_json, tmp_path / "out")
    assert str(bad) in str(e.value)


def test_wild_park_missing_file(park, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = park
    (root / park_path("trial_a", 20)).unlink()
    with pytest.raises(ZooFormatError, match="not found") as e:
        convert_cnn_wild_park(root, splits_json, tmp_path / "out")
    assert park_path("trial_a", 20) in str(e.value) and str(splits_json) in str(e.value)
    assert not (tmp_path / "out").exists()


def test_wild_park_bad_checkpoints_name_the_file(park, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, originals = park
    bad = root / park_path("trial_a", 10)
    cases = [({"model": originals[0]}, "expected a dict with a 'model' state_dict and a 'config'"),
             ({"model": originals[0], "config": {**ARCH_A, "residual": [-1, 0, -1, -1]}}, "residual"),
             ({"model": originals[0], "config": {k: v for k, v in ARCH_A.items() if k != "stride"}}, "lacks"),
             ({"model": {**originals[0], "fc.bias": torch.zeros(3)}, "config": ARCH_A}, "'fc.bias'")]
    for ckpt, match in cases:
        torch.save(ckpt, bad)
        with pytest.raises(ZooFormatError, match=match) as e:
            convert_cnn_wild_park(root, splits_json, tmp_path / "out")
        assert str(bad) in str(e.value)


def test_wild_park_splits_json_errors(park, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = park
    splits = json.loads(splits_json.read_text())
    splits["val"]["score"] = []
    splits_json.write_text(json.dumps(splits))
    with pytest.raises(ZooFormatError, match="'val' has 1 paths, 0 scores") as e:
        convert_cnn_wild_park(root, splits_json, tmp_path / "out")
    assert str(splits_json) in str(e.value)
    splits_json.write_text(json.dumps({"tets": splits["test"]}))
    with pytest.raises(ZooFormatError, match="unknown split 'tets'"):
        convert_cnn_wild_park(root, splits_json, tmp_path / "out")
