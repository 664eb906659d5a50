"""Run notebooks headlessly with papermill: the demo sequence (`make demo`) and the notebook tests share this.
(Many runs of one experiment, e.g. over seeds, go through `probegen_nb.experiment.sweep` instead.)

While a notebook runs, a tqdm bar per notebook shows its code cells done of total, the time since it started (kernel
start included, ticking during a long cell) and the cell running now. The kernel talks to us over IPC (Unix domain
sockets in a private temporary folder) rather than TCP on localhost: nothing listens on a port, and ipykernel has no
reason for its "Kernel is running over TCP without encryption" warning.

An executed copy renders its views when opened in JupyterLab: the widgets' final state (tqdm bars at 100 %, sliders,
plotly figures) is stored in it, pruned to the widgets its outputs show, its anywidget modules evaluated once per page
(`share_anywidget_modules`), and the copy is signed as trusted by this user (JupyterLab renders widget outputs only in
a trusted notebook; otherwise it shows their text/plain fallback).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from probegen_nb.viz.report import write_index

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
# The demo: each notebook with its default parameters, except where a smaller run keeps `make demo` short.
DEMO_SEQUENCE: dict[str, dict[str, Any]] = {
    "00_quickstart": {},
    "01_inr_zoo": {},
    "02_train_probegen": {"epochs": 5},
    "03_cnn_generalization": {"epochs": 3},  # ProbeGen over vanilla by 0.076 τ at 3 epochs (0.748 vs 0.672, seed 0)
    # explores the runs 03 just wrote; `epochs` is the non-linear generator's, trained here for the anatomy view
    "04_explore_probes": {"run_dir": "{out_root}/03_cnn_generalization", "epochs": 3},
    "05_ablations": {"fast": True},  # every section's smallest grid (the full one: `make ablations`)
    # every method on both zoos, smoke-sized (the full comparison: `make baselines`); the under-fitting diagnosis
    # is left to the notebook tests' fast mode
    "06_baselines": {"fast": True, "diagnose": False},
    "07_probe_your_models": {"fast": True},  # a tiny leave-one-class-out zoo, seconds (the default run: ~3 min)
}
# ZeroMQ's ipc:// transport needs Unix domain sockets; elsewhere (Windows) the kernel falls back to TCP on localhost.
KERNEL_TRANSPORT = "ipc" if os.name == "posix" else "tcp"
ENGINE_NAME = "probegen_nb"  # papermill's nbclient engine, plus the progress bar
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} cells |{bar}| {elapsed}{postfix}"
POSTFIX_WIDTH = 44
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@dataclasses.dataclass(frozen=True)
class NotebookProgress:
    """Where one notebook run stands: code cells done of those to run (the injected-parameters cell included),
    seconds since the run started (kernel start included), and whether a cell failed."""

    stem: str
    done: int
    total: int
    elapsed_s: float
    failed: bool = False


class _Progress:
    """The tqdm bar of one notebook run, fed by papermill's cell callbacks; a thread refreshes it while a cell runs
    so that the elapsed time keeps moving (every second on a terminal, every 30 s into a log)."""

    def __init__(self, stem: str, show: bool, on_progress: Callable[[NotebookProgress], None] | None) -> None:
        self.stem, self.show, self.on_progress = stem, show, on_progress
        self.total = self.done = 0
        self.failed = False
        self.t0 = time.perf_counter()
        self.bar: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def state(self) -> NotebookProgress:
        return NotebookProgress(self.stem, self.done, self.total, time.perf_counter() - self.t0, self.failed)

    def start(self, nb: Any) -> None:
        self.total = sum(_runs(cell) for cell in nb.cells)
        self.t0 = time.perf_counter()
        if not self.show:
            return
        try:  # a terminal that reports 0 columns (a pty nobody sized) would get an empty bar from tqdm
            ncols = 100 if os.get_terminal_size(sys.stderr.fileno()).columns == 0 else None
        except (AttributeError, OSError, ValueError):
            ncols = None
        self.bar = tqdm(total=self.total, desc=self.stem, unit="cell", bar_format=BAR_FORMAT, file=sys.stderr,
                        ncols=ncols, postfix=_fit("starting kernel"))
        interval = 1.0 if getattr(sys.stderr, "isatty", lambda: False)() else 30.0
        self._ticker = threading.Thread(target=self._tick, args=(interval,), daemon=True, name=f"{self.stem} bar")
        self._ticker.start()

    def _postfix(self, text: str, refresh: bool = True) -> None:
        self.bar.set_postfix_str(_fit(text), refresh=refresh)

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.bar.refresh()

    def cell_start(self, cell: Any, index: int | None) -> None:
        if self.bar is not None and _runs(cell):
            line = next((s.strip() for s in cell.source.splitlines() if s.strip() and not s.lstrip().startswith("#")),
                        "")
            where = f"cell {index + 1}" if index is not None else "cell"  # 1-based, as in papermill's log
            self._postfix(f"{where}: {line}")

    def cell_complete(self, cell: Any, failed: bool) -> None:
        if not _runs(cell):
            return
        self.failed |= failed
        if not failed:
            self.done += 1
        if self.bar is not None:
            self.bar.update(0 if failed else 1)
        if self.on_progress is not None:
            self.on_progress(self.state())

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self.bar is not None:
            self._postfix("failed" if self.failed else "done", refresh=False)
            self.bar.close()
            self.bar = None


def _fit(text: str) -> str:
    """The bar's postfix (the cell running now) in a fixed width, so that the bar does not change length with it."""
    return (text[:POSTFIX_WIDTH - 1] + "…" if len(text) > POSTFIX_WIDTH else text).ljust(POSTFIX_WIDTH)


