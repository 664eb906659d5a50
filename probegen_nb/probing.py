"""A probing model: a probe source, the frozen zoo models' answers to the probes, and an MLP on the answers."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.arch import ArchSpec
from probegen_nb.forward import forward
from probegen_nb.probes import ProbeSource


class Predictor(nn.Module):
    """The paper's MLP: Linear(Q·K → 256), ReLU, n_hidden × [Linear(256 → 256), ReLU], Linear(256 → d_out)."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 256, n_hidden: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.ReLU()]
        for _ in range(n_hidden):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        layers.append(nn.Linear(hidden, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ProbingModel(nn.Module):
    """Represents each model by its outputs on the probes (concatenated in probe order) and predicts from that.

    The zoo's weights are inputs, never parameters: gradients flow through the batched forward into the probes.
    """

    def __init__(self, spec: ArchSpec, probes: ProbeSource, n_model_outputs: int, d_out: int, hidden: int = 256,
                 n_hidden: int = 4) -> None:
        super().__init__()
        check_probe_shape(probes, spec)
        self.spec = spec
        self.probes = probes
        self.predictor = Predictor(probes.n_probes * n_model_outputs, d_out, hidden, n_hidden)

    def represent(self, params: Mapping[str, torch.Tensor], probes: torch.Tensor | None = None) -> torch.Tensor:
        """[B, Q·K]: every model's outputs on every probe."""
        x = self.probes() if probes is None else probes  # [Q, *input_shape]
        return forward(self.spec, params, x).flatten(1)  # [B, Q, K] → [B, Q·K]

    def forward(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.predictor(self.represent(params))


def check_probe_shape(probes: ProbeSource, spec: ArchSpec) -> None:
    """Refuse, before any training, a probe source whose inputs the zoo's architecture cannot take."""
    if tuple(probes.input_shape) != tuple(spec.input_shape):
        raise ValueError(f"{type(probes).__name__} makes probes of shape {tuple(probes.input_shape)}, but the zoo's "
                         f"{type(spec).__name__} models take inputs of shape {tuple(spec.input_shape)}")


@torch.no_grad()
def flops_per_model(model: ProbingModel, params: Mapping[str, torch.Tensor]) -> int:
    """FLOPs to represent one model and predict from it: its forward on all probes, then the predictor.

    The probes are generated once for the whole zoo, so the generator is not counted.
    """
    one = {k: v[:1] for k, v in params.items()}
    probes = model.probes()
    with FlopCounterMode(display=False) as counter:
        model.predictor(model.represent(one, probes))
    return int(counter.get_total_flops())
