"""How variants compare over seeds: mean ± std per variant, and paired differences with paired t intervals.

Runs of two variants with the same seed share the zoo, the batch order's seed and the probes' seed, so their
difference is less noisy than either number; the comparison is therefore paired by seed. The interval of the mean
difference is the paired t interval (`scipy.stats.t`), not a percentile bootstrap: tables compare 3–5 seeds, and at
that n a bootstrap interval can never be wider than the range of the differences, so it under-covers (about 75 % at
n = 3 and 84 % at n = 5 for a nominal 95 % on normal data; tests/experiment/test_stats.py measures it). The t interval
covers 95 % on normal differences at any n ≥ 2 and stays above 92 % on moderately skewed ones at n = 3. One seed gives
no interval (NaN); a difference is "beyond seed noise" only when its interval excludes 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def paired_t_interval(diffs: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The `confidence` t interval of the mean of the paired differences `diffs` (n,): NaN bounds for one difference
    (no spread to scale by), a ValueError for none."""
    diffs = np.asarray(diffs, dtype=float)  # (n,)
    if diffs.size == 0:
        raise ValueError("no paired differences: an interval needs at least one seed (two for a width)")
    mean = float(diffs.mean())
    if diffs.size == 1:
        return math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, diffs.size - 1)) * float(diffs.std(ddof=1)) / math.sqrt(diffs.size)
    return mean - half, mean + half


def compare_variants(results: pd.DataFrame, metric: str, reference: str, confidence: float = 0.95) -> pd.DataFrame:
    """One row per variant of `results` (columns `variant`, `seed`, `metric`; failed runs, where a `status` column
    says so, are left out): `n`, `mean` and `std` (sample std, ddof 1) over seeds, and against `reference` the mean
    paired difference `diff` (variant − reference) with its paired t interval `diff_low`, `diff_high` (NaN with
    one seed).

    Every variant must have the reference's seeds, each once; otherwise a ValueError names what is missing."""
    for column in ("variant", "seed", metric):
        if column not in results.columns:
            raise ValueError(f"results have no {column!r} column; columns: {list(results.columns)}")
    done = results[results["status"] == "done"] if "status" in results.columns else results
    values = {v: group.set_index("seed")[metric].astype(float) for v, group in done.groupby("variant", sort=False)}
    if reference not in values:
        raise ValueError(f"reference variant {reference!r} has no finished runs; variants: {sorted(values)}")
    for variant, by_seed in values.items():
        repeated = sorted(by_seed.index[by_seed.index.duplicated()].unique().tolist())
        if repeated:
            raise ValueError(f"variant {variant!r} has several runs for seeds {repeated}: cannot pair them")
    seeds = sorted(values[reference].index)
    rows = []
    for variant, by_seed in values.items():
        if sorted(by_seed.index) != seeds:
            raise ValueError(f"variant {variant!r} has seeds {sorted(by_seed.index)} but the reference "
                             f"{reference!r} has {seeds}: differences are paired by seed")
        diffs = by_seed[seeds].to_numpy() - values[reference][seeds].to_numpy()  # (n,)
        low, high = paired_t_interval(diffs, confidence)
        rows.append({"variant": variant, "n": len(by_seed), "mean": by_seed.mean(),
                     "std": by_seed.std(ddof=1) if len(by_seed) > 1 else float("nan"),
                     "diff": diffs.mean(), "diff_low": low, "diff_high": high})
    return pd.DataFrame(rows).set_index("variant")


def verdict(low: float, high: float, n: int) -> str:
    """What an interval says in words: "above"/"below" when it excludes 0, else that n seeds cannot tell."""
    if math.isnan(low) or math.isnan(high):
        return "one seed: no interval"
    if low > 0:
        return "above, beyond seed noise"
    if high < 0:
        return "below, beyond seed noise"
    return f"not distinguishable at {n} seeds"


def format_comparison(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """`compare_variants`' table as text: "0.912 ± 0.004" and "+0.021 [+0.010, +0.033]" columns ("n/a" where one
    seed leaves no std or interval)."""
    f = f".{digits}f"

    def spread(m: float, s: float) -> str:
        return f"{m:{f}} ± " + ("n/a" if math.isnan(s) else f"{s:{f}}")

    def interval(d: float, lo: float, hi: float) -> str:
        return f"{d:+{f}} " + ("[n/a: one seed]" if math.isnan(lo) else f"[{lo:+{f}}, {hi:+{f}}]")

    return pd.DataFrame({
        "n": table["n"],
        "mean ± std": [spread(m, s) for m, s in zip(table["mean"], table["std"])],
        "diff [95% CI]": [interval(d, lo, hi)
                          for d, lo, hi in zip(table["diff"], table["diff_low"], table["diff_high"])],
    }, index=table.index)
