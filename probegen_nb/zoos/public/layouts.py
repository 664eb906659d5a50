"""How the public zoos name their files: paths listed in split files, and which official image an INR encodes.
"""

from __future__ import annotations

from pathlib import Path


def resolve_listed_path(root: Path, rel: str) -> Path:
    """`root/rel`, else `root/rel` without its leading folders (json paths often start with the zoo's own name)."""
    parts = Path(rel).parts
    for k in range(len(parts)):
        p = root.joinpath(*parts[k:])
        if p.exists():
            return p
    return root / rel


def parse_inr_path(p: str, source: Path | str = "splits file") -> tuple[str, int]:
    """`…/<train|test>/model_<i>.pth` → ('train'|'test', i): which official image an INR encodes."""
    parts = Path(p).parts
    stem = Path(p).stem
    if len(parts) < 2 or parts[-2] not in ("train", "test") or not stem.startswith("model_"):
        raise ValueError(f"{source}: cannot tell the image of INR path {p!r} (expected …/train|test/model_<i>.pth)")
    return parts[-2], int(stem.removeprefix("model_"))
