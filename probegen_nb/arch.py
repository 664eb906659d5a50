"""Architecture specs: the frozen description of one zoo's network, and its reference `nn.Module`.

A spec names every parameter and its per-model shape; the zoo format, the batched forward and the
builders all read shapes from here, so there is one source of truth per architecture.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SirenSpec:
    """SIREN INR as in the public MNIST/FMNIST INR zoos (DWSNets): in → hidden… (sine) → out, output + `out_offset`."""

    kind: ClassVar[str] = "siren"
    in_dim: int = 2  # (x, y) pixel coordinates in [-1, 1]²
    hidden: tuple[int, ...] = (32, 32)  # widths of the sine layers
    out_dim: int = 1  # grey value
    w0: float = 30.0  # sine frequency factor sin(w0 · (Wx + b))
    out_offset: float = 0.5  # added to the last (linear) layer so outputs start near mid-grey

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.in_dim < 1 or self.out_dim < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"SirenSpec needs positive sizes, got in_dim={self.in_dim}, hidden={self.hidden}, "
                             f"out_dim={self.out_dim}")

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.in_dim, *self.hidden, self.out_dim)

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one probe/input point."""
        return (self.in_dim,)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-model parameter shapes keyed as in the reference module's state_dict (`seq.<i>.weight`)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for i, (fan_in, fan_out) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            shapes[f"seq.{i}.weight"] = (fan_out, fan_in)
            shapes[f"seq.{i}.bias"] = (fan_out,)
        return shapes

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def build_module(self) -> SirenINR:
        return SirenINR(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


class SineLayer(nn.Module):
    """Linear layer followed by sin(w0 · ·); init uniform(±√(6/fan_in)/w0), zero bias (the public zoos' recipe)."""

    def __init__(self, fan_in: int, fan_out: int, w0: float) -> None:
        super().__init__()
        self.w0 = w0
        bound = math.sqrt(6.0 / fan_in) / w0
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(fan_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * nn.functional.linear(x, self.weight, self.bias))


class SirenINR(nn.Module):
    """Reference single-model SIREN. Used by tests and benchmarks as the ground truth of the batched forward."""

    def __init__(self, spec: SirenSpec = SirenSpec()) -> None:
        super().__init__()
        self.spec = spec
        widths = spec.widths
        layers: list[nn.Module] = [SineLayer(a, b, spec.w0) for a, b in zip(widths[:-2], widths[1:-1])]
        layers.append(nn.Linear(widths[-2], widths[-1]))  # PyTorch default init, as in the public zoo
        self.seq = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x) + self.spec.out_offset


CNNActivation = Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "none"]
CNN_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "leaky_relu": F.leaky_relu,
    "none": lambda x: x,
}


