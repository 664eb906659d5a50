"""CPU thread policy: decisions on synthetic load readings, the overrides, what train() records, the benchmark's smoke
run. No timing asserts: the benchmark measures the policy, these tests pin down its decisions."""

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import probegen_nb.core.threads as core_threads
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.device import describe_device
from probegen_nb.core.threads import (
    THREADS_ENV,
    LoadSampler,
    ThreadGovernor,
    ThreadPolicy,
    ThreadState,
    choose_threads,
    parse_threads,
    set_threads,
    worker_env,
)
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.train import train
from probegen_nb.zoos.inr import PUBLIC_RECIPE, SirenRecipe, fit_inrs, init_siren_params

from paths import REPO

BENCH = REPO / "benchmarks" / "bench_contention.py"
EVERY_STEP = ThreadPolicy(interval_s=0.0, min_window_s=0.0)

# Run in a fresh interpreter: spies on /proc reads, library loads and torch's thread count, installed after numpy and
# torch (which load their own libraries) and before the module named on the command line is imported.
IMPORT_SPY = """
import builtins, ctypes, importlib, io, json, os, sys
import numpy, torch
seen = {"proc_files": [], "libraries": [], "set_num_threads": []}
real_open, real_cdll_init, real_set = builtins.open, ctypes.CDLL.__init__, torch.set_num_threads
def spy_open(file, *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and os.fspath(file).startswith("/proc/"):
        seen["proc_files"].append(os.fspath(file))
    return real_open(file, *args, **kwargs)
def spy_cdll(self, name, *args, **kwargs):
    seen["libraries"].append(str(name))
    real_cdll_init(self, name, *args, **kwargs)
builtins.open = io.open = spy_open
ctypes.CDLL.__init__ = spy_cdll
torch.set_num_threads = lambda n: seen["set_num_threads"].append(n) or real_set(n)
importlib.import_module(sys.argv[1])
print(json.dumps(seen))
"""


class FakeSampler:
    """Load readings given by the test: other processes' busy cores, one value per read (the last one repeats)."""

    def __init__(self, *readings: float | None) -> None:
        self.readings = list(readings)
        self.reads = 0

    def read(self, min_window_s: float = 0.0) -> float | None:
        self.reads += 1
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    current = read


@pytest.fixture(autouse=True)
def two_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from torch at 2 threads on (what the governor believes is) a 2-CPU machine, with no
    override set and no job before it, and leaves torch's thread count as it found it."""
    before = torch.get_num_threads()
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(core_threads, "usable_cpus", lambda: [0, 1])
    state = ThreadState()  # the process's own state is left as it was
    monkeypatch.setattr(core_threads, "process_threads", lambda: state)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def fake_load(monkeypatch: pytest.MonkeyPatch, *readings: float | None) -> FakeSampler:
    sampler = FakeSampler(*readings)
    core_threads.process_threads().sampler = sampler  # the test's own state (see `two_threads`)
    return sampler


def test_choose_threads_on_synthetic_readings() -> None:
    assert choose_threads(None, quiet_threads=2, n_cpus=2) == 2  # unknown load: the quiet default
    assert choose_threads(0.0, quiet_threads=2, n_cpus=2) == 2  # quiet
    assert choose_threads(0.2, quiet_threads=2, n_cpus=2) == 2  # background noise below busy_cores
    assert choose_threads(1.0, quiet_threads=2, n_cpus=2) == 1  # a busy neighbour
    assert choose_threads(0.5, quiet_threads=2, n_cpus=2) == 1  # a half-busy one still deschedules our threads
    assert choose_threads(3.0, quiet_threads=2, n_cpus=2) == 1  # never fewer than one
    assert choose_threads(2.0, quiet_threads=8, n_cpus=8) == 6  # one fewer per core taken
    assert choose_threads(0.0, quiet_threads=4, n_cpus=8) == 4  # never more than the quiet default
    assert choose_threads(0.5, quiet_threads=2, n_cpus=2, policy=ThreadPolicy(busy_cores=0.6)) == 2


