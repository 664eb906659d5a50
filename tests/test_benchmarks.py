"""Each benchmark runs end to end in smoke mode and writes the fields the README quotes (no timing asserts)."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, tmp_path: Path) -> tuple[dict, dict]:
    out = tmp_path / f"{name}.json"
    result = load(name).main(["--smoke", "--out", str(out), "--device", "cpu"])
    return result, json.loads(out.read_text())


def test_inr_fitting_benchmark_smoke(tmp_path: Path) -> None:
    result, written = run("bench_inr_fitting", tmp_path)
    assert {"reference_inr_steps_per_s", "batched_inr_steps_per_s", "ratio", "device", "batched_gflop_per_s"} <= set(
        written)
    assert written["ratio"] == pytest.approx(written["batched_inr_steps_per_s"] / written["reference_inr_steps_per_s"])
    forward_matmuls = 784 * 2 * (2 * 32 + 32 * 32 + 32)
    assert 2.5 * forward_matmuls < result["flops_per_inr_step"] < 3.5 * forward_matmuls  # forward + backward


def test_probe_training_benchmark_smoke(tmp_path: Path) -> None:
    result, written = run("bench_probe_training", tmp_path)
    assert {"reference_models_per_s", "batched_models_per_s", "ratio", "ratio_b256", "device"} <= set(written)
    assert written["ratio"] == pytest.approx(written["batched_models_per_s"] / written["reference_models_per_s"])
    assert set(written["by_batch"]) == {"4", "8"}
    assert {"reference_models_per_s", "batched_models_per_s", "ratio"} <= set(written["cnn"])


def test_cnn_zoo_benchmark_smoke(tmp_path: Path) -> None:
    _, written = run("bench_cnn_zoo", tmp_path)
    assert {"reference_models_per_s", "batched_models_per_s", "ratio", "device"} <= set(written)
    assert written["ratio"] == pytest.approx(written["batched_models_per_s"] / written["reference_models_per_s"])
