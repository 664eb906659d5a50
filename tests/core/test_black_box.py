"""Black-box zoos: models known only as callables, probed through the same ProbingModel and train()."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from probegen_nb.core.arch.callable import from_functions
from probegen_nb.core.arch.module import ModuleSpec, module_forward
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.core.zoo_io import save_zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.train import train
from probegen_nb.probes.base import FixedProbes
from probegen_nb.probes.images import ConvProbeGenConfig, ImageGaussianConfig, ImageVanillaConfig
from probegen_nb.zoos.module_trainer import init_params

SPEC = ModuleSpec("mlp", {"in_shape": [1, 32, 32], "hidden": [8], "out_dim": 3}, (1, 32, 32), 3)
M = 12


def white_box() -> Zoo:
    params = init_params(SPEC, M, seed=0)
    table = pd.DataFrame({"model_id": range(M), "split": ["train"] * 8 + ["val"] * 2 + ["test"] * 2,
                          "label": [i % 3 for i in range(M)]})
    return Zoo(SPEC, params, table, Task(n_classes=3))


def black_box(zoo: Zoo, differentiable: bool) -> Zoo:
    def fn(index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = module_forward(SPEC, {k: v[index] for k, v in zoo.params.items()}, x)
        if differentiable:
            return out
        return torch.from_numpy(np.asarray(out.detach().numpy()))  # a served model: numbers only, no graph
    return Zoo.from_callable(fn, SPEC.input_shape, SPEC.out_dim, zoo.table, zoo.task, differentiable)


CONFIG = RunConfig(method=ProbingConfig(n_probes=4), epochs=2, batch_size=4, hidden=8, n_hidden=1, device="cpu")


def test_differentiable_callables_train_learned_probes_like_the_white_box_zoo() -> None:
    zoo = white_box()
    config = CONFIG.override({"probes": ImageVanillaConfig()})
    white = train(config, zoo, progress=False)
    black = train(config, black_box(zoo, True), progress=False)
    for s in ("history",):
        assert black.metrics[s] == white.metrics[s]  # the same run: same answers, same gradients into the probes
    torch.testing.assert_close(black.model.probes(), white.model.probes())
    start = ImageVanillaConfig().build(4, SPEC.input_shape, torch.Generator().manual_seed(0))
    assert not torch.allclose(black.model.probes(), start())  # control: the probes were learned


def test_per_model_functions_equal_the_batched_callable() -> None:
    zoo = white_box()
    fns = [lambda x, i=i: module_forward(SPEC, {k: v[i:i + 1] for k, v in zoo.params.items()}, x)[0] for i in range(M)]
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    index = torch.tensor([3, 0, 7])
    torch.testing.assert_close(from_functions(fns)(index, x), black_box(zoo, True).spec.fn(index, x))


@pytest.mark.parametrize("source", [ImageVanillaConfig(), ConvProbeGenConfig(width_mult=2)], ids=["vanilla", "gen"])
def test_non_differentiable_models_refuse_learned_probes(source) -> None:
    config = CONFIG.override({"probes": source})
    with pytest.raises(ValueError, match="not differentiable: use fixed probes or probes transferred"):
        train(config, black_box(white_box(), False), progress=False)


def test_non_differentiable_models_take_fixed_and_transferred_probes_and_count_queries() -> None:
    zoo = white_box()
    fixed = train(CONFIG.override({"probes": ImageGaussianConfig()}), black_box(zoo, False),
                  progress=False)
    q = CONFIG.method.n_probes
    # answers computed once for every model (cached fixed probes), plus one model for the FLOP count
    assert fixed.metrics["queries"] == M * q + q
    source = train(CONFIG.override({"probes": ConvProbeGenConfig(width_mult=2)}), zoo, progress=False)
    assert source.metrics["queries"] > 2 * 8 * q  # learned probes: every step's models and every epoch's evaluation
    moved = FixedProbes(source.model.probes().detach())
    black = train(CONFIG, black_box(zoo, False), probes=moved, progress=False)
    torch.testing.assert_close(black.model.probes(), source.model.probes().detach())  # transferred as they were
    assert black.metrics["queries"] == M * q + q


def test_a_black_box_zoo_cannot_be_saved(tmp_path) -> None:
    with pytest.raises(TypeError, match="cannot be written to a zoo folder"):
        save_zoo(black_box(white_box(), True), tmp_path / "z")
