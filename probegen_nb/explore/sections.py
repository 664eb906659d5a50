"""A comparison section shown in a notebook: its figure (saved beside the runs), its table with the paired
intervals, and the sentences read off them, so each section of notebook 05 is one call and one display."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from probegen_nb.experiment.ablations import SectionResult
from probegen_nb.experiment.stats import format_comparison
from probegen_nb.viz.export import save_figure
from probegen_nb.viz.figures import ablation_plot


def section_markdown(result: SectionResult) -> str:
    """The section's summary and its claims (one bullet per variant), as Markdown."""
    return "\n".join([result.summary, "", *[f"- {claim}" for claim in result.claims]])


def show_section(result: SectionResult | None, folder: str | Path) -> None:
    """Draw the section's runs (saved as `folder/<key>.png`), then its comparison table and claims; nothing for a
    section that was not run (None)."""
    if result is None:
        return
    s = result.section
    fig = ablation_plot(result.done, result.metric, s.title, s.axis, s.log_x, s.reference)
    save_figure(fig, Path(folder) / s.key)
    display(fig)
    plt.close(fig)
    display(format_comparison(result.table))
    display(Markdown(section_markdown(result)))
