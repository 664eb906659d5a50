"""A training step captured as a CUDA graph (`experiment.step_graph`): when it is used, and that the steps it
captures never wait for the host (what a capture refuses), checked on the CPU under the device simulation. The
replay itself needs a GPU: `benchmarks/bench_train_step.py` compares it with eager steps there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import torch

from probegen_nb.baselines.weight_mlp import WeightMLPConfig
from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.zoo import MixedZoo, Task, Zoo
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.grouped import train_group
from probegen_nb.experiment.step_graph import CUDA_GRAPHS_ENV, ForwardBackward, graph_blocker, use_cuda_graphs
from probegen_nb.experiment.train import build_model, train
from probegen_nb.probes.coords import ProbeGenConfig, UniformConfig
from probegen_nb.probes.images import ConvProbeGenConfig

from devicesim import TARGET, HostWaitError, NoHostWait, SimulatedDevice

CUDA = torch.device("cuda")  # a device object only: nothing here runs on it


def small(**kw) -> RunConfig:
    probes = {} if "baseline" in kw else {"n_probes": 4}
    return RunConfig().override({"epochs": 1, "hidden": 16, "n_hidden": 1, "batch_size": 8, "max_train_models": 16,
                                 **probes, **kw})


def cnn_zoo(activations: tuple[str, ...] = ("relu",), m: int = 16) -> Zoo | MixedZoo:
    """Small CNNs with a scalar label: one architecture (a `Zoo`), or one `Zoo` per activation (a `MixedZoo`)."""
    g = torch.Generator().manual_seed(1)
    groups = []
    for a, activation in enumerate(activations):
        spec = CNNSpec.small_cnn_zoo(activation=activation)
        params = {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
        table = pd.DataFrame({"model_id": np.arange(m) + a * m, "split": ["train", "train", "val", "test"] * (m // 4),
                              "test_acc": torch.rand(m, generator=g).numpy()})
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
    return groups[0] if len(groups) == 1 else MixedZoo(tuple(groups), Task("test_acc", None))


@contextmanager
def watched_steps(monkeypatch) -> Iterator[list[int]]:
    """Inside: `train()` and `train_group()` on `TARGET`, every step's forward and backward under `NoHostWait`; yields
    the list the watched steps append to."""
    watched: list[int] = []
    eager = ForwardBackward._eager
    with SimulatedDevice() as sim:
        def watched_eager(self: ForwardBackward, index: torch.Tensor) -> torch.Tensor:
            with NoHostWait(sim):
                loss = eager(self, index)
            watched.append(index.numel())  # models in the step (R·B when grouped)
            return loss

        monkeypatch.setattr(ForwardBackward, "_eager", watched_eager)
        yield watched


@pytest.fixture
def probing(class_shift_zoo: Zoo):
    return build_model(small(), class_shift_zoo, torch.Generator().manual_seed(0))


def test_steps_are_captured_only_when_asked_and_possible(class_shift_zoo: Zoo, probing, monkeypatch) -> None:
    monkeypatch.delenv(CUDA_GRAPHS_ENV, raising=False)
    assert not use_cuda_graphs(CUDA, class_shift_zoo, probing)  # off by default, until measured on a GPU
    assert use_cuda_graphs(CUDA, class_shift_zoo, probing, requested=True)
    with pytest.raises(ValueError, match="need a CUDA device"):
        use_cuda_graphs(torch.device("cpu"), class_shift_zoo, probing, requested=True)
    monkeypatch.setenv(CUDA_GRAPHS_ENV, "1")
    assert use_cuda_graphs(CUDA, class_shift_zoo, probing)
    assert not use_cuda_graphs(torch.device("cpu"), class_shift_zoo, probing)  # a GPU-only trick: eager on a CPU
    assert not use_cuda_graphs(CUDA, class_shift_zoo, probing, requested=False)  # the argument beats the variable
    monkeypatch.setenv(CUDA_GRAPHS_ENV, "yes please")
    with pytest.raises(ValueError, match=CUDA_GRAPHS_ENV):
        use_cuda_graphs(CUDA, class_shift_zoo, probing)


def test_what_cannot_be_captured_is_named(class_shift_zoo: Zoo, probing, monkeypatch) -> None:
    mlp = build_model(small(baseline=WeightMLPConfig()), class_shift_zoo, torch.Generator().manual_seed(0))
    mixed = cnn_zoo(("relu", "tanh"))
    assert graph_blocker(class_shift_zoo, probing) is None
    assert "not a probing learner" in graph_blocker(class_shift_zoo, mlp)
    assert "mixes architectures" in graph_blocker(mixed, probing)
    with pytest.raises(ValueError, match="mixes architectures"):
        use_cuda_graphs(CUDA, mixed, probing, requested=True)
    monkeypatch.setenv(CUDA_GRAPHS_ENV, "1")  # a sweep asking for graphs: the runs that cannot be captured run eagerly
    assert not use_cuda_graphs(CUDA, mixed, probing)
    assert not use_cuda_graphs(CUDA, class_shift_zoo, mlp)


def test_train_records_eager_steps_on_a_cpu(class_shift_zoo: Zoo, monkeypatch) -> None:
    monkeypatch.setenv(CUDA_GRAPHS_ENV, "1")
    assert train(small(device="cpu"), class_shift_zoo, progress=False).metrics["cuda_graphs"] is False
    with pytest.raises(ValueError, match="need a CUDA device"):
        train(small(device="cpu"), class_shift_zoo, progress=False, cuda_graphs=True)


def test_the_watch_raises_where_a_capture_would_and_only_there() -> None:
    x = torch.arange(6.0, device=TARGET)
    waits = {"item": lambda: x.sum().item(), "bool": lambda: bool(x.any()), "cpu": lambda: x.cpu(),
             "mask": lambda: x[x > 2], "nonzero": lambda: x.nonzero(),
             "host tensor in": lambda: torch.ones(3).to(TARGET), "host index": lambda: x[torch.tensor([0, 2])],
             "Python data in": lambda: torch.tensor([1.0], device=TARGET)}
    with SimulatedDevice() as sim, NoHostWait(sim):
        for name, wait in waits.items():
            with pytest.raises(HostWaitError):
                wait()
                pytest.fail(f"{name}: not seen")
    with SimulatedDevice() as sim:
        index = torch.tensor([0, 2]).to(TARGET)  # made before the step
        with NoHostWait(sim):  # device-only work passes
            y = (x[index] * 2).sin().sum() + torch.zeros(1, device=TARGET)
    assert y.shape == (1,)


STEPS = {"probegen": {"probes": ProbeGenConfig()},
         "uniform, answers cached": {"probes": UniformConfig()},  # the step is the predictor on cached answers
         "uniform, answered every step": {"probes": UniformConfig(), "cache_responses": False}}


@pytest.mark.parametrize("name", sorted(STEPS))
def test_an_inr_step_never_waits_for_the_host(name: str, class_shift_zoo: Zoo, monkeypatch) -> None:
    config = small(device=str(TARGET), **STEPS[name])
    with watched_steps(monkeypatch) as watched:
        train(config, class_shift_zoo.to("cpu"), progress=False)
        train_group([config, config.override({"seed": 1})], class_shift_zoo.to("cpu"))
    assert len(watched) == 2 * 2  # 16 train models in batches of 8: two steps solo, two grouped


def test_a_cnn_step_never_waits_for_the_host(monkeypatch) -> None:
    config = small(device=str(TARGET), probes=ConvProbeGenConfig())
    with watched_steps(monkeypatch) as watched:
        train(config, cnn_zoo(), progress=False)
        train_group([config, config.override({"seed": 1})], cnn_zoo())
    assert watched == [8, 2 * 8]  # 8 train models: one step solo, one of both runs grouped


def test_a_mixed_zoo_step_waits_for_the_host(monkeypatch) -> None:
    """Negative control: the watch sees a host wait where there is one (a mixed zoo sorts its rows on the host),
    which is why `graph_blocker` keeps mixed zoos eager."""
    config = small(device=str(TARGET), probes=ConvProbeGenConfig())
    with watched_steps(monkeypatch), pytest.raises(HostWaitError, match="cpu"):
        train(config, cnn_zoo(("relu", "tanh")), progress=False)
