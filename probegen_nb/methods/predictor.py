"""The paper's predictor: an MLP on the concatenated responses (or any other per-model representation).
"""

from __future__ import annotations

import torch
from torch import nn


class Predictor(nn.Module):
    """The paper's MLP: Linear(Q·K → hidden), ReLU, n_hidden × [Linear(hidden → hidden), ReLU], Linear(hidden →
    d_out). Width and depth come from `RunConfig` (256 and 4 there, the paper's), the one place they are written."""

    def __init__(self, d_in: int, d_out: int, hidden: int, n_hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.ReLU()]
        for _ in range(n_hidden):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        layers.append(nn.Linear(hidden, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
