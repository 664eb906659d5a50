"""Batched functional forward: evaluate M models of one architecture at once from stacked weights.

This is the performance primitive of the toolkit: zoo building, probing and every notebook call it.
Differentiable w.r.t. both the inputs (probes are learned through it) and the parameters (INR fitting).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from probegen_nb.arch import ArchSpec, SirenSpec

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


def forward(spec: ArchSpec, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Dispatch to the architecture family's batched forward. Returns [M, P, K]."""
    if isinstance(spec, SirenSpec):
        return siren_forward(spec, params, x)
    raise TypeError(f"no batched forward for architecture {type(spec).__name__}")
