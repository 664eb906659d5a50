"""Every architecture family by kind: the spec union, specs read back from JSON, and the forward dispatch.

The one module that knows every family; everything else takes an `ArchSpec` and calls `forward`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from probegen_nb.core.arch.callable import CallableSpec, callable_forward
from probegen_nb.core.arch.cnn import CNNSpec, cnn_forward
from probegen_nb.core.arch.module import ModuleSpec, module_forward
from probegen_nb.core.arch.siren import SirenSpec, siren_forward

ArchSpec = SirenSpec | CNNSpec | ModuleSpec | CallableSpec  # callables are never read from a file


_SPECS: dict[str, type] = {SirenSpec.kind: SirenSpec, CNNSpec.kind: CNNSpec, ModuleSpec.kind: ModuleSpec}


def spec_from_dict(d: dict[str, Any]) -> ArchSpec:
    """Inverse of `spec.to_dict()`; rejects unknown kinds and fields with the offending value quoted."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _SPECS:
        raise ValueError(f"unknown architecture kind {kind!r}; known: {sorted(_SPECS)}")
    try:
        return _SPECS[kind](**d)
    except TypeError as e:
        raise ValueError(f"bad {kind!r} architecture spec {d}: {e}") from None


def forward(spec: ArchSpec, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Dispatch to the architecture family's batched forward. Returns [M, P, K]."""
    if isinstance(spec, SirenSpec):
        return siren_forward(spec, params, x)
    if isinstance(spec, CNNSpec):
        return cnn_forward(spec, params, x)
    if isinstance(spec, ModuleSpec):
        return module_forward(spec, params, x)
    if isinstance(spec, CallableSpec):
        return callable_forward(spec, params, x)
    raise TypeError(f"no batched forward for architecture {type(spec).__name__}")
