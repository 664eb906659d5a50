"""The GPU check script runs end to end on the CPU in smoke mode and writes every JSON that the GPU figures come from;
a step that fails, runs past its cap or finds no time left is reported with its error while the later steps still
run, and the exit status says that something failed (so a GPU run cannot half-succeed silently)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from paths import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STEPS = ["environment", "inr_zoo_plan", "build_inr_zoo", "train_probegen", "zoo_memory", "inr_fitting",
         "probe_training", "fixed_probes", "runs", "train_step", "cnn_zoo"]
FILES = {"environment", "inr_zoo", "train_probegen", "zoo_memory", "inr_fitting", "probe_training", "cnn_zoo",
         "fixed_probes", "runs", "train_step", "summary"}


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_gpu_check_smoke_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    res = run("--device", "cpu", "--smoke", "--out", str(out))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    written = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(written) == FILES
    summary = written["summary"]
    assert summary["device"] == "cpu" and summary["smoke"] is True and summary["ok"] is True
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert all(s["status"] == "ok" and s["error"] is None for s in summary["steps"])
    # the one-INR-per-image plan on the first 70 MNIST images: 60 train images (the last twelfth, 5, are val), 10 test
    assert written["inr_zoo"]["n_models"] == 70
    assert written["train_probegen"]["metric"] == "accuracy" and written["train_probegen"]["n_train_models"] == 55
    assert len(written["train_probegen"]["history"]) == 30  # the INR benchmark's protocol epochs
    assert written["environment"]["device"].startswith("cpu")
    assert "steps" in res.stdout and "total" in res.stdout.splitlines()[-1]


def test_a_failing_step_is_reported_and_the_next_one_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    res = run("--device", "cpu", "--smoke", "--out", str(out), "--steps", "environment,inr_zoo_plan",
              "--fail", "environment")
    assert res.returncode == 1
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("environment", "failed"), ("inr_zoo_plan", "ok")]
    assert steps[0]["error"].startswith("exit 1")
    assert "environment" in res.stdout and "failed" in res.stdout.split("result")[-1]


def test_a_step_past_its_cap_and_steps_beyond_the_budget_are_reported(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    # the plan step imports torch and measures: far more than 2 s; nothing is left for the next step
    res = run("--device", "cpu", "--smoke", "--out", str(out), "--steps", "inr_zoo_plan,build_inr_zoo",
              "--budget", "2")
    assert res.returncode == 1
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("inr_zoo_plan", "timeout"), ("build_inr_zoo", "skipped")]
    assert "2 s cap" in steps[0]["error"] and "budget" in steps[1]["error"]


def test_gpu_check_refuses_a_bad_argument_or_step_name(tmp_path: Path) -> None:
    res = run("--smoke", "--devise", "cpu")
    assert res.returncode == 2 and "unknown argument '--devise'" in res.stderr
    res = run("--smoke", "--steps", "environment,trian_probegen")
    assert res.returncode == 2 and "unknown step 'trian_probegen'" in res.stderr
    assert not (tmp_path / "summary.json").exists()


def test_the_paper_step_runs_only_when_named_and_keeps_the_committed_sections(tmp_path: Path) -> None:
    """`paper_inr` (issue 25's call: `--steps environment,paper_inr,runs`) is not in the default check (the test
    above pins its steps); named, it writes the page into the output folder with its MNIST section new and the
    committed page's CIFAR10-GS section kept, and copies the sweep's tables there."""
    out = tmp_path / "gpu"
    res = run("--device", "cpu", "--smoke", "--out", str(out), "--steps", "environment,paper_inr")
    assert res.returncode == 0, res.stdout[-2000:]
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("environment", "ok"), ("paper_inr", "ok")]
    page = (out / "paper-table.md").read_text()
    committed = (REPO / "docs" / "results" / "paper-table.md").read_text()
    assert "## MNIST INR classification" in page and "runs finished: 12 of 12" in page
    cifar = committed[committed.index("## CIFAR10-GS"):]
    assert cifar[cifar.index("| method |"):] in page  # the kept section's table, as committed
    assert (out / "paper" / "paper_mnist" / "results.csv").is_file()
    assert len(list((out / "paper" / "paper_mnist").glob("*/metrics.json"))) == 12


def test_the_graphed_training_step_runs_only_when_named(tmp_path: Path) -> None:
    """`train_probegen_graphs` (not in the default check, pinned above) trains on the zoo the check built with
    $PROBEGEN_CUDA_GRAPHS=1: on a CPU that means eager steps, and its metrics say so."""
    out = tmp_path / "gpu"
    res = run("--device", "cpu", "--smoke", "--out", str(out), "--steps", "build_inr_zoo,train_probegen_graphs")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("build_inr_zoo", "ok"), ("train_probegen_graphs", "ok")]
    metrics = json.loads((out / "train_probegen_graphs.json").read_text())
    assert metrics["cuda_graphs"] is False and metrics["history"]
