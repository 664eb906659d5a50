"""The claims checker: fails when the numbers contradict a claim, passes when they hold beyond the margin."""

import pytest

from probegen_nb.experiment.claims import Claim, ClaimError, check_claims

RESULTS = {"probegen": {"test_accuracy": 0.92}, "uniform": {"test_accuracy": 0.885},
           "vanilla": {"test_accuracy": 0.80}}
CLAIMS = [Claim("probegen", "uniform", 0.015), Claim("probegen", "vanilla", 0.028)]


def test_claims_that_hold_pass_and_are_reported() -> None:
    lines = check_claims(RESULTS, "test_accuracy", CLAIMS, fast=False)
    assert len(lines) == 3 + 2
    assert "probegen beats uniform on test_accuracy by +0.0350" in lines[3]


def test_a_gap_within_the_margin_fails() -> None:
    close = {**RESULTS, "uniform": {"test_accuracy": 0.91}}  # a gap of 0.01 < the 0.015 margin
    with pytest.raises(ClaimError, match="FAILED probegen beats uniform"):
        check_claims(close, "test_accuracy", CLAIMS, fast=False)


def test_a_reversed_ranking_fails_and_every_failure_is_listed() -> None:
    reversed_ = {"probegen": {"test_accuracy": 0.5}, "uniform": {"test_accuracy": 0.9},
                 "vanilla": {"test_accuracy": 0.8}}
    with pytest.raises(ClaimError) as e:
        check_claims(reversed_, "test_accuracy", CLAIMS, fast=False)
    assert str(e.value).count("FAILED") == 2


def test_fast_mode_checks_only_range_and_finiteness() -> None:
    reversed_ = {"probegen": {"test_kendall_tau": -0.2}, "vanilla": {"test_kendall_tau": 0.3}}
    assert len(check_claims(reversed_, "test_kendall_tau", [Claim("probegen", "vanilla", 0.0)], fast=True)) == 2
    for bad in (float("nan"), 1.5, None):
        with pytest.raises(ClaimError, match="FAILED probegen"):
            check_claims({"probegen": {"test_kendall_tau": bad}}, "test_kendall_tau", [], fast=True)


def test_unknown_metric_or_method_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot tell the metric"):
        check_claims(RESULTS, "test_loss", CLAIMS, fast=True)
    with pytest.raises(ValueError, match="'dead-leaves'"):
        check_claims(RESULTS, "test_accuracy", [Claim("probegen", "dead-leaves", 0.0)], fast=False)