def _runs(cell: Any) -> bool:
    """Whether nbclient executes this cell (it skips markdown and empty code cells)."""
    return cell.get("cell_type") == "code" and bool(cell.get("source", "").strip())


@functools.cache
def _register_engine() -> str:
    """Register papermill's nbclient engine with a `_Progress` fed from its execution manager; papermill is imported
    here, on first use, as its import is slow."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    class Manager(NotebookExecutionManager):
        def __init__(self, nb: Any, progress: _Progress, **kwargs: Any) -> None:
            super().__init__(nb, progress_bar=False, **kwargs)
            self.progress = progress

        def notebook_start(self, **kwargs: Any) -> None:
            super().notebook_start(**kwargs)
            self.progress.start(self.nb)

        def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            super().cell_start(cell, cell_index, **kwargs)
            self.progress.cell_start(cell, cell_index)

        def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            super().cell_complete(cell, cell_index, **kwargs)
            self.progress.cell_complete(cell, failed=cell.metadata.papermill["status"] == self.FAILED)

        def cleanup_pbar(self) -> None:
            super().cleanup_pbar()
            self.progress.close()

    class Engine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                             progress_bar: bool = False, log_output: bool = False, autosave_cell_every: int = 30,
                             progress: _Progress | None = None, **kwargs: Any) -> Any:
            """papermill's `Engine.execute_notebook` with our manager (`progress_bar` is ours, not papermill's)."""
            nb_man = Manager(nb, progress or _Progress("notebook", bool(progress_bar), None), output_path=output_path,
                             log_output=log_output, autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register(ENGINE_NAME, Engine)
    return ENGINE_NAME


def lab_metadata() -> dict[str, Any]:
    """A notebook's `kernelspec` and `language_info` as JupyterLab writes them once its python3 kernel has started
    (the kernel's own language_info, Python's version included): committed notebooks carry exactly these, so that
    opening one and letting JupyterLab autosave changes nothing in git."""
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": "python3"},
            "language_info": dict(IPythonKernel.language_info)}


def write_canonical(path: Path) -> None:
    """Rewrite a notebook as JupyterLab saves it: `lab_metadata()`, nbformat 4.5 with cell ids, keys sorted, one-space
    indent, a trailing newline (nbformat's writer, which jupyter_server's save uses)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.update(lab_metadata())
    nbformat.validator.normalize(nb)
    tmp = path.with_name(path.name + ".tmp")
    nbformat.write(nb, tmp, version=4)
    os.replace(tmp, path)


def notebook_stem(name: str, notebooks_dir: Path = NOTEBOOKS) -> str:
    """`05_ablations`, `05_ablations.ipynb` or `notebooks/05_ablations.ipynb` → `05_ablations`; an unknown name is
    an error that lists the notebooks."""
    stem = Path(name).name.removesuffix(".ipynb")
    known = sorted(p.stem for p in notebooks_dir.glob("*.ipynb"))
    if stem not in known:
        raise ValueError(f"no notebook {name!r}; the notebooks: {', '.join(known)}")
    return stem


