"""Zoo builds through the engines: the same zoo, bit for bit, whether its chunks run here or as Dask tasks on worker
processes (at the same thread count, one here); a build interrupted here resumes through dask, fitting only what is
missing; a failing chunk is named once the others are saved. Negative control: another seed is told apart."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import probegen_nb.zoos.cnn as cz
import probegen_nb.zoos.inr as inr
from probegen_nb.core.data import ImageDataset
from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.jobs import ChunkError, ResumableJob
from probegen_nb.core.threads import THREADS_ENV, use_threads
from probegen_nb.zoos.cnn import CNNZooRecipe, build_cnn_zoo
from probegen_nb.zoos.inr import PUBLIC_RECIPE, build_inr_zoo, plan_inr_zoo

LOCAL = EngineConfig("local", threads_per_worker=1)  # the thread count of every dask worker below
INR_RECIPE = replace(PUBLIC_RECIPE, steps=15)
CNN_RECIPE = CNNZooRecipe(epochs=2.0, batch_size=32, checkpoint_epochs=(1.0,))  # epochs over each subset
RUN_FIELDS = ("build_seconds_this_run", "engine", "threads_per_task")  # build info that may differ between engines


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two zoo folders: any weight tensor (bitwise), models.csv (as written), zoo.json but for
    `RUN_FIELDS`."""
    wa, wb = load_file(a / "weights.safetensors"), load_file(b / "weights.safetensors")
    found = [f"weights {k}" for k in sorted(wa.keys() | wb.keys())
             if k not in wa or k not in wb or not torch.equal(wa[k], wb[k])]
    if (a / "models.csv").read_text() != (b / "models.csv").read_text():
        found.append("models.csv")
    ja, jb = (json.loads((z / "zoo.json").read_text()) for z in (a, b))
    ba, bb = ({k: v for k, v in j.pop("build").items() if k not in RUN_FIELDS} for j in (ja, jb))
    found += [f"zoo.json {k}" for k in sorted(ja.keys() | jb.keys()) if ja.get(k) != jb.get(k)]
    found += [f"zoo.json build.{k}" for k in sorted(ba.keys() | bb.keys()) if ba.get(k) != bb.get(k)]
    return found


