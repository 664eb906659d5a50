"""Notebook 07's experiment: which class was left out of a model's training data? A zoo of small MNIST classifiers
(registered `nn.Module`s, trained as one batched computation, each without one class), probed white-box (ProbeGen,
vanilla, random probes) and black-box (outputs only: probes transferred from the white-box ProbeGen run, or random).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from probegen_nb.core.arch.module import ModuleSpec
from probegen_nb.core.arch.registry import forward
from probegen_nb.core.data import ImageDataset, images_to_inputs
from probegen_nb.core.zoo import MixedZoo, Task, Zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.evaluate import predict
from probegen_nb.experiment.train import RunResult, train
from probegen_nb.methods.probing import ProbingModel
from probegen_nb.probes.base import FixedProbes
from probegen_nb.probes.images import ConvProbeGenConfig, ImageGaussianConfig, ImageVanillaConfig
from probegen_nb.zoos.module_trainer import ModuleTrainConfig, init_params, sample_batches, train_modules

ARCHS = {  # the zoo's two architectures: MNIST padded to 32×32, 10 logits
    "mlp": ModuleSpec("mlp", {"in_shape": [1, 32, 32], "hidden": [32], "out_dim": 10}, (1, 32, 32), 10),
    "resnet": ModuleSpec("small_resnet", {"in_channels": 1, "channels": [4, 8], "out_dim": 10}, (1, 32, 32), 10),
}
METHODS = ("probegen", "vanilla", "random", "black-box transferred", "black-box random")


@dataclass(frozen=True)
class LeaveOutConfig:
    """The zoo (models per left-out class and architecture, their training) and the probing runs."""

    models_per_class: int = 10  # per architecture: 10 classes × 2 architectures × this many models
    n_images: int = 5000  # MNIST training images the zoo's models draw their batches from
    steps: int = 200  # batched Adam steps of every model
    batch_size: int = 32  # images per model per step
    lr_range: tuple[float, float] = (1e-3, 1e-2)  # each model's learning rate, log-uniform in this range
    n_probes: int = 16  # Q
    epochs: int = 60  # probing epochs
    seed: int = 0  # the zoo's seed (the probing runs take theirs from `run_methods`)


def build_zoo(config: LeaveOutConfig, data: ImageDataset, device: str = "cpu", progress: bool = True) -> MixedZoo:
    """One group per architecture: model j leaves out class j mod 10 (its label), 60/20/20 train/val/test by model."""
    g = torch.Generator().manual_seed(config.seed)
    pick = torch.randperm(len(data.train_labels), generator=g)[:config.n_images].numpy()
    inputs = images_to_inputs(data.train_images[pick]).to(device)  # [N, 1, 32, 32]
    labels = torch.as_tensor(data.train_labels[pick]).to(device)  # [N]
    m = 10 * config.models_per_class
    left_out = torch.arange(m) % 10  # [M]
    splits = np.array(["train", "train", "train", "val", "test"])[(np.arange(m) // 10) % 5]
    if config.models_per_class < 5:  # too few for every split: round-robin
        splits = np.array(["train", "val", "test"])[(np.arange(m) // 10) % 3]
    groups = []
    for a, (name, spec) in enumerate(ARCHS.items()):
        lo, hi = np.log(config.lr_range[0]), np.log(config.lr_range[1])
        lr = torch.exp(lo + (hi - lo) * torch.rand(m, generator=g)).to(device)  # [M] per-model hyper-parameter
        allowed = labels[None, :] != left_out.to(device)[:, None]  # [M, N]
        batches = sample_batches(inputs, labels, allowed, config.batch_size, g)
        params = train_modules(spec, init_params(spec, m, config.seed * 1000 + a * m, device), batches, lr,
                               ModuleTrainConfig(steps=config.steps, batch_size=config.batch_size), progress)
        table = pd.DataFrame({"model_id": np.arange(m) + a * m, "split": splits, "label": left_out.numpy(),
                              "arch_name": name, "lr": lr.cpu().numpy()})
        groups.append(Zoo(spec, params, table, Task(n_classes=10)))
    return MixedZoo(tuple(groups), Task(n_classes=10), {"recipe": "leave-one-class-out", **config.__dict__})


def model_accuracies(zoo: MixedZoo, data: ImageDataset, n: int = 1000) -> np.ndarray:
    """[M] each model's accuracy on n MNIST test images of the classes it was trained on."""
    x = images_to_inputs(data.test_images[:n]).to(zoo.device)  # [n, 1, 32, 32]
    y = torch.as_tensor(data.test_labels[:n]).to(zoo.device)  # [n]
    accs = []
    with torch.no_grad():
        for group in zoo.groups:
            pred = forward(group.spec, group.params, x).argmax(-1)  # [M, n]
            seen = y[None, :] != group.labels.to(y.device)[:, None]  # [M, n]
            accs.append(((pred == y).float() * seen).sum(1) / seen.sum(1))
    return torch.cat(accs).cpu().numpy()


