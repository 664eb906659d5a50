"""Figures saved to disk: plotly as HTML (+ PNG through the system Chromium), matplotlib as PNG, never a crash."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from probegen_nb.viz.browser import chromium_path, responsive
from probegen_nb.viz.export import save_figure
from probegen_nb.viz.figures import learning_curves

HAS_CHROMIUM = chromium_path() is not None


def _plotly_figure() -> go.Figure:
    hist = [{"epoch": e, "train_loss": 1 / (e + 1), "val_accuracy": e / 10, "test_accuracy": e / 11} for e in range(5)]
    return learning_curves({"probegen": hist, "vanilla": hist[::-1]})


def _assert_not_blank(png: Path) -> None:
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("L"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100, pixels.shape
    assert pixels.std() > 5, f"{png} looks blank (std {pixels.std():.2f})"


def test_matplotlib_figure_gives_png(tmp_path: Path) -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    written = save_figure(fig, tmp_path / "sub" / "curve")
    plt.close(fig)
    assert written == [tmp_path / "sub" / "curve.png"]
    _assert_not_blank(written[0])


@pytest.mark.skipif(not HAS_CHROMIUM, reason="no Chromium: plotly figures are HTML only")
@pytest.mark.parametrize("widget", [False, True], ids=["Figure", "FigureWidget"])
def test_plotly_figure_gives_html_and_png(tmp_path: Path, widget: bool) -> None:
    fig = go.FigureWidget(_plotly_figure()) if widget else _plotly_figure()
    written = save_figure(fig, tmp_path / "learning_curves")
    assert written == [tmp_path / "learning_curves.html", tmp_path / "learning_curves.png"]
    assert (tmp_path / "plotly.min.js").is_file(), "the HTML loads plotly.js from beside it (offline)"
    assert "cdn.plot.ly" not in written[0].read_text()
    _assert_not_blank(written[1])
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.skipif(not HAS_CHROMIUM, reason="no Chromium: plotly figures are HTML only")
def test_a_responsive_figures_png_has_its_export_width(tmp_path: Path) -> None:
    """A figure that takes its cell's width in a notebook is drawn `responsive(fig, W)` px wide in its PNG (scale 2);
    negative control: without it, kaleido's default width."""
    written = save_figure(responsive(_plotly_figure(), 900), tmp_path / "wide")
    plain = save_figure(_plotly_figure(), tmp_path / "plain")
    with Image.open(written[1]) as wide, Image.open(plain[1]) as default:
        assert wide.size[0] == 1800 and default.size[0] != 1800


def test_plotly_without_chromium_writes_html_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBEGEN_CHROMIUM", str(tmp_path / "no-such-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("probegen_nb.viz.export._warned", set())
    with pytest.warns(RuntimeWarning, match="HTML only"):
        written = save_figure(_plotly_figure(), tmp_path / "fig")
    assert written == [tmp_path / "fig.html"]
    assert not (tmp_path / "fig.png").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second figure does not warn again
        assert save_figure(_plotly_figure(), tmp_path / "fig2") == [tmp_path / "fig2.html"]


def test_save_figure_png_off_and_unknown_type(tmp_path: Path) -> None:
    assert save_figure(_plotly_figure(), tmp_path / "f", png=False) == [tmp_path / "f.html"]
    with pytest.raises(TypeError, match="cannot save a str"):
        save_figure("not a figure", tmp_path / "x")


def test_a_failed_render_is_retried_once_in_a_fresh_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under load kaleido can render before its page script has loaded; a second browser then renders the figure.
    A render that keeps failing raises after RENDER_ATTEMPTS browsers (no endless retry)."""
    from probegen_nb.viz import browser

    sessions: list[object] = []

    class FlakySession:  # fails in the first browser, renders in the next
        def __init__(self, path: str, timeout: float) -> None:
            self.path = path
            sessions.append(self)

        def png(self, fig_dict: dict, scale: float) -> bytes:
            if len(sessions) == 1:
                raise RuntimeError("ReferenceError: kaleido_scopes is not defined")
            return b"\\x89PNG fake"

        def close(self) -> None:
            pass

    monkeypatch.setattr(browser, "_require_chromium", lambda: "/fake/chromium")
    monkeypatch.setattr(browser, "_KaleidoSession", FlakySession)
    monkeypatch.setattr(browser, "_session", None)
    out = browser.write_plotly_png(_plotly_figure(), tmp_path / "f.png")
    assert out.read_bytes() == b"\\x89PNG fake" and len(sessions) == 2

    class BrokenSession(FlakySession):
        def png(self, fig_dict: dict, scale: float) -> bytes:
            raise RuntimeError("still broken")

    sessions.clear()
    monkeypatch.setattr(browser, "_session", None)  # the first part left its working browser open
    monkeypatch.setattr(browser, "_KaleidoSession", BrokenSession)
    with pytest.raises(RuntimeError, match="still broken"):
        browser.write_plotly_png(_plotly_figure(), tmp_path / "g.png")
    assert len(sessions) == browser.RENDER_ATTEMPTS == 2
    assert not (tmp_path / "g.png").exists()
