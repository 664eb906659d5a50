"""Image probe sources: probes [Q, C, 32, 32] for CNN zoos, whose inputs are scaled to [-1, 1].

Every source here ends in [-1, 1]: the learned ones with a tanh, the fixed ones by construction. The variants follow
the paper's CNN experiments: ProbeGen's deep linear convolutional generator, a fully connected linear generator and
free (vanilla) probes as ablations, and dead-leaves images and clipped noise as fixed synthetic baselines.
This module builds on the base classes in `probes.py` and registers its configs in `PROBE_CONFIGS` there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from probegen_nb.probes import (
    _ACTIVATIONS,
    PROBE_CONFIGS,
    Activation,
    DeepLinearGenerator,
    FixedProbes,
    FreeProbes,
    ProbeSource,
    _seeded,
)

Shapes = Literal["disks", "disks+rectangles"]


def _image_channels(input_shape: tuple[int, ...], size: int | None = None) -> int:
    """C for an image input shape (C, S, S), refusing anything else with the shape quoted."""
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[1] != shape[2] or shape[0] < 1 or (size is not None and shape[1] != size):
        want = f"(C, {size}, {size})" if size is not None else "(C, S, S)"
        raise ValueError(f"image probes need input_shape {want}, got {shape}")
    return shape[0]


def _check_activation(activation: str | None) -> None:
    if activation is not None and activation not in _ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one of {sorted(_ACTIVATIONS)}")


# ---------------------------------------------------------------- learned sources


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
        channels = _image_channels(input_shape, size=32)
        n_layers = paper_conv_depth(channels) if n_layers is None else n_layers
        if n_layers < 5:
            raise ValueError(f"n_layers (={n_layers}) must be at least 5 (four upsampling layers and an output layer)")
        _check_activation(activation)
        self.n_probes, self.input_shape = n_probes, tuple(input_shape)
        self.latents = nn.Parameter(torch.randn(n_probes, latent_dim))  # [Q, Z]: z_i ~ N(0, 1), one per probe
        w = width_mult
        # (in, out, kernel, stride, padding); a 4-2-1 transposed conv doubles the size, a 3-1-1 one keeps it
        plan = [(latent_dim, 8 * w, 4, 1, 0), (8 * w, 4 * w, 4, 2, 1), (4 * w, 2 * w, 4, 2, 1)]  # 1 → 4 → 8 → 16
        plan += [(2 * w, 2 * w, 3, 1, 1)] * (n_layers - 5)  # extra depth at 16×16 (the paper's 6th layer)
        plan += [(2 * w, w, 4, 2, 1), (w, channels, 3, 1, 1)]  # 16 → 32 → 32
        layers: list[nn.Module] = []
        for i, (c_in, c_out, kernel, stride, padding) in enumerate(plan):
            if activation is not None and i > 0:
                layers.append(_ACTIVATIONS[activation]())
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding))
        self.layers = nn.Sequential(*layers)  # pre-tanh: [N, Z, 1, 1] → [N, C, 32, 32]
        if unit_variance_init:
            unit_variance(self.layers, self.latents.detach()[:, :, None, None])

    def pre_output(self, latents: torch.Tensor) -> torch.Tensor:
        """The transposed-convolution stack's output [N, C·32·32] before the tanh (affine in the latents when deep
        linear)."""
        return self.layers(latents[:, :, None, None]).flatten(1)

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
        _image_channels(input_shape)
        super().__init__(n_probes, input_shape, latent_dim, hidden, depth, activation)

    def generate(self, latents: torch.Tensor) -> torch.Tensor:
        """Probes for arbitrary latent codes [N, latent_dim] → [N, C, S, S]."""
        return torch.tanh(super().generate(latents))


class FreeImageProbes(FreeProbes):
    """Vanilla probing for images: free parameters [Q, C, S, S], initialised N(0, 1), squashed by tanh."""

    def __init__(self, n_probes: int, input_shape: tuple[int, ...]) -> None:
        _image_channels(input_shape)
        super().__init__(n_probes, input_shape)

    def forward(self) -> torch.Tensor:
        return torch.tanh(self.probes)


# ---------------------------------------------------------------- dead leaves


def sample_radii(n: int, r_min: float, r_max: float, generator: torch.Generator) -> torch.Tensor:
    """[n] radii with density ∝ r⁻³ on [r_min, r_max]: the dead-leaves law of shape sizes.

    Each octave holds a quarter as many shapes as the one below it, so each octave covers the same area: the
    model's scale invariance.
    """
    return _power_law(torch.rand(n, generator=generator), 3, r_min, r_max)


def _window_radii(n: int, size: int, r_min: float, r_max: float, generator: torch.Generator) -> torch.Tensor:
    """[n] radii of the shapes that reach a size×size image, whose centres lie within r of it.

    That is the r⁻³ law weighted by the (size + 2r)² centres that reach: size² r⁻³ + 4·size r⁻² + 4 r⁻¹, a mixture
    of three power laws. Drawing only these shapes, with centres uniform on [-r, size + r]², is exact and wastes none.
    """
    weights = torch.tensor([size**2 * _power_law_mass(3, r_min, r_max), 4 * size * _power_law_mass(2, r_min, r_max),
                            4 * _power_law_mass(1, r_min, r_max)], dtype=torch.float64)
    term = torch.multinomial(weights, n, replacement=True, generator=generator)  # [n]: which power law
    u = torch.rand(n, generator=generator)
    candidates = torch.stack([_power_law(u, p, r_min, r_max) for p in (3, 2, 1)])  # [3, n]
    return candidates.gather(0, term[None]).squeeze(0)


def _power_law(u: torch.Tensor, p: int, lo: float, hi: float) -> torch.Tensor:
    """Inverse CDF, at u ∈ [0, 1), of the density ∝ r^-p on [lo, hi]."""
    if p == 1:
        return lo * (hi / lo) ** u
    e = 1 - p
    return (lo**e + u * (hi**e - lo**e)) ** (1 / e)


def _power_law_mass(p: int, lo: float, hi: float) -> float:
    """∫ r^-p dr over [lo, hi]."""
    return math.log(hi / lo) if p == 1 else (hi ** (1 - p) - lo ** (1 - p)) / (1 - p)


def dead_leaves(n: int, channels: int, size: int, generator: torch.Generator, r_min: float = 1.0,
                r_max: float = 16.0, shapes: Shapes = "disks", textures: bool = False,
                n_shapes: int | None = None) -> torch.Tensor:
    """[n, C, size, size] dead-leaves images in [-1, 1]: random shapes dropped one over another.

    Shapes are drawn front to back, so a pixel keeps the first shape that covers it (the same law as painting back
    to front). Only shapes that reach the image are drawn (see `_window_radii`); drawing stops when every pixel is
    covered, or after `n_shapes` of them per image (pixels still bare then show a background colour). Colours are
    uniform grey (C = 1) or RGB in [-1, 1]; `textures` fills each shape with a sinusoidal grating between two
    colours. The work scales with the pixels still bare, not with the shapes drawn.
    """
    if channels < 1 or size < 1 or n < 0:
        raise ValueError(f"dead_leaves needs n >= 0, channels >= 1 and size >= 1, got {n}, {channels}, {size}")
    if not 0 < r_min < r_max:
        raise ValueError(f"radii must satisfy 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}")
    if shapes not in ("disks", "disks+rectangles"):
        raise ValueError(f"shapes {shapes!r} is not one of ['disks', 'disks+rectangles']")
    if n_shapes is not None and n_shapes < 1:
        raise ValueError(f"n_shapes (={n_shapes}) must be at least 1, or None to cover the image")
    cap = n_shapes if n_shapes is not None else 100_000  # per image; far past full cover at any sensible r_min
    coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    ys, xs = (c.flatten() for c in torch.meshgrid(coords, coords, indexing="ij"))  # [S·S] each
    out = torch.rand(n, 1, channels, generator=generator).mul(2).sub(1).repeat(1, size * size, 1)  # [n, S·S, C]
    img = torch.arange(n).repeat_interleave(size * size)  # [U]: image of each bare pixel
    pix = torch.arange(size * size).repeat(n)  # [U]: its pixel index
    drawn = 0
    while len(img) and drawn < cap:
        k = min(max(16, (1 << 22) // len(img)), 1024, cap - drawn)  # shapes this round: ~4M pixel-shape pairs
        leaves = _draw_leaves(n, k, channels, size, r_min, r_max, shapes, textures, generator)
        y, x = ys[pix][:, None], xs[pix][:, None]  # [U, 1]
        dx, dy = x - leaves["cx"][img], y - leaves["cy"][img]  # [U, k]
        inside = dx.square() + dy.square() <= leaves["r"][img].square()  # [U, k]: disks
        if shapes == "disks+rectangles":  # rectangles inscribed in the disk of radius r, rotated
            cos, sin = leaves["cos"][img], leaves["sin"][img]  # [U, k]
            along, across = (dx * cos + dy * sin).abs(), (dy * cos - dx * sin).abs()  # [U, k]: the shape's axes
            rect = (along <= leaves["half_w"][img]) & (across <= leaves["half_h"][img])
            inside = torch.where(leaves["is_rect"][img], rect, inside)
        hit = inside.any(1)  # [U]
        first = inside[hit].to(torch.uint8).argmax(1)  # [H]: the topmost covering shape of each hit pixel
        i, p = img[hit], pix[hit]
        colour = leaves["colour"][i, first]  # [H, C]
        if textures:
            along = xs[p] * leaves["fx"][i, first] + ys[p] * leaves["fy"][i, first]  # [H]: position across stripes
            wave = torch.sin(2 * math.pi * leaves["freq"][i, first] * along + leaves["phase"][i, first])
            mix = (0.5 + 0.5 * wave)[:, None]  # [H, 1] in [0, 1]
            colour = colour + mix * (leaves["colour2"][i, first] - colour)  # stays in [-1, 1]
        out[i, p] = colour
        img, pix = img[~hit], pix[~hit]
        drawn += k
    return out.reshape(n, size, size, channels).permute(0, 3, 1, 2).contiguous()


def _draw_leaves(n: int, k: int, channels: int, size: int, r_min: float, r_max: float, shapes: Shapes,
                 textures: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """k random shapes for each of n images: tensors [n, k] (colours [n, k, C])."""

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, k, *shape, generator=generator)

    r = _window_radii(n * k, size, r_min, r_max, generator).reshape(n, k)
    leaves = {"r": r, "cx": uniform(0, 1) * (size + 2 * r) - r, "cy": uniform(0, 1) * (size + 2 * r) - r,
              "colour": uniform(-1, 1, channels)}
    if shapes == "disks+rectangles":
        theta, corner = uniform(0, math.pi), uniform(math.pi / 8, 3 * math.pi / 8)  # aspect from 0.41 to 2.41
        leaves |= {"is_rect": torch.rand(n, k, generator=generator) < 0.5, "cos": theta.cos(), "sin": theta.sin(),
                   "half_w": r * corner.cos(), "half_h": r * corner.sin()}
    if textures:
        angle = uniform(0, math.pi)
        leaves |= {"colour2": uniform(-1, 1, channels), "freq": uniform(1 / 16, 1 / 4), "fx": angle.cos(),
                   "fy": angle.sin(), "phase": uniform(0, 2 * math.pi)}  # periods of 4 to 16 pixels
    return leaves


class DeadLeavesProbes(FixedProbes):
    """The paper's synthetic baseline: fixed dead-leaves images, kept as a buffer (generated, not downloaded)."""

    def __init__(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator, r_min: float = 1.0,
                 r_max: float = 16.0, shapes: Shapes = "disks", textures: bool = False,
                 n_shapes: int | None = None) -> None:
        channels = _image_channels(input_shape)
        super().__init__(dead_leaves(n_probes, channels, input_shape[1], generator, r_min, r_max, shapes, textures,
                                     n_shapes))