def black_box(zoo: MixedZoo) -> MixedZoo:
    """The same models behind an interface that returns numbers only (numpy, no gradient): a served model."""
    def served(group: Zoo) -> Zoo:
        def fn(index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                out = forward(group.spec, {k: v[index] for k, v in group.params.items()}, x)
            return torch.from_numpy(out.cpu().numpy()).to(x.device)
        return Zoo.from_callable(fn, group.spec.input_shape, group.spec.out_dim, group.table, group.task, False)
    return MixedZoo(tuple(served(g) for g in zoo.groups), zoo.task, zoo.info)


def run_methods(zoo: MixedZoo, config: LeaveOutConfig, seed: int, device: str = "auto",
                progress: bool = False) -> dict[str, RunResult]:
    """The five methods on one seed; the black-box transferred run uses this seed's white-box ProbeGen probes."""
    base = RunConfig(method=ProbingConfig(n_probes=config.n_probes), epochs=config.epochs, lr=1e-3, batch_size=16,
                     hidden=64, n_hidden=1, seed=seed, device=device)
    runs: dict[str, RunResult] = {}
    runs["probegen"] = train(base.override({"probes": ConvProbeGenConfig(width_mult=4)}), zoo, progress=progress)
    runs["vanilla"] = train(base.override({"probes": ImageVanillaConfig()}), zoo, progress=progress)
    runs["random"] = train(base.override({"probes": ImageGaussianConfig()}), zoo, progress=progress)
    served = black_box(zoo)
    moved = FixedProbes(probes_of(runs["probegen"]).cpu())
    runs["black-box transferred"] = train(base, served, probes=moved, progress=progress)
    runs["black-box random"] = train(base.override({"probes": ImageGaussianConfig()}), served, progress=progress)
    return runs


def probes_of(run: RunResult) -> torch.Tensor:
    """[Q, *input_shape] the probes of a probing run's (best-validation) model."""
    assert isinstance(run.model, ProbingModel)
    return run.model.probes().detach()


def summary(per_seed: list[dict[str, RunResult]], n_models: int) -> pd.DataFrame:
    """Accuracy of predicting the left-out class per method (mean ± std over seeds) and the queries each spent."""
    rows: list[dict[str, Any]] = []
    for method in METHODS:
        acc = np.array([runs[method].metrics["test_accuracy"] for runs in per_seed])
        queries = np.array([runs[method].metrics["queries"] for runs in per_seed])
        rows.append({"method": method, "white/black box": "black" if method.startswith("black") else "white",
                     "test accuracy (mean)": acc.mean(), "± std": acc.std(ddof=1) if len(acc) > 1 else float("nan"),
                     "seeds": len(acc), "queries": int(queries.mean()), "queries per model": queries.mean() / n_models})
    return pd.DataFrame(rows)


def seed_results(per_seed: list[dict[str, RunResult]], seeds: list[int]) -> pd.DataFrame:
    """One row per method and seed (`variant`, `seed`, `test_accuracy`): what `compare_variants` pairs by seed."""
    return pd.DataFrame([{"variant": method, "seed": seed, "test_accuracy": runs[method].metrics["test_accuracy"]}
                         for seed, runs in zip(seeds, per_seed) for method in METHODS])


def confusion(result: RunResult, zoo: MixedZoo) -> np.ndarray:
    """[10, 10] counts: rows the true left-out class of each test model, columns the predicted one."""
    assert isinstance(result.model, ProbingModel)
    test = zoo.split("test").to(next(result.model.parameters()).device)
    pred = predict(result.model, test)[0].argmax(1).cpu().numpy()
    counts = np.zeros((10, 10), dtype=np.int64)
    np.add.at(counts, (test.labels.numpy(), pred), 1)
    return counts
