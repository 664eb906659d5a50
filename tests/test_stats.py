"""Comparing variants over seeds, on numbers whose answer is known: mean ± std, paired differences and their
bootstrap intervals, and the errors for runs that cannot be paired."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probegen_nb.experiment.stats import compare_variants, format_comparison

REFERENCE = [0.91, 0.93, 0.90, 0.92]


def results(**variants: list[float]) -> pd.DataFrame:
    """Long format, as results.csv: one row per (variant, seed), seeds 0, 1, … in order."""
    return pd.DataFrame([{"variant": v, "seed": s, "test_accuracy": x, "status": "done"}
                         for v, xs in variants.items() for s, x in enumerate(xs)])


def test_mean_and_std_per_variant() -> None:
    table = compare_variants(results(probegen=REFERENCE, vanilla=[0.8, 0.9, 0.7, 0.6]), "test_accuracy",
                             "probegen")
    assert list(table.index) == ["probegen", "vanilla"] and list(table["n"]) == [4, 4]
    assert table.loc["vanilla", "mean"] == pytest.approx(0.75)
    assert table.loc["vanilla", "std"] == pytest.approx(np.sqrt(0.05 / 3))  # squares 0.0025+0.0225+0.0025+0.0225
    assert table.loc["probegen", "mean"] == pytest.approx(0.915)


def test_identical_columns_differ_by_zero() -> None:
    table = compare_variants(results(probegen=REFERENCE, copy=REFERENCE), "test_accuracy", "probegen")
    for variant in ("probegen", "copy"):
        assert tuple(table.loc[variant, ["diff", "diff_low", "diff_high"]]) == (0.0, 0.0, 0.0)


def test_a_constant_shift_is_the_difference_and_its_whole_interval() -> None:
    table = compare_variants(results(probegen=REFERENCE, better=[x + 0.1 for x in REFERENCE]), "test_accuracy",
                             "probegen")
    for column in ("diff", "diff_low", "diff_high"):
        assert table.loc["better", column] == pytest.approx(0.1, abs=1e-12)


def test_hand_checked_intervals() -> None:
    """Differences [0, 1]: resampled means are 0, ½, 1 with chances ¼, ½, ¼, so the 95 % interval is [0, 1].
    Differences [0, 0, 0, 1]: a mean of 1 has chance 1/256 < 2.5 %, of ≥ ¾ 13/256 > 2.5 %: the interval is [0, ¾]."""
    two = compare_variants(results(ref=[0.0, 0.0], x=[0.0, 1.0]), "test_accuracy", "ref").loc["x"]
    assert (two["diff"], two["diff_low"], two["diff_high"]) == (0.5, 0.0, 1.0)
    four = compare_variants(results(ref=[0.0] * 4, x=[0.0, 0.0, 0.0, 1.0]), "test_accuracy", "ref").loc["x"]
    assert (four["diff"], four["diff_low"], four["diff_high"]) == (0.25, 0.0, 0.75)


def test_pairs_by_seed_not_by_row_order_and_is_reproducible() -> None:
    shuffled = results(ref=[0.5, 0.6, 0.7], x=[0.6, 0.7, 0.8]).sample(frac=1.0, random_state=3)
    table = compare_variants(shuffled, "test_accuracy", "ref")
    assert table.loc["x", "diff_low"] == pytest.approx(0.1) and table.loc["x", "diff_high"] == pytest.approx(0.1)
    noisy = results(ref=REFERENCE, x=[0.95, 0.90, 0.97, 0.91])
    pd.testing.assert_frame_equal(compare_variants(noisy, "test_accuracy", "ref"),
                                  compare_variants(noisy, "test_accuracy", "ref"))
    low, high = compare_variants(noisy, "test_accuracy", "ref").loc["x", ["diff_low", "diff_high"]]
    assert -0.03 <= low < 0.0175 < high <= 0.07  # the mean difference, inside the range of the differences


def test_any_metric_column() -> None:
    frame = results(ref=[0.80, 0.82], x=[0.83, 0.85]).rename(columns={"test_accuracy": "test_kendall_tau"})
    assert compare_variants(frame, "test_kendall_tau", "ref").loc["x", "diff"] == pytest.approx(0.03)


def test_runs_that_cannot_be_paired_are_refused() -> None:
    frame = results(ref=[0.9, 0.8, 0.7], x=[0.9, 0.8])
    with pytest.raises(ValueError, match=r"variant 'x' has seeds \[0, 1\] but the reference 'ref' has \[0, 1, 2\]"):
        compare_variants(frame, "test_accuracy", "ref")
    failed = results(ref=[0.9, 0.8], x=[0.9, 0.8])
    failed.loc[3, "status"] = "failed"
    with pytest.raises(ValueError, match="seeds"):
        compare_variants(failed, "test_accuracy", "ref")
    with pytest.raises(ValueError, match="several runs for seeds"):
        compare_variants(pd.concat([frame, frame]), "test_accuracy", "ref")
    with pytest.raises(ValueError, match="reference variant 'probegen'"):
        compare_variants(frame, "test_accuracy", "probegen")
    with pytest.raises(ValueError, match="no 'test_tau' column"):
        compare_variants(frame, "test_tau", "ref")


def test_format_comparison() -> None:
    table = compare_variants(results(ref=[0.910, 0.914], x=[0.920, 0.924]), "test_accuracy", "ref")
    text = format_comparison(table)
    assert text.loc["ref", "mean ± std"] == "0.912 ± 0.003"
    assert text.loc["x", "diff [95% CI]"] == "+0.010 [+0.010, +0.010]"


def test_the_interval_is_95_percent() -> None:
    """Paired differences 0, 0, 1: resampled means are k/3 with P(k ≤ 2) = 26/27 ≈ 0.963, so the 97.5th
    percentile (a 95 % interval) is 1 while the 95th (a 90 % interval) would be 2/3."""
    results = pd.DataFrame({"variant": ["ref"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2,
                            "m": [0.5, 0.5, 0.5, 0.5, 0.5, 1.5]})
    table = compare_variants(results, "m", "ref")
    assert table.loc["b", "diff"] == pytest.approx(1 / 3)
    assert table.loc["b", "diff_high"] == pytest.approx(1.0)
    assert table.loc["b", "diff_low"] == pytest.approx(0.0)
