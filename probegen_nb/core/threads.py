"""CPU intra-op threads: how many a job uses, fitted to the machine's load while it runs (`ThreadGovernor`).

Nothing happens at import: the process's choices and its /proc/stat sampler live in one `ThreadState`, created by the
first call that needs it, and torch's thread count is only changed by a job's `ThreadGovernor`.

What the thread count may change: the guarantee is for metrics, not weights. A seeded run's metrics (its history,
the test metric) are identical at 1 and 2 threads (tested); its trained weights are not promised bit-identical, since
a float sum split differently between threads can differ in the last bits (the tested INR run's weights happen to
match too; nothing checks that larger runs' do).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

# The CPU hot loops here are thousands of tiny ops (32×32 matmuls, small convolutions), each its own OpenMP parallel
# region that ends when its slowest thread does. With one intra-op thread per core, a busy neighbour descheduling one
# of them stalls every region. Measured on 2 cores (benchmarks/bench_contention.py, runs/bench/contention.json):
# 2-epoch probe training takes 1.5 s alone with 2 threads and 1.7 s with 1; beside a second copy of itself 2 threads
# take 5.4 s to more than 15 s, 1 thread 1.9 s; INR fitting gains more from its second thread (1.4 s vs 2.4 s alone)
# and loses as much beside a neighbour (>= 15 s vs 2.7 s). So `ThreadGovernor` uses all threads while the machine is
# otherwise idle and one fewer per core that other processes keep busy, re-reading the load while the job runs.
# OMP_WAIT_POLICY=PASSIVE is no substitute: it costs 1.7× on quiet probe training, and OpenMP reads it only when torch
# is imported (set later, it was measured to change nothing), so only a launcher could set it; nothing here does.

THREADS_ENV = "PROBEGEN_THREADS"  # "auto" (default) or a fixed number of intra-op threads


@dataclass(frozen=True)
class ThreadPolicy:
    """How `ThreadGovernor` picks the intra-op thread count of a CPU job (see `choose_threads`)."""

    busy_cores: float = 0.3  # CPU use of other processes, in cores, that makes one core count as taken
    interval_s: float = 0.25  # how often a running job re-reads the load (a few reads cost ~0.1 ms)
    # Consecutive quiet readings before adding threads back (fewer threads: at once). Asymmetric because a thread too
    # many beside a busy neighbour cost up to 17× here, a thread too few when the neighbour has gone at most 1.8×.
    readings_to_add: int = 2
    min_window_s: float = 0.1  # shorter readings are too coarse (/proc/stat counts 10 ms ticks) to act on


DEFAULT_THREAD_POLICY = ThreadPolicy()


def parse_threads(value: str | int | None, source: str = THREADS_ENV) -> int | Literal["auto"] | None:
    """`"auto"`, a positive integer (or its digits), or None/"" for unset; anything else is a ValueError that names
    where the value came from, so a typo in the environment does not silently fall back to a default."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"{source}={value!r}: expected 'auto' or a positive number of threads (e.g. 1 or 2)")


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


class LoadSampler:
    """Cores kept busy by *other* processes between two readings: busy time of this process's CPUs in /proc/stat,
    minus this process's own CPU time (all its threads, spinning OpenMP workers included), per second of wall time.

    Linux only; elsewhere `read()` returns None and the governor keeps its quiet default.
    """

    def __init__(self, cpus: list[int] | None = None, stat_path: str = "/proc/stat") -> None:
        self.cpus = set(usable_cpus() if cpus is None else cpus)
        self.stat_path = stat_path
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._snapshot()
        self.recent: float | None = None  # the last reading returned

    def _busy_seconds(self) -> float | None:
        try:
            with open(self.stat_path) as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cpus:
                user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
                busy += user + nice + system + irq + softirq + steal
        return busy / self.tick

    def _snapshot(self) -> tuple[float, float, float] | None:
        busy = self._busy_seconds()
        return None if busy is None else (time.monotonic(), busy, time.process_time())

    def read(self, min_window_s: float = 0.0) -> float | None:
        """Other processes' CPU use (cores, ≥ 0) since the last reading; None when unknown or the window is shorter
        than `min_window_s` (then the next reading covers it)."""
        now = self._snapshot()
        if now is None or self.last is None:
            return None
        dt = now[0] - self.last[0]
        if dt < max(min_window_s, 1e-3):
            return None
        others = (now[1] - self.last[1]) - (now[2] - self.last[2])
        self.last, self.recent = now, max(0.0, others / dt)
        return self.recent

    def running_now(self) -> float | None:
        """Other threads runnable at this instant (/proc/stat `procs_running`, minus the one reading it): a coarse,
        instant reading for when there is no window yet."""
        try:
            with open(self.stat_path) as f:
                for line in f:
                    if line.startswith("procs_running"):
                        return max(0.0, float(line.split()[1]) - 1)
        except (OSError, ValueError, IndexError):
            pass
        return None

    def current(self, min_window_s: float) -> float | None:
        """A reading for a decision now: since the last one if that is long enough, else the last one returned (a job
        starting right after another), else the threads running at this instant (the process's first job). Never
        waits: a wait at the start would cost every quiet run, and jobs started together would wait through the same
        moment."""
        reading = self.read(min_window_s)
        if reading is None:
            reading = self.recent if self.recent is not None else self.running_now()
        return reading