def test_load_sampler_subtracts_own_cpu_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Busy ticks of our CPUs minus this process's CPU time, per wall second; CPUs outside the affinity don't count."""
    stat = tmp_path / "stat"

    def write(busy0: int, busy1: int, busy_other: int) -> None:  # user jiffies (100 per second) of cpu0, cpu1, cpu5
        stat.write_text(f"cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 {busy0} 0 0 5 0 0 0 0 0 0\ncpu1 {busy1} 0 0 5 0 0 0 0 0 0\n"
                        f"cpu5 {busy_other} 0 0 5 0 0 0 0 0 0\nintr 0\n")

    clock = {"wall": 100.0, "own": 10.0}
    monkeypatch.setattr(core_threads.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(core_threads.time, "process_time", lambda: clock["own"])
    write(0, 0, 0)
    sampler = LoadSampler(cpus=[0, 1], stat_path=str(stat))
    sampler.tick = 100
    write(100, 50, 900)  # 1.5 s busy on our CPUs over 1 s, of which 0.5 s was ours
    clock.update(wall=101.0, own=10.5)
    assert sampler.read() == pytest.approx(1.0)
    write(150, 100, 1800)  # 1 s busy over 2 s, all of it ours: nobody else
    clock.update(wall=103.0, own=11.5)
    assert sampler.read() == pytest.approx(0.0)
    clock.update(wall=103.01)
    assert sampler.read(min_window_s=0.05) is None  # too short a window to act on
    assert sampler.current(min_window_s=0.05) == pytest.approx(0.0)  # ... so a decision uses the last reading


def test_first_reading_counts_running_threads(tmp_path: Path) -> None:
    """At the process's first job there is no window yet: the threads runnable now, besides the one reading, count."""
    stat = tmp_path / "stat"
    stat.write_text("cpu0 0 0 0 5 0 0 0 0 0 0\nprocs_running 3\nprocs_blocked 0\n")
    sampler = LoadSampler(cpus=[0], stat_path=str(stat))
    assert sampler.current(min_window_s=10.0) == 2.0
    stat.write_text("cpu0 0 0 0 5 0 0 0 0 0 0\nprocs_running 1\n")
    assert sampler.current(min_window_s=10.0) == 0.0
    assert LoadSampler(stat_path=str(tmp_path / "missing")).current(min_window_s=0.0) is None


def test_no_reading_yet_starts_quiet_and_rereads_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the process's first job there is no reading: the quiet default, then a re-reading after the minimum window."""
    clock = {"wall": 50.0}
    monkeypatch.setattr(core_threads.time, "monotonic", lambda: clock["wall"])
    sampler = fake_load(monkeypatch, None, 1.5)
    gov = ThreadGovernor.start("train", "cpu", policy=ThreadPolicy(interval_s=10.0, min_window_s=0.1))
    assert torch.get_num_threads() == 2
    clock["wall"] += 0.05
    gov.update()
    assert sampler.reads == 1 and torch.get_num_threads() == 2  # too early to read again
    clock["wall"] += 0.06
    gov.update()
    assert sampler.reads == 2 and torch.get_num_threads() == 1
    gov.finish()


def test_busy_neighbour_gives_one_thread_and_quiet_gives_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = fake_load(monkeypatch, 1.2, 1.2, 0.0, 1.0, 0.1, 0.0)
    gov = ThreadGovernor.start("train", "cpu", policy=EVERY_STEP)
    assert torch.get_num_threads() == 1  # busy at the start
    gov.update()
    assert torch.get_num_threads() == 1
    gov.update()  # the neighbour has stopped: one quiet reading is not enough to add a thread back
    assert torch.get_num_threads() == 1
    gov.update()  # busy again: the count of quiet readings starts over
    gov.update()
    assert torch.get_num_threads() == 1
    gov.update()  # the second quiet reading in a row
    assert torch.get_num_threads() == 2
    used = gov.finish()
    assert sampler.reads == 6
    assert used["setting"] == "auto" and used["source"] == "default" and used["switches"] == 1
    assert set(used["seconds_by_threads"]) <= {"1", "2"}
    assert torch.get_num_threads() == 2  # restored


def test_a_busy_reading_removes_threads_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_load(monkeypatch, 0.0, 0.9)
    gov = ThreadGovernor.start("train", "cpu", policy=EVERY_STEP)
    assert torch.get_num_threads() == 2
    gov.update()
    assert torch.get_num_threads() == 1
    assert gov.finish()["switches"] == 1


def test_update_waits_for_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = fake_load(monkeypatch, 0.0, 1.5)
    gov = ThreadGovernor.start("train", "cpu", policy=ThreadPolicy(interval_s=60.0, min_window_s=0.0))
    for _ in range(100):
        gov.update()
    assert sampler.reads == 2 and torch.get_num_threads() == 1  # start + the first update, none after
    gov.finish()


def test_quiet_default_is_torch_count_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)  # e.g. the user chose one thread: auto never goes above it
    fake_load(monkeypatch, 0.0)
    gov = ThreadGovernor.start("train", "cpu", policy=EVERY_STEP)
    gov.update()
    assert torch.get_num_threads() == 1
    gov.finish()


