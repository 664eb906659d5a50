"""Batched functional forward: evaluate M models of one architecture at once from stacked weights.

This is the performance primitive of the toolkit: zoo building, probing and every notebook call it.
Differentiable w.r.t. both the inputs (probes are learned through it) and the parameters (INR fitting).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from probegen_nb.arch import CNN_ACTIVATIONS, ArchSpec, CNNSpec, SirenSpec

Params = Mapping[str, torch.Tensor]  # name -> [M, *shape]


def siren_forward(spec: SirenSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
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


def cnn_forward(spec: CNNSpec, params: Params, x: torch.Tensor, dropout: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """x: shared [P, C, H, W] or per-model [M, P, C, H, W] → logits [M, P, K].

    The M models become the groups of one grouped convolution: activations live as [P, M·channels, H, W].
    `dropout` [M] (training only) drops each model's conv activations with its own rate.
    """
    m = params["fc.weight"].shape[0]
    if x.dim() == 4:  # shared inputs: the first layer is one ordinary convolution with all models' filters
        h, groups = x, 1
    else:
        p = x.shape[1]
        h, groups = x.transpose(0, 1).reshape(p, m * spec.in_channels, *x.shape[3:]), m  # [P, M·C, H, W]
    kept: dict[int, torch.Tensor] = {}
    for i in range(spec.n_layers):
        w = params[f"layers.{i}.weight"]  # [M, O, C, k, k]
        b = params[f"layers.{i}.bias"]  # [M, O]
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=spec.stride[i], padding=spec.padding[i],
                     groups=groups)  # [P, M·O, H', W']
        groups = m
        r = spec.residual[i]
        if r >= 0:
            ch = min(spec.channels[r], spec.channels[i])
            h5, k5 = h.unflatten(1, (m, -1)), kept[r].unflatten(1, (m, -1))  # [P, M, O, H, W]
            h = torch.cat([h5[:, :, :ch] + k5[:, :, :ch], h5[:, :, ch:]], dim=2).flatten(1, 2)
        h = CNN_ACTIVATIONS[spec.activation[i]](h)
        if dropout is not None:
            h = _dropout(h, dropout.repeat_interleave(spec.channels[i])[None, :, None, None], generator)
        if i in spec.residual:
            kept[i] = h
    pooled = h.mean(dim=(2, 3)).unflatten(1, (m, -1))  # [P, M, O]
    return torch.einsum("pmi,moi->mpo", pooled, params["fc.weight"]) + params["fc.bias"][:, None, :]  # [M, P, K]


def _dropout(h: torch.Tensor, rate: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout with a rate per channel (rates quantised to 1/256). Random bytes come eight to an int64
    draw: the random number generator, not the arithmetic, is what dropout costs on a CPU."""
    n = h.numel()
    bits = torch.randint(-2**63, 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, generator=generator, device="cpu")
    u8 = bits.view(torch.uint8)[:n].view(h.shape).to(h.device)  # uniform in 0..255
    threshold = (rate * 256).round().clamp(0, 255).to(torch.uint8)
    return torch.where(u8 >= threshold, h / (1 - threshold.float() / 256), 0.0)


def forward(spec: ArchSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Dispatch to the architecture family's batched forward. Returns [M, P, K]."""
    if isinstance(spec, SirenSpec):
        return siren_forward(spec, params, x)
    if isinstance(spec, CNNSpec):
        return cnn_forward(spec, params, x)
    raise TypeError(f"no batched forward for architecture {type(spec).__name__}")