def choose_threads(neighbour_cores: float | None, quiet_threads: int, n_cpus: int,
                   policy: ThreadPolicy = DEFAULT_THREAD_POLICY) -> int:
    """Threads for a job when other processes keep `neighbour_cores` cores busy: `quiet_threads` on an otherwise idle
    machine (or when the load is unknown), one fewer per core taken (a core counts once its use passes
    `policy.busy_cores`), never fewer than one."""
    if neighbour_cores is None:
        return quiet_threads
    taken = math.ceil(max(0.0, neighbour_cores - policy.busy_cores))
    return max(1, min(quiet_threads, n_cpus - taken))


def fixed_threads() -> int | None:
    """The intra-op threads a CPU job will use when they are fixed (`set_threads(N)`, else $PROBEGEN_THREADS=N);
    None under "auto" (a job then uses up to torch's count, fewer on a busy machine)."""
    for setting in (process_threads().override, parse_threads(os.environ.get(THREADS_ENV))):
        if setting is not None:
            return setting if isinstance(setting, int) else None
    return None


@dataclass
class ThreadState:
    """The process's thread choices, shared by its jobs: `set_threads`'s override, the last job started, and the load
    sampler, created at the first job's first reading (not at import) and kept, so a later job's first choice uses
    the load since the previous job's last reading."""

    override: int | Literal["auto"] | None = None  # set_threads() / use_threads(); None: defer to $PROBEGEN_THREADS
    active: ThreadGovernor | None = None  # the last job started, finished or not
    sampler: LoadSampler | None = None

    def load(self) -> LoadSampler:
        """The sampler, created on first use."""
        if self.sampler is None:
            self.sampler = LoadSampler()
        return self.sampler


@functools.cache
def process_threads() -> ThreadState:
    """This process's `ThreadState`, created by the first call."""
    return ThreadState()


def set_threads(threads: str | int | None) -> None:
    """Process-wide choice for later CPU jobs (e.g. from a notebook): "auto", a number, or None to defer to
    $PROBEGEN_THREADS. Same meaning as the environment variable; a governor's own `threads` argument beats both."""
    process_threads().override = parse_threads(threads, source="set_threads")


@contextmanager
def use_threads(threads: str | int | None) -> Iterator[None]:
    """`set_threads` for the length of a block (the tasks of a sweep), then the choice of before, even on error."""
    state = process_threads()
    previous = state.override
    set_threads(threads)
    try:
        yield
    finally:
        state.override = previous


