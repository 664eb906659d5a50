"""Metrics: accuracy for class labels, Kendall τ for scalar labels, computed over a zoo split in batches."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import kendalltau

from probegen_nb.core.zoo import AnyZoo
from probegen_nb.methods.probing import ProbingModel


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


def kendall_tau(pred: torch.Tensor, target: torch.Tensor) -> float:
    tau = kendalltau(pred.flatten().cpu().numpy(), target.flatten().cpu().numpy()).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def metric_name(zoo: AnyZoo) -> str:
    return "accuracy" if zoo.task.is_classification else "kendall_tau"


def metric(zoo: AnyZoo, outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """The task's metric: accuracy of argmax for classes, Kendall τ of the prediction for scalars."""
    return accuracy(outputs, labels) if zoo.task.is_classification else kendall_tau(outputs, labels)


@torch.no_grad()
def predict(model: ProbingModel, zoo: AnyZoo, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs [M, d_out] and representations [M, Q·K] of all the zoo's models (zoo already on the model's device)."""
    model.eval()
    probes = model.probes()
    outs, reps = [], []
    for index in torch.arange(len(zoo), device=probes.device).split(batch_size):
        rep = model.represent_rows(zoo, index, probes)
        reps.append(rep)
        outs.append(model.predictor(rep))
    model.train()
    return torch.cat(outs), torch.cat(reps)
