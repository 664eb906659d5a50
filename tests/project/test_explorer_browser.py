"""Notebook 04 in a real browser: JupyterLab on a private port, Chromium runs every cell, a slider moved with the
keyboard changes a plot. What headless papermill cannot show: the widgets render and talk to the kernel."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from probegen_nb.app.runner import NOTEBOOKS, REPO, run_notebook

SCREENSHOTS = REPO / "runs" / "test-screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(tmp_path: Path, work: Path, notebook: str) -> Iterator[str]:
    """JupyterLab on a private port serving `work`; yields the URL (with token) of `work/notebook`."""
    port, token = _free_port(), uuid.uuid4().hex
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (tmp_path / "lab.log").read_text()[-3000:]
                    raise RuntimeError(f"JupyterLab did not start:\n{log_text}") from None
                time.sleep(0.5)
        yield f"{base}/lab/tree/{notebook}?token={token}"
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """JupyterLab serving a copy of 04 with fast parameters: (base URL with token, the notebook's out_dir)."""
    work = tmp_path / "lab"
    work.mkdir()
    out_dir = tmp_path / "out"
    nb = load_notebook_node(str(NOTEBOOKS / "04_explore_probes.ipynb"))  # papermill's reader: cells get tag lists
    nb = parameterize_notebook(nb, {"fast": True, "out_dir": str(out_dir),
                                    "zoo_dir": str(REPO / "data" / "zoos" / "mnist-inr-small")}, kernel_name="python3")
    nbformat.write(nb, work / "04_explore_probes.ipynb")
    with _serve(tmp_path, work, "04_explore_probes.ipynb") as url:
        yield url, out_dir


@pytest.fixture
def executed_lab(tmp_path: Path, monkeypatch) -> Iterator[str]:
    """JupyterLab serving notebook 04 as the runner executes it (fast, on the MNIST INR zoo), signed in a private
    signature database that the server reads too."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    work = tmp_path / "demo"
    run_notebook("04_explore_probes", work, {"fast": True, "zoo_dir": str(REPO / "data" / "zoos" / "mnist-inr-small")},
                 progress=False)
    with _serve(tmp_path, work, "04_explore_probes.ipynb") as url:
        yield url


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and the kernels it started (its whole process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# the sliders' (description, readout) and the inspector's two picked models, as the page shows them
CONTROLS = """() => ({
  sliders: [...document.querySelectorAll('.jp-OutputArea .widget-slider')].map(s =>
    [s.querySelector('.widget-label').textContent, s.querySelector('.widget-readout').textContent]),
  models: [...document.querySelectorAll('.jp-OutputArea .widget-dropdown')]
    .filter(d => d.querySelector('.widget-label').textContent.startsWith('model '))
    .map(d => d.querySelector('select').selectedOptions[0].textContent),
})"""


def test_explorer_in_jupyterlab(lab: tuple[str, Path], browser: Any) -> None:
    url, out_dir = lab
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    try:
        page.goto(url)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=60_000)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        # the wiring check prints this once every view followed its controls; the last cell then saves the figures
        page.get_by_text("every view followed its controls", exact=True).wait_for(timeout=240_000)
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                               " === 'idle'", timeout=120_000)

        page.wait_for_timeout(2_000)  # the page's answers to the kernel's last messages, if any, come back now
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                               " === 'idle'", timeout=120_000)
        controls = page.evaluate(CONTROLS)

        title = page.locator(".pg-replay .gtitle").first
        title.scroll_into_view_if_needed()
        before = title.text_content()
        assert "epoch 0 of" in before, before
        points_before = page.locator(".pg-replay .scatterlayer .point").count()
        handle = page.locator(".pg-replay-slider .noUi-handle").first
        handle.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([sel, old]) => document.querySelector(sel).textContent !== old",
                               arg=[".pg-replay .gtitle", before], timeout=30_000)
        after = title.text_content()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.locator(".pg-replay").first.screenshot(path=str(SCREENSHOTS / "explorer_replay.png"))
        page.screenshot(path=str(SCREENSHOTS / "explorer_page.png"))
        # save and reload: the notebook says how to get the views back (its live widgets need the kernel's Run All)
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_timeout(1_000)
        page.reload()
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.get_by_text("Run → Run All Cells", exact=False).first.wait_for(timeout=30_000)
        how_to = page.locator(".jp-MarkdownOutput").first.inner_text()
    finally:
        page.close()
    assert "epoch 1 of" in after, after
    # after Run All the controls are where the notebook built them: the wiring check moved copies, not these
    latent = {name: value for name, value in controls["sliders"] if name.startswith("PC") or name == "t"}
    assert latent and set(latent.values()) == {"0.00"}, controls
    assert controls["models"][0] != controls["models"][1], controls
    assert "model not found" in how_to and "Run All Cells" in how_to, how_to
    assert page.is_closed()
    assert points_before > 0
    assert (out_dir / "metrics.json").is_file(), "the last cell ran and saved the figures"
    assert (SCREENSHOTS / "explorer_replay.png").stat().st_size > 10_000
    assert not errors, errors


def test_an_executed_explorer_shows_its_views(executed_lab: str, browser: Any) -> None:
    """An executed copy of 04, opened as `make demo` leaves it: every view renders from the stored widget state (a
    plotly plot per figure, the sliders, the tqdm bars at their end), no raw `FigureWidget(`/`VBox(` text shows, and
    the page raises no error."""
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    try:
        page.goto(executed_lab)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        plots = page.locator(".jp-OutputArea .js-plotly-plot")
        page.wait_for_function("() => document.querySelectorAll('.jp-OutputArea .js-plotly-plot').length >= 6",
                               timeout=120_000)
        n_plots = plots.count()
        page.wait_for_timeout(2_500)  # anywidget's 2 s to initialise each model has run out: a late one has failed
        text = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
        bars = page.locator(".jp-OutputArea .widget-progress progress, .jp-OutputArea .progress-bar").count()
        sliders = page.locator(".jp-OutputArea .widget-slider").count()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "executed_explorer.png"))
    finally:
        page.close()
    assert n_plots >= 6, n_plots  # gallery, map, inspector, latent, anatomy, replay
    for raw in ("FigureWidget(", "VBox(", "Error displaying widget", "an interactive view;"):
        assert raw not in text, raw
    assert sliders >= 5 and bars >= 3, (sliders, bars)
    # every page error fails, "[anywidget] Failed to initialize model." included: that one came from each FigureWidget
    # evaluating its own copy of plotly's 5 MB module (now stored once, `share_anywidget_modules`)
    assert not errors, errors
