"""Converting the DWSNets INR zoo layout (one `.pth` state_dict per INR plus a splits json) into a zoo folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from probegen_nb.core.arch.registry import forward
from probegen_nb.core.arch.siren import SirenINR, SirenSpec
from probegen_nb.core.zoo import ZooFormatError
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.zoos.inr import plan_from_splits_json
from probegen_nb.zoos.public.inr import convert_dwsnets_inr_zoo
from probegen_nb.zoos.public.layouts import InrImage, parse_inr_path

from paths import SHARED

# (split, path in the json, label), in the json's order; the image index is the number in the file name
ENTRIES = [("train", "mnist-inrs/train/model_3.pth", 5), ("train", "mnist-inrs/train/model_17.pth", 1),
           ("val", "mnist-inrs/train/model_5.pth", 2), ("test", "mnist-inrs/test/model_0.pth", 7),
           ("test", "mnist-inrs/test/model_42.pth", 3)]


def reference_state_dict(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    module = SirenINR()
    with torch.no_grad():  # the init leaves sine biases at zero; make every tensor distinctive
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return {k: v.clone() for k, v in module.state_dict().items()}


def write_public_zoo(root: Path, entries: list[tuple[str, str, object]], folder: str = "mnist-inrs",
                     seed: int = 10) -> tuple[Path, list[dict[str, torch.Tensor]]]:
    """Save one distinct SirenINR state_dict per (split, path in the json, label) at `root/folder/…` (the json path
    from its `folder` part on, so absolute paths as DWSNets writes them work too) and a splits json listing them in
    that order, paths and labels exactly as given."""
    state_dicts = []
    splits: dict[str, dict[str, list]] = {}
    for i, (split, rel, label) in enumerate(entries):
        sd = reference_state_dict(seed=seed + i)
        parts = Path(rel).parts
        file = root.joinpath(*parts[parts.index(folder):]) if folder in parts else root / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(sd, file)
        state_dicts.append(sd)
        splits.setdefault(split, {"path": [], "label": []})
        splits[split]["path"].append(rel)
        splits[split]["label"].append(label)
    splits_json = root / "splits.json"
    splits_json.write_text(json.dumps(splits))
    return splits_json, state_dicts


@pytest.fixture
def public(tmp_path: Path) -> tuple[Path, Path, list[dict[str, torch.Tensor]]]:
    """tmp/public/mnist-inrs/{train,test}/model_<i>.pth and tmp/public/splits.json."""
    root = tmp_path / "public"
    splits_json, state_dicts = write_public_zoo(root, ENTRIES)
    return root, splits_json, state_dicts


def test_state_dict_keys_are_the_public_ones() -> None:
    assert list(SirenINR().state_dict()) == ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias",
                                             "seq.2.weight", "seq.2.bias"]


@pytest.mark.parametrize("root_kind", ["parent", "zoo_folder"])
def test_convert(public, tmp_path: Path, root_kind: str) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, state_dicts = public
    src = root if root_kind == "parent" else root / "mnist-inrs"  # json paths start with mnist-inrs/ either way
    out = tmp_path / "converted"
    zoo = convert_dwsnets_inr_zoo(src, splits_json, out)

    assert zoo.spec == SirenSpec() and zoo.task.n_classes == 10
    t = zoo.table
    assert t["model_id"].tolist() == [0, 1, 2, 3, 4]
    assert t["split"].tolist() == ["train", "train", "val", "test", "test"]
    assert t["label"].tolist() == [5, 1, 2, 7, 3]
    assert t["image_split"].tolist() == ["train", "train", "train", "test", "test"]
    assert t["image_index"].tolist() == [3, 17, 5, 0, 42]
    assert t["source_path"].tolist() == [rel for _, rel, _ in ENTRIES]
    for row, sd in enumerate(state_dicts):
        for k, v in sd.items():
            assert torch.equal(zoo.params[k][row], v), (row, k)

    back = load_zoo(out)
    assert back.spec == zoo.spec and back.task == zoo.task
    assert back.table["image_index"].tolist() == [3, 17, 5, 0, 42]
    for k, v in zoo.params.items():
        assert torch.equal(back.params[k], v)
    assert back.split("val").table["image_index"].tolist() == [5]


def test_batched_forward_matches_each_module(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, state_dicts = public
    convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    zoo = load_zoo(tmp_path / "converted")
    x = torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1  # [P, 2] in [-1, 1]²
    out = forward(zoo.spec, zoo.params, x)  # [M, P, 1]
    assert out.shape == (5, 64, 1)
    with torch.no_grad():
        for row, sd in enumerate(state_dicts):
            module = SirenINR()
            module.load_state_dict(sd)
            ref = module(x)  # [P, 1]
            torch.testing.assert_close(out[row], ref, atol=1e-5, rtol=0)
    assert not torch.allclose(out[0], out[1])  # the models really differ, so a row mix-up would show


def test_refuses_existing_output(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    (tmp_path / "converted").mkdir()
    with pytest.raises(FileExistsError):
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")


def test_missing_pth(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    (root / "mnist-inrs/test/model_0.pth").unlink()
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert "mnist-inrs/test/model_0.pth" in str(e.value) and "not found" in str(e.value)
    assert not (tmp_path / "converted").exists()


def test_truncated_pth(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    bad = root / "mnist-inrs/train/model_17.pth"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert str(bad) in str(e.value) and "unreadable" in str(e.value)
    assert not (tmp_path / "converted").exists()


class _Exploit:
    """A pickle payload: unpickling it calls `open(marker, "w")`, which leaves a file behind as evidence."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_pth_with_code_is_refused(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    # control: the payload really runs code when loaded without weights_only
    control_marker = tmp_path / "control-ran"
    torch.save({"seq.0.weight": _Exploit(control_marker)}, tmp_path / "control.pth")
    torch.load(tmp_path / "control.pth", weights_only=False)
    assert control_marker.exists()

    marker = tmp_path / "payload-ran"
    bad = root / "mnist-inrs/train/model_5.pth"
    sd = reference_state_dict(0)
    sd["seq.0.weight"] = _Exploit(marker)  # type: ignore[assignment]
    torch.save(sd, bad)
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert str(bad) in str(e.value)
    assert not marker.exists(), "the converter executed code from a .pth file"
    assert not (tmp_path / "converted").exists()


