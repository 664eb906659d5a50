"""Figures to files, so results outlive the kernel: matplotlib as PNG, plotly as standalone HTML and, through the
system Chromium (`browser`), PNG.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from probegen_nb.viz.browser import write_plotly_png


def save_figure(fig: Any, path: str | Path, png: bool = True) -> list[Path]:
    """Save a matplotlib figure as PNG, or a plotly Figure/FigureWidget as standalone HTML plus (with `png` and a
    Chromium) a PNG, so the figure is viewable without a kernel or plotly.js. Returns the files actually written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(fig, plt.Figure):
        out = path.with_suffix(".png")
        fig.savefig(out, dpi=110, bbox_inches="tight")
        return [out]
    if hasattr(fig, "write_html"):  # plotly Figure / FigureWidget
        out = path.with_suffix(".html")
        fig.write_html(out, include_plotlyjs="directory")  # offline: plotly.min.js beside it
        written = [out]
        if png:
            try:
                written.append(write_plotly_png(fig, path.with_suffix(".png")))
            except Exception as e:  # noqa: BLE001 (the HTML is the figure; the PNG is a convenience)
                _warn_once(f"plotly figures are saved as HTML only ({type(e).__name__}: {e})")
        return written
    raise TypeError(f"cannot save a {type(fig).__name__}")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
