"""Where tasks run: in this process ("local") or as tasks on a Dask distributed cluster ("dask").

A sweep maps one top-level function over many argument tuples. Starting worker processes, shipping them work,
noticing a worker that died and cleaning up after a crash is what Dask distributed already does well (and it also
runs on an existing cluster of many GPUs or nodes, given its scheduler's address), so there is no hand-written
process pool here. What is written here: the choice of engine as one frozen config, single-threaded workers (torch's
intra-op threads fixed per task, so every engine trains with the same thread count), and errors returned as values,
so that one failing task never stops the others.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from probegen_nb.core.threads import THREADS_ENV, use_threads


@dataclass(frozen=True)
class EngineConfig:
    """Where the tasks of a sweep run."""

    kind: Literal["local", "dask"] = "local"  # local: in this process, one task after another; dask: Dask tasks
    address: str | None = None  # dask: an existing scheduler ("tcp://host:8786"); None starts a LocalCluster
    n_workers: int = 2  # dask without an address: worker processes of the LocalCluster (one task each at a time)
    threads_per_worker: int = 1  # torch intra-op threads of each task, in every engine (the same count everywhere)
    resources: dict[str, float] | None = None  # dask: what each task needs, e.g. {"GPU": 1} (a LocalCluster's
    #                                            workers each get this much, so one such task runs per worker)

    def __post_init__(self) -> None:
        if self.kind not in ("local", "dask"):
            raise ValueError(f"EngineConfig.kind={self.kind!r}: expected 'local' or 'dask'")
        if self.n_workers < 1 or self.threads_per_worker < 1:
            raise ValueError(f"EngineConfig: n_workers (={self.n_workers}) and threads_per_worker "
                             f"(={self.threads_per_worker}) must be at least 1")


@dataclass(frozen=True)
class TaskError:
    """A task that raised (or whose worker died): what went wrong, returned in place of its result."""

    type: str  # the exception's class name, e.g. "NonFiniteLossError"
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


def run_task(fn: Callable[..., Any], args: tuple, threads: int | None) -> Any:
    """Run one task with `threads` torch threads (None: this process's own choice, as if `fn` were called directly);
    an exception comes back as a `TaskError` (it also crosses process boundaries safely: an exception class a worker
    cannot unpickle would otherwise hide the real error)."""
    try:
        with use_threads(threads) if threads is not None else nullcontext():
            return fn(*args)
    except Exception as e:  # noqa: BLE001 (returned to the caller, who records it)
        return TaskError(type(e).__name__, str(e), traceback.format_exc())


def map_tasks(fn: Callable[..., Any], args: Sequence[tuple], engine: EngineConfig = EngineConfig()
              ) -> Iterator[tuple[int, Any]]:
    """`fn(*args[i])` for every i, yielding `(i, result)` as each finishes (local: in order); a task that raised
    yields a `TaskError`. `fn` must be a top-level function and, for dask, it and its arguments picklable."""
    if engine.kind == "local":
        for i, a in enumerate(args):
            yield i, run_task(fn, a, engine.threads_per_worker)
        return
    yield from _map_dask(fn, args, engine)


def _map_dask(fn: Callable[..., Any], args: Sequence[tuple], engine: EngineConfig) -> Iterator[tuple[int, Any]]:
    from distributed import Client, LocalCluster, as_completed  # imported on use: it takes a while

    cluster = None
    if engine.address is None:
        n = str(engine.threads_per_worker)  # OpenMP reads its thread count when a worker imports torch
        cluster = LocalCluster(n_workers=engine.n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, resources=engine.resources, silence_logs=logging.ERROR,
                               env={THREADS_ENV: n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n})
    try:
        with Client(cluster if cluster is not None else engine.address) as client:
            futures = [client.submit(run_task, fn, a, engine.threads_per_worker, pure=False,
                                     resources=engine.resources) for a in args]
            index = {f.key: i for i, f in enumerate(futures)}
            for future in as_completed(futures):
                if future.status == "error":  # the worker died (or the task could not be unpickled there)
                    e = future.exception()
                    yield index[future.key], TaskError(type(e).__name__, str(e))
                else:
                    yield index[future.key], future.result()
                future.release()
    finally:
        if cluster is not None:
            cluster.close()
