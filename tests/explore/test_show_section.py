"""A section shown in a notebook: its figure saved beside the runs, its table, its claims."""

from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from probegen_nb.experiment.ablations import Section, SectionResult, Variant, compare_section, section_claims
from probegen_nb.explore.sections import section_markdown, show_section

matplotlib.use("Agg")


def result() -> SectionResult:
    s = Section("nonlinear", "3. Linear vs non-linear", "inr", (Variant("probegen", {}), Variant("probegen+relu", {})))
    runs = pd.DataFrame([{"variant": v, "seed": i, "status": "done", "test_accuracy": a}
                         for v, accs in {"probegen": [0.9, 0.8, 0.85], "probegen+relu": [0.7, 0.6, 0.65]}.items()
                         for i, a in enumerate(accs)]).assign(method=lambda d: d["variant"], x=None)
    table = compare_section(s, runs, "test_accuracy")
    return SectionResult(s, runs, table, "test_accuracy", "summary.", section_claims(s, table, "test_accuracy"))


def test_show_section_saves_the_figure_and_shows_table_and_claims(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    r = result()
    assert section_markdown(r) == ("summary.\n\n- probegen beats probegen+relu on test_accuracy by +0.200 "
                                   "[+0.200, +0.200] over 3 seeds")
    show_section(r, tmp_path)
    assert (tmp_path / "nonlinear.png").stat().st_size > 0
    assert "probegen+relu" in capsys.readouterr().out  # outside a kernel, display prints each object's text


def test_a_section_not_run_shows_nothing(tmp_path: Path) -> None:
    show_section(None, tmp_path)
    assert list(tmp_path.iterdir()) == []
