"""The fixed-probe benchmark runs in smoke mode; caching the answers changes no learning-curve value."""

import importlib.util
import json
from pathlib import Path

from paths import REPO

BENCH = REPO / "benchmarks" / "bench_fixed_probes.py"


def test_fixed_probe_benchmark_smoke(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_fixed_probes", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "fixed.json"
    module.main(["--smoke", "--out", str(out), "--device", "cpu"])
    written = json.loads(out.read_text())
    for case, metric in (("inr", "test_accuracy"), ("cnn", "test_kendall_tau")):
        r = written[case]
        assert {"per_step_seconds", "cached_seconds", "ratio", "max_abs_metric_diff"} <= set(r)
        assert r["metric"] == metric
        # same probes, same batches: the two paths differ only in float summation order of the same answers
        assert r["max_abs_metric_diff"] < 1e-6
