"""Image probe sources: probes [Q, C, 32, 32] for CNN zoos, whose inputs are scaled to [-1, 1].

Every source here ends in [-1, 1]: the learned ones with a tanh, the fixed ones by construction. The variants follow
the paper's CNN experiments: ProbeGen's deep linear convolutional generator, a fully connected linear generator and
free (vanilla) probes as ablations, and clipped noise as a fixed baseline (dead leaves: `dead_leaves.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from probegen_nb.probes.base import (
    ACTIVATIONS,
    Activation,
    FixedProbes,
    ProbeSource,
    check_activation,
    image_channels,
    seeded,
)
from probegen_nb.probes.coords import DeepLinearGenerator, FreeProbes


class ConvProbeGenerator(ProbeSource):
    """ProbeGen for images: a latent code per probe → a stack of transposed convolutions, no activation between them.

    Spatial sizes 1 → 4 → 8 → 16 (→ 16 for each layer past five) → 32 → 32 with widths 8w, 4w, 2w (2w), w, C for
    w = `width_mult`; the paper uses 6 layers for grayscale and 5 for RGB. The stack is one linear map of the latent;
    tanh at the end keeps probes in the CNN input range. `activation` gives the non-linear ablation.
    """

    def __init__(self, n_probes: int, input_shape: tuple[int, ...], latent_dim: int = 32, width_mult: int = 16,
                 n_layers: int | None = None, activation: Activation | None = None,
                 unit_variance_init: bool = False) -> None:
        super().__init__()
        channels = image_channels(input_shape, size=32)
        n_layers = paper_conv_depth(channels) if n_layers is None else n_layers
        if n_layers < 5:
            raise ValueError(f"n_layers (={n_layers}) must be at least 5 (four upsampling layers and an output layer)")
        check_activation(activation)
        self.n_probes, self.input_shape, self.activation = n_probes, tuple(input_shape), activation
        self.latents = nn.Parameter(torch.randn(n_probes, latent_dim))  # [Q, Z]: z_i ~ N(0, 1), one per probe
        w = width_mult
        # (in, out, kernel, stride, padding); a 4-2-1 transposed conv doubles the size, a 3-1-1 one keeps it
        plan = [(latent_dim, 8 * w, 4, 1, 0), (8 * w, 4 * w, 4, 2, 1), (4 * w, 2 * w, 4, 2, 1)]  # 1 → 4 → 8 → 16
        plan += [(2 * w, 2 * w, 3, 1, 1)] * (n_layers - 5)  # extra depth at 16×16 (the paper's 6th layer)
        plan += [(2 * w, w, 4, 2, 1), (w, channels, 3, 1, 1)]  # 16 → 32 → 32
        layers: list[nn.Module] = []
        for i, (c_in, c_out, kernel, stride, padding) in enumerate(plan):
            if activation is not None and i > 0:
                layers.append(ACTIVATIONS[activation]())
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding))
        self.layers = nn.Sequential(*layers)  # pre-tanh: [N, Z, 1, 1] → [N, C, 32, 32]
        if unit_variance_init:
            unit_variance(self.layers, self.latents.detach()[:, :, None, None])

    def pre_output(self, latents: torch.Tensor) -> torch.Tensor:
        """The transposed-convolution stack's output [N, C·32·32] before the tanh (affine in the latents when deep
        linear).

        Deep linear, the stack is one affine map z ↦ b + z·A: for more latents than Z + 1 it runs on the zero code and
        the Z unit codes only (b and b + A's rows) and maps the N latents with one matmul, which equals running it on
        every latent (to float rounding) and, at Q = 128, Z = 32, made the generator's forward + backward 5× faster.
        """
        n, z = latents.shape
        if self.activation is not None or n <= z + 1:
            return self.layers(latents[:, :, None, None]).flatten(1)
        basis = torch.cat([latents.new_zeros(1, z), torch.eye(z, dtype=latents.dtype, device=latents.device)])
        out = self.layers(basis[:, :, None, None]).flatten(1)  # [Z + 1, C·32·32]: b, then b + A's rows
        return torch.addmm(out[0], latents, out[1:] - out[0])

    def generate(self, latents: torch.Tensor) -> torch.Tensor:
        """Probes for arbitrary latent codes [N, latent_dim] → [N, C, 32, 32] (used by the latent explorer)."""
        return torch.tanh(self.pre_output(latents)).reshape(len(latents), *self.input_shape)

    def forward(self) -> torch.Tensor:
        return self.generate(self.latents)


def unit_variance(layers: nn.Sequential, x: torch.Tensor) -> None:
    """Zero each convolution's bias and rescale its weights so its output on `x` (the latents) has unit std, layer
    after layer (LSUV-style). Under PyTorch's default init each transposed convolution shrinks the signal, so the
    paper-depth stack starts with near-constant probes: pre-tanh std ≈ 0.03 and all probes nearly one image."""
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.ConvTranspose2d):
                if layer.bias is not None:
                    layer.bias.zero_()
                layer.weight.div_(layer(x).std().clamp_min(1e-8))
            x = layer(x)


def paper_conv_depth(channels: int) -> int:
    """The paper's generator depth: 6 layers for grayscale (CIFAR10-GS) zoos, 5 for RGB (CNN Wild Park)."""
    return 6 if channels == 1 else 5


class LinearImageGenerator(DeepLinearGenerator):
    """The fully connected ablation: ProbeGen's deep linear MLP generator with image outputs, then tanh."""

    def __init__(self, n_probes: int, input_shape: tuple[int, ...], latent_dim: int = 32, hidden: int = 32,
                 depth: int = 2, activation: Activation | None = None) -> None:
        image_channels(input_shape)
        super().__init__(n_probes, input_shape, latent_dim, hidden, depth, activation)

    def generate(self, latents: torch.Tensor) -> torch.Tensor:
        """Probes for arbitrary latent codes [N, latent_dim] → [N, C, S, S]."""
        return torch.tanh(super().generate(latents))


class FreeImageProbes(FreeProbes):
    """Vanilla probing for images: free parameters [Q, C, S, S], initialised N(0, 1), squashed by tanh."""

    def __init__(self, n_probes: int, input_shape: tuple[int, ...]) -> None:
        image_channels(input_shape)
        super().__init__(n_probes, input_shape)

    def forward(self) -> torch.Tensor:
        return torch.tanh(self.probes)


@dataclass(frozen=True)
class ConvProbeGenConfig:
    """ProbeGen's deep linear convolutional generator for image zoos (the paper's CNN experiments)."""

    kind: ClassVar[str] = "probegen-conv"
    inputs: ClassVar[str] = "images"  # the zoos it fits: models taking images
    latent_dim: int = 32  # size of each probe's latent code
    width_mult: int = 16  # w: layer widths are 8w, 4w, 2w, w as the image grows
    n_layers: int | None = None  # None: the paper's depth, 6 for grayscale and 5 for RGB; at least 5
    activation: Activation | None = None  # None: deep linear (ProbeGen); a name: the non-linear ablation
    unit_variance_init: bool = False  # True: layer-wise rescaled init, probes start with unit pre-tanh std

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with seeded(generator):
            return ConvProbeGenerator(n_probes, input_shape, self.latent_dim, self.width_mult, self.n_layers,
                                      self.activation, self.unit_variance_init)


@dataclass(frozen=True)
class LinearImageGenConfig:
    """Ablation: a fully connected deep linear generator, latent → hidden → C·32·32, then tanh."""

    kind: ClassVar[str] = "probegen-fc"
    inputs: ClassVar[str] = "images"  # the zoos it fits: models taking images
    latent_dim: int = 32  # size of each probe's latent code
    hidden: int = 32  # hidden width (the coordinate generator's); the map's rank is at most min(latent_dim, hidden)
    depth: int = 2  # number of linear layers
    activation: Activation | None = None  # None: deep linear; a name: the non-linear ablation

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with seeded(generator):
            return LinearImageGenerator(n_probes, input_shape, self.latent_dim, self.hidden, self.depth,
                                        self.activation)


@dataclass(frozen=True)
class ImageVanillaConfig:
    """Vanilla probing for images: learn the Q probes directly (through tanh, to stay in [-1, 1])."""

    kind: ClassVar[str] = "vanilla-image"
    inputs: ClassVar[str] = "images"  # the zoos it fits: models taking images

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with seeded(generator):
            return FreeImageProbes(n_probes, input_shape)


@dataclass(frozen=True)
class ImageGaussianConfig:
    """Fixed random images, N(0, std²) clipped to the CNN input range [-1, 1]."""

    kind: ClassVar[str] = "gaussian-image"
    inputs: ClassVar[str] = "images"  # the zoos it fits: models taking images
    std: float = 0.5  # pixel noise scale; at 0.5 about 5% of pixels are clipped

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        image_channels(input_shape)
        return FixedProbes((self.std * torch.randn(n_probes, *input_shape, generator=generator)).clamp(-1, 1))
