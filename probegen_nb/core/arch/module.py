"""Zoos of any `nn.Module` architecture: a spec naming a registered constructor and its JSON keyword arguments, and
the batched forward of M models through `torch.func.functional_call` under `torch.func.vmap`.

Users register their class in code (`register_architecture("my_mlp", MyMLP)`); zoo.json names it. Loading a zoo never
imports or executes anything a file names: a name not registered in this process is refused, listing the known ones.
A zoo holds the floating-point entries of the state_dict (parameters and buffers such as BatchNorm's running
statistics); integer buffers (`num_batches_tracked`) play no part in an eval-mode forward and stay the template's.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call, vmap

from probegen_nb.core.arch.reference import MLP, SmallResNet

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str, constructor: Callable[..., nn.Module]) -> None:
    """Make `ModuleSpec(name, kwargs, …)` build `constructor(**kwargs)`. Registering a name again with another
    constructor is refused (a zoo's spec must mean one architecture), unless it is the same class redefined (a notebook
    cell run twice)."""
    old = _ARCHITECTURES.get(name)
    if old is not None and old is not constructor and _qualname(old) != _qualname(constructor):
        raise ValueError(f"architecture {name!r} is already registered as {_qualname(old)}")
    _ARCHITECTURES[name] = constructor
    template.cache_clear()


def registered_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def _qualname(f: Callable[..., Any]) -> str:
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


@dataclass(frozen=True)
class ModuleSpec:
    """A registered `nn.Module` architecture: `name` in the registry, its JSON `kwargs`, the shape of one input and the
    number of outputs (the module maps [N, *input_shape] to [N, out_dim])."""

    kind: ClassVar[str] = "module"
    name: str
    kwargs: Mapping[str, Any]
    input_shape: tuple[int, ...]
    out_dim: int

    def __post_init__(self) -> None:
        if self.name not in _ARCHITECTURES:
            raise ValueError(f"architecture {self.name!r} is not registered (register_architecture(name, cls) in "
                             f"code first); registered: {registered_architectures()}")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        try:
            text = json.dumps(dict(self.kwargs), sort_keys=True)
        except TypeError as e:
            raise ValueError(f"ModuleSpec {self.name!r}: kwargs must be JSON values ({e})") from None
        object.__setattr__(self, "kwargs", json.loads(text))  # lists for tuples, as read back from zoo.json
        if int(self.out_dim) < 1 or not self.input_shape or min(self.input_shape) < 1:
            raise ValueError(f"ModuleSpec {self.name!r} needs positive sizes, got input_shape={self.input_shape}, "
                             f"out_dim={self.out_dim}")

    def __hash__(self) -> int:  # kwargs is a dict: hash its canonical JSON
        return hash((self.name, json.dumps(self.kwargs, sort_keys=True), self.input_shape, self.out_dim))

    def build_module(self) -> nn.Module:
        """A fresh, randomly initialised model of this architecture (the constructor's own init)."""
        return _ARCHITECTURES[self.name](**self.kwargs)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-model shapes of the state_dict's floating-point entries (parameters and float buffers), keyed by name."""
        return dict(template(self).shapes)

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "kwargs": dict(self.kwargs),
                "input_shape": list(self.input_shape), "out_dim": self.out_dim}


@dataclass(frozen=True)
class Template:
    """One module of the architecture, built once, in eval mode: `functional_call` runs it with each model's tensors.
    `extras` are its state it keeps (integer and non-persistent buffers), shared by all models."""

    module: nn.Module
    shapes: dict[str, tuple[int, ...]]
    extras: dict[str, torch.Tensor]


@functools.lru_cache(maxsize=64)
def template(spec: ModuleSpec) -> Template:
    """The spec's template module (built once per spec), checked to map [1, *input_shape] to [1, out_dim]."""
    module = spec.build_module().eval()  # eval: BatchNorm uses its running statistics, dropout is off
    state = module.state_dict(keep_vars=True)
    shapes = {k: tuple(v.shape) for k, v in state.items() if v.is_floating_point()}
    named = dict(module.named_parameters(remove_duplicate=False)) | dict(module.named_buffers(remove_duplicate=False))
    extras = {k: v.detach() for k, v in named.items() if k not in shapes}
    with torch.no_grad():
        out = module(torch.zeros(1, *spec.input_shape))
    if tuple(out.shape) != (1, spec.out_dim):
        raise ValueError(f"architecture {spec.name!r} with {spec.kwargs} maps an input of shape "
                         f"{(1, *spec.input_shape)} to {tuple(out.shape)}, not (1, {spec.out_dim}) as the spec says")
    return Template(module, shapes, extras)


def module_forward(spec: ModuleSpec, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x: shared [P, *input_shape] or per-model [M, P, *input_shape] → [M, P, K]: every model's tensors (params and
    float buffers, stacked [M, …]) through the template, vectorised over the model axis by `vmap`."""
    t = template(spec)
    extras = {k: v.to(x.device) for k, v in t.extras.items()}
    stacked = {k: params[k] for k in t.shapes}  # [M, …] each

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(t.module, (p, extras), (xi,))  # [P, K]

    per_model = x.dim() == len(spec.input_shape) + 2
    return vmap(one, in_dims=(0, 0 if per_model else None))(stacked, x)  # [M, P, K]


register_architecture("mlp", MLP)
register_architecture("small_resnet", SmallResNet)
