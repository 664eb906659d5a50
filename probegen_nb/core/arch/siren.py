"""SIREN INRs (the public MNIST/FMNIST INR zoos): the spec, the reference module, the batched forward of M models,
and what an INR draws on its pixel grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
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


def siren_forward(spec: SirenSpec, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x: shared [P, D] or per-model [M, P, D] → [M, P, K]."""
    n = spec.n_layers
    h = x
    for i in range(n):
        w = params[f"seq.{i}.weight"]  # [M, out, in]
        b = params[f"seq.{i}.bias"]  # [M, out]
        if i < n - 1:  # sin(w0·(Wh + b)): scale the small weights, not the large activations
            w, b = spec.w0 * w, spec.w0 * b
        if h.dim() == 2:  # shared inputs [P, D]: broadcast them over models without copying
            h = h.expand(w.shape[0], *h.shape)
        h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))  # [M, P, out]
        if i < n - 1:
            h = torch.sin(h)
    return h + spec.out_offset


def pixel_grid(height: int, width: int) -> torch.Tensor:
    """[H·W, 2] (x, y) coordinates in [-1, 1]², row-major, so output p is pixel (p // W, p % W)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


@torch.no_grad()
def reconstruct(spec: SirenSpec, params: Mapping[str, torch.Tensor], height: int = 28,
                width: int = 28) -> np.ndarray:
    """The images that M INRs (params [M, …]) draw on the height×width pixel grid: [M, H, W] floats clipped to
    [0, 1]."""
    if not isinstance(spec, SirenSpec):
        raise TypeError(f"reconstruct draws SIREN INRs; got a {type(spec).__name__} zoo")
    coords = pixel_grid(height, width).to(next(iter(params.values())).device)
    out = siren_forward(spec, params, coords)  # [M, H·W, 1]
    return out.reshape(-1, height, width).clamp(0, 1).cpu().numpy()
