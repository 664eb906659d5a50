"""Metrics: accuracy for class labels, Kendall τ for scalar labels, computed over a zoo split in batches."""

from __future__ import annotations

import torch
from scipy.stats import kendalltau

from probegen_nb.baselines.base import Baseline
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.methods.probing import ProbingModel


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


@torch.no_grad()
def represent_all(model: ProbingModel | Baseline, zoo: AnyZoo, batch_size: int = 1024) -> torch.Tensor:
    """[M, Q·K] representations of all the zoo's models (zoo already on the model's device); a baseline's
    [M, rep_dim] (never augmented), `batch_size` models at a time or fewer where the baseline asks."""
    if not isinstance(model, ProbingModel):
        index = torch.arange(len(zoo), device=model.device)
        reps = [model.represent_rows(zoo, i) for i in index.split(min(batch_size, model.eval_batch_size))]
        return torch.cat(reps) if reps else torch.zeros(0, model.rep_dim, device=model.device)
    probes = model.probes()
    index = torch.arange(len(zoo), device=probes.device)
    reps = [model.represent_rows(zoo, i, probes) for i in index.split(batch_size)]
    return torch.cat(reps) if reps else probes.new_zeros(0, model.rep_dim)


@torch.no_grad()
def predict_from(model: ProbingModel | Baseline, representations: torch.Tensor) -> torch.Tensor:
    """Predictor outputs [M, d_out] for precomputed representations [M, Q·K] (e.g. cached answers to fixed probes),
    in eval mode; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    out = model.predictor(representations)
    model.train(was_training)
    return out


def predict(model: ProbingModel | Baseline, zoo: AnyZoo, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs [M, d_out] and representations [M, Q·K] of all the zoo's models (zoo already on the model's device)."""
    reps = represent_all(model, zoo, batch_size)
    return predict_from(model, reps), reps