# ---------------------------------------------------------------- configs: one type per variant


@dataclass(frozen=True)
class ConvProbeGenConfig:
    """ProbeGen's deep linear convolutional generator for image zoos (the paper's CNN experiments)."""

    kind: ClassVar[str] = "probegen-conv"
    latent_dim: int = 32  # size of each probe's latent code
    width_mult: int = 16  # w: layer widths are 8w, 4w, 2w, w as the image grows
    n_layers: int | None = None  # None: the paper's depth, 6 for grayscale and 5 for RGB; at least 5
    activation: Activation | None = None  # None: deep linear (ProbeGen); a name: the non-linear ablation
    unit_variance_init: bool = False  # True: layer-wise rescaled init, probes start with unit pre-tanh std

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with _seeded(generator):
            return ConvProbeGenerator(n_probes, input_shape, self.latent_dim, self.width_mult, self.n_layers,
                                      self.activation, self.unit_variance_init)


@dataclass(frozen=True)
class LinearImageGenConfig:
    """Ablation: a fully connected deep linear generator, latent → hidden → C·32·32, then tanh."""

    kind: ClassVar[str] = "probegen-fc"
    latent_dim: int = 32  # size of each probe's latent code
    hidden: int = 32  # hidden width (the coordinate generator's); the map's rank is at most min(latent_dim, hidden)
    depth: int = 2  # number of linear layers
    activation: Activation | None = None  # None: deep linear; a name: the non-linear ablation

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with _seeded(generator):
            return LinearImageGenerator(n_probes, input_shape, self.latent_dim, self.hidden, self.depth,
                                        self.activation)


