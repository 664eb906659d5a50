"""Engines: the local one runs tasks here in order at its thread count; the dask one on worker processes of a
LocalCluster (or on a cluster given by address); in both a task that raises comes back as a TaskError."""

from __future__ import annotations

import math
import os

import pytest
import torch

from probegen_nb.core.engine import EngineConfig, TaskError, map_tasks
from probegen_nb.core.threads import ThreadGovernor, process_threads, set_threads


def governed_threads() -> int:
    """The threads a CPU job (like `train()`) gets: what the engine must fix, whatever the machine's load."""
    gov = ThreadGovernor.start("test")
    try:
        return torch.get_num_threads()
    finally:
        gov.finish()


def test_local_runs_in_order_at_its_thread_count_and_returns_errors() -> None:
    set_threads("auto")
    try:
        got = list(map_tasks(math.sqrt, [(4.0,), (-1.0,), (9.0,)], EngineConfig("local")))
        assert [i for i, _ in got] == [0, 1, 2]
        assert got[0][1] == 2.0 and got[2][1] == 3.0
        error = got[1][1]
        assert isinstance(error, TaskError) and error.type == "ValueError" and "domain" in error.message
        assert str(error).startswith("ValueError:") and "Traceback" in error.traceback
        assert [r for _, r in map_tasks(governed_threads, [()] * 2, EngineConfig(threads_per_worker=1))] == [1, 1]
        assert process_threads().override == "auto", "the process's own choice is back after the tasks"
    finally:
        set_threads(None)


def test_engine_config_is_checked() -> None:
    with pytest.raises(ValueError, match="'ray'"):
        EngineConfig("ray")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_workers"):
        EngineConfig("dask", n_workers=0)


def test_dask_maps_on_worker_processes_and_returns_errors() -> None:
    """A LocalCluster of two single-threaded workers: results come back by index, tasks ran in other processes
    with one torch thread each, a raising task is a TaskError; then the same through the cluster's address."""
    from distributed import LocalCluster

    args = [(4.0,), (-1.0,), (9.0,), (16.0,)]
    got = dict(map_tasks(math.sqrt, args, EngineConfig("dask", n_workers=2)))
    assert sorted(got) == [0, 1, 2, 3]
    assert [got[i] for i in (0, 2, 3)] == [2.0, 3.0, 4.0]
    assert isinstance(got[1], TaskError) and got[1].type == "ValueError"

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        engine = EngineConfig("dask", address=cluster.scheduler_address)
        pids = dict(map_tasks(os.getpid, [()] * 4, engine))
        threads = dict(map_tasks(governed_threads, [()] * 4, engine))
    assert os.getpid() not in pids.values()
    assert threads == {i: 1 for i in range(4)}
