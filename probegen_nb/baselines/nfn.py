"""Neural functionals (Zhou et al. 2023, "Permutation Equivariant Neural Functionals"), from their `nfn` package:
equivariant NP or HNP layers over a model's weights as `WeightSpaceFeatures`, an invariant pooling, then the probing
predictor's MLP. Permuting any model's hidden neurons leaves its representation unchanged (tests check it).

`nfn` is installed beside the package (`make setup`: `pip install --no-deps nfn==0.1.2`; its metadata pins loosely);
it is imported only when an NFN is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import nn

from probegen_nb.baselines.base import Baseline, rows_params, shared_param_shapes
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.methods.learner import init_from
from probegen_nb.methods.predictor import Predictor

if TYPE_CHECKING:
    from nfn.common import NetworkSpec, WeightSpaceFeatures


@dataclass(frozen=True)
class NFNConfig:
    """The invariant NFN of the paper's generalisation-prediction experiment (its `experiments/predict_gen_configs`):
    `mode` "hnp" is `nfnet/hnp_inv.yaml`, "np" is `nfnet/np_inv.yaml` (NP layers with learned input/output position
    embeddings, "NP-PosEmb"); both pool with HNPPool (`head_cls/mlp.yaml`, pool_mode HNP). The head is the probing
    predictor (`RunConfig.hidden`, `n_hidden`) under the probing protocol (`RunConfig.lr`, `epochs`, `batch_size`),
    not the paper's 3-layer MLP with a sigmoid."""

    kind: ClassVar[str] = "nfn"
    mode: Literal["np", "hnp"] = "hnp"  # NPLinear (+ io embeddings) or HNPLinear equivariant layers
    hidden_channels: tuple[int, ...] = (16, 16, 5)  # channels of each equivariant layer (`hchannels: [16, 16, 5]`)
    std_floor: float = 1e-5  # a tensor's std below this counts as 1 (the paper's `NormalizingModule.set_stats`)

    @property
    def label(self) -> str:
        """What a progress bar calls a run of it."""
        return f"{self.kind} {self.mode}"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_channels", tuple(int(c) for c in self.hidden_channels))
        if self.mode not in ("np", "hnp"):
            raise ValueError(f"NFNConfig.mode {self.mode!r} is not one of 'np', 'hnp'")
        if not self.hidden_channels or min(self.hidden_channels) < 1:
            raise ValueError(f"NFNConfig.hidden_channels needs positive entries, got {self.hidden_channels}")

    def build(self, train_zoo: AnyZoo, d_out: int, hidden: int, n_hidden: int,
              generator: torch.Generator) -> NFN:
        """The NFN, its per-tensor normalisation fitted on `train_zoo` (the run's train models)."""
        with init_from(generator):  # the module's init: one draw of the run's generator
            shapes = shared_param_shapes(train_zoo)
            names = tuple(shapes)
            index = torch.arange(len(train_zoo), device=train_zoo.device)
            params = rows_params(train_zoo, index)
            mean = torch.stack([params[n].mean() for n in names])  # [T]: one scalar per tensor
            std = torch.stack([params[n].std() if params[n].numel() > 1 else params[n].new_ones(()) for n in names])
            std = torch.where(std.isnan() | (std < self.std_floor), torch.ones_like(std), std)
            return NFN(shapes, mean, std, self.mode, self.hidden_channels, d_out, hidden, n_hidden)


class NFN(Baseline):
    """Params [B, …] → WeightSpaceFeatures (one channel) → equivariant layers → HNPPool [B, C·n_pooled] → predictor.

    The normalisation is one mean and std per tensor over the train models (an entry-wise one would differ between
    a hidden neuron and its permuted place, and so break the invariance)."""

    tensor_mean: torch.Tensor  # buffers, registered in __init__
    tensor_std: torch.Tensor

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], mean: torch.Tensor, std: torch.Tensor,
                 mode: Literal["np", "hnp"], hidden_channels: Sequence[int], d_out: int, hidden: int,
                 n_hidden: int) -> None:
        from nfn.layers import HNPLinear, HNPPool, NPLinear, TupleOp

        super().__init__()
        self.names = tuple(shapes)
        if len(self.names) % 2 or not all(w.endswith("weight") and b.endswith("bias")
                                          for w, b in zip(self.names[::2], self.names[1::2])):
            raise ValueError(f"NFN needs (weight, bias) tensors layer by layer, got {self.names}")
        self.register_buffer("tensor_mean", mean.clone())  # [T]
        self.register_buffer("tensor_std", std.clone())  # [T]
        self.network_spec = network_spec(shapes)
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in hidden_channels:
            if mode == "hnp":
                layers.append(HNPLinear(self.network_spec, c_in, c_out))
            else:
                layers.append(NPLinear(self.network_spec, c_in, c_out, io_embed=True))
            layers.append(TupleOp(nn.ReLU()))
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.pool: nn.Module = nn.Sequential(HNPPool(self.network_spec), nn.Flatten(start_dim=1))  # [B, C·n_pooled]
        self.rep_dim = c_in * HNPPool.get_num_outs(self.network_spec)
        self.predictor = Predictor(self.rep_dim, d_out, hidden, n_hidden)
        self.fixed_representation = False  # the equivariant layers train

    def features(self, params: Mapping[str, torch.Tensor]) -> WeightSpaceFeatures:
        """The normalised params as nfn's WeightSpaceFeatures: weights [B, 1, out, in] (dense) or
        [B, 1, out, in, k, k] (conv), biases [B, 1, out]."""
        normed = [(params[n] - self.tensor_mean[t]) / self.tensor_std[t] for t, n in enumerate(self.names)]
        return to_features(normed)

    def represent(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.pool(self.layers(self.features(params)))


def to_features(tensors: Sequence[torch.Tensor]) -> WeightSpaceFeatures:
    """WeightSpaceFeatures from [weight, bias, weight, bias, …] tensors [B, …], each given one channel axis."""
    from nfn.common import WeightSpaceFeatures

    return WeightSpaceFeatures([w.unsqueeze(1) for w in tensors[::2]], [b.unsqueeze(1) for b in tensors[1::2]])


def network_spec(shapes: Mapping[str, tuple[int, ...]]) -> NetworkSpec:
    """nfn's NetworkSpec of an architecture with these (weight, bias, …) per-model shapes."""
    from nfn.common import network_spec_from_wsfeat

    return network_spec_from_wsfeat(to_features([torch.zeros(1, *s) for s in shapes.values()]))