def test_wrong_shape(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    bad = root / "mnist-inrs/test/model_42.pth"
    sd = reference_state_dict(1)
    sd["seq.0.weight"] = torch.zeros(32, 3)
    torch.save(sd, bad)
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    msg = str(e.value)
    assert str(bad) in msg and "'seq.0.weight'" in msg and "(32, 3)" in msg and "(32, 2)" in msg


def test_missing_parameter(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    bad = root / "mnist-inrs/train/model_3.pth"
    sd = reference_state_dict(2)
    del sd["seq.2.bias"]
    torch.save(sd, bad)
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert str(bad) in str(e.value) and "seq.2.bias" in str(e.value)


def test_list_instead_of_tensor(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    bad = root / "mnist-inrs/train/model_17.pth"
    sd = reference_state_dict(4)
    sd["seq.0.bias"] = sd["seq.0.bias"].tolist()  # type: ignore[assignment]  # weights_only allows plain lists
    torch.save(sd, bad)
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert str(bad) in str(e.value) and "'seq.0.bias'" in str(e.value)


def test_not_a_state_dict(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    bad = root / "mnist-inrs/train/model_3.pth"
    torch.save(torch.zeros(3), bad)
    with pytest.raises(ZooFormatError, match="expected a state_dict, got Tensor") as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert str(bad) in str(e.value)


def test_nan_weight_names_the_file(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    bad = root / "mnist-inrs/test/model_0.pth"
    sd = reference_state_dict(3)
    sd["seq.1.weight"][4, 7] = float("nan")
    torch.save(sd, bad)
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert str(bad) in str(e.value) and "'seq.1.weight'" in str(e.value)
    assert not (tmp_path / "converted").exists()


def test_label_out_of_range_names_the_model(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    splits = json.loads(splits_json.read_text())
    splits["test"]["label"][1] = 10
    splits_json.write_text(json.dumps(splits))
    with pytest.raises(ZooFormatError, match=r"label 10 of model_id 4 .*outside \[0, 10\)"):
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")


def test_unknown_split_in_json(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    splits = json.loads(splits_json.read_text())
    splits["tets"] = splits.pop("test")
    splits_json.write_text(json.dumps(splits))
    with pytest.raises(ZooFormatError, match="unknown split 'tets'") as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert str(splits_json) in str(e.value)


def test_unreadable_splits_json(public, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, splits_json, _ = public
    splits_json.write_text("{oops")
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert str(splits_json) in str(e.value)


# The two public layouts, each with both spellings of the official split. MNIST: DWSNets names each fit after the
# mnist_png image `<split>/<class>/<idx>.png` and writes labels as strings and paths absolute (from its cwd);
# class and index differ everywhere, so parsing one for the other would show.
MNIST = "mnist_png_{}_{}_{}/checkpoints/model_final.pth"
LAYOUTS = {
    "mnist": ("mnist-inrs", [
        ("train", "/home/u/DWSNets/dataset/mnist-inrs/" + MNIST.format("training", 5, 23089), "5"),
        ("train", "mnist-inrs/" + MNIST.format("train", 0, 1), "0"),
        ("val", "mnist-inrs/" + MNIST.format("training", 4, 59998), "4"),
        ("test", "mnist-inrs/" + MNIST.format("testing", 7, 0), "7"),
        ("test", "/home/u/DWSNets/dataset/mnist-inrs/" + MNIST.format("test", 2, 1), "2")],
        [("train", 23089), ("train", 1), ("train", 59998), ("test", 0), ("test", 1)]),
    "fmnist": ("fmnist_inrs", [
        ("train", "fmnist_inrs/training/model_12.pth", 9), ("train", "fmnist_inrs/train/model_3.pth", 0),
        ("val", "fmnist_inrs/train/model_40000.pth", 6), ("test", "fmnist_inrs/testing/model_7.pth", 1),
        ("test", "fmnist_inrs/test/model_9999.pth", 8)],
        [("train", 12), ("train", 3), ("train", 40000), ("test", 7), ("test", 9999)]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_convert_public_layouts(tmp_path: Path, layout: str) -> None:
    """Both public layouts convert: rows, splits, labels and provenance as the file names say, and the converted
    zoo's batched forward is each saved module's own output."""
    folder, entries, provenance = LAYOUTS[layout]
    root = tmp_path / "public"
    splits_json, state_dicts = write_public_zoo(root, entries, folder)
    convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    zoo = load_zoo(tmp_path / "converted")

    t = zoo.table
    assert len(zoo) == 5
    assert t["split"].tolist() == ["train", "train", "val", "test", "test"]
    assert t["label"].tolist() == [int(lab) for _, _, lab in entries]
    assert list(zip(t["image_split"], t["image_index"])) == provenance
    assert t["source_path"].tolist() == [rel for _, rel, _ in entries]

    x = torch.rand(97, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1  # [P, 2] in [-1, 1]²
    out = forward(zoo.spec, zoo.params, x)  # [M, P, 1]
    with torch.no_grad():
        for row, sd in enumerate(state_dicts):
            module = SirenINR()
            module.load_state_dict(sd)
            torch.testing.assert_close(out[row], module(x), atol=1e-6, rtol=0)
    assert not torch.allclose(out[3], out[4])  # the models really differ, so a row mix-up would show


@pytest.mark.parametrize(("path", "expected"), [
    ("fmnist_inrs/train/model_3.pth", InrImage("train", 3)),
    ("a/training/model_0.pth", InrImage("train", 0)),
    ("test/model_11.pth", InrImage("test", 11)),
    ("/abs/x/testing/model_5.pth", InrImage("test", 5)),
    ("mnist-inrs/mnist_png_training_3_123/checkpoints/model_final.pth", InrImage("train", 123, 3)),
    ("mnist_png_train_9_8/checkpoints/model_final.pth", InrImage("train", 8, 9)),
    ("/d/mnist_png_testing_0_42/checkpoints/model_final.pth", InrImage("test", 42, 0)),
    ("mnist_png_test_1_2/checkpoints/model_final.pth", InrImage("test", 2, 1)),
    # no provenance: neither layout, or a near miss of one
    ("some/other/inr_17.pth", None),
    ("model_3.pth", None),
    ("val/model_3.pth", None),
    ("train/model_final.pth", None),
    ("train/model_3.pt", None),
    ("mnist_png_training_3_123/model_final.pth", None),
    ("mnist_png_training_3_123/checkpoints/model_500.pth", None),
    ("mnist_png_valid_3_123/checkpoints/model_final.pth", None),
    ("mnist_png_training_3/checkpoints/model_final.pth", None),
])
def test_parse_inr_path(path: str, expected: InrImage | None) -> None:
    assert parse_inr_path(path) == expected


def test_path_without_provenance_keeps_its_inr(tmp_path: Path) -> None:
    """An INR whose path names no image is converted with empty provenance; its neighbours keep theirs."""
    entries = [("train", "mnist-inrs/" + MNIST.format("training", 5, 23089), 5),
               ("val", "mnist-inrs/some/other/inr_17.pth", 3), ("test", "mnist-inrs/testing/model_7.pth", 1)]
    root = tmp_path / "public"
    splits_json, state_dicts = write_public_zoo(root, entries)
    zoo = convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    assert zoo.table["image_split"].isna().tolist() == [False, True, False]
    assert zoo.table["image_index"].isna().tolist() == [False, True, False]

    lines = (tmp_path / "converted" / "models.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = dict(zip(header, lines[2].split(",")))
    assert row["image_split"] == "" and row["image_index"] == "" and row["source_path"].endswith("inr_17.pth")
    assert dict(zip(header, lines[1].split(",")))["image_index"] == "23089"  # an int in the file, not 23089.0

    back = load_zoo(tmp_path / "converted")
    t = back.table
    assert t["image_split"].isna().tolist() == [False, True, False]
    assert [t["image_split"][0], t["image_index"][0], t["image_split"][2], t["image_index"][2]] == [
        "train", 23089, "test", 7]
    assert t["label"].tolist() == [5, 3, 1]
    assert torch.equal(back.split("val").params["seq.1.weight"][0], state_dicts[1]["seq.1.weight"])


def test_mnist_class_label_mismatch_names_the_file(tmp_path: Path) -> None:
    rel = "mnist-inrs/" + MNIST.format("testing", 3, 18)
    entries = [("train", "mnist-inrs/" + MNIST.format("training", 5, 0), "5"), ("test", rel, "8")]
    root = tmp_path / "public"
    splits_json, _ = write_public_zoo(root, entries)
    with pytest.raises(ZooFormatError) as e:
        convert_dwsnets_inr_zoo(root, splits_json, tmp_path / "converted")
    msg = str(e.value)
    assert rel in msg and str(splits_json) in msg and "class-3" in msg and "labels it 8" in msg
    assert not (tmp_path / "converted").exists()


def test_plan_from_mnist_layout(tmp_path: Path) -> None:
    """Our own zoo can be planned from the MNIST layout's split file: the images its paths name."""
    _, entries, provenance = LAYOUTS["mnist"]
    splits_json, _ = write_public_zoo(tmp_path, entries)
    plan = plan_from_splits_json(splits_json)
    assert plan[["split", "label"]].values.tolist() == [[s, int(lab)] for s, _, lab in entries]
    assert list(zip(plan["image_split"], plan["image_index"])) == provenance


def test_plan_refuses_a_path_without_provenance(tmp_path: Path) -> None:
    """Planning a fit needs the image, so a provenance-less path is refused, naming the file and the path."""
    splits = {"train": {"path": ["fmnist_inrs/train/model_5.pth", "some/other/inr_17.pth"], "label": [2, 9]},
              "test": {"path": ["fmnist_inrs/test/model_7.pth"], "label": [9]}}
    f = tmp_path / "splits.json"
    f.write_text(json.dumps(splits))
    with pytest.raises(ValueError, match="names no official image") as e:
        plan_from_splits_json(f)
    assert str(f) in str(e.value) and "'some/other/inr_17.pth'" in str(e.value)


def test_plan_refuses_a_class_label_mismatch(tmp_path: Path) -> None:
    f = tmp_path / "splits.json"
    f.write_text(json.dumps({"train": {"path": ["mnist-inrs/" + MNIST.format("training", 1, 4)], "label": ["7"]}}))
    with pytest.raises(ZooFormatError, match="class-1 image but the splits file labels it 7"):
        plan_from_splits_json(f)


FMNIST_SPLITS = SHARED / "data" / "splits" / "fmnist_inr_splits.json"


@pytest.mark.skipif(not FMNIST_SPLITS.is_file(), reason="needs ../shared/data/splits/fmnist_inr_splits.json")
def test_small_fmnist_plan_keeps_the_public_assignment_class_balanced() -> None:
    """`make zoo-fmnist`'s plan: 4,000 / 500 / 1,000 INRs from the public FMNIST zoo's splits, 400 / 50 / 100 of
    each class, every image where the public zoo has it (val INRs of official train images, test of test images)."""
    full = plan_from_splits_json(FMNIST_SPLITS)
    plan = plan_from_splits_json(FMNIST_SPLITS, {"train": 4000, "val": 500, "test": 1000}, seed=0)
    counts = plan.groupby(["split", "label"]).size().unstack()
    assert (counts.loc["train"] == 400).all() and (counts.loc["val"] == 50).all() and (counts.loc["test"] == 100).all()
    public = set(zip(full["split"], full["image_split"], full["image_index"]))
    assert set(zip(plan["split"], plan["image_split"], plan["image_index"])) <= public
    assert plan["model_id"].tolist() == list(range(len(plan)))
    # the negative control: without balancing, a sample of the same size is not exactly balanced
    loose = plan_from_splits_json(FMNIST_SPLITS, {"train": 4000, "val": 500, "test": 1000}, balance_classes=False)
    assert loose.groupby(["split", "label"]).size().unstack().loc["train"].nunique() > 1
    with pytest.raises(ValueError, match="val has 477 INRs of class 2, fewer than the 500"):
        plan_from_splits_json(FMNIST_SPLITS, {"train": 10, "val": 5000, "test": 10})  # class 2: 477
