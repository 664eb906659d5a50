"""What every baseline is: a module that maps a batch of models' stacked parameters (name → [B, …], as `Zoo.params`
holds them) to a representation [B, R] and, through the probing predictor's MLP, to predictions [B, d_out].

`experiment.train.train()` trains a baseline exactly as it trains a probing model (the same splits, seeds, batches,
optimizer, schedule, model selection and run folder): it only needs `predict_rows` for a step, `represent_rows` and
`predictor` for evaluation, and `fixed_representation` to know whether the representations can be computed once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.core.arch.registry import ArchSpec
from probegen_nb.core.zoo import AnyZoo, Batch, MixedZoo
from probegen_nb.methods.learner import EpochFit, eval_outputs


class Baseline(nn.Module):
    """Subclasses set `predictor` (an `nn.Module` on [B, rep_dim]), `rep_dim` and `fixed_representation`, and
    implement `represent`; `augment` (a training-time change of the weights that keeps each model's function) is
    optional."""

    queries = 0  # weight-space methods read the weights and ask the models nothing

    predictor: nn.Module
    rep_dim: int
    fixed_representation: bool = True  # a model's representation never changes in training: train() computes it once
    # models per forward when a whole split is evaluated: the encoders' intermediate states of a whole split do not
    # fit in cache (NFN on 1,000 models measured 2.5-4× slower at 1,024 than at 32 on the CPU)
    eval_batch_size: int = 32
    saves_checkpoints = True

    def represent(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B, rep_dim] for params [B, …] of models of the zoo's architecture."""
        raise NotImplementedError

    def augment(self, spec: ArchSpec, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training-time transform of params [B, …] of models of `spec` (none by default)."""
        return dict(params)

    def forward(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.predictor(self.represent(params))

    def represent_rows(self, zoo: AnyZoo, index: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """[len(index), rep_dim] for the zoo's models at row positions `index`, in that order (augmented if asked),
        one call per architecture group (`augment` takes one architecture's models)."""
        def represent(b: Batch) -> torch.Tensor:
            return self.represent(self.augment(b.specs[0], b.params) if augment else b.params)  # [B_b, rep_dim]
        return zoo.map_rows(index, represent, (self.rep_dim,))

    def predict_rows(self, zoo: AnyZoo, index: torch.Tensor) -> torch.Tensor:
        """[len(index), d_out]: a training step's outputs (augmented while the module is in training mode)."""
        return self.predictor(self.represent_rows(zoo, index, augment=self.training))

    @property
    def device(self) -> torch.device:
        return next(iter([*self.buffers(), *self.parameters()])).device

    # --- the Learner protocol (methods.learner) ---

    def self_fit(self, train_zoo: AnyZoo, labels: torch.Tensor, representations: torch.Tensor | None,
                 seed: int) -> EpochFit | None:
        return None  # trained by train()'s gradient steps

    def n_epochs(self, configured: int) -> int:
        return configured

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return [{"params": list(self.parameters()), "weight_decay": weight_decay}]

    @torch.no_grad()
    def represent_all(self, zoo: AnyZoo, batch_size: int = 1024) -> torch.Tensor:
        """[M, rep_dim] (never augmented), `batch_size` models at a time or fewer where the baseline asks."""
        index = torch.arange(len(zoo), device=self.device)
        reps = [self.represent_rows(zoo, i) for i in index.split(min(batch_size, self.eval_batch_size))]
        return torch.cat(reps) if reps else torch.zeros(0, self.rep_dim, device=self.device)

    def predict_from(self, representations: torch.Tensor) -> torch.Tensor:
        return eval_outputs(self, self.predictor, representations)

    def predict_reps(self, representations: torch.Tensor) -> torch.Tensor:
        return self.predictor(representations)

    def flops_per_model(self, zoo: AnyZoo) -> int:
        return flops_per_model(self, zoo)

    def param_counts(self) -> dict[str, int]:
        return {"probe_params": 0, "predictor_params": sum(p.numel() for p in self.predictor.parameters()),
                "n_params": sum(p.numel() for p in self.parameters())}

    def snapshot(self) -> torch.Tensor | None:
        return None


def shared_param_shapes(zoo: AnyZoo) -> dict[str, tuple[int, ...]]:
    """The parameter shapes every architecture of the zoo has (a baseline reads weights, not the forward: relu and
    tanh CNNs of one shape are one input space); a clear error when the architectures' weights differ."""
    shapes = zoo.specs[0].param_shapes()
    for g, spec in enumerate(zoo.specs):
        if spec.param_shapes() != shapes:
            raise ValueError(f"architecture {g} ({type(spec).__name__}) has parameter shapes {spec.param_shapes()}, "
                             f"architecture 0 {shapes}: the weight-space baselines need one shape for all models")
    return shapes


def rows_params(zoo: AnyZoo, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Params [len(index), …] of the zoo's models at row positions `index`, in that order (any zoo whose
    architectures share their parameter shapes): flattened into one [B, F] row each so the zoo's `map_rows` puts
    them in order in one gather, then split back."""
    shapes = shared_param_shapes(zoo)
    flat = zoo.map_rows(index, lambda b: torch.cat([b.params[k].flatten(1) for k in shapes], 1),
                        (sum(math.prod(s) for s in shapes.values()),))  # [B, F]
    pieces = flat.split([math.prod(s) for s in shapes.values()], dim=1)
    return {k: p.reshape(len(index), *s) for (k, s), p in zip(shapes.items(), pieces)}


def mean_std(x: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and std of x [N, F] (train models × features); a std below `floor` (a column constant across
    the zoo) or undefined (one model) counts as 1, so standardising never divides by zero."""
    mean, std = x.mean(dim=0), x.std(dim=0)
    return mean, torch.where(std.isnan() | (std < floor), torch.ones_like(std), std)


@torch.no_grad()
def flops_per_model(model: Baseline, zoo: AnyZoo) -> int:
    """FLOPs (torch.utils.flop_counter) of one model's representation and prediction, averaged over the zoo's
    architectures as `methods.probing.flops_per_model` does. Reductions and sorts (StatNN's statistics) count 0
    there: the counter counts matrix products and convolutions."""
    groups = zoo.groups if isinstance(zoo, MixedZoo) else (zoo,)
    total = 0.0
    for group in groups:
        if len(group) == 0:
            continue
        with FlopCounterMode(display=False) as counter:
            model({k: v[:1] for k, v in group.params.items()})
        total += counter.get_total_flops() * len(group) / len(zoo)
    return round(total)
