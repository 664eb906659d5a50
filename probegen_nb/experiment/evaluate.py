"""Metrics: accuracy for class labels, Kendall τ for scalar labels, computed over a zoo split in batches."""

from __future__ import annotations

import torch
from scipy.stats import kendalltau

from probegen_nb.core.zoo import AnyZoo
from probegen_nb.methods.learner import Learner


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


def kendall_tau(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Kendall's τ-b (scipy's default, as the NFN and ProbeGen evaluations). NaN when either side is constant (e.g. a
    predictor that collapsed to one value): reported as such, never turned into a number."""
    return float(kendalltau(pred.flatten().cpu().numpy(), target.flatten().cpu().numpy()).statistic)


def metric_name(zoo: AnyZoo) -> str:
    return "accuracy" if zoo.task.is_classification else "kendall_tau"


def metric(zoo: AnyZoo, outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """The task's metric: accuracy of argmax for classes, Kendall τ of the prediction for scalars."""
    return accuracy(outputs, labels) if zoo.task.is_classification else kendall_tau(outputs, labels)


def represent_all(model: Learner, zoo: AnyZoo, batch_size: int = 1024) -> torch.Tensor:
    """[M, R] representations of all the zoo's models (zoo already on the model's device), in row order."""
    return model.represent_all(zoo, batch_size)


def predict_from(model: Learner, representations: torch.Tensor) -> torch.Tensor:
    """Outputs [M, d_out] for precomputed representations [M, R] (e.g. cached answers to fixed probes), in eval
    mode; the model's mode is restored afterwards."""
    return model.predict_from(representations)


def predict(model: Learner, zoo: AnyZoo, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs [M, d_out] and representations [M, R] of all the zoo's models (zoo already on the model's device)."""
    reps = represent_all(model, zoo, batch_size)
    return predict_from(model, reps), reps
