"""Hidden-unit permutations, the weight-space symmetry of every family: reorder a hidden layer's units (its weight
rows and biases) and the next layer's weight columns the same way, and the network computes the same function.

`random_hidden_permutations` draws one permutation per model and hidden layer, `permute_hidden` applies them to
stacked params [M, …]. Training a weight-space model on permuted copies is DWSNets' "MLP + aug" baseline
(`probegen_nb.baselines.weight_mlp`); the tests check that every model's function is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.registry import ArchSpec
from probegen_nb.core.arch.siren import SirenSpec


def hidden_widths(spec: ArchSpec) -> tuple[int, ...]:
    """Units of each permutable hidden layer: a SIREN's sine layers, a CNN's convolutions (channels)."""
    if isinstance(spec, SirenSpec):
        return spec.hidden
    if isinstance(spec, CNNSpec):
        return spec.channels
    raise TypeError(f"no hidden-unit permutation for architecture {type(spec).__name__}")


def tied_layers(spec: ArchSpec) -> tuple[int, ...]:
    """For each hidden layer, the first layer it must share its permutation with (itself when free).

    A CNN's residual link adds layer r's units to layer i's, so the two are permuted together; links between layers
    of different widths (CNN Wild Park adds only the first min(channels) channels) have no such shared permutation."""
    widths = hidden_widths(spec)
    root = list(range(len(widths)))

    def find(i: int) -> int:
        return i if root[i] == i else find(root[i])

    for i, r in enumerate(spec.residual if isinstance(spec, CNNSpec) else ()):
        if r < 0:
            continue
        if widths[r] != widths[i]:
            raise ValueError(f"CNNSpec.residual[{i}] (={r}) adds layer {r}'s {widths[r]} channels to layer {i}'s "
                             f"{widths[i]}: hidden-unit permutations of layers of different widths are not supported")
        a, b = sorted((find(i), find(r)))
        root[b] = a
    return tuple(find(i) for i in range(len(widths)))


def random_hidden_permutations(spec: ArchSpec, n_models: int, generator: torch.Generator | None = None,
                               device: torch.device | str | None = None) -> list[torch.Tensor]:
    """One uniformly random permutation per model and hidden layer: [M, width_l] int64 for layer l (drawn on the
    CPU from `generator`, then moved to `device`); layers tied by a residual link get the same one."""
    drawn: dict[int, torch.Tensor] = {}
    perms = []
    for width, tie in zip(hidden_widths(spec), tied_layers(spec)):
        if tie not in drawn:
            drawn[tie] = torch.rand(n_models, width, generator=generator).argsort(dim=1).to(device)  # [M, width]
        perms.append(drawn[tie])
    return perms


def permute_hidden(spec: ArchSpec, params: Mapping[str, torch.Tensor],
                   perms: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """params [M, …] with hidden layer l's units reordered per model: unit j of model m becomes its unit
    perms[l][m, j], in that layer's weights and bias and in the next layer's weight columns."""
    widths = hidden_widths(spec)
    if len(perms) != len(widths) or any(tuple(p.shape[1:]) != (w,) for p, w in zip(perms, widths)):
        raise ValueError(f"permute_hidden: expected one [M, width] permutation per hidden layer {widths}, got shapes "
                         f"{[tuple(p.shape) for p in perms]}")
    if isinstance(spec, SirenSpec):
        layer, nxt = (lambda i: f"seq.{i}"), (lambda i: f"seq.{i + 1}.weight")
    else:
        layer = lambda i: f"layers.{i}"
        nxt = lambda i: f"layers.{i + 1}.weight" if i + 1 < len(widths) else "fc.weight"
    out = dict(params)
    for i, perm in enumerate(perms):
        for name in (f"{layer(i)}.weight", f"{layer(i)}.bias"):
            out[name] = take_per_model(out[name], perm, dim=1)  # the layer's units: rows / output channels
        out[nxt(i)] = take_per_model(out[nxt(i)], perm, dim=2)  # the next layer's inputs: columns / input channels
    return out


def take_per_model(x: torch.Tensor, perm: torch.Tensor, dim: int) -> torch.Tensor:
    """x [M, …] with its axis `dim` reordered per model: out[m, …, j, …] = x[m, …, perm[m, j], …] (perm [M, n])."""
    shape = [1] * x.dim()
    shape[0], shape[dim] = x.shape[0], x.shape[dim]
    return x.gather(dim, perm.reshape(shape).expand_as(x))
