"""Run notebooks headlessly with papermill: the demo sequence (`make demo`) and the notebook tests share this."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probegen_nb.viz.report import write_index

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
# The demo: each notebook with its default parameters, except where a smaller run keeps `make demo` short.
DEMO_SEQUENCE: dict[str, dict[str, Any]] = {
    "00_quickstart": {},
    "01_inr_zoo": {},
    "02_train_probegen": {"epochs": 5},
    "03_cnn_generalization": {"epochs": 10},
    "04_explore_probes": {"run_dir": "{out_root}/03_cnn_generalization"},  # explores the runs 03 just wrote
}


def run_notebook(stem: str, out_root: str | Path, parameters: dict[str, Any] | None = None,
                 notebooks_dir: Path = NOTEBOOKS) -> Path:
    """Execute `notebooks/<stem>.ipynb` into `<out_root>/<stem>.ipynb`; its figures go to `<out_root>/<stem>/`."""
    import papermill

    out_root = Path(out_root).resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    params = {"out_dir": str(out_root / stem)}
    for key, value in (parameters or {}).items():  # "{out_root}" in a text parameter names this run's folder
        params[key] = value.format(out_root=out_root) if isinstance(value, str) else value
    out_nb = out_root / f"{stem}.ipynb"
    papermill.execute_notebook(str(notebooks_dir / f"{stem}.ipynb"), str(out_nb), parameters=params,
                               kernel_name="python3", cwd=str(notebooks_dir), progress_bar=False,
                               store_widget_state=False)
    return out_nb


def run_demo(out_root: str | Path, sequence: dict[str, dict[str, Any]] = DEMO_SEQUENCE) -> list[Path]:
    """Run the demo sequence, printing what was written where; ends with an `index.html` over all of it."""
    out_root = Path(out_root).resolve()
    written = []
    for stem, parameters in sequence.items():
        t0 = time.perf_counter()
        print(f"running notebooks/{stem}.ipynb {parameters or ''}...", flush=True)
        written.append(run_notebook(stem, out_root, parameters))
        print(f"  done in {time.perf_counter() - t0:.0f} s -> {out_root / stem}.ipynb, figures in {out_root / stem}/",
              flush=True)
    index = write_index(out_root, list(sequence))
    print(f"\nExecuted notebooks and their figures/metrics.json are in {out_root}/.\n"
          f"Open them with `make lab` (JupyterLab on notebooks/) and File > Open {out_root}/<name>.ipynb,\n"
          f"or look at the PNG/HTML figures in each {out_root}/<name>/ folder.\n"
          f"All figures and metrics on one page (offline): {index}")
    return written


def run_seeds(stem: str, seeds: Sequence[int], out_root: str | Path,
              parameters: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Run a notebook once per seed into `<out_root>/seed_<k>/` and aggregate the numbers of its `metrics.json`
    ({method: {metric: value}}) into mean ± std per method, written to `<out_root>/summary.json`."""
    out_root = Path(out_root).resolve()
    per_seed = []
    for seed in seeds:
        run_notebook(stem, out_root / f"seed_{seed}", {**(parameters or {}), "seed": seed})
        per_seed.append(json.loads((out_root / f"seed_{seed}" / stem / "metrics.json").read_text()))
    summary: dict[str, dict[str, float]] = {}
    for method, values in per_seed[0].items():
        if not isinstance(values, dict) or method == "config":
            continue
        for key, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                xs = np.array([run[method][key] for run in per_seed], dtype=float)
                summary.setdefault(method, {})[f"{key}_mean"] = float(xs.mean())
                summary[method][f"{key}_std"] = float(xs.std())
    (out_root / "summary.json").write_text(json.dumps({"notebook": stem, "seeds": list(seeds),
                                                       "parameters": parameters or {}, "summary": summary}, indent=2))
    return summary
