"""The quickstart's experiment, written once for notebook 00 and `make seeds`: three probe sources on the embedded
MNIST INR zoo, the claims it makes about them, and the over-seeds report (`python -m probegen_nb.cli seeds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.claims import ClaimError, check_finite, comparison_claims
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.stats import compare_variants
from probegen_nb.experiment.sweep import Sweep, grid, run_sweep
from probegen_nb.probes.coords import ProbeGenConfig, UniformConfig, VanillaConfig

NAME = "00_quickstart"
# Same zoo, same predictor, same protocol; only where the probes come from differs.
METHODS: dict[str, dict[str, Any]] = {"probegen": {"probes": ProbeGenConfig()},
                                      "vanilla": {"probes": VanillaConfig()},
                                      "uniform": {"probes": UniformConfig()}}
REFERENCE = "probegen"  # every method is compared against this one
METRIC = "test_accuracy"  # at the best-validation epoch
# The paper's ordering: a run fails only where its own paired intervals contradict it (`comparison_claims`).
EXPECTED = (("probegen", "uniform"), ("probegen", "vanilla"))
REPORTED = ("test_accuracy", "last_test_accuracy", "best_val_accuracy")  # summarised over seeds in summary.json


def quickstart_config(zoo_dir: str, n_probes: int = 128, epochs: int = 30, max_train_models: int | None = None,
                      seed: int = 0, device: str = "auto") -> RunConfig:
    """The quickstart's run config; the defaults are the paper's protocol (CI passes smaller sizes)."""
    return RunConfig(zoo_dir=zoo_dir, method=ProbingConfig(n_probes=n_probes), epochs=epochs,
                     max_train_models=max_train_models, seed=seed, device=device)


def quickstart_sweep(base: RunConfig, seeds: Sequence[int], folder: str | Path) -> Sweep:
    """Every method of `METHODS` × every seed, in one folder."""
    return Sweep(NAME, grid(base, METHODS, seeds), Path(folder))


def check_seeds(results: pd.DataFrame) -> list[str]:
    """Every finished run's metric is a finite accuracy, and the claims read off the paired intervals over the seeds
    whose every run finished (`comparison_claims`: no claim at one seed; a ClaimError where they contradict
    `EXPECTED`). One line per check; raises `ClaimError` listing every failed check."""
    values = {f"seed {row.seed}: {row.variant}": {METRIC: getattr(row, METRIC, None) if row.status == "done" else None}
              for row in results.itertuples()}  # a failed run's missing number is a failed check
    done = results[results["status"] == "done"]
    failures, lines = [], []
    try:
        lines += check_finite(values, METRIC)
    except ClaimError as e:
        failures += str(e).splitlines()[1:]
    complete = done.groupby("seed").filter(lambda runs: set(runs["variant"]) == set(METHODS))
    if len(complete) and not failures:
        try:
            lines += comparison_claims(compare_variants(complete, METRIC, REFERENCE), REFERENCE, METRIC, EXPECTED)
        except ClaimError as e:
            failures += str(e).splitlines()[1:]
    if failures:
        raise ClaimError("the numbers contradict the quickstart's claims:\n" + "\n".join(failures))
    return lines


@dataclass
class SeedsReport:
    """What `run_seeds` found: every run's row, the per-method comparison of each reported metric, the claims."""

    results: pd.DataFrame
    comparisons: dict[str, pd.DataFrame]  # metric → compare_variants table
    claims: list[str]  # one line per check that held
    failures: str  # the ClaimError's message, "" when every claim held


def run_seeds(base: RunConfig, seeds: Sequence[int], folder: str | Path, engine: EngineConfig = EngineConfig(),
              zoo: AnyZoo | None = None, progress: bool = True) -> SeedsReport:
    """The quickstart over seeds as one sweep in `folder`; writes `<folder>/summary.json` (mean ± std per method
    and paired differences against probegen, claims) and returns it all. Resumable like any sweep."""
    sweep = quickstart_sweep(base, seeds, folder)
    results = run_sweep(sweep, engine, zoo=zoo, progress=progress)
    complete = results.groupby("seed").filter(lambda runs: bool((runs["status"] == "done").all()))
    comparisons = ({m: compare_variants(complete, m, REFERENCE) for m in REPORTED if m in complete.columns}
                   if len(complete) else {})  # over the seeds whose every run finished
    try:
        claims, failures = check_seeds(results), ""
    except ClaimError as e:
        claims, failures = [], str(e)
    summary = {"notebook": NAME, "seeds": list(seeds), "config": base.to_dict(), "engine": asdict(engine),
               "reference": REFERENCE, "failed_runs": int((results["status"] != "done").sum()),
               "summary": {m: table.reset_index().to_dict(orient="records") for m, table in comparisons.items()},
               "claims": claims, "claim_failures": failures}
    rf.write_json(Path(folder) / rf.SUMMARY_FILE, summary)
    return SeedsReport(results, comparisons, claims, failures)