def test_env_override_fixes_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "1")
    sampler = fake_load(monkeypatch, 0.0)
    gov = ThreadGovernor.start("train", "cpu", policy=EVERY_STEP)
    gov.update()
    assert torch.get_num_threads() == 1 and sampler.reads == 0  # fixed: the load is not even read
    used = gov.finish()
    assert (used["setting"], used["source"], used["threads"]) == ("1", THREADS_ENV, "1")
    monkeypatch.setenv(THREADS_ENV, " AUTO ")
    assert ThreadGovernor.start("train", "cpu").finish()["setting"] == "auto"


@pytest.mark.parametrize("value", ["aut", "0", "-1", "1.5", "two"])
def test_env_typo_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(ValueError, match=rf"{THREADS_ENV}={value!r}.*'auto' or a positive number"):
        ThreadGovernor.start("train", "cpu")
    assert torch.get_num_threads() == 2  # nothing was changed


def test_argument_beats_set_threads_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "1")
    fake_load(monkeypatch, 1.5)
    set_threads(2)
    gov = ThreadGovernor.start("train", "cpu")
    assert torch.get_num_threads() == 2 and gov.source == "set_threads"
    gov.finish()
    gov = ThreadGovernor.start("train", "cpu", threads="auto")
    assert torch.get_num_threads() == 1 and gov.source == "argument"  # auto, with the (fake) busy neighbour
    gov.finish()
    with pytest.raises(ValueError, match="set_threads='one'"):
        set_threads("one")
    assert parse_threads(None) is None and parse_threads(3) == 3


def test_gpu_jobs_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = fake_load(monkeypatch, 1.5)
    gov = ThreadGovernor.start("train", "cuda")
    gov.update()
    assert torch.get_num_threads() == 2 and sampler.reads == 0
    assert gov.finish()["threads"] is None


