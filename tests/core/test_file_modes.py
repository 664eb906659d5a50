"""Files the toolkit writes get the mode a plain `open` would (0666 less the umask): a run's checkpoints and a zoo's
files alike. safetensors writes 0600 and mkdtemp 0700, which made checkpoints private while zoos were 0644."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.jobs import umask
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.core.zoo_io import save_zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.train import train
from probegen_nb.zoos.inr import init_siren_params


@pytest.fixture(params=[0o022, 0o027])
def mask(request) -> Iterator[int]:
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def tiny_zoo(m: int = 24) -> Zoo:
    params = init_siren_params(SirenSpec(), m, torch.Generator().manual_seed(0))
    table = pd.DataFrame({"model_id": range(m), "split": ["train"] * 16 + ["val"] * 4 + ["test"] * 4,
                          "label": np.arange(m) % 3})
    return Zoo(SirenSpec(), params, table, Task("label", 3))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_umask_reads_the_process_umask(mask: int) -> None:
    assert umask() == mask
    assert os.umask(mask) == mask  # and left it as it was


def test_a_runs_checkpoints_and_a_zoos_files_honour_the_umask(mask: int, tmp_path: Path) -> None:
    zoo = tiny_zoo()
    folder = save_zoo(zoo, tmp_path / "zoo")
    config = RunConfig(epochs=1, method=ProbingConfig(n_probes=4), device="cpu")
    run = train(config, zoo, out_dir=tmp_path / "run", progress=False).out_dir
    files = [folder / "weights.safetensors", folder / "zoo.json", run / "best.safetensors",
             run / "probes.safetensors", run / "metrics.json", run / "config.json"]
    assert {f.name: oct(mode(f)) for f in files} == {f.name: oct(0o666 & ~mask) for f in files}
    assert oct(mode(folder)) == oct(0o777 & ~mask)


def test_negative_control_safetensors_alone_writes_0600(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, tmp_path / "x.safetensors")
    assert mode(tmp_path / "x.safetensors") == 0o600
