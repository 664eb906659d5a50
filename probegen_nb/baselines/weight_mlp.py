"""The weight-space MLP (DWSNets' and NFN's "MLP" baseline): every weight and bias of a model, flattened and
normalised by the train split's per-parameter mean and std, into the probing predictor's MLP; with `augment`, a
random hidden-neuron permutation per model per step ("MLP + aug", the permutation augmentation of DWSNets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from probegen_nb.baselines.base import Baseline, mean_std, rows_params, shared_param_shapes
from probegen_nb.core.arch.registry import ArchSpec
from probegen_nb.core.arch.symmetry import permute_hidden, random_hidden_permutations, tied_layers
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.methods.learner import init_from
from probegen_nb.methods.predictor import Predictor


@dataclass(frozen=True)
class WeightMLPConfig:
    """The weight-space MLP's hyper-parameters. The input normalisation is DWSNets' (Navon et al. 2023,
    `compute_statistics.py`: per-entry mean and std over the train INRs); the MLP is the probing predictor
    (`RunConfig.hidden`, `n_hidden`) under the probing protocol (`RunConfig.lr`, `epochs`, `batch_size`), so the
    comparison differs only in what the MLP reads. DWSNets' own MLP runs (AdamW, weight decay 5e-4, batch norm)
    are not reproduced."""

    kind: ClassVar[str] = "weight_mlp"
    augment: bool = False  # DWSNets' "MLP + aug" row (Table 1): a random hidden-neuron permutation per model per step
    std_floor: float = 1e-5  # a per-parameter std below this counts as 1 (NFN's normalisation, Zhou et al. 2023)

    @property
    def label(self) -> str:
        """What a progress bar calls a run of it."""
        return f"{self.kind}{' +aug' * self.augment}"

    def build(self, train_zoo: AnyZoo, d_out: int, hidden: int, n_hidden: int,
              generator: torch.Generator) -> WeightMLP:
        """The MLP, its normalisation fitted on `train_zoo`; permutations drawn from a stream seeded by `generator`."""
        with init_from(generator):  # the module's init: one draw of the run's generator
            shapes = shared_param_shapes(train_zoo)
            if self.augment:
                for spec in train_zoo.specs:
                    tied_layers(spec)  # refuse, before training, an architecture whose units cannot be permuted
            index = torch.arange(len(train_zoo), device=train_zoo.device)
            mean, std = mean_std(flatten(rows_params(train_zoo, index), tuple(shapes)), self.std_floor)
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            return WeightMLP(tuple(shapes), mean, std, d_out, hidden, n_hidden, self.augment, seed)


class WeightMLP(Baseline):
    """Flattened params [B, N] (N: the architecture's parameter count), normalised, into the predictor."""

    param_mean: torch.Tensor  # buffers, registered in __init__
    param_std: torch.Tensor

    def __init__(self, names: Sequence[str], mean: torch.Tensor, std: torch.Tensor, d_out: int, hidden: int,
                 n_hidden: int, augment: bool, seed: int) -> None:
        super().__init__()
        self.names = tuple(names)
        self.rep_dim = mean.numel()
        self.register_buffer("param_mean", mean.clone())  # [N]
        self.register_buffer("param_std", std.clone())  # [N]
        self.predictor = Predictor(self.rep_dim, d_out, hidden, n_hidden)
        self.augment_weights = augment
        self.fixed_representation = not augment
        self.generator = torch.Generator().manual_seed(seed)  # the permutations' own stream (CPU), seeded by the run

    def represent(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return (flatten(params, self.names) - self.param_mean) / self.param_std

    def augment(self, spec: ArchSpec, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.augment_weights:
            return dict(params)
        n_models = next(iter(params.values())).shape[0]
        return permute_hidden(spec, params, random_hidden_permutations(spec, n_models, self.generator, self.device))


def flatten(params: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """[B, N]: each model's tensors flattened and concatenated in `names` order."""
    return torch.cat([params[name].flatten(1) for name in names], dim=1)