@dataclass(frozen=True)
class ImageVanillaConfig:
    """Vanilla probing for images: learn the Q probes directly (through tanh, to stay in [-1, 1])."""

    kind: ClassVar[str] = "vanilla-image"

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        with _seeded(generator):
            return FreeImageProbes(n_probes, input_shape)


@dataclass(frozen=True)
class DeadLeavesConfig:
    """Fixed dead-leaves images: occluding shapes with radii ∝ r⁻³, the paper's synthetic-data baseline."""

    kind: ClassVar[str] = "dead-leaves"
    r_min: float = 1.0  # smallest shape radius in pixels
    r_max: float = 16.0  # largest shape radius in pixels (half the image)
    shapes: Shapes = "disks"  # "disks+rectangles": half the shapes are rotated rectangles
    textures: bool = False  # fill shapes with sinusoidal gratings instead of flat colours
    n_shapes: int | None = None  # None: drop shapes until the image is covered; a number: stop after that many

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        return DeadLeavesProbes(n_probes, input_shape, generator, self.r_min, self.r_max, self.shapes,
                                self.textures, self.n_shapes)


@dataclass(frozen=True)
class ImageGaussianConfig:
    """Fixed random images, N(0, std²) clipped to the CNN input range [-1, 1]."""

    kind: ClassVar[str] = "gaussian-image"
    std: float = 0.5  # pixel noise scale; at 0.5 about 5% of pixels are clipped

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        _image_channels(input_shape)
        return FixedProbes((self.std * torch.randn(n_probes, *input_shape, generator=generator)).clamp(-1, 1))


IMAGE_PROBE_CONFIGS = (ConvProbeGenConfig, LinearImageGenConfig, ImageVanillaConfig, DeadLeavesConfig,
                       ImageGaussianConfig)
PROBE_CONFIGS.update({c.kind: c for c in IMAGE_PROBE_CONFIGS})  # register next to the coordinate variants
