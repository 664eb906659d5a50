"""Plain CNNs (Small CNN Zoo, CNN Wild Park): the spec, the reference module and the batched forward of M models.

The M models become the groups of one grouped convolution; shared inputs make the first layer one dense
convolution over all models' filters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

CNNActivation = Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "none"]


CNN_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "leaky_relu": F.leaky_relu,
    "none": lambda x: x,
}


T = TypeVar("T")


def _per_layer(name: str, value: T | tuple[T, ...] | list[T], n: int) -> tuple[T, ...]:
    """One value per layer: a tuple or list as given (it must have n entries), anything else repeated n times."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(values) != n:
        raise ValueError(f"CNNSpec.{name} has {len(values)} entries, expected one per layer ({n})")
    return values


@dataclass(frozen=True, init=False)
class CNNSpec:
    """Plain CNN: convolutions (each with its own kernel, stride, padding, activation), global average pooling,
    one dense layer. Covers the Small CNN Zoo (3 × conv 3×3 stride 2, 16 channels) and CNN Wild Park (2–5 layers,
    4–32 channels, kernels 3/5/7, stride 1, per-layer activations, residual connections).

    `residual[i] = r ≥ 0` adds layer r's post-activation output to layer i's convolution output (first min(channels)
    channels) before layer i's activation, as in CNN Wild Park; -1 for none.

    Every per-layer field is stored as a tuple with one entry per layer; the constructor also takes a single value
    for every layer (and lists, as read back from JSON).
    """

    kind: ClassVar[str] = "cnn"
    in_channels: int  # 1 for grayscale (CIFAR10-GS, MNIST), 3 for RGB
    channels: tuple[int, ...]  # output channels of each convolution
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    activation: tuple[CNNActivation, ...]
    residual: tuple[int, ...]
    out_dim: int  # classes
    image_size: int  # inputs are in_channels × image_size × image_size, scaled to [-1, 1]

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] | list[int] = (16, 16, 16),
                 kernel_size: int | tuple[int, ...] | list[int] = 3, stride: int | tuple[int, ...] | list[int] = 2,
                 padding: int | tuple[int, ...] | list[int] = 1,
                 activation: str | tuple[str, ...] | list[str] = "relu",  # checked against CNN_ACTIVATIONS here
                 residual: int | tuple[int, ...] | list[int] = -1, out_dim: int = 10, image_size: int = 32) -> None:
        n = len(channels)
        per_layer = {name: _per_layer(name, value, n) for name, value in (
            ("channels", channels), ("kernel_size", kernel_size), ("stride", stride), ("padding", padding),
            ("activation", activation), ("residual", residual))}
        fields = {"in_channels": in_channels, **per_layer, "out_dim": out_dim, "image_size": image_size}
        for name, value in fields.items():  # frozen: the fields are set once, here
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
    def small_cnn_zoo(cls, in_channels: int = 1, activation: CNNActivation = "relu", padding: int = 1) -> CNNSpec:
        """The Small CNN Zoo architecture (Unterthiner et al. 2020): 4,970 parameters for one input channel.
        `padding` 0 is the public Keras zoo's "valid" (32 → 15 → 7 → 3); 1 (the default here, kept for the specs
        already saved) is what the public PyTorch rebuilds (NFN, ProbeGen) use (32 → 16 → 8 → 4)."""
        return cls(in_channels, (16, 16, 16), (3, 3, 3), (2, 2, 2), (padding,) * 3, (activation,) * 3, (-1, -1, -1))

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

    def without_activations(self) -> CNNSpec:
        """The layer shapes alone (every activation "none"): CNNs equal here share one batched forward
        (`cnn_forward_runs`)."""
        none: CNNActivation = "none"
        return replace(self, activation=(none,) * self.n_layers)

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
        spec = self.spec
        kept: dict[int, torch.Tensor] = {}  # post-activation outputs, by layer
        for i, layer in enumerate(self.layers):
            x = layer(x)
            r = spec.residual[i]
            if r >= 0:
                ch = min(spec.channels[r], spec.channels[i])
                x = torch.cat([x[:, :ch] + kept[r][:, :ch], x[:, ch:]], dim=1)
            x = CNN_ACTIVATIONS[spec.activation[i]](x)
            kept[i] = x
        return self.fc(x.mean(dim=(2, 3)))