class ThreadGovernor:
    """Sets torch's intra-op threads for one CPU job and keeps them fitted to the machine's load while it runs.

    `start()` at the top of the job, `update()` as often as convenient (every step: it re-reads the load only every
    `policy.interval_s`), `finish()` at the end: it restores the previous count and returns what was used, for the
    run's metrics. Thread count: `threads` argument > `set_threads()` > $PROBEGEN_THREADS > "auto"; a fixed number
    is used as given, "auto" follows `choose_threads` (never more threads than torch had at the start). GPU jobs are
    left alone. OMP_WAIT_POLICY is read by OpenMP when torch is imported, so it can only be set by the launcher; it is
    recorded, not changed.
    """

    def __init__(self, workload: str, device: torch.device | str = "cpu", threads: str | int | None = None,
                 policy: ThreadPolicy = DEFAULT_THREAD_POLICY) -> None:
        self.workload, self.policy = workload, policy
        self.cpu = torch.device(device).type == "cpu"
        sources = (("argument", parse_threads(threads, source="threads")),
                   ("set_threads", process_threads().override),
                   (THREADS_ENV, parse_threads(os.environ.get(THREADS_ENV))))
        self.source, self.setting = next(((s, v) for s, v in sources if v is not None), ("default", "auto"))
        self.previous = torch.get_num_threads()
        self.n_cpus = len(usable_cpus())
        self.seconds: dict[int, float] = {}
        self.switches = 0
        self.threads = self.previous
        self._since = time.monotonic()
        self._next = self._since + policy.min_window_s  # the first re-reading: as soon as it means something
        self.started = self._finished = False
        self._quiet_readings = 0  # consecutive readings that would allow more threads
        self.load_at_start: float | None = None  # other processes' busy cores when the job started (auto only)

    @classmethod
    def start(cls, workload: str, device: torch.device | str = "cpu", threads: str | int | None = None,
              policy: ThreadPolicy = DEFAULT_THREAD_POLICY) -> ThreadGovernor:
        """Pick and set the threads for a job that starts now (from the load since the last reading)."""
        state = process_threads()
        gov = cls(workload, device, threads, policy)
        earlier = state.active
        if earlier is not None and not earlier._finished:  # an earlier job ended without finish() (an exception)
            gov.previous = gov.threads = earlier.previous
            earlier._finished = True
        state.active = gov
        if gov.cpu:  # GPU jobs keep torch's thread count: their host threads only launch kernels
            gov.load_at_start = state.load().current(policy.min_window_s) if gov.setting == "auto" else None
            gov._set(gov._choose(gov.load_at_start) if gov.setting == "auto" else int(gov.setting))
        return gov

    def _choose(self, reading: float | None) -> int:
        return choose_threads(reading, self.previous, self.n_cpus, self.policy)

    def _set(self, n: int) -> None:
        now = time.monotonic()
        if self.started:  # a change while the job runs (not the choice at its start)
            self.seconds[self.threads] = self.seconds.get(self.threads, 0.0) + now - self._since
            self.switches += self.threads != n
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        self._since, self.started, self.threads = now, True, n

    def update(self) -> None:
        """Re-read the load and adjust the threads, at most every `policy.interval_s` (otherwise: one clock read)."""
        if not self.cpu or self.setting != "auto" or self._finished:  # a GPU job: nothing to re-read
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.policy.interval_s
        reading = process_threads().load().read(self.policy.min_window_s)
        if reading is None:
            return
        n = self._choose(reading)
        self._quiet_readings = self._quiet_readings + 1 if n > self.threads else 0
        if n < self.threads or self._quiet_readings >= self.policy.readings_to_add:
            self._quiet_readings = 0
            if n != self.threads:
                self._set(n)

    def finish(self) -> dict[str, Any]:
        """Restore the thread count of before `start()`; return what was used (JSON-ready, for metrics)."""
        if self.cpu and not self._finished:
            self.seconds[self.threads] = self.seconds.get(self.threads, 0.0) + time.monotonic() - self._since
            torch.set_num_threads(self.previous)
        self._finished = True
        used = {str(k): round(v, 3) for k, v in sorted(self.seconds.items()) if round(v, 3) > 0}
        return {"setting": str(self.setting), "source": self.source, "workload": self.workload,
                "threads": max(used, key=lambda k: used[k], default=str(self.threads)) if self.cpu else None,
                "seconds_by_threads": used, "switches": self.switches, "cpus": self.n_cpus,
                "busy_cores_at_start": None if self.load_at_start is None else round(self.load_at_start, 2),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}


def worker_env(n_workers: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for `n_workers` processes run side by side (a sweep): each gets a fixed share of the cores, one
    thread each once they fill the machine (two 1-thread copies of probe training: 2.1 s each, like one alone; two
    2-thread copies: 5.8 s; see benchmarks/bench_contention.py). Set before the worker imports torch."""
    env = dict(os.environ if base is None else base)
    share = str(max(1, len(usable_cpus()) // max(1, n_workers)))
    env.update({THREADS_ENV: share, "OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share})
    return env

