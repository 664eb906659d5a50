"""Probe sources for coordinate inputs (INR zoos): ProbeGen's deep linear generator, free (vanilla) probes, and
fixed uniform or Gaussian points. Each variant is configured by a small frozen dataclass that builds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from probegen_nb.probes.base import ACTIVATIONS, Activation, FixedProbes, ProbeSource, check_activation, seeded


class DeepLinearGenerator(ProbeSource):
    """ProbeGen: a learned latent code per probe → a shared stack of linear layers with no activation between them.

    The stack collapses to one linear map, yet training it as a deep product biases the probes towards structure
    (low effective rank); `activation` gives the non-linear ablation.
    """

    def __init__(self, n_probes: int, input_shape: tuple[int, ...], latent_dim: int = 32, width: int = 32,
                 depth: int = 2, activation: Activation | None = None, init_spread: float | None = None) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth (={depth}) must be at least 1")
        check_activation(activation)
        self.n_probes, self.input_shape = n_probes, tuple(input_shape)
        self.latents = nn.Parameter(torch.randn(n_probes, latent_dim))  # z_i ~ N(0, 1), one per probe
        dims = [latent_dim] + [width] * (depth - 1) + [math.prod(self.input_shape)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if activation is not None and i < depth - 1:
                layers.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)
        if init_spread is not None:  # rescale the initial probes about the origin: the output layer times a scalar
            with torch.no_grad():
                scale = init_spread / self.pre_output(self.latents).std(0).mean()
                output = self.layers[-1]
                assert isinstance(output, nn.Linear)
                output.weight.mul_(scale)
                output.bias.mul_(scale)

    def pre_output(self, latents: torch.Tensor) -> torch.Tensor:
        """The layer stack's output for latent codes [N, latent_dim], flattened [N, D], before any output squashing:
        an affine map of the latents for the deep linear generator (the generator anatomy view reads it)."""
        return self.layers(latents)

    def generate(self, latents: torch.Tensor) -> torch.Tensor:
        """Probes for arbitrary latent codes [N, latent_dim] → [N, *input_shape] (used by the latent explorer)."""
        return self.pre_output(latents).reshape(len(latents), *self.input_shape)

    def forward(self) -> torch.Tensor:
        return self.generate(self.latents)


class FreeProbes(ProbeSource):
    """Vanilla probing: the probes themselves are free parameters, initialised N(0, 1)."""

    def __init__(self, n_probes: int, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.n_probes, self.input_shape = n_probes, tuple(input_shape)
        self.probes = nn.Parameter(torch.randn(n_probes, *self.input_shape))

    def forward(self) -> torch.Tensor:
        return self.probes


@dataclass(frozen=True)
class ProbeGenConfig:
    """ProbeGen's deep linear generator for coordinate inputs: z ∈ R^32 → Linear(32→32) → Linear(32→D).

    `init_spread`: None keeps PyTorch's default init, whose probes start near the centre (std ≈ 0.34 per coordinate on
    the INR square; they move little under the protocol); a number rescales the initial probes about the origin so
    their std per coordinate, averaged over coordinates, is that (uniform on [-1, 1]² has 0.58). Measured on the INR
    zoos (docs/history/inr-results.md): 0.45 and 0.58 help on Fashion-MNIST, whose objects fill the frame, and cost on
    MNIST, whose digits sit in the middle."""

    kind: ClassVar[str] = "probegen"
    inputs: ClassVar[str] = "coordinates"  # the zoos it fits: models taking coordinates
    latent_dim: int = 32  # size of each probe's latent code
    width: int = 32  # hidden width of the generator
    depth: int = 2  # number of linear layers
    activation: Activation | None = None  # None: deep linear (ProbeGen); a name: the non-linear ablation
    init_spread: float | None = None

    def __post_init__(self) -> None:
        if self.init_spread is not None and not self.init_spread > 0:
            raise ValueError(f"ProbeGenConfig.init_spread must be a positive std or None, got {self.init_spread!r}")

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with seeded(generator):
            return DeepLinearGenerator(n_probes, input_shape, self.latent_dim, self.width, self.depth, self.activation,
                                       self.init_spread)


@dataclass(frozen=True)
class VanillaConfig:
    """Vanilla probing: learn the Q probes directly."""

    kind: ClassVar[str] = "vanilla"
    inputs: ClassVar[str] = "coordinates"  # the zoos it fits: models taking coordinates

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with seeded(generator):
            return FreeProbes(n_probes, input_shape)


@dataclass(frozen=True)
class UniformConfig:
    """Fixed random probes, uniform in [low, high] (the coordinate square for INRs)."""

    kind: ClassVar[str] = "uniform"
    inputs: ClassVar[str] = "coordinates"  # the zoos it fits: models taking coordinates
    low: float = -1.0
    high: float = 1.0

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        u = torch.rand(n_probes, *input_shape, generator=generator)
        return FixedProbes(self.low + (self.high - self.low) * u)


@dataclass(frozen=True)
class GaussianConfig:
    """Fixed random probes, N(0, std²)."""

    kind: ClassVar[str] = "gaussian"
    inputs: ClassVar[str] = "coordinates"  # the zoos it fits: models taking coordinates
    std: float = 1.0

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        return FixedProbes(self.std * torch.randn(n_probes, *input_shape, generator=generator))
