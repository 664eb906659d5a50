"""The offline index over a run folder: every figure and metric present, names escaped, links relative, and a real
browser shows every image without errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from PIL import Image

from probegen_nb.viz.browser import chromium_path, screenshot
from probegen_nb.viz.export import save_figure
from probegen_nb.viz.report import flatten_metrics, write_index

from paths import REPO

WEIRD = 'odd <name> & "co"'  # a notebook stem that needs escaping in text, attributes and URLs


def _fake_out_root(root: Path) -> Path:
    """Two executed notebooks the way the runner leaves them: figures, metrics.json, one run folder each."""
    root.mkdir(parents=True)
    for stem, method in (("00_quickstart", "probegen"), (WEIRD, "vanilla")):
        (root / f"{stem}.ipynb").write_text("{}")
        folder = root / stem
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot(np.arange(5), np.arange(5) ** 2)
        save_figure(fig, folder / "squares")
        plt.close(fig)
        save_figure(go.Figure(go.Bar(x=["a", "b"], y=[3, 1])), folder / "bars")  # HTML (+ PNG with a Chromium)
        save_figure(go.Figure(go.Scatter(y=[1, 3, 2])), folder / "line & dots", png=False)  # HTML only: an iframe
        metrics = {method: {"test_accuracy": 0.9213, "flops_per_model": 881664}, "uniform":
                   {"test_accuracy": 0.5, "flops_per_model": 12}, "weight_std": {"L0": {"ratio": 1.25}},
                   "config": {"seed": 7, "device": "cpu <2 threads>"}, "fast": False}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / method).mkdir()
        (folder / method / "metrics.json").write_text(json.dumps(
            {"metric": "accuracy", "history": [{"epoch": e} for e in range(30)], "test_accuracy": 0.875,
             "train_seconds": 12.5}))
        (folder / method / "config.json").write_text("{}")
    return root


def _links(page: str) -> list[str]:
    return [unquote(m) for m in re.findall(r'(?:src|href)="([^"#][^"]*)"', page.replace("&amp;", "&"))]


def test_flatten_metrics_nested_and_long_lists() -> None:
    scalars, rows, omitted = flatten_metrics({"a": 1, "m": {"x": 0.5}, "deep": {"L0": {"r": 2}, "n": 3},
                                              "short": [1, 2], "history": list(range(30))})
    assert scalars == {"a": 1, "deep.n": 3, "short": "1, 2"}
    assert rows == {"m": {"x": 0.5}, "deep.L0": {"r": 2}}
    assert omitted == ["history (30 items)"]


def test_index_lists_every_figure_and_metric(tmp_path: Path) -> None:
    root = _fake_out_root(tmp_path / "out")
    page = write_index(root).read_text()
    links = _links(page)
    for stem in ("00_quickstart", WEIRD):
        figures = sorted(f.name for f in (root / stem).iterdir() if f.suffix in (".png", ".html"))
        assert len(figures) == (4 if chromium_path() else 3)  # bars.png only with a Chromium
        for name in figures:
            assert f"{stem}/{name}" in links, name
        assert f"{stem}.ipynb" in links
        assert f"{stem}/probegen/metrics.json" in links or f"{stem}/vanilla/metrics.json" in links
    srcs = [unquote(m) for m in re.findall(r'<img src="([^"]*)"', page.replace("&amp;", "&"))]
    assert sorted(srcs) == sorted(f"{s}/{f.name}" for s in ("00_quickstart", WEIRD) for f in (root / s).glob("*.png"))
    assert page.count("<iframe") == (2 if chromium_path() else 4), "only figures without a PNG are embedded live"
    for number in ("0.9213", "881,664", "0.5", "1.25", "0.875", "12.5", "False", "7"):
        assert f"<td>{number}</td>" in page, number
    for run in ("probegen", "vanilla"):
        assert f">{run}</a>" in page
    assert "history (30 items)" not in page  # runs' tables show headline numbers only, never the per-epoch list
    assert "<script" not in page and "http" not in page, "offline and self-contained"


def test_index_escapes_names(tmp_path: Path) -> None:
    page = write_index(_fake_out_root(tmp_path / "out")).read_text()
    assert WEIRD not in page and "<name>" not in page and "<2 threads>" not in page
    assert "odd &lt;name&gt; &amp; &quot;co&quot;" in page
    assert "cpu &lt;2 threads&gt;" in page


def test_index_links_are_relative_and_survive_a_move(tmp_path: Path) -> None:
    root = _fake_out_root(tmp_path / "out")
    write_index(root)
    moved = Path(shutil.move(root, tmp_path / "elsewhere" / "renamed"))
    page = (moved / "index.html").read_text()
    links = _links(page)
    assert links and all(not link.startswith("/") and ":" not in link for link in links), links
    for link in links:
        assert (moved / link).exists(), link


def test_index_given_notebooks_and_missing_folder(tmp_path: Path) -> None:
    page = write_index(tmp_path, ["never_ran"]).read_text()
    assert "never_ran" in page and "no output folder" in page
    assert "no notebooks found" in write_index(tmp_path / "empty").read_text()


def test_index_in_a_browser(tmp_path: Path, browser: Any) -> None:
    index = write_index(_fake_out_root(tmp_path / "out"))
    shot = REPO / "runs" / "test-screenshots" / "index.png"
    check = screenshot(index, shot, browser=browser)
    assert check.errors == []
    assert check.broken_images == []
    assert len(re.findall("<img ", index.read_text())) >= 4
    page = browser.new_page()
    try:  # the HTML-only plotly figures render inside their iframes (plotly.min.js found beside them, offline)
        page.goto(index.as_uri(), wait_until="load")
        frames = page.frames[1:]
        assert len(frames) == 2
        for frame in frames:
            assert frame.evaluate("() => document.querySelectorAll('.plotly-graph-div .main-svg').length") > 0
    finally:
        page.close()
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=float)
    assert pixels.shape[1] == 1280 and pixels.shape[0] > 600
    assert pixels.std() > 10, "screenshot looks blank"


def test_a_sweeps_hash_named_runs_are_labelled_by_variant(tmp_path: Path) -> None:
    """Sweep run folders are named by a config hash; sweep.json beside them gives the table readable names."""
    folder = tmp_path / "out" / "00_quickstart"
    runs = [{"run_id": "a6f3fc46f44b", "variant": "probegen", "config": {"seed": 0}},
            {"run_id": "8b500fc42d9a", "variant": "vanilla", "config": {"seed": 0}}]
    for run in runs:
        (folder / run["run_id"]).mkdir(parents=True)
        (folder / run["run_id"] / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    (folder / "sweep.json").write_text(json.dumps({"name": "00_quickstart", "runs": runs}))
    page = write_index(tmp_path / "out", ["00_quickstart"]).read_text()
    assert ">probegen</a>" in page and ">vanilla</a>" in page
    assert "00_quickstart/a6f3fc46f44b/metrics.json" in _links(page), "links still go to the hash-named folder"
    (folder / "sweep.json").unlink()
    assert ">a6f3fc46f44b</a>" in write_index(tmp_path / "out", ["00_quickstart"]).read_text()
