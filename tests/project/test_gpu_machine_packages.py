"""What `benchmarks/gpu_check.sh` runs must work with the GPU machine's packages (../shared/DEVICE.md): plotly,
papermill, ipywidgets, nbformat, distributed, nfn and kaleido are not installed there. A module-level import of one
of them on the path of a GPU step would cost a device call to find; here the imports are refused in a subprocess
and every benchmark script, the `train` and `paper` commands (the steps' own code paths, on a tiny zoo) still run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from paths import REPO

MISSING = ("plotly", "papermill", "ipywidgets", "nbformat", "distributed", "dask", "nfn", "kaleido")
BLOCKER = f"""
import sys
class _NotOnTheGPUMachine:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {MISSING!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed on the GPU machine)")
sys.meta_path.insert(0, _NotOnTheGPUMachine())
"""


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_the_blocker_refuses_the_missing_packages() -> None:
    """Negative control: under the blocker an import of a missing package fails, so the test below can fail."""
    res = run_blocked("import plotly")
    assert res.returncode != 0 and "not installed on the GPU machine" in res.stderr


def test_the_gpu_check_steps_run_without_the_packages_the_gpu_machine_lacks(tmp_path: Path) -> None:
    zoo = REPO / "data" / "zoos" / "mnist-inr-small"
    code = f"""
import importlib.util, pathlib
for path in sorted(pathlib.Path("benchmarks").glob("bench_*.py")):  # each script's imports (its main is guarded)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
from probegen_nb import cli
cli.main(["train", "--zoo", {str(zoo)!r}, "--out", {str(tmp_path / "run")!r}, "--epochs", "1",
          "--max-train-models", "32", "--device", "cpu"])
cli.main(["paper", "--parts", "mnist", "--zoo", "mnist={zoo}", "--epochs", "1", "--max-train-models", "32",
          "--seeds", "0", "--engine", "local", "--device", "cpu", "--out", {str(tmp_path / "paper")!r},
          "--page", {str(tmp_path / "page.md")!r}])
print("ALL RAN")
"""
    res = run_blocked(code)
    assert res.returncode == 0 and "ALL RAN" in res.stdout, res.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file() and "## MNIST INR classification" in (
        tmp_path / "page.md").read_text()
