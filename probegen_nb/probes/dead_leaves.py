"""Dead-leaves images (occluding shapes with radii ∝ r⁻³), the paper's synthetic-data baseline for image zoos.

Written here rather than taken from a library: no maintained package generates dead-leaves images with torch
generators, exact window sampling and the shape/texture options the ablations need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from probegen_nb.probes.base import FixedProbes, ProbeSource, image_channels

Shapes = Literal["disks", "disks+rectangles"]


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
        channels = image_channels(input_shape)
        super().__init__(dead_leaves(n_probes, channels, input_shape[1], generator, r_min, r_max, shapes, textures,
                                     n_shapes))


@dataclass(frozen=True)
class DeadLeavesConfig:
    """Fixed dead-leaves images: occluding shapes with radii ∝ r⁻³, the paper's synthetic-data baseline."""

    kind: ClassVar[str] = "dead-leaves"
    inputs: ClassVar[str] = "images"  # the zoos it fits: models taking images
    r_min: float = 1.0  # smallest shape radius in pixels
    r_max: float = 16.0  # largest shape radius in pixels (half the image)
    shapes: Shapes = "disks"  # "disks+rectangles": half the shapes are rotated rectangles
    textures: bool = False  # fill shapes with sinusoidal gratings instead of flat colours
    n_shapes: int | None = None  # None: drop shapes until the image is covered; a number: stop after that many

    def build(self, n_probes: int, input_shape: tuple[int, ...], generator: torch.Generator) -> ProbeSource:
        return DeadLeavesProbes(n_probes, input_shape, generator, self.r_min, self.r_max, self.shapes,
                                self.textures, self.n_shapes)
