"""The zoo folder format: exact round trips, and every broken folder refused with a message naming what is wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import probegen_nb.core.zoo_io as zoo_module
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.zoo import Task, Zoo, ZooFormatError, stack_state_dicts, validate
from probegen_nb.core.zoo_io import FILES, from_float24, load_zoo, save_zoo, to_float24
from probegen_nb.zoos.inr import init_siren_params

SPEC = SirenSpec(hidden=(16, 8), w0=25.0)  # non-default fields, so a spec that loses them does not round-trip
MODEL_IDS = [100, 101, 102, 103, 104, 105]  # differ from row positions, so messages must quote the id, not the row
SPLIT_COL = ["train", "train", "val", "test", "train", "test"]
LABELS = [3, 7, 0, 9, 1, 5]


def make_params(n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    return init_siren_params(SPEC, n, torch.Generator().manual_seed(seed))


def make_table() -> pd.DataFrame:
    return pd.DataFrame({"model_id": MODEL_IDS, "split": SPLIT_COL, "label": LABELS,
                         "image_split": ["train", "train", "train", "test", "train", "test"],
                         "image_index": [12, 7, 3, 0, 59999, 9999],
                         "psnr": [31.25, 29.5, float("nan"), 40.125, 35.0, 28.75]})


@pytest.fixture
def params() -> dict[str, torch.Tensor]:
    return make_params()


@pytest.fixture
def zoo(params: dict[str, torch.Tensor]) -> Zoo:
    return Zoo(SPEC, {k: v.clone() for k, v in params.items()}, make_table(), Task("label", 10),
               {"builder": "tests", "seed": 0})


@pytest.fixture
def folder(zoo: Zoo, tmp_path: Path) -> Path:
    return save_zoo(zoo, tmp_path / "fixture-zoo")


def load_error(folder: Path) -> str:
    with pytest.raises(ZooFormatError) as e:
        load_zoo(folder)
    return str(e.value)


def assert_names(msg: str, *parts: str) -> None:
    for p in parts:
        assert p in msg, f"{p!r} missing from error message: {msg}"


def rewrite_csv(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    table = pd.read_csv(folder / "models.csv")
    edit(table)
    table.to_csv(folder / "models.csv", index=False)


def rewrite_json(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads((folder / "zoo.json").read_text())
    edit(meta)
    (folder / "zoo.json").write_text(json.dumps(meta))


# ---------------------------------------------------------------- round trip


def test_save_writes_exactly_the_three_files(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    meta = json.loads((folder / "zoo.json").read_text())
    assert meta["format"] == "probegen-zoo" and meta["format_version"] == 1 and meta["n_models"] == 6
    assert meta["arch"] == {"kind": "siren", "in_dim": 2, "hidden": [16, 8], "out_dim": 1, "w0": 25.0,
                            "out_offset": 0.5}
    assert meta["task"] == {"label_column": "label", "n_classes": 10}


def test_round_trip_is_exact(folder: Path, params: dict[str, torch.Tensor]) -> None:
    back = load_zoo(folder)
    assert back.spec == SPEC and back.spec.hidden == (16, 8) and back.spec.w0 == 25.0
    assert back.task == Task("label", 10)
    assert back.info == {"builder": "tests", "seed": 0}
    assert sorted(back.params) == sorted(params) == sorted(SPEC.param_shapes())
    for k, v in params.items():
        assert back.params[k].dtype == torch.float32
        assert torch.equal(back.params[k], v), k  # bitwise: safetensors must not round or reorder
    pd.testing.assert_frame_equal(back.table, make_table(), check_dtype=False)
    assert back.table["model_id"].tolist() == MODEL_IDS
    assert math.isnan(back.table["psnr"][2]) and back.table["psnr"][3] == 40.125
    assert back.labels.dtype == torch.int64 and back.labels.tolist() == LABELS


def test_labels_are_a_copy_of_the_table(zoo: Zoo) -> None:
    labels = zoo.labels
    labels[0] = 99  # editing the tensor must not reach into the table
    assert zoo.table["label"].tolist() == LABELS and zoo.labels.tolist() == LABELS


def test_single_model_zoo_round_trips(tmp_path: Path) -> None:
    p = make_params(1, seed=3)
    table = pd.DataFrame({"model_id": [7], "split": ["test"], "label": [9]})
    back = load_zoo(save_zoo(Zoo(SPEC, p, table), tmp_path / "one"))
    assert len(back) == 1 and back.params["seq.0.weight"].shape == (1, 16, 2)
    assert all(torch.equal(back.params[k], p[k]) for k in p)


# ---------------------------------------------------------------- bad folders


def test_truncated_weights(folder: Path) -> None:
    w = folder / "weights.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    assert_names(load_error(folder), str(folder), "weights.safetensors", "truncated")


def test_nan_weight_names_model_and_parameter(folder: Path, params: dict[str, torch.Tensor]) -> None:
    bad = {k: v.clone() for k, v in params.items()}
    bad["seq.1.weight"][3, 4, 5] = float("nan")  # row 3 = model_id 103
    save_file(bad, folder / "weights.safetensors")
    msg = load_error(folder)
    assert_names(msg, str(folder), "weights.safetensors", "'seq.1.weight'", "model_id 103")
    assert "model_id 100" not in msg


def test_inf_weight_in_last_model(folder: Path, params: dict[str, torch.Tensor]) -> None:
    bad = {k: v.clone() for k, v in params.items()}
    bad["seq.2.bias"][5, 0] = float("-inf")
    save_file(bad, folder / "weights.safetensors")
    assert_names(load_error(folder), "weights.safetensors", "'seq.2.bias'", "model_id 105")


def test_wrong_shape(folder: Path, params: dict[str, torch.Tensor]) -> None:
    bad = dict(params)
    bad["seq.0.weight"] = torch.zeros(6, 16, 3)  # in-dim 3 instead of 2
    save_file(bad, folder / "weights.safetensors")
    assert_names(load_error(folder), str(folder), "weights.safetensors", "'seq.0.weight'", "(6, 16, 3)",
                 "(6, 16, 2)")


def test_missing_and_extra_parameter(folder: Path, params: dict[str, torch.Tensor]) -> None:
    bad = {k: v for k, v in params.items() if k != "seq.1.bias"}
    bad["seq.9.weight"] = torch.zeros(6, 1)
    save_file(bad, folder / "weights.safetensors")
    assert_names(load_error(folder), "weights.safetensors", "seq.1.bias", "seq.9.weight")


@pytest.mark.parametrize("label", [10, -1])
def test_label_out_of_range(folder: Path, label: int) -> None:
    rewrite_csv(folder, lambda t: t.__setitem__("label", [*LABELS[:4], label, LABELS[5]]))
    assert_names(load_error(folder), str(folder), "models.csv", f"label {label}", "model_id 104", "[0, 10)")


def test_fractional_label(folder: Path) -> None:
    rewrite_csv(folder, lambda t: t.__setitem__("label", [3.5, *LABELS[1:]]))
    assert_names(load_error(folder), "models.csv", "label 3.5", "model_id 100")


def test_unknown_split(folder: Path) -> None:
    rewrite_csv(folder, lambda t: t.__setitem__("split", [*SPLIT_COL[:3], "tets", *SPLIT_COL[4:]]))
    assert_names(load_error(folder), str(folder), "models.csv", "'tets'", "model_id 103")


@pytest.mark.parametrize("name", FILES)
def test_missing_file(folder: Path, name: str) -> None:
    (folder / name).unlink()
    assert_names(load_error(folder), str(folder), name, "missing")


def test_missing_folder(tmp_path: Path) -> None:
    assert_names(load_error(tmp_path / "nope"), str(tmp_path / "nope"), "no such folder")


@pytest.mark.parametrize("change", ["drop_row", "add_row"])
def test_row_count_differs_from_weights(folder: Path, change: str) -> None:
    table = pd.read_csv(folder / "models.csv")
    if change == "drop_row":
        table = table.iloc[:5]
    else:
        table = pd.concat([table, table.iloc[[0]].assign(model_id=999)], ignore_index=True)
    table.to_csv(folder / "models.csv", index=False)
    n = len(table)
    assert_names(load_error(folder), str(folder), "weights.safetensors", f"models.csv has {n} rows", "(6, 16, 2)")


def test_missing_label_column(folder: Path) -> None:
    rewrite_csv(folder, lambda t: t.pop("label"))
    assert_names(load_error(folder), "models.csv", "missing column 'label'")


def test_duplicate_model_id(folder: Path) -> None:
    rewrite_csv(folder, lambda t: t.__setitem__("model_id", [100, 101, 102, 103, 101, 105]))
    assert_names(load_error(folder), str(folder), "models.csv", "duplicate model_id 101", "row 4")


def test_n_models_in_json_disagrees(folder: Path) -> None:
    rewrite_json(folder, lambda m: m.__setitem__("n_models", 7))
    assert_names(load_error(folder), str(folder), "zoo.json", "n_models 7", "6 rows")


@pytest.mark.parametrize("field, value, quoted", [("format_version", 2, "version 2"),
                                                   ("format", "other-zoo", "'other-zoo'")])
def test_wrong_format(folder: Path, field: str, value: object, quoted: str) -> None:
    rewrite_json(folder, lambda m: m.__setitem__(field, value))
    assert_names(load_error(folder), str(folder), "zoo.json", quoted)


def test_unknown_arch_kind(folder: Path) -> None:
    rewrite_json(folder, lambda m: m["arch"].__setitem__("kind", "transformer"))
    assert_names(load_error(folder), str(folder), "zoo.json", "'transformer'")


def test_unknown_arch_field(folder: Path) -> None:
    rewrite_json(folder, lambda m: m["arch"].__setitem__("depth", 3))
    assert_names(load_error(folder), str(folder), "zoo.json", "depth")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "null"])
def test_zoo_json_not_an_object(folder: Path, text: str) -> None:
    (folder / "zoo.json").write_text(text)
    assert_names(load_error(folder), str(folder), "zoo.json")


def test_in_memory_zoo_is_validated(params: dict[str, torch.Tensor]) -> None:
    table = make_table()
    table.loc[1, "split"] = "training"
    with pytest.raises(ZooFormatError, match=r"unknown split 'training' of model_id 101"):
        Zoo(SPEC, params, table)


# ---------------------------------------------------------------- nothing half-written


def test_save_refuses_existing_folder_and_keeps_it(zoo: Zoo, folder: Path) -> None:
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    other = Zoo(SPEC, make_params(seed=1), make_table())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_zoo(other, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temp folder left
    assert torch.equal(load_zoo(folder).params["seq.0.weight"], zoo.params["seq.0.weight"])


def test_overwrite_replaces(zoo: Zoo, folder: Path) -> None:
    other = Zoo(SPEC, make_params(seed=1), make_table())
    save_zoo(other, folder, overwrite=True)
    back = load_zoo(folder)
    assert torch.equal(back.params["seq.0.weight"], other.params["seq.0.weight"])
    assert not torch.equal(back.params["seq.0.weight"], zoo.params["seq.0.weight"])
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_failure_while_writing_weights_leaves_nothing(zoo: Zoo, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save_file(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("simulated: disk full")

    monkeypatch.setattr(zoo_module, "save_file", broken_save_file)
    parent = tmp_path / "zoos"
    with pytest.raises(OSError, match="disk full"):
        save_zoo(zoo, parent / "new-zoo")
    assert list(parent.iterdir()) == []  # neither the zoo nor a temp folder


def test_failure_after_some_files_leaves_old_zoo_intact(zoo: Zoo, folder: Path) -> None:
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    unserialisable = Zoo(SPEC, make_params(seed=2), make_table(), info={"oops": object()})
    with pytest.raises(TypeError, match="not JSON serialisable"):  # fails at zoo.json, after the weights
        save_zoo(unserialisable, folder, overwrite=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


# ---------------------------------------------------------------- views


def test_split_keeps_rows_and_params_aligned(zoo: Zoo, params: dict[str, torch.Tensor]) -> None:
    expected_ids = {"train": [100, 101, 104], "val": [102], "test": [103, 105]}
    for name, ids in expected_ids.items():
        part = zoo.split(name)
        assert part.table["model_id"].tolist() == ids
        assert (part.table["split"] == name).all()
        assert part.table.index.tolist() == list(range(len(ids)))
        for row, mid in enumerate(ids):
            orig = MODEL_IDS.index(mid)
            assert part.table["label"][row] == LABELS[orig]
            for k in params:
                assert torch.equal(part.params[k][row], params[k][orig]), (name, mid, k)
                assert torch.equal(part.model_params(row)[k], params[k][orig])


def test_subset_follows_given_order(zoo: Zoo, params: dict[str, torch.Tensor]) -> None:
    part = zoo.subset([4, 0, 3])
    assert part.table["model_id"].tolist() == [104, 100, 103]
    assert part.labels.tolist() == [1, 3, 9]
    for row, orig in enumerate([4, 0, 3]):
        assert all(torch.equal(part.params[k][row], params[k][orig]) for k in params)
    one = zoo.subset(np.array([5]))
    assert len(one) == 1 and one.table["model_id"].tolist() == [105]
    assert torch.equal(one.params["seq.2.bias"][0], params["seq.2.bias"][5])


def test_unknown_split_name(zoo: Zoo) -> None:
    with pytest.raises(ValueError, match="bogus"):
        zoo.split("bogus")


# ---------------------------------------------------------------- scalar tasks


def scalar_table(acc: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"model_id": MODEL_IDS, "split": SPLIT_COL, "test_acc": acc})


def test_scalar_task_accepts_floats_and_round_trips(params: dict[str, torch.Tensor], tmp_path: Path) -> None:
    acc = [0.125, 0.5, 0.875, 0.25, 1.0, 0.0]
    task = Task(label_column="test_acc", n_classes=None)
    z = Zoo(SPEC, params, scalar_table(acc), task)
    assert not task.is_classification
    assert z.labels.dtype == torch.float32 and z.labels.tolist() == acc
    back = load_zoo(save_zoo(z, tmp_path / "scalar"))
    assert back.task == task and back.labels.tolist() == acc


def test_scalar_task_rejects_nan(params: dict[str, torch.Tensor]) -> None:
    task = Task(label_column="test_acc", n_classes=None)
    with pytest.raises(ZooFormatError, match=r"test_acc nan of model_id 102 .*not a finite number"):
        Zoo(SPEC, params, scalar_table([0.1, 0.2, float("nan"), 0.4, 0.5, 0.6]), task)


def test_scalar_task_nan_on_disk(params: dict[str, torch.Tensor], tmp_path: Path) -> None:
    task = Task(label_column="test_acc", n_classes=None)
    folder = save_zoo(Zoo(SPEC, params, scalar_table([0.1] * 6), task), tmp_path / "scalar")
    rewrite_csv(folder, lambda t: t.__setitem__("test_acc", [0.1, 0.2, 0.3, 0.4, 0.5, None]))
    assert_names(load_error(folder), str(folder), "models.csv", "test_acc", "model_id 105")


def test_validate_names_where(params: dict[str, torch.Tensor]) -> None:
    z = Zoo(SPEC, params, make_table())
    object.__setattr__(z, "params", {**params, "seq.0.bias": params["seq.0.bias"][:, :3]})
    with pytest.raises(ZooFormatError, match=r"^my build: weights\.safetensors: 'seq\.0\.bias' has shape \(6, 3\)"):
        validate(z, where="my build")


# ---------------------------------------------------------------- stacking per-model state_dicts


def test_stack_state_dicts(params: dict[str, torch.Tensor]) -> None:
    sds = [{k: v[i].double() for k, v in params.items()} for i in range(6)]  # float64 in, float32 out
    stacked = stack_state_dicts(sds, SPEC)
    assert sorted(stacked) == sorted(SPEC.param_shapes())
    for k, v in params.items():
        assert stacked[k].dtype == torch.float32 and torch.equal(stacked[k], v)


@pytest.mark.parametrize("break_it, quoted", [
    (lambda sd: sd.__setitem__("seq.0.weight", torch.zeros(16, 3)), "'seq.0.weight' has shape (16, 3)"),
    (lambda sd: sd.__setitem__("seq.1.bias", torch.full((8,), float("nan"))), "non-finite value in 'seq.1.bias'"),
    (lambda sd: sd.__setitem__("seq.2.bias", [0.5]), "'seq.2.bias' is a list, not a tensor"),
    (lambda sd: sd.pop("seq.0.bias"), "parameter names"),
])
def test_stack_state_dicts_names_the_bad_item(params: dict[str, torch.Tensor], break_it, quoted: str) -> None:
    sds = [{k: v[i] for k, v in params.items()} for i in range(3)]
    break_it(sds[2])
    with pytest.raises(ZooFormatError) as e:
        stack_state_dicts(sds, SPEC, names=["a.pth", "b.pth", "c.pth"])
    assert str(e.value).startswith("c.pth: ") and quoted in str(e.value)
    with pytest.raises(ZooFormatError, match="^model 2: "):
        stack_state_dicts(sds, SPEC)


# ---------------------------------------------------------------- float16 storage


def test_float16_storage_halves_the_file_and_loads_as_float32(zoo: Zoo, params: dict[str, torch.Tensor],
                                                              tmp_path: Path) -> None:
    full = save_zoo(zoo, tmp_path / "f32")
    half = save_zoo(zoo, tmp_path / "f16", weights_dtype="float16")
    ratio = (half / "weights.safetensors").stat().st_size / (full / "weights.safetensors").stat().st_size
    assert 0.45 < ratio < 0.6  # the header is the same size in both
    assert json.loads((half / "zoo.json").read_text())["weights_dtype"] == "float16"
    back = load_zoo(half)
    for k, v in params.items():
        assert back.params[k].dtype == torch.float32
        assert torch.equal(back.params[k], v.half().float())  # rounded once, nothing else
    assert not all(torch.equal(back.params[k], v) for k, v in params.items())  # it did round (negative control)


def test_float16_storage_refuses_values_beyond_its_range(zoo: Zoo, tmp_path: Path) -> None:
    zoo.params["seq.0.weight"][2, 0, 0] = 7e4  # float16's max is 65504
    with pytest.raises(ValueError, match="seq.0.weight has values beyond float16's range"):
        save_zoo(zoo, tmp_path / "f16", weights_dtype="float16")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="weights_dtype 'int8'"):
        save_zoo(zoo, tmp_path / "i8", weights_dtype="int8")


def test_float24_keeps_the_top_24_bits_rounded_to_nearest() -> None:
    """Against float64 arithmetic: each value moves by at most half a unit in the 16th significant bit."""
    x = torch.randn(20000, dtype=torch.float64) * torch.logspace(-20, 20, 20000, dtype=torch.float64)
    x = x.float()
    y = from_float24(to_float24(x))
    assert to_float24(x).dtype == torch.uint8 and to_float24(x).shape == (20000, 3)
    ulp = torch.exp2(torch.floor(torch.log2(x.double().abs())) - 15)  # the spacing of 16 significant bits
    assert bool(((y.double() - x.double()).abs() <= ulp / 2).all())
    assert bool(((y.double() - x.double()).abs() > ulp / 8).any())  # it did drop bits (negative control)
    special = torch.tensor([0.0, -0.0, 1.0, -2.5, 2.0**-130, -(2.0**127), 1 + 2.0**-15])  # 2**-130: subnormal
    assert torch.equal(from_float24(to_float24(special)), special)  # exact where 16 bits suffice, signs kept
    assert torch.signbit(from_float24(to_float24(torch.tensor([-0.0])))).item()


def test_float24_storage_takes_three_quarters_and_loads_as_float32(zoo: Zoo, params: dict[str, torch.Tensor],
                                                                   tmp_path: Path) -> None:
    full = save_zoo(zoo, tmp_path / "f32")
    packed = save_zoo(zoo, tmp_path / "f24", weights_dtype="float24")
    ratio = (packed / "weights.safetensors").stat().st_size / (full / "weights.safetensors").stat().st_size
    assert 0.7 < ratio < 0.8
    assert json.loads((packed / "zoo.json").read_text())["weights_dtype"] == "float24"
    back = load_zoo(packed)
    for k, v in params.items():
        assert back.params[k].dtype == torch.float32 and back.params[k].shape == v.shape
        assert torch.equal(back.params[k], from_float24(to_float24(v)))
        assert float(((back.params[k] - v).abs() / v.abs().clamp_min(1e-30)).max()) <= 2**-16
    assert not all(torch.equal(back.params[k], v) for k, v in params.items())  # it did round (negative control)


def test_float24_files_with_the_wrong_bytes_or_range_are_named(zoo: Zoo, params: dict[str, torch.Tensor],
                                                                tmp_path: Path) -> None:
    folder = save_zoo(zoo, tmp_path / "f24", weights_dtype="float24")
    save_file({k: to_float24(v)[..., :2].contiguous() for k, v in params.items()}, folder / "weights.safetensors")
    assert_names(load_error(folder), "weights.safetensors", "float24 weights are uint8 with a last axis of 3")
    save_file(dict(params), folder / "weights.safetensors")
    assert_names(load_error(folder), "weights.safetensors", "is float32", "says the weights are float24")
    zoo.params["seq.0.weight"][1, 0, 0] = torch.finfo(torch.float32).max  # rounds up to inf at 16 bits
    with pytest.raises(ValueError, match="seq.0.weight has values beyond float24's range"):
        save_zoo(zoo, tmp_path / "big", weights_dtype="float24")
    assert not (tmp_path / "big").exists()


def test_a_file_whose_dtype_disagrees_with_zoo_json_is_named(folder: Path, params: dict[str, torch.Tensor]) -> None:
    save_file({k: v.double() for k, v in params.items()}, folder / "weights.safetensors")
    assert_names(load_error(folder), str(folder), "weights.safetensors", "is float64", "says the weights are float32")
    rewrite_json(folder, lambda m: m.update(weights_dtype="bfloat8"))
    assert_names(load_error(folder), "zoo.json", "weights_dtype 'bfloat8'")
