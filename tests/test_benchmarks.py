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


@pytest.mark.parametrize("name,keys", [
    ("bench_inr_fitting", {"reference_inr_steps_per_s", "batched_inr_steps_per_s", "ratio", "device",
                           "batched_gflop_per_s", "flops_per_inr_step"}),
])
def test_benchmark_smoke(name: str, keys: set[str], tmp_path: Path) -> None:
    out = tmp_path / f"{name}.json"
    result = load(name).main(["--smoke", "--out", str(out), "--device", "cpu"])
    written = json.loads(out.read_text())
    assert keys <= set(written)
    assert written["ratio"] == pytest.approx(written["batched_inr_steps_per_s"] / written["reference_inr_steps_per_s"])
    assert result["flops_per_inr_step"] > 784 * 2 * (2 * 32 + 32 * 32 + 32)  # at least the forward's matmuls
