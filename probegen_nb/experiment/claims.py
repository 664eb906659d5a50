"""Notebooks check the claims they print: "ProbeGen beats vanilla probing" is asserted where it is measured.

In full mode every claim must hold by more than its margin (the seed spread that README reports for those methods, so
a pass is more than noise); in fast mode (a few epochs on a subset, where no ranking is meaningful) only that every
number is finite and inside the metric's range. A failed check raises `ClaimError` listing every failure, so a
headless run (papermill, CI) stops instead of printing a claim its own numbers contradict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

METRIC_RANGE = {"accuracy": (0.0, 1.0), "kendall_tau": (-1.0, 1.0)}  # what a finite metric can be


class ClaimError(AssertionError):
    """A notebook's numbers contradict a claim it makes (or are not numbers at all)."""


@dataclass(frozen=True)
class Claim:
    """`better` beats `worse` on the checked metric by more than `margin` (in the metric's units)."""

    better: str  # method name, a key of the results
    worse: str  # method name it must beat
    margin: float  # required gap, e.g. the larger seed std of the two as README reports it
    why: str = ""  # where the margin comes from, shown in the report


def check_claims(results: Mapping[str, Mapping[str, Any]], key: str, claims: Sequence[Claim],
                 fast: bool) -> list[str]:
    """Check `results[method][key]` (e.g. key "test_accuracy") for every method; in full mode also every claim.

    Returns one human-readable line per check; raises `ClaimError` naming every check that failed."""
    metric = next((m for m in METRIC_RANGE if key.endswith(m)), None)
    if metric is None:
        raise ValueError(f"cannot tell the metric of {key!r}; known: {sorted(METRIC_RANGE)}")
    low, high = METRIC_RANGE[metric]
    lines: list[str] = []
    failures: list[str] = []
    for method, values in results.items():
        value = values.get(key)
        ok = isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high
        line = f"{method}: {key} = {value!r} is finite and in [{low:g}, {high:g}]"
        (lines if ok else failures).append(line if ok else f"FAILED {line}")
    if not fast:
        for claim in claims:
            for name in (claim.better, claim.worse):
                if name not in results:
                    raise ValueError(f"claim names method {name!r}, but the results hold {sorted(results)}")
            gap = results[claim.better][key] - results[claim.worse][key]
            line = (f"{claim.better} beats {claim.worse} on {key} by {gap:+.4f} (needs > {claim.margin:g}"
                    f"{'; ' + claim.why if claim.why else ''})")
            (lines if gap > claim.margin else failures).append(line if gap > claim.margin else f"FAILED {line}")
    if failures:
        raise ClaimError("the numbers contradict the notebook's claims:\n" + "\n".join(failures))
    return lines