def notebook_parameters(stem: str, notebooks_dir: Path = NOTEBOOKS) -> dict[str, str]:
    """The notebook's declared parameters, name → type name (`fast: bool = False` → "bool"), read by papermill
    from its `parameters` cell."""
    import papermill

    return {name: p["inferred_type_name"] for name, p in
            papermill.inspect_notebook(str(notebooks_dir / f"{stem}.ipynb")).items()}


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_parameter_value(name: str, text: str, type_name: str) -> Any:
    """A `--set NAME=VALUE` text as the type the parameters cell declares: `fast=False` is the bool False (the text
    "False" would be truthy); `None` for an optional; a value of another type is an error naming the parameter."""
    base, _, optional = type_name.replace(" ", "").partition("|")
    if optional and text.strip() in ("None", "null") or base == "None":
        return None
    try:
        if base == "bool":
            if text.strip().lower() not in _TRUE + _FALSE:
                raise ValueError
            return text.strip().lower() in _TRUE
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
        if base == "str":
            return text
        return json.loads(text)
    except (ValueError, json.JSONDecodeError):
        raise ValueError(f"parameter {name} is declared {type_name}; {text!r} is not one") from None


def parse_parameters(stem: str, texts: list[str], notebooks_dir: Path = NOTEBOOKS) -> dict[str, Any]:
    """`["fast=false", "epochs=3"]` → {"fast": False, "epochs": 3}, checked against the notebook's parameters cell:
    an unknown name is an error that lists the known ones (papermill would only warn and run on)."""
    declared = notebook_parameters(stem, notebooks_dir)
    values: dict[str, Any] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {text!r}: expected NAME=VALUE")
        if name not in declared:
            raise ValueError(f"{stem} has no parameter {name!r}; its parameters: {', '.join(declared)}")
        values[name] = parse_parameter_value(name, value, declared[name])
    return values


def run_notebook(stem: str, out_root: str | Path, parameters: dict[str, Any] | None = None,
                 notebooks_dir: Path = NOTEBOOKS, progress: bool = True,
                 on_progress: Callable[[NotebookProgress], None] | None = None) -> Path:
    """Execute `notebooks/<stem>.ipynb` into `<out_root>/<stem>.ipynb`; its figures go to `<out_root>/<stem>/`.

    The kernel is `python3`, started in `notebooks_dir`. `progress` shows a tqdm bar of the code cells;
    `on_progress`, if given, gets a `NotebookProgress` after each code cell (shown or not)."""
    import papermill
    from traitlets.config import Config

    out_root = Path(out_root).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    params = {"out_dir": str(out_root / stem)}
    for key, value in (parameters or {}).items():  # "{out_root}" in a text parameter names this run's folder
        params[key] = value.format(out_root=out_root) if isinstance(value, str) else value
    out_nb = out_root / f"{stem}.ipynb"
    with tempfile.TemporaryDirectory(prefix="probegen-kernel-", ignore_cleanup_errors=True) as sockets:
        # The ipc sockets are files named `<ip>-<port>`: left to jupyter_client, `ip` would be "kernel-ipc" in the
        # kernel's cwd (notebooks/), shared with any other run there; a private folder per run keeps them apart.
        kernel = {"transport": KERNEL_TRANSPORT}
        if KERNEL_TRANSPORT == "ipc":
            kernel["ip"] = os.path.join(sockets, "kernel")
        papermill.execute_notebook(str(notebooks_dir / f"{stem}.ipynb"), str(out_nb), parameters=params,
                                   engine_name=_register_engine(), kernel_name="python3", cwd=str(notebooks_dir),
                                   progress_bar=False, progress=_Progress(stem, progress, on_progress),
                                   config=Config({"KernelManager": kernel}), store_widget_state=True)
    finish_executed(out_nb)
    return out_nb


def shown_widgets(nb: Any) -> set[str]:
    """The model ids of the widgets an executed notebook's outputs show, with every widget they refer to (a VBox's
    children, a slider's style...), found in its stored widget state."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    todo = [o["data"][WIDGET_VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", [])
            if WIDGET_VIEW in o.get("data", {})]
    shown: set[str] = set()
    while todo:
        model_id = todo.pop()
        if model_id in shown or model_id not in state:
            continue
        shown.add(model_id)
        todo += _references(state[model_id])
    return shown


def _references(model: dict[str, Any]) -> list[str]:
    """The model ids a widget's stored state refers to ("IPY_MODEL_<id>")."""
    return re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(model["state"]))


