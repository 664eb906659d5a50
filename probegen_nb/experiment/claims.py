"""Notebooks check the claims they print: "ProbeGen beats vanilla probing" is said only where the run's own paired
interval over seeds supports it, never from a margin copied from elsewhere.

Every number must be a finite metric (`check_finite`); every sentence is generated from a comparison row
(`PairedClaim`) and checked against it (`check_consistent`); an ordering stated up front fails only where the
intervals contradict it (`comparison_claims`). A failed check raises `ClaimError` listing every failure, so a headless
run (papermill, CI) stops instead of printing a claim its own numbers contradict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

METRIC_RANGE = {"accuracy": (0.0, 1.0), "kendall_tau": (-1.0, 1.0)}  # what a finite metric can be


class ClaimError(AssertionError):
    """A notebook's numbers contradict a claim it makes (or are not numbers at all)."""


def check_finite(results: Mapping[str, Mapping[str, Any]], key: str) -> list[str]:
    """Every method's `results[method][key]` (e.g. key "test_accuracy") is a finite number inside the metric's
    range. Returns one line per method; raises `ClaimError` naming every method whose number is not."""
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
    if failures:
        raise ClaimError("the notebook's numbers are not all finite metrics:\n" + "\n".join(failures))
    return lines


# --- claims read off a run's own paired intervals -------------------------------------------------------------------
# A comparison table (`experiment.stats.compare_variants`: one row per variant with `n`, `diff` = variant − reference
# and its interval `diff_low`, `diff_high`) says by itself what may be claimed: a direction where the interval
# excludes 0, "not distinguishable" where it includes 0, nothing but the number where one seed gives no interval.
BEATS, TIED, NO_INTERVAL = "beats", "not distinguishable", "no interval"


@dataclass(frozen=True)
class PairedClaim:
    """What one row of a comparison table supports about `variant` against `reference` on `metric`."""

    variant: str
    reference: str
    metric: str
    n: int  # paired seeds
    diff: float  # mean of variant − reference over the seeds
    low: float  # the paired interval of `diff`
    high: float

    @property
    def verdict(self) -> str:
        """BEATS when the interval excludes 0 (either way), TIED when it includes 0, NO_INTERVAL at one seed."""
        if self.n < 2 or not (math.isfinite(self.low) and math.isfinite(self.high)):
            return NO_INTERVAL
        return BEATS if self.low > 0 or self.high < 0 else TIED

    @property
    def sentence(self) -> str:
        """"probegen beats vanilla on test_accuracy by +0.031 [+0.012, +0.050] over 3 seeds", or the tie, or the
        bare number at one seed; the winner is named first, so its margin and interval are positive."""
        if self.verdict == NO_INTERVAL:
            return (f"{self.variant} − {self.reference} on {self.metric}: {self.diff:+.3f} at {self.n} seed "
                    f"({NO_INTERVAL}, so no claim)")
        if self.verdict == TIED:
            return (f"{self.variant} and {self.reference} are {TIED} on {self.metric} at {self.n} seeds "
                    f"({self.variant} − {self.reference}: {self.diff:+.3f} [{self.low:+.3f}, {self.high:+.3f}])")
        sign = 1.0 if self.low > 0 else -1.0  # the winner's margin over the loser
        winner, loser = (self.variant, self.reference) if sign > 0 else (self.reference, self.variant)
        low, high = sorted((sign * self.low, sign * self.high))
        return (f"{winner} {BEATS} {loser} on {self.metric} by {sign * self.diff:+.3f} [{low:+.3f}, {high:+.3f}] "
                f"over {self.n} seeds")


def paired_claims(table: Any, reference: str, metric: str) -> list[PairedClaim]:
    """One claim per variant of a `compare_variants` table other than `reference`, in the table's order."""
    for column in ("n", "diff", "diff_low", "diff_high"):
        if column not in table.columns:
            raise ValueError(f"comparison table has no {column!r} column; columns: {list(table.columns)}")
    if reference not in table.index:
        raise ValueError(f"reference {reference!r} is not a row of the comparison; rows: {list(table.index)}")
    return [PairedClaim(str(name), reference, metric, int(row["n"]), float(row["diff"]), float(row["diff_low"]),
                        float(row["diff_high"]))
            for name, row in table.iterrows() if name != reference]


def check_consistent(sentences: Sequence[str], table: Any, reference: str | Mapping[str, str]) -> list[str]:
    """Each printed sentence says what its variant's row allows: BEATS only where the interval excludes 0 (and
    the named winner is on the interval's side), TIED only where it includes 0, no claim at one seed. Read from the
    text, so a sentence generator that ignores the interval is caught. Returns the sentences; raises `ClaimError`
    naming every sentence its row contradicts. `reference`: one for every row, or per row (variant → the row it
    was compared with, e.g. the reference at the same x of an ablation's axis)."""
    refs = {str(n): reference for n in table.index} if isinstance(reference, str) else dict(reference)
    failures = []
    for sentence in sentences:
        named = [n for n in table.index if refs.get(str(n), str(n)) != str(n) and str(n) in sentence]
        name = max(named, key=lambda n: len(str(n))) if named else None  # "nfn-hnp lr=0.001" over "nfn-hnp"
        if name is None:
            failures.append(f"names no variant of the table: {sentence!r}")
            continue
        row = table.loc[name]
        n, low, high = int(row["n"]), float(row["diff_low"]), float(row["diff_high"])
        has_interval = n >= 2 and math.isfinite(low) and math.isfinite(high)
        if f" {BEATS} " in sentence:
            winner = sentence.split(f" {BEATS} ")[0].strip()
            ok = has_interval and ((winner == str(name) and low > 0) or (winner == refs[str(name)] and high < 0))
        elif TIED in sentence:
            ok = has_interval and low <= 0 <= high
        else:
            ok = NO_INTERVAL in sentence and not has_interval
        if not ok:
            failures.append(f"{sentence!r} contradicts {name}'s row (n={n}, interval [{low:+.4f}, {high:+.4f}])")
    if failures:
        raise ClaimError("printed claims that the run's own intervals do not support:\n" + "\n".join(failures))
    return list(sentences)


def comparison_claims(table: Any, reference: str, metric: str,
                      expected: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The sentences a comparison supports against `reference` (`paired_claims`, checked by `check_consistent`).
    `expected` (winner, loser) pairs, one of them the reference, are orderings the notebook states up front (the
    paper's): a ClaimError names each that the run's intervals contradict (the expected loser ahead beyond noise);
    an interval that includes 0, or one seed, contradicts nothing."""
    sentences = check_consistent([c.sentence for c in paired_claims(table, reference, metric)], table, reference)
    contradicted = []
    for winner, loser in expected:
        if reference not in (winner, loser):
            raise ValueError(f"expected ordering {winner} > {loser} does not involve the reference {reference!r}")
        other = loser if winner == reference else winner
        if other not in table.index:
            raise ValueError(f"expected ordering names {other!r}, but the comparison holds {list(table.index)}")
        row = table.loc[other]
        lost = row["diff_low"] > 0 if winner == reference else row["diff_high"] < 0  # diff = other − reference
        if int(row["n"]) >= 2 and lost:
            contradicted.append(f"expected {winner} > {loser}, but {next(s for s in sentences if other in s)}")
    if contradicted:
        raise ClaimError("the run's intervals contradict the expected ordering:\n" + "\n".join(contradicted))
    return sentences
