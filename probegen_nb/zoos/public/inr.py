"""Converters from the public zoos' distribution formats into the project's zoo format.

Public files are read with `torch.load(weights_only=True)`: tensors and plain containers only, never code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.zoo import SPLITS, Task, Zoo, ZooFormatError, stack_state_dicts
from probegen_nb.core.zoo_io import save_zoo
from probegen_nb.zoos.public.layouts import parse_inr_path, resolve_listed_path


def convert_dwsnets_inr_zoo(root: str | Path, splits_json: str | Path, out_dir: str | Path,
                            spec: SirenSpec = SirenSpec(), n_classes: int = 10, overwrite: bool = False) -> Zoo:
    """DWSNets INR zoo layout (one SIREN state_dict `.pth` per INR, and `{split: {path: [...], label: [...]}}`)
    → a zoo folder. Paths in the json are resolved against `root`, also when they carry a leading folder that
    `root` already is.

    `image_split`/`image_index` (which official image each INR encodes) come from the file names, in either public
    layout (`parse_inr_path`; the MNIST layout's class is checked against the json label). An INR whose path
    names no image is kept with empty provenance (None in the table, empty in models.csv): classifying INRs does
    not need it, only refitting or drawing the original image does."""
    root, splits_json = Path(root), Path(splits_json)
    try:
        splits = json.loads(splits_json.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ZooFormatError(f"{splits_json}: unreadable splits file ({e})") from None
    rows: list[dict[str, Any]] = []
    state_dicts: list[dict[str, torch.Tensor]] = []
    names: list[str] = []
    entries = [(s, p, lab) for s, e in splits.items() for p, lab in zip(e["path"], e["label"])]
    for split, rel, label in tqdm(entries, desc="reading INRs", unit="INR"):
        if split not in SPLITS:
            raise ZooFormatError(f"{splits_json}: unknown split {split!r}; expected {SPLITS}")
        path = resolve_listed_path(root, rel)
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ZooFormatError(f"{splits_json}: {split} INR {rel!r} not found under {root}") from None
        except Exception as e:  # truncated/corrupt file or a pickle with code in it
            raise ZooFormatError(f"{path}: unreadable INR ({type(e).__name__}: {e})") from None
        if not isinstance(sd, dict):
            raise ZooFormatError(f"{path}: expected a state_dict, got {type(sd).__name__}")
        try:  # the DWSNets MNIST splits file writes labels as strings ("5")
            label = int(label)
        except (TypeError, ValueError):
            raise ZooFormatError(f"{splits_json}: {split} INR {rel!r}: label {label!r} is not a class id") from None
        image = parse_inr_path(rel, label, splits_json)
        rows.append({"model_id": len(rows), "split": split, "label": label,
                     "image_split": image.split if image else None, "image_index": image.index if image else None,
                     "psnr": float("nan"), "source_path": rel})
        state_dicts.append(sd)
        names.append(str(path))
    params = stack_state_dicts(state_dicts, spec, names)
    table = pd.DataFrame(rows)
    if len(table):  # nullable ints: indices stay ints (3, not 3.0) beside missing ones
        table["image_index"] = table["image_index"].astype("Int64")
    info = {"builder": "probegen_nb.zoos.public.inr.convert_dwsnets_inr_zoo", "source_root": str(root),
            "splits_json": str(splits_json)}
    try:
        zoo = Zoo(spec, params, table, Task("label", n_classes), info)
    except ZooFormatError as e:  # name the source file of the offending model
        raise ZooFormatError(f"{root}: {e}") from None
    save_zoo(zoo, out_dir, overwrite=overwrite)
    return zoo
