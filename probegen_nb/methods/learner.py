"""What `experiment.train.train()` trains: a `Learner`, whatever its method (probing, a weight-space baseline, or
StatNN's scikit-learn trees). The loop asks the learner, never the method's type.

A learner represents rows of a zoo ([M, R]) and predicts from representations ([M, d_out]). Most learners are torch
modules fitted by gradient steps on their `param_groups`; a learner fitted another way (StatNN's trees, one boosting
stage per epoch) returns its own `EpochFit` from `self_fit`, and `train()` runs its epochs in the same loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from probegen_nb.core.zoo import AnyZoo


def loss_fn(outputs: torch.Tensor, labels: torch.Tensor, classification: bool) -> torch.Tensor:
    """Cross-entropy for class labels, MSE for scalar labels."""
    return F.cross_entropy(outputs, labels) if classification else F.mse_loss(outputs.squeeze(1), labels)


@contextmanager
def init_from(generator: torch.Generator) -> Iterator[None]:
    """Module initialisation seeded by one draw of the run's `generator`, without touching the global stream."""
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        yield


@torch.no_grad()
def eval_outputs(module: nn.Module, predictor: nn.Module, representations: torch.Tensor) -> torch.Tensor:
    """`predictor`'s outputs [M, d_out] on representations [M, R] with `module` in eval mode, its mode restored."""
    was_training = module.training
    module.eval()
    out = predictor(representations)
    module.train(was_training)
    return out


class EpochFit(Protocol):
    """One epoch of fitting a learner that is not trained by `train()`'s gradient steps."""

    def run_epoch(self, epoch: int) -> tuple[torch.Tensor, float]:
        """Fit one more epoch; returns the epoch's per-step losses [S] and its learning rate."""
        ...


@runtime_checkable
class Learner(Protocol):
    """What `train()` needs of a method; implemented by `ProbingModel`, `baselines.base.Baseline` and
    `baselines.trees.TreesLearner`."""

    queries: int  # the models' answers asked for so far (probes × models): a served model's cost; 0 reading weights

    @property
    def fixed_representation(self) -> bool:
        """A model's representation never changes in training: `train()` computes it once per split."""
        ...

    @property
    def saves_checkpoints(self) -> bool:
        """Whether `state_dict()` is what a run folder keeps as best/last.safetensors."""
        ...

    def self_fit(self, train_zoo: AnyZoo, labels: torch.Tensor, representations: torch.Tensor | None,
                 seed: int) -> EpochFit | None:
        """None: `train()` fits this learner by gradient steps on `param_groups`; else how it fits itself."""
        ...

    def n_epochs(self, configured: int) -> int:
        """Epochs this learner runs given `RunConfig.epochs` (trees: their boosting stages)."""
        ...

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups, each with its weight decay (`weight_decay`: the predictor's)."""
        ...

    def predict_rows(self, zoo: AnyZoo, index: torch.Tensor) -> torch.Tensor:
        """[len(index), d_out]: a training step's outputs for the zoo's rows `index`."""
        ...

    def represent_all(self, zoo: AnyZoo, batch_size: int = 1024) -> torch.Tensor:
        """[M, R] representations of all the zoo's models, in row order."""
        ...

    def predict_from(self, representations: torch.Tensor) -> torch.Tensor:
        """[M, d_out] evaluation outputs for representations [M, R]."""
        ...

    def predict_reps(self, representations: torch.Tensor) -> torch.Tensor:
        """[B, d_out] a training step's outputs from precomputed representations [B, R] (fixed representations)."""
        ...

    def flops_per_model(self, zoo: AnyZoo) -> int:
        """FLOPs to represent one model and predict from it."""
        ...

    def param_counts(self) -> dict[str, int]:
        """`probe_params`, `predictor_params` and `n_params` (everything fitted) for metrics.json."""
        ...

    def snapshot(self) -> torch.Tensor | None:
        """The current probes [Q, *input_shape] (a probing learner), recorded once per epoch; None for others."""
        ...

    def state_dict(self) -> Mapping[str, torch.Tensor]:
        ...

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> Any:
        ...

    def to(self, device: torch.device) -> Any:
        ...

    def train(self, mode: bool = True) -> Any:
        ...
