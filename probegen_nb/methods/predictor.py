"""The paper's predictor: an MLP on the concatenated responses (or any other per-model representation).
"""

from __future__ import annotations

import torch
from torch import nn


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