RAW_REPRS = ("FigureWidget(", "VBox(", "HBox(")


def widget_problems(nb: Any) -> list[str]:
    """What JupyterLab would not render in an executed notebook, one line each: a widget output whose model is not
    in the stored state ("model not found"), or whose text/plain fallback is a raw widget repr."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    problems = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if text.startswith(RAW_REPRS):
                problems.append(f"cell {index}: a raw widget repr {text[:40]!r}")
            if WIDGET_VIEW in data and data[WIDGET_VIEW]["model_id"] not in state:
                problems.append(f"cell {index}: widget {data[WIDGET_VIEW]['model_id']} has no stored state")
    for model_id in sorted(shown_widgets(nb)):
        problems += [f"widget {model_id} refers to {m}, which has no stored state"
                     for m in sorted(set(_references(state[model_id])) - set(state))]
    return problems


# anywidget (0.11) gives a model 2 s from its creation to evaluate its `_esm` (`AbortSignal.timeout(2000)` in its
# Runtime, manzt/anywidget#828), or the page logs the unhandled rejection "[anywidget] Failed to initialize model." (the
# view renders all the same; a kernel message to that model would be dropped). Each plotly FigureWidget stores the same
# 5 MB module, so a notebook restoring six of them evaluated 30 MB at once and, on a busy machine, missed that budget.
# So the first model of each module keeps its source and hands the evaluated module on (a dynamic import of its own
# URL: the instance already in the page's module map); the others, their source dropped, wait for it and re-export it.
# One instance for many models is what a module given by URL gets anyway.
_SHARED = """(globalThis[Symbol.for("probegen_nb.esm.{digest}")] ??= (() => {{
  let resolve; const promise = new Promise(r => {{ resolve = r; }}); return {{ promise, resolve }};
}})())"""
_HAND_ON = "\n;" + _SHARED + ".resolve(import(import.meta.url));\n"
_WAIT = "const evaluated = await " + _SHARED + """.promise;
export default evaluated.default;
export const render = evaluated.render;
"""


def share_anywidget_modules(state: dict[str, Any]) -> None:
    """Rewrite the stored anywidget models' inline `_esm` (in place) so that a page evaluates each distinct module
    once: its first model evaluates it and hands it on, the others (their source dropped) wait for it."""
    sources: set[str] = set()
    for model in state.values():
        esm = model["state"].get("_esm") if model.get("model_module") == "anywidget" else None
        if not isinstance(esm, str) or esm.startswith(("http://", "https://")) or "probegen_nb.esm." in esm:
            continue  # a module by URL is fetched and evaluated once by the browser already
        digest = hashlib.sha256(esm.encode()).hexdigest()[:16]
        model["state"]["_esm"] = _WAIT.format(digest=digest) if esm in sources else esm + _HAND_ON.format(digest=digest)
        sources.add(esm)


def finish_executed(path: Path) -> None:
    """Drop the stored state of widgets no output shows (`check_wiring`'s copies are never shown; a FigureWidget's
    carries a 5 MB module), share the stored anywidget modules, then sign the notebook: it is this user's own run."""
    import nbformat
    from nbformat.sign import NotebookNotary

    nb = nbformat.read(path, as_version=4)
    stored = nb.metadata.get("widgets", {}).get(WIDGET_STATE)
    if stored is not None:
        keep = shown_widgets(nb)
        stored["state"] = {k: v for k, v in stored["state"].items() if k in keep}
        share_anywidget_modules(stored["state"])
    NotebookNotary().sign(nb)
    tmp = path.with_name(path.name + ".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)


def run_demo(out_root: str | Path, sequence: dict[str, dict[str, Any]] = DEMO_SEQUENCE,
             progress: bool = True) -> list[Path]:
    """Run the demo sequence, a line and a progress bar per notebook; ends with an `index.html` over all of it
    (`<out_root>/index.html`). Returns the executed notebooks."""
    out_root = Path(out_root).resolve()
    written = []
    for stem, parameters in sequence.items():
        if progress:
            tqdm.write(f"notebooks/{stem}.ipynb{f' {parameters}' if parameters else ''} -> {out_root / stem}.ipynb, "
                       f"figures in {out_root / stem}/", file=sys.stderr)
        written.append(run_notebook(stem, out_root, parameters, progress=progress))
    write_index(out_root, list(sequence))
    return written

