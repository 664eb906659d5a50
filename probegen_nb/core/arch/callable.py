"""Black-box models: a zoo whose members are only callables, probed through their outputs alone.

The zoo's one "parameter" is each model's index (`model_index` [M], int64), so subsets, splits and batches of the
zoo carry it like any weight; the forward asks the callable for those models' outputs on the probes. A callable that
is not differentiable (a served model, numpy, no_grad) is given detached probes, and `ProbingModel` refuses to learn
probes through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

# (model indices [B] int64, probes [Q, *input_shape]) → outputs [B, Q, K]
BatchedCallable = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class CallableSpec:
    """Models known only by `fn(model_index, probes) → outputs`; `differentiable=False` where gradients cannot flow
    (then only fixed or transferred probes can probe them)."""

    kind: ClassVar[str] = "callable"
    fn: BatchedCallable
    input_shape: tuple[int, ...]
    out_dim: int
    differentiable: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"model_index": ()}

    def n_params(self) -> int:
        return 0

    def to_dict(self) -> dict[str, Any]:
        raise TypeError("a black-box zoo's models are Python callables: it cannot be written to a zoo folder")


def from_functions(functions: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> BatchedCallable:
    """One batched callable from one function per model (probes [Q, …] → [Q, K]): each model asked in turn, as a
    black box can only be."""
    def fn(index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.as_tensor(functions[int(i)](x)).to(x.device) for i in index.tolist()])
    return fn


def callable_forward(spec: CallableSpec, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x: shared probes [Q, *input_shape] → [B, Q, K] for the models `params["model_index"]` [B]."""
    index = params["model_index"]
    if x.dim() != len(spec.input_shape) + 1:
        raise ValueError(f"black-box models take shared probes [Q, *{spec.input_shape}], got shape {tuple(x.shape)}")
    out = spec.fn(index, x if spec.differentiable else x.detach())
    if tuple(out.shape) != (len(index), x.shape[0], spec.out_dim):
        raise ValueError(f"the black-box callable returned shape {tuple(out.shape)} for {len(index)} models and "
                         f"{x.shape[0]} probes, expected {(len(index), x.shape[0], spec.out_dim)}")
    return out
