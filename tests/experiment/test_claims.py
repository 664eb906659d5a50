"""The finiteness check and the expected orderings: a run fails only where its own numbers contradict a claim."""

import math

import pandas as pd
import pytest

from probegen_nb.experiment.claims import ClaimError, check_finite, comparison_claims


def table(rows: dict[str, tuple[int, float, float, float]]) -> pd.DataFrame:
    """variant → (n, diff, diff_low, diff_high), as `compare_variants` writes them."""
    return pd.DataFrame([{"variant": v, "n": n, "diff": d, "diff_low": lo, "diff_high": hi}
                         for v, (n, d, lo, hi) in rows.items()]).set_index("variant")


def test_finite_numbers_in_range_pass_and_anything_else_fails() -> None:
    lines = check_finite({"probegen": {"test_kendall_tau": -0.2}, "vanilla": {"test_kendall_tau": 0.3}},
                         "test_kendall_tau")
    assert len(lines) == 2 and "probegen: test_kendall_tau = -0.2 is finite and in [-1, 1]" in lines
    for bad in (math.nan, 1.5, None, "0.9"):
        with pytest.raises(ClaimError, match="FAILED probegen"):
            check_finite({"probegen": {"test_kendall_tau": bad}}, "test_kendall_tau")
    with pytest.raises(ValueError, match="cannot tell the metric of 'test_loss'"):
        check_finite({"probegen": {"test_loss": 0.1}}, "test_loss")


def test_an_expected_ordering_fails_only_when_the_interval_contradicts_it() -> None:
    ahead = table({"probegen": (3, 0, 0, 0), "vanilla": (3, -0.03, -0.05, -0.01)})
    tied = table({"probegen": (3, 0, 0, 0), "vanilla": (3, 0.01, -0.01, 0.03)})
    behind = table({"probegen": (3, 0, 0, 0), "vanilla": (3, 0.03, 0.01, 0.05)})
    one_seed = table({"probegen": (1, 0, 0, 0), "vanilla": (1, 0.03, 0.03, 0.03)})
    expected = [("probegen", "vanilla")]
    assert comparison_claims(ahead, "probegen", "acc", expected)[0].startswith("probegen beats vanilla")
    assert "not distinguishable" in comparison_claims(tied, "probegen", "acc", expected)[0]
    assert "no interval" in comparison_claims(one_seed, "probegen", "acc", expected)[0]
    with pytest.raises(ClaimError, match="expected probegen > vanilla, but vanilla beats probegen"):
        comparison_claims(behind, "probegen", "acc", expected)
    assert comparison_claims(behind, "probegen", "acc")  # nothing expected: the sentence is just the finding
    with pytest.raises(ValueError, match="does not involve the reference"):
        comparison_claims(ahead, "probegen", "acc", [("vanilla", "uniform")])
