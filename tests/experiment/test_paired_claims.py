"""Claims read off a comparison's paired intervals: a direction only where the interval excludes 0."""

import math

import pandas as pd
import pytest

from probegen_nb.experiment.claims import ClaimError, PairedClaim, check_consistent, paired_claims


def table(rows: dict[str, tuple[int, float, float, float]]) -> pd.DataFrame:
    """variant → (n, diff, diff_low, diff_high), as `compare_variants` writes them."""
    return pd.DataFrame([{"variant": v, "n": n, "mean": 0.5, "std": 0.01, "diff": d, "diff_low": lo, "diff_high": hi}
                         for v, (n, d, lo, hi) in rows.items()]).set_index("variant")


TABLE = table({"probegen": (3, 0.0, 0.0, 0.0), "vanilla": (3, -0.031, -0.050, -0.012),
               "uniform": (3, -0.004, -0.011, 0.003), "wide": (3, 0.020, 0.005, 0.040)})


def test_an_interval_excluding_zero_names_the_winner_with_a_positive_margin() -> None:
    claims = {c.variant: c for c in paired_claims(TABLE, "probegen", "test_accuracy")}
    assert list(claims) == ["vanilla", "uniform", "wide"]
    assert claims["vanilla"].sentence == ("probegen beats vanilla on test_accuracy by +0.031 [+0.012, +0.050] "
                                          "over 3 seeds")
    assert claims["wide"].sentence.startswith("wide beats probegen on test_accuracy by +0.020 [+0.005, +0.040]")


def test_an_interval_including_zero_is_not_distinguishable() -> None:
    claim = next(c for c in paired_claims(TABLE, "probegen", "test_accuracy") if c.variant == "uniform")
    assert "beats" not in claim.sentence
    assert claim.sentence.startswith("uniform and probegen are not distinguishable on test_accuracy at 3 seeds")


@pytest.mark.parametrize("low, high", [(-0.01, -0.01), (math.nan, math.nan)])
def test_one_seed_gives_no_interval_and_no_claim(low: float, high: float) -> None:
    """At n = 1 the bootstrap interval collapses to the point (it excludes 0 yet proves nothing): no claim."""
    claim = PairedClaim("vanilla", "probegen", "test_accuracy", 1, -0.01, low, high)
    assert "beats" not in claim.sentence and "no interval" in claim.sentence
    one_seed = table({"probegen": (1, 0.0, 0.0, 0.0), "vanilla": (1, -0.01, -0.01, -0.01)})
    assert check_consistent([claim.sentence], one_seed, "probegen")


def test_the_generated_sentences_are_consistent_with_their_rows() -> None:
    sentences = [c.sentence for c in paired_claims(TABLE, "probegen", "test_accuracy")]
    assert check_consistent(sentences, TABLE, "probegen") == sentences


@pytest.mark.parametrize("sentence", [
    "probegen beats uniform on test_accuracy by +0.004 [-0.003, +0.011] over 3 seeds",  # interval includes 0
    "vanilla beats probegen on test_accuracy by +0.031 [+0.012, +0.050] over 3 seeds",  # the wrong winner
    "vanilla and probegen are not distinguishable on test_accuracy at 3 seeds",  # excludes 0: not a tie
    "nobody beats anybody",  # names no variant
])
def test_a_sentence_its_row_contradicts_fails(sentence: str) -> None:
    with pytest.raises(ClaimError, match="do not support"):
        check_consistent([sentence], TABLE, "probegen")


def test_a_table_without_the_reference_or_intervals_is_an_error() -> None:
    with pytest.raises(ValueError, match="reference 'nfn'"):
        paired_claims(TABLE, "nfn", "test_accuracy")
    with pytest.raises(ValueError, match="no 'diff_low' column"):
        paired_claims(TABLE.drop(columns="diff_low"), "probegen", "test_accuracy")