def test_unfinished_job_does_not_leak_its_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that raised never called finish(): the next one still knows the count from before it."""
    fake_load(monkeypatch, 1.5)
    ThreadGovernor.start("train", "cpu")
    assert torch.get_num_threads() == 1
    fake_load(monkeypatch, 0.0)
    gov = ThreadGovernor.start("train", "cpu")
    assert torch.get_num_threads() == 2
    gov.finish()
    assert torch.get_num_threads() == 2


def test_worker_env_gives_each_worker_its_share() -> None:
    assert worker_env(2, base={})[THREADS_ENV] == "1"
    assert worker_env(1, base={"X": "y"}) == {"X": "y", THREADS_ENV: "2", "OMP_NUM_THREADS": "2",
                                              "MKL_NUM_THREADS": "2"}


@pytest.mark.parametrize("module", [f"probegen_nb.core.{name}" for name in ("device", "threads", "allocator")])
def test_importing_reads_loads_and_sets_nothing(module: str) -> None:
    """Importing reads no /proc file, loads no library and leaves torch's threads alone: the sampler, libc and the
    thread count are touched by the first job that needs them (the old core.device read /proc/stat at import)."""
    res = subprocess.run([sys.executable, "-c", IMPORT_SPY, module], capture_output=True, text=True, timeout=120,
                         cwd=REPO)  # `-c` puts the working directory first on sys.path: this checkout's package
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen == {"proc_files": [], "libraries": [], "set_num_threads": []}, f"importing {module} did work: {seen}"


def test_import_spy_sees_a_stat_read_and_a_library_load() -> None:
    """Negative control for the test above: a module that reads /proc/stat and loads libc at import is caught."""
    res = subprocess.run([sys.executable, "-c", IMPORT_SPY.replace(
        "importlib.import_module(sys.argv[1])",
        "open('/proc/stat').close(); ctypes.CDLL('libc.so.6'); torch.set_num_threads(1)"), "unused"],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen == {"proc_files": ["/proc/stat"], "libraries": ["libc.so.6"], "set_num_threads": [1]}


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    m = 60
    params = init_siren_params(SirenSpec(), m, torch.Generator().manual_seed(0))
    table = pd.DataFrame({"model_id": range(m), "split": ["train"] * 40 + ["val"] * 10 + ["test"] * 10,
                          "label": np.arange(m) % 3})
    return Zoo(SirenSpec(), params, table, Task("label", 3))


def test_train_records_the_threads_used(monkeypatch: pytest.MonkeyPatch, zoo: Zoo, tmp_path: Path) -> None:
    fake_load(monkeypatch, 1.5)  # a busy neighbour throughout: auto trains on one thread
    result = train(RunConfig(epochs=1, device="cpu",
                             method=ProbingConfig(n_probes=8)), zoo, out_dir=tmp_path, progress=False)
    threads = result.metrics["threads"]
    assert (threads["setting"], threads["source"], threads["threads"], threads["workload"]) == \
        ("auto", "default", "1", "train")
    assert json.loads((tmp_path / "metrics.json").read_text())["threads"] == threads
    assert torch.get_num_threads() == 2  # restored after the run
    monkeypatch.setenv(THREADS_ENV, "2")
    assert train(RunConfig(epochs=1, device="cpu",
                           method=ProbingConfig(n_probes=8)), zoo, progress=False).metrics["threads"]["threads"] \
        == "2"


def test_fit_inrs_records_the_threads_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "1")
    recipe = SirenRecipe(steps=3, lr=PUBLIC_RECIPE.lr, target_psnr=float("inf"))
    res = fit_inrs(torch.zeros(2, 28, 28, dtype=torch.uint8), recipe=recipe, device="cpu")
    assert (res.threads["threads"], res.threads["source"], res.threads["workload"]) == ("1", THREADS_ENV, "inr_fit")


def test_contention_benchmark_smoke(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_contention", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "contention.json"
    result = bench.main(["--smoke", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(result))
    assert set(written["seconds"]) == {"train", "inr_fit"}
    for by_situation in written["seconds"].values():
        assert set(by_situation) == {"quiet", "python_spin"}
        for by_policy in by_situation.values():
            assert set(by_policy) == {"today", "new_default"}
            assert all(isinstance(t, float) and t > 0 for t in by_policy.values())
    for run in written["runs"]:  # each measured process recorded the threads it used, under its own policy
        expected = ("auto", "default") if run["policy"] == "new_default" else (str(written["cpus"]), THREADS_ENV)
        assert (run["threads"]["setting"], run["threads"]["source"]) == expected
    assert written["new_default"]["policy"]["busy_cores"] > 0
    assert isinstance(written["goals"]["met"], bool) and isinstance(written["goals"]["misses"], list)
    ratios = written["ratios"]["train"]["quiet"]["to_best"]
    assert min(ratios.values()) == 1.0


def test_a_seeded_run_does_not_depend_on_the_thread_count() -> None:
    """The governor may change the intra-op threads mid-run, so a seed must give the same metrics at 1 and 2 threads
    (it does at these op sizes: every reduction is within one thread's block); a run twice at the same count too.
    The promise is for metrics, not weights (see core.threads)."""
    m = 96
    params = init_siren_params(SirenSpec(), m, torch.Generator().manual_seed(0))
    table = pd.DataFrame({"model_id": range(m), "split": ["train"] * 64 + ["val"] * 16 + ["test"] * 16,
                          "label": np.arange(m) % 10})
    zoo = Zoo(SirenSpec(), params, table, Task("label", 10))
    config = RunConfig(epochs=2, device="cpu", method=ProbingConfig(n_probes=16))
    histories = []
    for threads in (1, 2):
        set_threads(threads)
        try:
            run = train(config, zoo, progress=False)
        finally:
            set_threads(None)
        assert run.metrics["threads"]["threads"] == str(threads)
        histories.append(run.metrics["history"])
    assert histories[0] == histories[1]


def test_describe_device_says_the_threads_a_run_uses(monkeypatch: pytest.MonkeyPatch, zoo: Zoo) -> None:
    """`PROBEGEN_THREADS=1` runs said "cpu (2 threads)": the description read torch's count, which the governor
    restores when the run ends. Negative control: under "auto" on a quiet machine it is torch's count, 2."""
    cpu = torch.device("cpu")
    assert describe_device(cpu) == "cpu (2 threads)"
    monkeypatch.setenv(THREADS_ENV, "1")
    assert describe_device(cpu) == "cpu (1 thread)"
    run = train(RunConfig(epochs=1, method=ProbingConfig(n_probes=8), device="cpu"), zoo, progress=False)
    assert run.metrics["device"] == "cpu (1 thread)" and torch.get_num_threads() == 2
    set_threads(2)  # set_threads beats the environment
    assert describe_device(cpu) == "cpu (2 threads)"
    set_threads(None)
    monkeypatch.delenv(THREADS_ENV)
    fake_load(monkeypatch, 1.5)  # "auto" beside a busy neighbour: the run used one thread, and says so
    config = RunConfig(epochs=1, method=ProbingConfig(n_probes=8), device="cpu")
    assert train(config, zoo, progress=False).metrics["device"] == "cpu (1 thread)"
