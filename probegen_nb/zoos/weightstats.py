"""Per-layer weight statistics of a zoo, computed as the public zoos' statistics files are, for sanity checks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from probegen_nb.core.zoo import AnyZoo, MixedZoo

# Layer-averaged weight std of the public SIREN INR zoos (shared/README.md), for when the .pth files are absent.
PUBLIC_INR_WEIGHT_STD = {"mnist": (0.0628, 0.0183, 0.118), "fmnist": (0.0782, 0.0324, 0.135)}


def layer_weight_std(zoo: AnyZoo, split: str | None = "train") -> list[float]:
    """Per layer: the std across models of every weight entry, averaged over the entries (as the public files).
    A mixed zoo whose groups share their weight shapes (the Small CNN Zoo's relu and tanh groups) counts as one."""
    z = zoo.split(split) if split else zoo
    groups = z.groups if isinstance(z, MixedZoo) else (z,)
    names = [k for k in groups[0].params if k.endswith("weight")]
    if any([g.params[k].shape[1:] for k in names] != [groups[0].params[k].shape[1:] for k in names] for g in groups):
        raise ValueError("layer_weight_std: the zoo's architectures have different weight shapes")
    stacked = {k: torch.cat([g.params[k] for g in groups]) for k in names}  # [M, …] over every group
    return [float(stacked[k].float().std(dim=0).mean()) for k in names]


def public_layer_weight_std(stats_path: str | Path) -> list[float]:
    """Layer-averaged weight std from a public statistics `.pth` ({'weights': {'std': [per-layer tensors]}})."""
    stats = torch.load(stats_path, map_location="cpu", weights_only=True)
    try:
        return [float(t.float().mean()) for t in stats["weights"]["std"]]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{stats_path}: not a public zoo statistics file ({e})") from None


def compare_weight_std(zoo: AnyZoo, public: list[float] | tuple[float, ...]) -> pd.DataFrame:
    """Table of this zoo's per-layer weight std against a public zoo's, with their ratio."""
    ours = layer_weight_std(zoo)
    if len(ours) != len(public):
        raise ValueError(f"zoo has {len(ours)} weight layers, public statistics {len(public)}")
    return pd.DataFrame({"layer": [f"L{i}" for i in range(len(ours))], "this_zoo": ours, "public_zoo": list(public),
                         "ratio": [a / b for a, b in zip(ours, public)]})
