"""How the public zoos name their files: paths listed in split files, and which official image an INR encodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from probegen_nb.core.zoo import ZooFormatError

INR_LAYOUTS = "…/<train|test>/model_<i>.pth or …/mnist_png_<train|test>_<class>_<idx>/checkpoints/model_final.pth"

_SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test"}


_MNIST_FOLDER = re.compile(r"mnist_png_(train|training|test|testing)_(\d+)_(\d+)")


@dataclass(frozen=True)
class InrImage:
    """The official image an INR encodes: `split` ('train'|'test') and `index` within that split; `label` is the
    class the path itself names (MNIST layout only, else None)."""

    split: str
    index: int
    label: int | None = None


def resolve_listed_path(root: Path, rel: str) -> Path:
    """`root/rel`, else `root/rel` without its leading folders (json paths often start with the zoo's own name)."""
    parts = Path(rel).parts
    for k in range(len(parts)):
        p = root.joinpath(*parts[k:])
        if p.exists():
            return p
    return root / rel


def parse_inr_path(p: str, label: int | None = None, source: Path | str = "splits file") -> InrImage | None:
    """Which official image the INR at path `p` encodes, from the public INR zoos' two layouts:

    - FMNIST: `…/<split>/model_<i>.pth`: image `i` of the official split;
    - MNIST: `…/mnist_png_<split>_<class>_<idx>/checkpoints/model_final.pth`, as the DWSNets code names its fits of
      the mnist_png images `<split>/<class>/<idx>.png`: `<idx>` is the image's position in the official MNIST
      train or test file (not its rank within its class), so `index` is that position, as in the FMNIST layout.
      The class in the path is checked against `label` (the splits file's), since the DWSNets code derives its
      labels from it: a mismatch means a mixed-up path or label and raises a ZooFormatError naming `source` and `p`.

    `<split>` may be spelt train/training or test/testing and comes back as 'train'/'test'. A path in neither layout
    carries no provenance: None (the caller decides whether it needs it)."""
    parts = Path(p).parts
    if len(parts) >= 3 and parts[-2:] == ("checkpoints", "model_final.pth"):
        m = _MNIST_FOLDER.fullmatch(parts[-3])
        if m:
            image = InrImage(_SPLIT_NAMES[m[1]], int(m[3]), int(m[2]))
            if label is not None and int(label) != image.label:
                raise ZooFormatError(f"{source}: INR {p!r} is named for a class-{image.label} image but the splits "
                                     f"file labels it {label}")
            return image
    m = re.fullmatch(r"model_(\d+)\.pth", parts[-1]) if parts else None
    if m and len(parts) >= 2 and parts[-2] in _SPLIT_NAMES:
        return InrImage(_SPLIT_NAMES[parts[-2]], int(m[1]))
    return None
