"""The papermill runner on a tiny notebook: parameters applied, kernel cwd, a progress bar that sees every cell, and
no "Kernel is running over TCP without encryption" warning (IPC transport); negative controls show that the same
capture does see that warning over TCP, and that progress stops short when a cell fails."""

import copy
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import plotly.graph_objects as go
import pytest

from probegen_nb.app import runner
from probegen_nb.app.runner import NotebookProgress, run_notebook
from probegen_nb.explore.widgets import FALLBACK

WARNING = "without encryption"
PROBE = """import json, os, time
import ipykernel
time.sleep(0.2)
print(json.dumps({"cwd": os.getcwd(), "files": sorted(os.listdir(".")),
                  "transport": json.loads(ipykernel.get_connection_info())["transport"]}))"""


def tiny_notebook(folder: Path, last_cell: str = 'print(f"x = {x}")') -> Path:
    """`folder/tiny.ipynb`: a `parameters` cell and two more, one sleeping 0.2 s and reporting cwd and transport."""
    folder.mkdir(parents=True, exist_ok=True)
    params = nbformat.v4.new_code_cell('x: int = 1  # a parameter\nout_dir: str = ""  # set by the runner')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(PROBE),
                                         nbformat.v4.new_code_cell(last_cell)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "tiny.ipynb")
    return folder


def stream_text(executed: dict) -> list[str]:
    return ["".join(o["text"]) for c in executed["cells"] for o in c.get("outputs", []) if o.get("name") == "stdout"]


def test_run_notebook_over_ipc_without_warning_and_progress_sees_every_cell(tmp_path: Path, capfd) -> None:
    nbs = tiny_notebook(tmp_path / "nbs")
    seen: list[NotebookProgress] = []
    out_nb = run_notebook("tiny", tmp_path / "out", {"x": 7}, notebooks_dir=nbs, on_progress=seen.append)
    out, err = capfd.readouterr()

    assert out_nb == (tmp_path / "out" / "tiny.ipynb").resolve() and out_nb.exists()
    executed = json.loads(out_nb.read_text())
    probe, shown = stream_text(executed)
    assert shown == "x = 7\n", "the parameter is applied"
    probe = json.loads(probe)
    assert probe["cwd"] == str(nbs) and probe["transport"] == "ipc"
    assert not [f for f in probe["files"] if f.startswith("kernel")], "ipc sockets stay out of the kernel's cwd"

    assert WARNING not in out + err
    code_cells = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert len(code_cells) == 4  # the three written, plus papermill's injected-parameters cell
    assert [(p.done, p.total) for p in seen] == [(k, 4) for k in range(1, 5)]
    assert not seen[-1].failed and seen[-1].elapsed_s >= 0.2
    assert "tiny: 4/4 cells" in err and "done" in err, "the bar ends with every cell done"


def test_negative_control_same_capture_sees_the_warning_over_tcp(tmp_path: Path, capfd, monkeypatch) -> None:
    """The kernel's stderr reaches capfd: over TCP the warning the test above rules out is seen. With
    `progress=False` there is no bar, but `on_progress` still sees the cells."""
    monkeypatch.setattr(runner, "KERNEL_TRANSPORT", "tcp")
    seen: list[NotebookProgress] = []
    out_nb = run_notebook("tiny", tmp_path / "out", {"x": 7}, notebooks_dir=tiny_notebook(tmp_path / "nbs"),
                          progress=False, on_progress=seen.append)
    out, err = capfd.readouterr()
    assert json.loads(stream_text(json.loads(out_nb.read_text()))[0])["transport"] == "tcp"
    assert WARNING in out + err
    assert "cells |" not in err
    assert (seen[-1].done, seen[-1].total) == (4, 4)


def test_negative_control_progress_stops_at_a_failing_cell(tmp_path: Path, capfd) -> None:
    """Progress counts cells that ran, not cells that exist: a failing last cell leaves it at 3 of 4, flagged."""
    from papermill.exceptions import PapermillExecutionError

    seen: list[NotebookProgress] = []
    with pytest.raises(PapermillExecutionError):
        run_notebook("tiny", tmp_path / "out", {"x": 7}, on_progress=seen.append,
                     notebooks_dir=tiny_notebook(tmp_path / "nbs", last_cell="raise ValueError('boom')"))
    err = capfd.readouterr().err
    assert (seen[-1].done, seen[-1].total, seen[-1].failed) == (3, 4, True)
    assert "tiny: 3/4 cells" in err and "failed" in err and "4/4" not in err


WIDGETS = """from IPython.display import display
import ipywidgets as widgets
import plotly.graph_objects as go
from tqdm.auto import tqdm
from probegen_nb.explore.widgets import View
for _ in tqdm(range(7), desc="bar"):
    pass
figure = go.FigureWidget(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
unshown = widgets.IntSlider(value=5, description="never shown")
display(View(widgets.VBox([widgets.IntSlider(value=3), figure]), "A view"))"""


