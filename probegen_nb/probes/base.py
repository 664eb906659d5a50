"""The probe-source interface and what every variant shares: activations, fixed probes as buffers, seeded init.

A probe source is a small module whose `forward()` returns the probe set [Q, *input_shape]. Learned ones are
trained end to end through the frozen zoo models; fixed ones are buffers, so checkpoints and `.to()` carry them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

Activation = Literal["relu", "tanh", "gelu", "sine"]


class ProbeSource(nn.Module):
    """Base class: `forward()` returns the probes [Q, *input_shape]."""

    n_probes: int
    input_shape: tuple[int, ...]
    learned: ClassVar[bool] = True

    def forward(self) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Sine(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sine": Sine}


def check_activation(activation: str | None) -> None:
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}")


def image_channels(input_shape: tuple[int, ...], size: int | None = None) -> int:
    """C for an image input shape (C, S, S), refusing anything else with the shape quoted."""
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[1] != shape[2] or shape[0] < 1 or (size is not None and shape[1] != size):
        want = f"(C, {size}, {size})" if size is not None else "(C, S, S)"
        raise ValueError(f"image probes need input_shape {want}, got {shape}")
    return shape[0]


class FixedProbes(ProbeSource):
    """Synthetic probes that are not learned, kept as a buffer so checkpoints and `.to()` carry them."""

    probes: torch.Tensor  # a buffer, registered in __init__

    learned = False

    def __init__(self, probes: torch.Tensor) -> None:
        super().__init__()
        self.n_probes, self.input_shape = probes.shape[0], tuple(probes.shape[1:])
        self.register_buffer("probes", probes.clone())

    def forward(self) -> torch.Tensor:
        return self.probes


class seeded:
    """Draw a module's initial parameters from `generator` (nn.Module inits use the global RNG)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.seed = int(torch.randint(0, 2**62, (1,), generator=generator))

    def __enter__(self) -> None:
        self.state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self.state)