@pytest.fixture(scope="module")
def dask_engine() -> Iterator[EngineConfig]:
    """One LocalCluster of two single-threaded worker processes for the module (starting one takes seconds)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.ERROR, env={THREADS_ENV: "1", "OMP_NUM_THREADS": "1"}) as cluster:
        yield EngineConfig("dask", address=cluster.scheduler_address, threads_per_worker=1)


@pytest.fixture(scope="module")
def digits(fake_images) -> ImageDataset:
    """Blobs whose position depends on the class."""
    return fake_images.blobs(100, 30)


@pytest.fixture(scope="module")
def stripes(fake_images) -> ImageDataset:
    """A bright bar at a class-dependent height, plus noise."""
    return fake_images.stripes(200, 100)


def build_inrs(digits: ImageDataset, out: Path, engine: EngineConfig | None, seed: int = 0) -> Path:
    plan = plan_inr_zoo(digits, n_train=10, n_val=5, n_test=5, seed=0)  # 20 INRs: 4 chunks of 5
    build_inr_zoo(plan, digits, out, recipe=INR_RECIPE, chunk_size=5, seed=seed, device="cpu", engine=engine)
    return out


def test_inr_zoo_through_dask_equals_the_local_build(digits, dask_engine, tmp_path) -> None:
    local = build_inrs(digits, tmp_path / "local", LOCAL)
    dask = build_inrs(digits, tmp_path / "dask", dask_engine)
    with use_threads(1):  # engine=None: here, at this process's threads (pinned to the workers' count)
        here = build_inrs(digits, tmp_path / "here", None)
    assert differences(local, dask) == [] and differences(local, here) == []
    builds = [json.loads((z / "zoo.json").read_text())["build"] for z in (local, dask, here)]
    assert [b["engine"] for b in builds] == ["local", "dask", "local"]
    assert [b["threads_per_task"] for b in builds] == [1, 1, None]
    other_seed = build_inrs(digits, tmp_path / "seed1", LOCAL, seed=1)  # negative control: the comparison can fail
    assert {"weights seq.0.weight", "models.csv", "zoo.json build.seed"} <= set(differences(local, other_seed))


def test_cnn_zoo_through_dask_equals_the_local_build(stripes, dask_engine, tmp_path) -> None:
    """The data set (an in-memory ImageDataset) travels with each task; by name, the task loads it itself."""
    kw = {"n_runs": 6, "recipe": CNN_RECIPE, "chunk_size": 2, "device": "cpu"}
    local, dask, other_seed = tmp_path / "local", tmp_path / "dask", tmp_path / "seed1"
    zoo = build_cnn_zoo(stripes, local, engine=LOCAL, **kw)
    build_cnn_zoo(stripes, dask, engine=dask_engine, **kw)
    rows = sum(len(CNN_RECIPE.schedule(round(f * 200))) for f in cz.sample_hparams(6, 0)["train_fraction"])
    assert len(zoo) == rows and len(zoo.groups) == 2  # relu and tanh: at least two chunks, on both workers
    assert differences(local, dask) == []
    assert json.loads((dask / "zoo.json").read_text())["build"]["engine"] == "dask"
    build_cnn_zoo(stripes, other_seed, engine=LOCAL, **{**kw, "seed": 1})
    assert any(d.startswith("weights") for d in differences(local, other_seed))

    hp = cz.sample_hparams(2, 0, CNN_RECIPE).assign(activation="relu", train_fraction=0.5)
    spec = cz.CNNSpec.small_cnn_zoo(1, "relu")
    by_object = cz.train_cnn_chunk(stripes, spec, hp, CNN_RECIPE, 7, "cpu", 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cz, "load_dataset", lambda name: stripes if name == "stripes" else None)
        by_name = cz.train_cnn_chunk("stripes", spec, hp, CNN_RECIPE, 7, "cpu", 1)
    assert by_object.keys() == by_name.keys()
    assert all(torch.equal(by_object[k], by_name[k]) for k in by_object)


def test_a_build_interrupted_here_resumes_through_dask(digits, dask_engine, tmp_path, monkeypatch) -> None:
    """Killed after two of four chunks (a KeyboardInterrupt in the third fit), then rerun through dask: only the two
    missing chunks are fitted, and the zoo equals an uninterrupted local build."""
    whole = build_inrs(digits, tmp_path / "whole", LOCAL)
    real_fit, calls = inr.fit_inrs, []

    def killed_at_the_third_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real_fit(*args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(inr, "fit_inrs", killed_at_the_third_fit)
        with pytest.raises(KeyboardInterrupt):
            build_inrs(digits, tmp_path / "resumed", LOCAL)
    assert sorted(p.name for p in (tmp_path / ".resumed.partial").glob("chunk_*")) == [
        "chunk_00000.safetensors", "chunk_00001.safetensors"]

    real_save, saved = ResumableJob.save, []
    monkeypatch.setattr(ResumableJob, "save", lambda job, c, t: saved.append(c) or real_save(job, c, t))
    resumed = build_inrs(digits, tmp_path / "resumed", dask_engine)
    assert sorted(saved) == [2, 3]  # fitted by the workers, saved here once each
    assert not (tmp_path / ".resumed.partial").exists()
    assert differences(whole, resumed) == []


def test_a_failing_chunk_is_named_after_the_others_are_saved(digits, tmp_path, monkeypatch) -> None:
    real_fit, calls = inr.fit_inrs, []

    def failing_second_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("boom")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(inr, "fit_inrs", failing_second_fit)
    with pytest.raises(ChunkError, match=r"1 of 4 chunks failed \(chunk 1 \(plan rows 5-9\): ValueError: boom\)"
                       ) as failure:
        build_inrs(digits, tmp_path / "z", LOCAL)
    assert list(failure.value.errors) == [1] and "failing_second_fit" in str(failure.value)  # with its traceback
    assert len(calls) == 4  # the chunks after the failing one were fitted too
    assert sorted(p.name for p in (tmp_path / ".z.partial").glob("chunk_*")) == [
        f"chunk_0000{c}.safetensors" for c in (0, 2, 3)]
    assert not (tmp_path / "z").exists()
    calls.clear()
    build_inrs(digits, tmp_path / "z", LOCAL)  # the rerun fits only the failed chunk
    assert len(calls) == 1 and (tmp_path / "z" / "zoo.json").exists()


def test_cli_zoo_builds_take_an_engine(digits, stripes, tmp_path, monkeypatch) -> None:
    """`--engine local` is a build here at this process's threads (engine None), `--engine dask [--workers N]
    [--address A]` the dask engine; build-cnn-zoo passes the data set by name, for workers to load. (The builds run
    here, on the fixtures, so no cluster starts.)"""
    from probegen_nb import cli

    seen = []

    def recording(build):
        def run(*args, engine, **kwargs):
            seen.append((args[0] if build is build_cnn_zoo else "plan", engine))
            return build(*args, engine=None, **kwargs)
        return run

    # the CLI imports each command's modules when it runs, so the builders are replaced where it finds them
    import probegen_nb.core.data as data
    import probegen_nb.zoos.inr as inr

    monkeypatch.setattr(inr, "build_inr_zoo", recording(build_inr_zoo))
    monkeypatch.setattr(cz, "build_cnn_zoo", recording(build_cnn_zoo))
    monkeypatch.setattr(data, "load_dataset", lambda name: digits)
    monkeypatch.setattr(cz, "load_dataset", lambda name: stripes)
    inr_args = ["--n-train", "2", "--n-val", "0", "--n-test", "0", "--device", "cpu"]
    cli.main(["build-inr-zoo", "--out", str(tmp_path / "a"), *inr_args])
    cli.main(["build-inr-zoo", "--out", str(tmp_path / "b"), *inr_args, "--engine", "dask", "--workers", "3",
              "--address", "tcp://127.0.0.1:8786"])
    cli.main(["build-cnn-zoo", "--dataset", "mnist", "--out", str(tmp_path / "c"), "--n-runs", "2", "--steps", "2",
              "--checkpoints", "2", "--n-eval", "20", "--device", "cpu", "--engine", "dask"])
    assert seen == [("plan", None), ("plan", EngineConfig("dask", address="tcp://127.0.0.1:8786", n_workers=3)),
                    ("mnist", EngineConfig("dask"))]
    cli.main(["build-cnn-zoo", "--dataset", "mnist", "--out", str(tmp_path / "d"), "--n-runs", "2", "--epochs", "1.5",
              "--batch-size", "10", "--padding", "1", "--checkpoint-epochs", "0.5", "1", "--device", "cpu",
              "--weights-dtype", "float16"])
    meta = json.loads((tmp_path / "d" / "zoo.json").read_text())
    assert meta["weights_dtype"] == "float16"
    recipe = meta["build"]["recipe"]
    assert (recipe["epochs"], recipe["batch_size"], recipe["padding"], recipe["checkpoint_epochs"]) == (
        1.5, 10, 1, [0.5, 1.0])
    assert all(a["padding"] == [1, 1, 1] for a in meta["archs"]) and meta["n_models"] == 2 * 3  # 3 rows a run
