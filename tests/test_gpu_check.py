"""The GPU check script runs end to end on the CPU in smoke mode and writes every JSON that README's GPU figures
come from; a bad argument or a failing step stops it with a non-zero exit (so a GPU run cannot half-succeed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
FILES = ("environment", "inr_fitting", "probe_training", "cnn_zoo", "fixed_probes", "inr_zoo", "train_probegen",
         "summary")


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_gpu_check_smoke_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    res = run("--device", "cpu", "--smoke", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    written = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(written) == set(FILES)
    summary = written["summary"]
    assert summary["device"] == "cpu" and summary["smoke"] is True
    assert set(summary["step_seconds"]) == {"environment", "inr_fitting", "probe_training", "cnn_zoo", "fixed_probes",
                                            "build_inr_zoo", "train_probegen"}
    assert written["inr_zoo"]["n_models"] == 60
    assert written["train_probegen"]["metric"] == "accuracy" and written["train_probegen"]["n_train_models"] == 40
    assert written["environment"]["device"].startswith("cpu")


def test_gpu_check_refuses_a_bad_argument_and_stops_at_a_failing_step(tmp_path: Path) -> None:
    res = run("--smoke", "--devise", "cpu")
    assert res.returncode == 2 and "unknown argument '--devise'" in res.stderr
    res = run("--device", "no-such-device", "--smoke", "--out", str(tmp_path / "bad"))
    assert res.returncode != 0
    assert not (tmp_path / "bad" / "summary.json").exists()  # no summary claims a run that did not finish