# CPU: inputs go through the zoo in tiles (of shared probes, or of each model's own images) whose largest activation
# [tile, M·O, H, W] stays about this size. One grouped convolution over all M models and all inputs streams
# activations far larger than the caches (e.g. 67 MB at 32 models × 128 probes) and ran 2.4× slower than a per-model
# loop; tiles of about 4 MiB made probing's forward + backward 1.3× (32 models) to 1.8× (256) faster than that loop,
# and zoo training 1.1× (32 images a model) to 4.7× (512 images a model) faster than without tiles (AMD EPYC,
# 2 cores, 1 MiB L2 per core; benchmarks/bench_probe_training.py, bench_cnn_zoo.py). On a GPU one launch over
# everything is best, so no tiles there.
PROBE_TILE_BYTES = 4 * 2**20


def probe_tile(spec: CNNSpec, n_models: int, n_probes: int, device: torch.device) -> int:
    """How many inputs (probes, or images per model) one tile of `cnn_forward` takes (all of them on a GPU)."""
    if device.type != "cpu":  # GPU: one tile, a single launch over all inputs
        return n_probes
    per_probe = 4 * n_models * max(c * s * s for c, s in zip(spec.channels, spec.feature_sizes()))  # fp32 bytes
    return max(1, min(n_probes, PROBE_TILE_BYTES // per_probe))


# CPU: a zoo larger than this goes through cnn_forward in chunks of this many models (each chunk tiled as above):
# 256 Small CNNs on 128 shared probes, forward + backward, took 462 ms as one chunk (tiles of one probe) and 334 ms
# as chunks of 32 (16: 364, 64: 365; AMD EPYC, 2 cores). On a GPU the whole zoo goes as one chunk.
MODEL_CHUNK = 32
# CPU: a first layer on shared inputs with at most this many taps (in_channels · k²) runs as unfold + one batched
# matmul instead of oneDNN's convolution. Forward + backward, 512 output channels (32 Small CNNs): 3.4× faster at
# 1·3² taps, 1.6× at 3·3², 1.25× at 3·5², and 0.9–1.1× at 3·7² (AMD EPYC, 2 cores). A GPU always runs F.conv2d.
UNFOLD_MAX_TAPS = 75


def cnn_forward(spec: CNNSpec, params: Mapping[str, torch.Tensor], x: torch.Tensor,
                after_activation: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """x: shared [P, C, H, W] or per-model [M, P, C, H, W] → logits [M, P, K].

    The M models become the groups of one grouped convolution: activations live as [P, M·channels, H, W].
    Inputs go in tiles along P on the CPU (`probe_tile`), so `after_activation` must treat inputs independently;
    without it, a zoo of more than `MODEL_CHUNK` models on shared inputs also goes in chunks of models.
    `after_activation(i, h)` (e.g. the zoo builder's per-model dropout, or `cnn_forward_runs`'s activations)
    transforms layer i's activations h [P, M·O, H', W'].
    """
    m = params["fc.weight"].shape[0]
    if x.device.type == "cpu" and after_activation is None and x.dim() == 4 and m > MODEL_CHUNK:  # GPU: one chunk
        chunks = [{k: v[i:i + MODEL_CHUNK] for k, v in params.items()} for i in range(0, m, MODEL_CHUNK)]
        return torch.cat([cnn_forward(spec, chunk, x) for chunk in chunks])
    axis = x.dim() - 4  # the P axis: 0 for shared inputs, 1 for per-model ones
    tile = probe_tile(spec, m, x.shape[axis], x.device)
    if tile < x.shape[axis]:
        return torch.cat([_cnn_forward(spec, params, xs, after_activation) for xs in x.split(tile, dim=axis)], dim=1)
    return _cnn_forward(spec, params, x, after_activation)


def _first_layer_shared(spec: CNNSpec, w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Layer 0 of all M models on shared inputs x [P, C, H, W] → [P, M·O, H', W']: one convolution with all models'
    filters, as unfold + a batched matmul on the CPU for small kernels (`UNFOLD_MAX_TAPS`)."""
    k, stride, padding = spec.kernel_size[0], spec.stride[0], spec.padding[0]
    if x.device.type != "cpu" or spec.in_channels * k * k > UNFOLD_MAX_TAPS:  # GPU: always cuDNN's convolution
        return F.conv2d(x, w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=stride, padding=padding)
    size = spec.feature_sizes()[0]
    cols = F.unfold(x, k, padding=padding, stride=stride)  # [P, C·k·k, H'·W']
    p, taps, n_out = len(x), cols.shape[1], w.shape[0] * w.shape[1]
    out = torch.baddbmm(b.reshape(1, n_out, 1).expand(p, -1, cols.shape[2]),
                        w.reshape(1, n_out, taps).expand(p, -1, -1), cols)  # [P, M·O, H'·W']
    return out.view(p, n_out, size, size)


def _cnn_forward(spec: CNNSpec, params: Mapping[str, torch.Tensor], x: torch.Tensor,
                 after_activation: Callable[[int, torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    m = params["fc.weight"].shape[0]
    shared = x.dim() == 4  # shared inputs: the first layer is one ordinary convolution with all models' filters
    h = x if shared else x.transpose(0, 1).reshape(x.shape[1], m * spec.in_channels, *x.shape[3:])  # [P, M·C, H, W]
    kept: dict[int, torch.Tensor] = {}
    for i in range(spec.n_layers):
        w = params[f"layers.{i}.weight"]  # [M, O, C, k, k]
        b = params[f"layers.{i}.bias"]  # [M, O]
        if i == 0 and shared:
            h = _first_layer_shared(spec, w, b, h)  # [P, M·O, H', W']
        else:
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=spec.stride[i],
                         padding=spec.padding[i], groups=m)  # [P, M·O, H', W']
        r = spec.residual[i]
        if r >= 0:
            ch = min(spec.channels[r], spec.channels[i])
            h5, k5 = h.unflatten(1, (m, -1)), kept[r].unflatten(1, (m, -1))  # [P, M, O, H, W]
            h = torch.cat([h5[:, :, :ch] + k5[:, :, :ch], h5[:, :, ch:]], dim=2).flatten(1, 2)
        h = CNN_ACTIVATIONS[spec.activation[i]](h)
        if after_activation is not None:
            h = after_activation(i, h)
        if i in spec.residual:
            kept[i] = h
    pooled = h.mean(dim=(2, 3)).unflatten(1, (m, -1))  # [P, M, O]
    return torch.einsum("pmi,moi->mpo", pooled, params["fc.weight"]) + params["fc.bias"][:, None, :]  # [M, P, K]


def cnn_forward_runs(specs: Sequence[CNNSpec], counts: Sequence[int], params: Mapping[str, torch.Tensor],
                     x: torch.Tensor) -> torch.Tensor:
    """CNNs that differ only in their activations as one batched forward: `counts[j]` consecutive models of
    `specs[j]` (params [sum(counts), …]) → logits [M, P, K], equal to `cnn_forward` of each run, concatenated.

    The convolutions run once for all models; layer i's activation is applied run by run, each run on its own
    channel group of h [P, M·O, H, W] (adjacent runs with the same activation together).
    """
    shared = specs[0].without_activations()
    if any(s.without_activations() != shared for s in specs):
        raise ValueError("cnn_forward_runs: the architectures differ in more than their activations")

    def activate(i: int, h: torch.Tensor) -> torch.Tensor:
        names: list[CNNActivation] = []  # one entry per stretch of adjacent runs with the same activation
        widths: list[int] = []
        for spec, n in zip(specs, counts):
            if names and names[-1] == spec.activation[i]:
                widths[-1] += n * spec.channels[i]
            else:
                names.append(spec.activation[i])
                widths.append(n * spec.channels[i])
        out = [CNN_ACTIVATIONS[a](chunk) for a, chunk in zip(names, h.split(widths, dim=1))]
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)

    return cnn_forward(shared, params, x, after_activation=activate)
