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
from probegen_nb.zoos.public.inr import convert_dwsnets_inr_zoo

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


@pytest.fixture
def public(tmp_path: Path) -> tuple[Path, Path, list[dict[str, torch.Tensor]]]:
    """tmp/public/mnist-inrs/{train,test}/model_<i>.pth and tmp/public/splits.json."""
    root = tmp_path / "public"
    state_dicts = []
    splits: dict[str, dict[str, list]] = {s: {"path": [], "label": []} for s in ("train", "val", "test")}
    for i, (split, rel, label) in enumerate(ENTRIES):
        sd = reference_state_dict(seed=10 + i)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save(sd, root / rel)
        state_dicts.append(sd)
        splits[split]["path"].append(rel)
        splits[split]["label"].append(label)
    splits_json = root / "splits.json"
    splits_json.write_text(json.dumps(splits))
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
