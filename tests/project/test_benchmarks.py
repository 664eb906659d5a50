"""Each benchmark runs end to end in smoke mode, writes the fields docs/performance.md quotes, and records an agreement
check it computed on its own inputs: the reference and the batched path give the same outputs (no timing asserts)."""

import importlib.util
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.core.arch.cnn import CNNSpec, cnn_forward, probe_tile
from probegen_nb.zoos.cnn import init_cnn_params, sample_hparams

from paths import REPO

BENCH = REPO / "benchmarks"

# The agreement tolerances. Reference and batched paths do the same float32 arithmetic in a different order (grouped
# vs one-model convolutions, batched vs single matmuls, other summation blocks), which moves results by a few ulps.
# Representations and loss gradients: O(0.01-10) values, measured to differ by 1e-10 to 1.5e-6 (smoke and full runs);
# a real disagreement (a row in the wrong place, a wrong activation or residual) moves them by O(0.01) or more.
OUTPUTS_AND_GRADS = 1e-4
# Weights after a few optimizer steps. Adam and RMSprop steps are about lr per weight whatever the gradient's size
# (lr·m/(√v + ε)), so an error in a gradient or an update shows at ~lr (5e-4 to 5e-2 here: 1 % more lr moves the CNN
# check by 3e-2), and they also amplify float noise on near-zero gradients: measured 7e-9 for the INRs (5 steps,
# lr 5e-4) and 1e-7 to 2e-5 for CNNs (3 steps, lr up to 5e-2, over seeds and up to 12 models; 2.5e-7 in the smoke run).
FITTED_INRS = 1e-5
TRAINED_CNNS = 1e-4


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, tmp_path: Path) -> tuple[dict, dict]:
    out = tmp_path / f"{name}.json"
    result = load(name).main(["--smoke", "--out", str(out), "--device", "cpu"])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(result))  # the JSON is what main() measured
    return result, written


def has_memory(d: dict) -> None:
    """The per-model peak memory docs/performance.md quotes is there (how it is measured: tests/core/test_memory.py)."""
    assert isinstance(d["peak_bytes_per_model"], float) and d["peak_bytes_per_model"] >= 0
    assert d["peak_memory_measured"] in ("peak RSS growth (VmHWM)", "ru_maxrss growth (new peaks only)")


def positive(d: dict, *keys: str) -> None:
    for k in keys:
        assert isinstance(d[k], float) and d[k] > 0, (k, d[k])


def test_inr_fitting_benchmark_smoke(tmp_path: Path) -> None:
    result, written = run("bench_inr_fitting", tmp_path)
    positive(written, "reference_inr_steps_per_s", "batched_inr_steps_per_s", "ratio", "batched_gflop_per_s",
             "matmul_peak_gflop_per_s")
    assert isinstance(written["share_of_matmul_peak"], float)
    assert isinstance(written["device"], str)
    forward_matmuls = 784 * 2 * (2 * 32 + 32 * 32 + 32)
    assert 2.5 * forward_matmuls < result["flops_per_inr_step"] < 3.5 * forward_matmuls  # forward + backward
    assert written["agreement_models"] >= 1
    assert 0 <= written["max_abs_diff"] < FITTED_INRS  # one at a time and batched fit the same weights
    positive(written, "matmuls_only_inr_steps_per_s", "ratio_bound_matmuls")
    has_memory(written)


def test_inr_matmul_bound_times_exactly_the_steps_matmuls() -> None:
    """The bound's matmuls are the fitting step's: the same FLOPs as the counted forward + backward, whose other
    operations (sines, sums, the loss) FlopCounterMode does not count."""
    bench = load("bench_inr_fitting")
    cpu = torch.device("cpu")
    with FlopCounterMode(display=False) as counter:
        bench.step_matmuls(cpu, 4)()
    assert counter.get_total_flops() == 4 * bench.flops_per_inr_step(cpu, batch=4)