@dataclass(frozen=True)
class CNNSpec:
    """Plain CNN: convolutions (each with its own kernel, stride, padding, activation), global average pooling,
    one dense layer. Covers the Small CNN Zoo (3 × conv 3×3 stride 2, 16 channels) and CNN Wild Park (2–5 layers,
    4–32 channels, kernels 3/5/7, stride 1, per-layer activations, residual connections).

    `residual[i] = r ≥ 0` adds layer r's post-activation output to layer i's convolution output (first min(channels)
    channels) before layer i's activation, as in CNN Wild Park; -1 for none.
    """

    kind: ClassVar[str] = "cnn"
    in_channels: int = 1  # 1 for grayscale (CIFAR10-GS, MNIST), 3 for RGB
    channels: tuple[int, ...] = (16, 16, 16)  # output channels of each convolution
    kernel_size: tuple[int, ...] | int = 3  # per layer; a single value applies to every layer
    stride: tuple[int, ...] | int = 2
    padding: tuple[int, ...] | int = 1
    activation: tuple[CNNActivation, ...] | CNNActivation = "relu"
    residual: tuple[int, ...] | int = -1
    out_dim: int = 10  # classes
    image_size: int = 32  # inputs are in_channels × image_size × image_size, scaled to [-1, 1]

    def __post_init__(self) -> None:
        n = len(self.channels)
        for name in ("channels", "kernel_size", "stride", "padding", "activation", "residual"):
            value = getattr(self, name)
            value = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
            if len(value) != n:
                raise ValueError(f"CNNSpec.{name} has {len(value)} entries, expected one per layer ({n})")
            object.__setattr__(self, name, value)
        bad = [a for a in self.activation if a not in CNN_ACTIVATIONS]
        if bad:
            raise ValueError(f"CNNSpec.activation {bad[0]!r} is not one of {sorted(CNN_ACTIVATIONS)}")
        sizes = self.feature_sizes()
        for i, r in enumerate(self.residual):
            if r >= 0 and not (r < i - 1 and sizes[r] == sizes[i]):
                raise ValueError(f"CNNSpec.residual[{i}] (={r}) must name an earlier, non-adjacent layer with the "
                                 f"same feature size ({sizes[r] if r < n else '?'} vs {sizes[i]})")

    @classmethod
    def small_cnn_zoo(cls, in_channels: int = 1, activation: CNNActivation = "relu") -> CNNSpec:
        """The Small CNN Zoo architecture (Unterthiner et al. 2020): 4,970 parameters for one input channel."""
        return cls(in_channels, (16, 16, 16), (3, 3, 3), (2, 2, 2), (1, 1, 1), (activation,) * 3, (-1, -1, -1))

    @property
    def n_layers(self) -> int:
        return len(self.channels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.image_size, self.image_size)

    def feature_sizes(self) -> list[int]:
        """Spatial size after each convolution."""
        sizes, s = [], self.image_size
        for k, st, p in zip(self.kernel_size, self.stride, self.padding):
            s = (s + 2 * p - k) // st + 1
            sizes.append(s)
        return sizes

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for i, (c_in, c_out, k) in enumerate(zip((self.in_channels, *self.channels[:-1]), self.channels,
                                                 self.kernel_size)):
            shapes[f"layers.{i}.weight"] = (c_out, c_in, k, k)
            shapes[f"layers.{i}.bias"] = (c_out,)
        shapes["fc.weight"] = (self.out_dim, self.channels[-1])
        shapes["fc.bias"] = (self.out_dim,)
        return shapes

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def build_module(self) -> CNN:
        return CNN(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}


class CNN(nn.Module):
    """Reference single-model CNN (state_dict keys `layers.<i>.weight`, `fc.weight`, as in CNN Wild Park)."""

    def __init__(self, spec: CNNSpec = CNNSpec()) -> None:
        super().__init__()
        self.spec = spec
        c_in = (spec.in_channels, *spec.channels[:-1])
        self.layers = nn.ModuleList(nn.Conv2d(a, b, k, stride=s, padding=p) for a, b, k, s, p in
                                    zip(c_in, spec.channels, spec.kernel_size, spec.stride, spec.padding))
        self.fc = nn.Linear(spec.channels[-1], spec.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec, kept = self.spec, {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            r = spec.residual[i]
            if r >= 0:
                ch = min(spec.channels[r], spec.channels[i])
                x = torch.cat([x[:, :ch] + kept[r][:, :ch], x[:, ch:]], dim=1)
            x = CNN_ACTIVATIONS[spec.activation[i]](x)
            kept[i] = x
        return self.fc(x.mean(dim=(2, 3)))


ArchSpec = SirenSpec | CNNSpec
_SPECS: dict[str, type] = {SirenSpec.kind: SirenSpec, CNNSpec.kind: CNNSpec}


def spec_from_dict(d: dict[str, Any]) -> ArchSpec:
    """Inverse of `spec.to_dict()`; rejects unknown kinds and fields with the offending value quoted."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _SPECS:
        raise ValueError(f"unknown architecture kind {kind!r}; known: {sorted(_SPECS)}")
    try:
        return _SPECS[kind](**d)
    except TypeError as e:
        raise ValueError(f"bad {kind!r} architecture spec {d}: {e}") from None
