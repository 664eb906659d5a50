"""A probing model: a probe source, the frozen zoo models' answers to the probes, and an MLP on the answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.core.arch.registry import ArchSpec, forward
from probegen_nb.core.zoo import AnyZoo, MixedZoo
from probegen_nb.methods.predictor import Predictor
from probegen_nb.probes.base import ProbeSource


class ProbingModel(nn.Module):
    """Represents each model by its outputs on the probes (concatenated in probe order) and predicts from that.

    The zoo's weights are inputs, never parameters: gradients flow through the batched forward into the probes.
    """

    def __init__(self, specs: Sequence[ArchSpec], probes: ProbeSource, n_model_outputs: int, d_out: int,
                 hidden: int = 256, n_hidden: int = 4) -> None:
        super().__init__()
        for spec in specs:
            check_probe_shape(probes, spec)
        self.specs = tuple(specs)
        self.probes = probes
        self.rep_dim = probes.n_probes * n_model_outputs
        self.predictor = Predictor(self.rep_dim, d_out, hidden, n_hidden)

    def represent(self, params: Mapping[str, torch.Tensor], probes: torch.Tensor | None = None,
                  spec: ArchSpec | None = None) -> torch.Tensor:
        """[B, Q·K]: every model's outputs on every probe (models of one architecture, the first by default)."""
        x = self.probes() if probes is None else probes  # [Q, *input_shape]
        return forward(spec or self.specs[0], params, x).flatten(1)  # [B, Q, K] → [B, Q·K]

    def represent_rows(self, zoo: AnyZoo, index: torch.Tensor, probes: torch.Tensor | None = None) -> torch.Tensor:
        """[len(index), Q·K] for the zoo's models at row positions `index`, one batched forward per architecture."""
        x = self.probes() if probes is None else probes
        parts = zoo.parts(index)
        if len(parts) == 1 and parts[0][2] is None:
            return self.represent(parts[0][1], x, parts[0][0])
        out = x.new_zeros(len(index), self.rep_dim)
        for spec, params, positions in parts:
            out = out.index_copy(0, positions, self.represent(params, x, spec))
        return out

    def forward(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.predictor(self.represent(params))

    def predict_rows(self, zoo: AnyZoo, index: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.represent_rows(zoo, index))


def check_probe_shape(probes: ProbeSource, spec: ArchSpec) -> None:
    """Refuse, before any training, a probe source whose inputs the zoo's architecture cannot take."""
    if tuple(probes.input_shape) != tuple(spec.input_shape):
        raise ValueError(f"{type(probes).__name__} makes probes of shape {tuple(probes.input_shape)}, but the zoo's "
                         f"{type(spec).__name__} models take inputs of shape {tuple(spec.input_shape)}")


@torch.no_grad()
def flops_per_model(model: ProbingModel, zoo: AnyZoo) -> int:
    """FLOPs to represent one model and predict from it: its forward on all probes, then the predictor
    (averaged over the zoo's architectures, weighted by their model counts).

    The probes are generated once for the whole zoo, so the generator is not counted.
    """
    groups = zoo.groups if isinstance(zoo, MixedZoo) else (zoo,)
    probes = model.probes()
    total = 0.0
    for group in groups:
        with FlopCounterMode(display=False) as counter:
            model.predictor(model.represent({k: v[:1] for k, v in group.params.items()}, probes, group.spec))
        total += counter.get_total_flops() * len(group) / len(zoo)
    return round(total)
