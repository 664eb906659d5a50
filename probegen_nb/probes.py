"""Probe sources: small modules that return the probe set, a [Q, *input_shape] tensor, behind one interface.

The learned ones are trained end to end through the frozen zoo models; the synthetic ones are fixed buffers (so
checkpoints and `.to()` carry them). Each variant is its own type, configured by a small frozen dataclass that
builds it, so an ablation is a list of constructed configs and `config.json` records exactly what ran.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union

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


_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sine": Sine}


class DeepLinearGenerator(ProbeSource):
    """ProbeGen: a learned latent code per probe → a shared stack of linear layers with no activation between them.

    The stack collapses to one linear map, yet training it as a deep product biases the probes towards structure
    (low effective rank); `activation` gives the non-linear ablation.
    """

    def __init__(self, n_probes: int, input_shape: tuple[int, ...], latent_dim: int = 32, width: int = 32,
                 depth: int = 2, activation: Activation | None = None) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth (={depth}) must be at least 1")
        if activation is not None and activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {sorted(_ACTIVATIONS)}")
        self.n_probes, self.input_shape = n_probes, tuple(input_shape)
        self.latents = nn.Parameter(torch.randn(n_probes, latent_dim))  # z_i ~ N(0, 1), one per probe
        dims = [latent_dim] + [width] * (depth - 1) + [math.prod(self.input_shape)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if activation is not None and i < depth - 1:
                layers.append(_ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)

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


class FixedProbes(ProbeSource):
    """Synthetic probes that are not learned, kept as a buffer so checkpoints and `.to()` carry them."""

    learned = False

    def __init__(self, probes: torch.Tensor) -> None:
        super().__init__()
        self.n_probes, self.input_shape = probes.shape[0], tuple(probes.shape[1:])
        self.register_buffer("probes", probes.clone())

    def forward(self) -> torch.Tensor:
        return self.probes


# ---------------------------------------------------------------- configs: one type per variant


@dataclass(frozen=True)
class ProbeGenConfig:
    """ProbeGen's deep linear generator for coordinate inputs: z ∈ R^32 → Linear(32→32) → Linear(32→D)."""

    kind: ClassVar[str] = "probegen"
    latent_dim: int = 32  # size of each probe's latent code
    width: int = 32  # hidden width of the generator
    depth: int = 2  # number of linear layers
    activation: Activation | None = None  # None: deep linear (ProbeGen); a name: the non-linear ablation

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with _seeded(generator):
            return DeepLinearGenerator(n_probes, input_shape, self.latent_dim, self.width, self.depth, self.activation)


@dataclass(frozen=True)
class VanillaConfig:
    """Vanilla probing: learn the Q probes directly."""

    kind: ClassVar[str] = "vanilla"

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with _seeded(generator):
            return FreeProbes(n_probes, input_shape)


@dataclass(frozen=True)
class UniformConfig:
    """Fixed random probes, uniform in [low, high] (the coordinate square for INRs)."""

    kind: ClassVar[str] = "uniform"
    low: float = -1.0
    high: float = 1.0

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        u = torch.rand(n_probes, *input_shape, generator=generator)
        return FixedProbes(self.low + (self.high - self.low) * u)


@dataclass(frozen=True)
class GaussianConfig:
    """Fixed random probes, N(0, std²)."""

    kind: ClassVar[str] = "gaussian"
    std: float = 1.0

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        return FixedProbes(self.std * torch.randn(n_probes, *input_shape, generator=generator))


# ---------------------------------------------------------------- registry: every variant by kind
# The image variants (image_probes.py) build on the classes here: that module imports this one and registers its
# configs in PROBE_CONFIGS; the last line of this file imports it so the registry is always complete. The union
# names them as forward references, so importing either module first works.

if TYPE_CHECKING:
    from probegen_nb.image_probes import (
        ConvProbeGenConfig,
        DeadLeavesConfig,
        ImageGaussianConfig,
        ImageVanillaConfig,
        LinearImageGenConfig,
    )

ProbeConfig = Union[
    ProbeGenConfig, VanillaConfig, UniformConfig, GaussianConfig,
    "ConvProbeGenConfig", "LinearImageGenConfig", "ImageVanillaConfig", "DeadLeavesConfig", "ImageGaussianConfig",
]
PROBE_CONFIGS: dict[str, type] = {c.kind: c for c in (ProbeGenConfig, VanillaConfig, UniformConfig, GaussianConfig)}


def probe_config_to_dict(config: ProbeConfig) -> dict[str, Any]:
    return {"kind": config.kind, **asdict(config)}


def probe_config_from_dict(d: dict[str, Any]) -> ProbeConfig:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in PROBE_CONFIGS:
        raise ValueError(f"unknown probe source {kind!r}; known: {sorted(PROBE_CONFIGS)}")
    return PROBE_CONFIGS[kind](**d)


class _seeded:
    """Draw a module's initial parameters from `generator` (nn.Module inits use the global RNG)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.seed = int(torch.randint(0, 2**62, (1,), generator=generator))

    def __enter__(self) -> None:
        self.state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self.state)


import probegen_nb.image_probes  # noqa: E402, F401 - registers the image variants (last: it imports the names above)
