"""Plain `nn.Module` classifiers that any zoo of registered architectures can use (`core.arch.module`): an MLP and a
small ResNet with BatchNorm. Registered by name in `core.arch.module` ("mlp", "small_resnet").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then Linear + ReLU blocks, then a Linear head: `in_shape` → `out_dim` logits."""

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), hidden: Sequence[int] = (32,), out_dim: int = 10) -> None:
        super().__init__()
        widths = (math.prod(in_shape), *hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, out_dim)


class ResBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (a 1×1 strided projection where the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.skip(x))


class SmallResNet(nn.Module):
    """A stem conv + BN, one residual block per entry of `channels` (stride 2 after the first), global average pooling
    and a Linear head: a ResNet small enough to train a zoo of on a CPU."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (8, 16), out_dim: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU())
        c_in = (channels[0], *channels[:-1])
        self.blocks = nn.Sequential(*(ResBlock(a, b, 1 if i == 0 else 2)
                                      for i, (a, b) in enumerate(zip(c_in, channels))))
        self.fc = nn.Linear(channels[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))  # (N, out_dim)
