"""The zoo folder format: what `save_zoo` writes and `load_zoo` reads.

A zoo folder holds
- `weights.safetensors`: one tensor per parameter, keyed as in the architecture's reference state_dict, stacked
  along a leading model axis [M, *shape];
- `models.csv`: one row per model: `model_id`, `split`, the label column(s) and provenance;
- `zoo.json`: the architecture spec, the task (label column, number of classes), the format version and how the
  zoo was built.
Loading never executes code, validates everything once, and raises `ZooFormatError` naming the folder, the file
and the first offending model. Saving writes a sibling temp folder and renames it, so nothing is half-written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from probegen_nb.core.arch.registry import ArchSpec, spec_from_dict
from probegen_nb.core.jobs import share_mode
from probegen_nb.core.zoo import AnyZoo, MixedZoo, Task, Zoo, ZooFormatError

FORMAT = "probegen-zoo"


FORMAT_VERSION = 1


_CHECKOUT = Path(__file__).resolve().parents[2]  # the checkout, when the package runs from one
FILES = ("weights.safetensors", "models.csv", "zoo.json")


def zoo_fingerprint(folder: str | Path) -> str:
    """16 hex digits of the SHA-256 of the zoo's three files (names and bytes). A sweep records it with every run,
    so a run trained on a zoo that was since rebuilt at the same path is trained again, not read back."""
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode())
        with open(Path(folder) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


STORED_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float24": torch.uint8}  # the file's dtypes


def to_float24(x: torch.Tensor) -> torch.Tensor:
    """float32 [*S] rounded to nearest at its top 24 bits (sign, float32's 8 exponent bits, 15 of its 23 mantissa
    bits: relative error ≤ 2⁻¹⁶), as uint8 [*S, 3], low byte first. safetensors and torch have no 24-bit float, so
    this is written by hand: three quarters of float32's bytes, 32× float16's precision (what the committed CNN zoo
    needs to keep its labels and answers within 1e-3; docs/zoos.md, "Building CNN zoos")."""
    bits = x.detach().cpu().float().contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    top = (bits + 0x80) >> 8  # round half away from zero on the magnitude; a carry moves into the exponent
    return torch.stack([(top >> shift) & 0xFF for shift in (0, 8, 16)], dim=-1).to(torch.uint8)


def from_float24(b: torch.Tensor) -> torch.Tensor:
    """uint8 [*S, 3] from `to_float24` → float32 [*S] (the dropped low byte is zero)."""
    b = b.to(torch.int64)
    bits = (b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16) << 8
    return torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32).view(torch.float32)


def _encode(x: torch.Tensor, weights_dtype: str) -> torch.Tensor:
    x = x.detach().cpu()
    return to_float24(x) if weights_dtype == "float24" else x.to(STORED_DTYPES[weights_dtype]).contiguous()


def _decode(v: torch.Tensor, weights_dtype: str) -> torch.Tensor:
    return from_float24(v) if weights_dtype == "float24" else v.float()


def save_zoo(zoo: AnyZoo, folder: str | Path, overwrite: bool = False, weights_dtype: str = "float32") -> Path:
    """Write the three files into a temp sibling folder, then rename it into place.

    A MixedZoo stores `archs` (one spec per group) in zoo.json, an `arch` column in models.csv and its tensors
    as `arch<g>.<name>` in weights.safetensors. `weights_dtype="float16"` halves the file and "float24"
    (`to_float24`) takes three quarters of it (committed zoos); the weights are rounded once, `load_zoo` returns
    float32, and zoo.json records it. A value beyond the stored type's range is refused rather than stored as inf."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    share_mode(tmp)  # mkdtemp's 0700 would make the zoo private to its builder
    try:
        if isinstance(zoo, MixedZoo):
            tensors = {f"arch{g}.{k}": v for g, z in enumerate(zoo.groups) for k, v in z.params.items()}
            arch: dict[str, Any] = {"archs": [z.spec.to_dict() for z in zoo.groups]}
        else:
            tensors, arch = zoo.params, {"arch": zoo.spec.to_dict()}
        if weights_dtype not in STORED_DTYPES:
            raise ValueError(f"save_zoo: weights_dtype {weights_dtype!r} is not one of {sorted(STORED_DTYPES)}")
        stored = {k: _encode(v, weights_dtype) for k, v in tensors.items()}
        for k, v in stored.items():
            if not bool(_decode(v, weights_dtype).isfinite().all()) and bool(tensors[k].isfinite().all()):
                raise ValueError(f"save_zoo: {k} has values beyond {weights_dtype}'s range (max |w| "
                                 f"{tensors[k].abs().max().item():.3g}); store it as float32")
        save_file(stored, tmp / "weights.safetensors",
                  metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        zoo.table.to_csv(tmp / "models.csv", index=False)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_models": len(zoo), **arch,
                "weights_dtype": weights_dtype,
                "task": {"label_column": zoo.task.label_column, "n_classes": zoo.task.n_classes},
                "build": zoo.info}
        (tmp / "zoo.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        for f in tmp.iterdir():
            share_mode(f)  # safetensors writes 0600; a zoo is data to share
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def resolve_zoo_dir(zoo_dir: str | Path, search: Sequence[str | Path] = ()) -> Path:
    """A config's zoo path: as written (absolute, or from the current directory), else from each folder in `search`
    (a notebook's config names its zoo from the folder the notebook ran in)."""
    path = Path(zoo_dir)
    # then from the checkout's root, as written and without its leading "..": this project's relative zoo paths are
    # written from the root (`cli train --zoo data/zoos/...`) or from a folder beside data/ (the notebooks'
    # `../data/zoos/...`), so a run opens wherever it is opened from
    inside = Path(*[part for part in path.parts if part != ".."]) if not path.is_absolute() else path
    search = (*search, _CHECKOUT)
    for candidate in (path, *(Path(s) / path for s in search), _CHECKOUT / inside):
        if (candidate / "zoo.json").is_file():
            return candidate.resolve()
    tried = ", ".join(str(s) for s in (Path.cwd(), *search))
    raise FileNotFoundError(f"zoo folder {zoo_dir} (from the run's config.json) not found from {tried}; pass the "
                            f"zoo to load_run(..., zoo=...) or the folder its path is relative to as zoo_search")


def load_zoo(folder: str | Path, device: str | torch.device = "cpu") -> AnyZoo:
    """Read and validate a zoo folder. Never executes code from it."""
    folder = Path(folder)
    err = lambda file, msg: ZooFormatError(f"zoo {folder}: {file}: {msg}")
    if not folder.is_dir():
        raise ZooFormatError(f"zoo {folder}: no such folder")
    for f in FILES:
        if not (folder / f).is_file():
            raise err(f, "missing file")
    try:
        meta = json.loads((folder / "zoo.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise err("zoo.json", f"not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise err("zoo.json", f"expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise err("zoo.json", f"format {meta.get('format')!r} version {meta.get('format_version')!r}, expected "
                              f"{FORMAT!r} version {FORMAT_VERSION}")
    try:
        specs = [spec_from_dict(a) for a in meta["archs"]] if "archs" in meta else [spec_from_dict(meta["arch"])]
        task = Task(**meta.get("task", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise err("zoo.json", f"bad architecture or task ({e})") from None
    try:
        params = load_file(folder / "weights.safetensors", device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise err("weights.safetensors", f"unreadable, truncated or corrupt ({e})") from None
    stored = meta.get("weights_dtype", "float32")  # zoos written before it was recorded are float32
    if stored not in STORED_DTYPES:
        raise err("zoo.json", f"weights_dtype {stored!r} is not one of {sorted(STORED_DTYPES)}")
    for k, v in params.items():
        if v.dtype != STORED_DTYPES[stored]:
            raise err("weights.safetensors", f"tensor {k!r} is {str(v.dtype).removeprefix('torch.')}, but zoo.json "
                                             f"says the weights are {stored}")
        if stored == "float24" and (v.ndim < 2 or v.shape[-1] != 3):
            raise err("weights.safetensors", f"tensor {k!r} has shape {list(v.shape)}: float24 weights are uint8 "
                                             f"with a last axis of 3 bytes")
    params = {k: _decode(v, stored) for k, v in params.items()}  # a zoo computes in float32 whatever it stores
    try:
        table = pd.read_csv(folder / "models.csv", keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise err("models.csv", f"unreadable ({e})") from None
    try:
        if "archs" in meta:
            zoo: AnyZoo = _mixed_from_files(specs, params, table, task, meta.get("build", {}))
        else:
            zoo = Zoo(specs[0], params, table, task, meta.get("build", {}))
    except ZooFormatError as e:
        raise ZooFormatError(f"zoo {folder}: " + str(e).removeprefix("zoo: ")) from None
    if meta.get("n_models") not in (None, len(zoo)):
        raise err("zoo.json", f"n_models {meta['n_models']} but models.csv has {len(zoo)} rows")
    return zoo.to(device) if str(device) != "cpu" else zoo


def _mixed_from_files(specs: list[ArchSpec], params: dict[str, torch.Tensor], table: pd.DataFrame, task: Task,
                      info: dict[str, Any]) -> MixedZoo:
    if "arch" not in table:
        raise ZooFormatError("models.csv: missing column 'arch' (zoo.json lists several architectures)")
    bad = ~table["arch"].isin(range(len(specs)))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ZooFormatError(f"models.csv: arch {table['arch'].iloc[row].item()!r} of row {row} is not one of the "
                             f"{len(specs)} architectures in zoo.json")
    groups = []
    for g, spec in enumerate(specs):
        prefix = f"arch{g}."
        sub = table[table["arch"] == g].drop(columns="arch").reset_index(drop=True)
        tensors = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
        try:
            groups.append(Zoo(spec, tensors, sub, task, info))
        except ZooFormatError as e:
            raise ZooFormatError(str(e).replace("weights.safetensors: ", f"weights.safetensors: arch {g}: ", 1)
                                 ) from None
    return MixedZoo(tuple(groups), task, info)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if math.isnan(o) else float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