def test_executed_copy_stores_the_shown_widgets_state_and_is_trusted(tmp_path: Path, monkeypatch) -> None:
    """The executed copy renders in JupyterLab: each widget output's model (and those it refers to) is in the stored
    state, the tqdm bar at its end, no raw `VBox(...)` fallback; widgets never shown are not stored; it is signed.
    Negative control: a widget displayed bare (no `View`) is reported by `widget_problems`."""
    from nbformat.sign import NotebookNotary

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))  # the signature database
    nbs = tiny_notebook(tmp_path / "nbs", last_cell=WIDGETS)
    nb = nbformat.read(run_notebook("tiny", tmp_path / "out", notebooks_dir=nbs, progress=False), as_version=4)
    assert runner.widget_problems(nb) == []
    state = nb.metadata["widgets"][runner.WIDGET_STATE]["state"]
    shown = [o["data"] for c in nb.cells for o in c.get("outputs", []) if runner.WIDGET_VIEW in o.get("data", {})]
    assert len(shown) == 2  # the tqdm bar and the view
    assert shown[1]["text/plain"] == FALLBACK.format(title="A view")
    assert set(state) == runner.shown_widgets(nb)
    assert not any(m["state"].get("description") == "never shown" for m in state.values())
    bars = [m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel"]
    assert [(b["value"], b["max"]) for b in bars] == [(7, 7)]  # the final state, not 0 %
    figures = [m["state"] for m in state.values() if m["model_name"] == "AnyModel"]
    assert len(figures) == 1 and "probegen_nb.esm." in figures[0]["_esm"]  # the FigureWidget, its module shared
    bundle = (Path(go.__file__).parents[1] / "package_data" / "widgetbundle.js").read_text()
    assert figures[0]["_esm"].startswith(bundle), "the only model of its module keeps plotly's source"
    assert NotebookNotary().check_signature(nb)

    bare = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        "display_data", data={"text/plain": "VBox(children=(IntSlider(value=3),))",
                              runner.WIDGET_VIEW: {"model_id": "0" * 32, "version_major": 2, "version_minor": 0}})])
    nb.cells.append(bare)
    last = len(nb.cells) - 1
    assert runner.widget_problems(nb) == [f"cell {last}: a raw widget repr 'VBox(children=(IntSlider(value=3),))'",
                                          f"cell {last}: widget {'0' * 32} has no stored state"]


# an anywidget module that counts how often a page evaluates it
COUNTING_ESM = """globalThis.evaluations = (globalThis.evaluations ?? 0) + 1;
export default () => ({ initialize() {}, render({ el }) { el.textContent = "drawn"; } });
"""


def anywidget_state(esms: list[str]) -> dict[str, Any]:
    """A stored widget state: one anywidget model per module text, and a slider (no module)."""
    state = {f"{i:032x}": {"model_module": "anywidget", "model_name": "AnyModel", "model_module_version": "~0.11.*",
                           "state": {"_esm": esm, "_anywidget_id": "test.Counting"}} for i, esm in enumerate(esms)}
    state["f" * 32] = {"model_module": "@jupyter-widgets/controls", "model_name": "IntSliderModel",
                       "model_module_version": "2.0.0", "state": {"value": 3}}
    return state


def test_shared_anywidget_modules_keep_one_source_per_module() -> None:
    """Three models of one module and one of another: one copy of each source stays, every model names its module's
    key, a module by URL and a slider are left alone, and sharing twice changes nothing."""
    other, url = COUNTING_ESM.replace("render", "render2"), "https://example.org/widget.js"
    state = anywidget_state([COUNTING_ESM, COUNTING_ESM, other, COUNTING_ESM, url])
    before = copy.deepcopy(state)
    runner.share_anywidget_modules(state)
    esms = [m["state"]["_esm"] for m in state.values() if m["model_module"] == "anywidget"]
    assert [e.startswith(COUNTING_ESM) for e in esms] == [True, False, False, False, False]
    assert [e.startswith(other) for e in esms] == [False, False, True, False, False]
    assert all(len(e) < 400 for e in (esms[1], esms[3])), "a model whose module another one evaluates keeps no copy"
    keys = [re.search(r"probegen_nb\.esm\.[0-9a-f]+", e)[0] if "probegen_nb.esm." in e else None for e in esms]
    assert keys[0] == keys[1] == keys[3] != keys[2] and keys[4] is None and esms[4] == url
    assert state["f" * 32] == before["f" * 32]
    shared = copy.deepcopy(state)
    runner.share_anywidget_modules(shared)
    assert shared == state


IMPORT_ALL = """async esms => {
  const load = async esm => {  // as anywidget loads a model's inline _esm: a blob URL, imported, then revoked
    const url = URL.createObjectURL(new Blob([esm], {type: "text/javascript"}));
    const module = await import(url);
    URL.revokeObjectURL(url);
    const el = document.createElement("div");
    module.default().render({ el });
    return [typeof module.default, el.textContent];
  };
  const widgets = await Promise.all([...esms].reverse().map(load));  // all at once, the module's keeper last
  return { evaluations: globalThis.evaluations, widgets };
}"""


def import_in_page(browser: Any, esms: list[str]) -> dict[str, Any]:
    """What a fresh page gets importing these anywidget modules (`IMPORT_ALL`); a page error fails."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.set_content("<html><body></body></html>")
        result = page.evaluate(IMPORT_ALL, esms)
    finally:
        page.close()
    assert not errors, errors
    return result


def test_a_page_evaluates_a_shared_anywidget_module_once(browser: Any) -> None:
    """Chromium imports three stored models of one module as anywidget does: the module runs once and every model
    draws. Negative control: the same models unshared run it three times (the 5 MB plotly bundle, six times, made
    anywidget's 2 s initialisation budget run out on a busy machine)."""
    state = anywidget_state([COUNTING_ESM] * 3)
    unshared = [m["state"]["_esm"] for m in state.values() if m["model_module"] == "anywidget"]
    runner.share_anywidget_modules(state)
    shared = [m["state"]["_esm"] for m in state.values() if m["model_module"] == "anywidget"]
    assert import_in_page(browser, shared) == {"evaluations": 1, "widgets": [["function", "drawn"]] * 3}
    assert import_in_page(browser, unshared) == {"evaluations": 3, "widgets": [["function", "drawn"]] * 3}
