"""How variants compare over seeds: mean ± std per variant, and paired differences with bootstrap intervals.

Runs of two variants with the same seed share the zoo, the batch order's seed and the probes' seed, so their
difference is less noisy than either number; the comparison is therefore paired by seed, with a 95 % percentile
bootstrap interval of the mean difference (a fixed-seed generator, so the interval is the same on every rerun).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def compare_variants(results: pd.DataFrame, metric: str, reference: str, n_resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per variant of `results` (columns `variant`, `seed`, `metric`; failed runs, where a `status` column
    says so, are left out): `n`, `mean` and `std` (sample std, ddof 1) over seeds, and against `reference` the mean
    paired difference `diff` (variant − reference) with its interval `diff_low`, `diff_high`.

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
    rng = np.random.default_rng(seed)
    rows = []
    for variant, by_seed in values.items():
        if sorted(by_seed.index) != seeds:
            raise ValueError(f"variant {variant!r} has seeds {sorted(by_seed.index)} but the reference "
                             f"{reference!r} has {seeds}: differences are paired by seed")
        diffs = by_seed[seeds].to_numpy() - values[reference][seeds].to_numpy()  # (n,)
        means = diffs[rng.integers(0, len(diffs), size=(n_resamples, len(diffs)))].mean(axis=1)  # (n_resamples,)
        tail = 100 * (1 - confidence) / 2
        low, high = np.percentile(means, [tail, 100 - tail])
        rows.append({"variant": variant, "n": len(by_seed), "mean": by_seed.mean(),
                     "std": by_seed.std(ddof=1) if len(by_seed) > 1 else float("nan"),
                     "diff": diffs.mean(), "diff_low": low, "diff_high": high})
    return pd.DataFrame(rows).set_index("variant")


def format_comparison(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """`compare_variants`' table as text: "0.912 ± 0.004" and "+0.021 [+0.010, +0.033]" columns."""
    f = f".{digits}f"
    return pd.DataFrame({
        "n": table["n"],
        "mean ± std": [f"{m:{f}} ± {s:{f}}" for m, s in zip(table["mean"], table["std"])],
        "diff [95% CI]": [f"{d:+{f}} [{lo:+{f}}, {hi:+{f}}]"
                          for d, lo, hi in zip(table["diff"], table["diff_low"], table["diff_high"])],
    }, index=table.index)