def test_probe_training_benchmark_smoke(tmp_path: Path) -> None:
    _, written = run("bench_probe_training", tmp_path)
    positive(written, "reference_models_per_s", "batched_models_per_s", "ratio", "ratio_b256",
             "batched_gflop_per_s_b256")
    assert set(written["by_batch"]) == {"4", "8"}
    cases = [*written["by_batch"].values(), written["cnn"]]
    for case in cases:
        positive(case, "reference_models_per_s", "batched_models_per_s", "ratio")
        has_memory(case)
    wild = written["wild_park"]
    positive(wild, "one_group_steps_per_s")
    for name in ("distinct", "shared_shapes"):
        positive(wild[name], "reference_steps_per_s", "batched_steps_per_s", "ratio")
        cases.append(wild[name])
    shared, n = wild["shared_shapes"], wild["n_architectures"]
    positive(shared, "one_forward_steps_per_s", "one_forward_ratio")
    assert wild["distinct"]["forwards_reference"] == wild["distinct"]["forwards_batched"] == n
    assert (shared["forwards_reference"], shared["forwards_one_forward"]) == (n, 1)
    assert shared["forwards_batched"] == (1 if wild["shares_forwards"] else n)  # on a CPU: one forward per arch
    for case in cases:  # representations and every gradient, per-model or per-group reference vs batched path
        assert 0 <= case["max_abs_diff"] < OUTPUTS_AND_GRADS, case
    assert 0 <= shared["one_forward_max_abs_diff"] < OUTPUTS_AND_GRADS  # and the shared-shapes forward


def test_cnn_zoo_benchmark_smoke(tmp_path: Path) -> None:
    _, written = run("bench_cnn_zoo", tmp_path)
    positive(written, "reference_model_steps_per_s", "batched_model_steps_per_s", "ratio")
    assert set(written["agreement_optimizers"]) <= {"adam", "sgd", "rmsprop"} and written["agreement_steps"] >= 1
    assert 0 <= written["max_abs_diff"] < TRAINED_CNNS  # module + torch.optim and the batched step agree
    positive(written, "convolutions_only_model_steps_per_s", "ratio_bound_convolutions")
    has_memory(written)


def conv_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    ops = counter.get_flop_counts()["Global"]
    return sum(f for op, f in ops.items() if "convolution" in str(op))


def test_cnn_convolution_bound_times_exactly_the_steps_convolutions() -> None:
    """The bound's convolutions are the batched training step's (forward and backward), tiles included: equal
    convolution FLOPs at a size that takes several tiles."""
    bench = load("bench_cnn_zoo")
    cpu, m, batch = torch.device("cpu"), 4, 300
    spec = CNNSpec.small_cnn_zoo(1, "relu", padding=0)
    assert probe_tile(spec, m, batch, cpu) < batch  # several tiles
    params = [p.requires_grad_() for p in init_cnn_params(spec, sample_hparams(m, seed=0),
                                                          torch.Generator().manual_seed(0)).values()]
    x = torch.randn(m, batch, 1, 32, 32)

    def step() -> None:
        logits = cnn_forward(spec, dict(zip(spec.param_shapes(), params)), x)
        torch.autograd.grad(logits.square().sum(), params)

    assert conv_flops(bench.step_convolutions(spec, m, batch, cpu)) == conv_flops(step) > 0


def test_runs_benchmark_smoke(tmp_path: Path) -> None:
    """R runs as one program vs in sequence: timings recorded, and each grouped run agrees with its solo run."""
    result, written = run("bench_runs", tmp_path)
    positive(written, "sequence_seconds", "group_seconds", "ratio", "solo_train_seconds")
    assert len(written["max_metric_diff_per_run"]) == written["runs"] == 3
    assert all(d <= 1e-6 for d in written["max_metric_diff_per_run"])  # tests/experiment/test_grouped.py's METRIC_ATOL
    assert all(written["best_epoch_equal"])


def test_train_step_benchmark_smoke(tmp_path: Path) -> None:
    """Graphed vs eager steps: on a CPU the eager rows (one run, R runs as one program) are timed and the graph rows
    are said to be skipped, not faked."""
    result, written = run("bench_train_step", tmp_path)
    assert set(written["rows"]) == {"solo_eager", "group_eager"}
    for row in written["rows"].values():
        assert row["seconds"] > 0 and row["ms_per_step"] > 0 and not any(row["cuda_graphs"])
    assert "CUDA device" in written["graphs_skipped"] and "solo_speedup" not in written
