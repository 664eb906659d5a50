"""The zoo type: M models of one architecture as stacked tensors [M, …] plus a table row per model, validated
once where it is built; `MixedZoo` for several architectures with the same inputs and outputs.

The folder format lives in `zoo_io`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from probegen_nb.core.arch.callable import BatchedCallable, CallableSpec
from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.registry import ArchSpec

SPLITS = ("train", "val", "test")


class ZooFormatError(ValueError):
    """A zoo folder that does not follow the format; the message names the folder, file and first bad model."""


@dataclass(frozen=True)
class Task:
    """What the zoo's models are labelled with: a class (`n_classes` set) or a scalar to regress."""

    label_column: str = "label"
    n_classes: int | None = 10  # None for scalar labels (e.g. test accuracy)

    @property
    def is_classification(self) -> bool:
        return self.n_classes is not None


@dataclass(frozen=True)
class Zoo:
    """M models of one architecture: stacked parameters [M, …] plus one table row per model."""

    spec: ArchSpec
    params: dict[str, torch.Tensor]
    table: pd.DataFrame
    task: Task = Task()
    info: dict[str, Any] = field(default_factory=dict)  # recipe, seed, software versions

    def __post_init__(self) -> None:
        validate(self)

    def __repr__(self) -> str:
        """One line (the default dataclass repr printed every weight tensor: kilobytes for a notebook cell)."""
        return describe_zoo(self)

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    def from_state_dicts(cls, state_dicts: Sequence[Mapping[str, Any]], spec: ArchSpec, table: pd.DataFrame,
                         task: Task = Task(), info: dict[str, Any] | None = None) -> Zoo:
        """A zoo of one model per state_dict (row i of `table` describes model i), checked like any zoo; the first
        model whose names or shapes differ from the spec's is named. Integer buffers (BatchNorm's
        `num_batches_tracked`) are left out: no eval-mode forward reads them."""
        table = table.reset_index(drop=True)
        if len(state_dicts) != len(table):
            raise ZooFormatError(f"{len(state_dicts)} models but the table has {len(table)} rows")
        ids = table["model_id"].tolist() if "model_id" in table else range(len(table))
        kept = [{k: v for k, v in sd.items() if not (isinstance(v, torch.Tensor) and not v.is_floating_point())}
                for sd in state_dicts]
        params = stack_state_dicts(kept, spec, [f"model_id {i} (row {r})" for r, i in enumerate(ids)])
        return cls(spec, params, table, task, dict(info or {}))

    @classmethod
    def from_modules(cls, models: Sequence[torch.nn.Module], spec: ArchSpec, table: pd.DataFrame,
                     task: Task = Task(), info: dict[str, Any] | None = None) -> Zoo:
        """A zoo of `nn.Module`s of one architecture (e.g. `ModuleSpec("my_mlp", kwargs, input_shape, out_dim)`):
        their parameters and buffers, stacked along a leading model axis (see `from_state_dicts`)."""
        return cls.from_state_dicts([m.state_dict() for m in models], spec, table, task, info)

    @classmethod
    def from_callable(cls, fn: BatchedCallable, input_shape: Sequence[int], out_dim: int, table: pd.DataFrame,
                      task: Task = Task(), differentiable: bool = True, info: dict[str, Any] | None = None) -> Zoo:
        """A black-box zoo: row i of `table` is the model `fn` answers for index i (see `core.arch.callable`)."""
        spec = CallableSpec(fn, tuple(input_shape), out_dim, differentiable)
        return cls(spec, {"model_index": torch.arange(len(table))}, table.reset_index(drop=True), task,
                   dict(info or {}))

    @property
    def labels(self) -> torch.Tensor:
        """[M] int64 class ids or float32 scalars, per the task."""
        col = self.table[self.task.label_column].to_numpy()
        return torch.tensor(col, dtype=torch.int64 if self.task.is_classification else torch.float32)  # a copy

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> Zoo:
        """Models at the given row positions, in that order."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return Zoo(self.spec, {k: v[idx.to(v.device)] for k, v in self.params.items()},
                   self.table.iloc[idx.numpy()].reset_index(drop=True), self.task, self.info)

    def split(self, name: str) -> Zoo:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.subset(np.flatnonzero(self.table["split"].to_numpy() == name))

    def to(self, device: torch.device | str) -> Zoo:
        return Zoo(self.spec, {k: v.to(device) for k, v in self.params.items()}, self.table, self.task, self.info)

    def model_params(self, i: int) -> dict[str, torch.Tensor]:
        """One model's state_dict, loadable into `spec.build_module()`."""
        return {k: v[i] for k, v in self.params.items()}

    @property
    def specs(self) -> tuple[ArchSpec, ...]:
        return (self.spec,)

    @property
    def device(self) -> torch.device:
        """Where the zoo's tensors are."""
        return next(iter(self.params.values())).device

    def batches(self, index: torch.Tensor, by_layer_shapes: bool = True) -> list[Batch]:
        """The models at row positions `index` as one batched forward (see `MixedZoo.batches`)."""
        return [Batch((self.spec,), (len(index),), {k: v[index] for k, v in self.params.items()})]

    def map_rows(self, index: torch.Tensor, fn: Callable[[Batch], torch.Tensor], row_shape: Sequence[int],
                 by_layer_shapes: bool = False) -> torch.Tensor:
        """[len(index), *row_shape]: fn on the models at row positions `index`, in index order (see
        `MixedZoo.map_rows`)."""
        return map_rows(self, index, fn, row_shape, by_layer_shapes)


@dataclass(frozen=True)
class Batch:
    """Models that run as one batched forward: runs of consecutive models, `counts[j]` of architecture `specs[j]`
    (architectures with the same `layer_shapes`), their stacked params [sum(counts), …], and where they sit in the
    requested index (None: all of it, in order)."""

    specs: tuple[ArchSpec, ...]
    counts: tuple[int, ...]
    params: dict[str, torch.Tensor]
    positions: torch.Tensor | None = None  # [sum(counts)] int64, on the index's device


def layer_shapes(spec: ArchSpec) -> ArchSpec:
    """What architectures must have in common to share one batched forward: a CNN everything but its activations
    (applied per run of models, see `cnn_forward_runs`), any other kind the whole spec."""
    return spec.without_activations() if isinstance(spec, CNNSpec) else spec


@dataclass(frozen=True)
class MixedZoo:
    """Models of several architectures with the same input and output shapes (e.g. relu and tanh CNNs, or
    CNN Wild Park): one homogeneous `Zoo` per architecture, so each group still runs as one batched forward (and the
    groups that share their layer shapes can run as one, see `batches`).
    Row positions index the concatenation of the groups' tables, in group order."""

    groups: tuple[Zoo, ...]
    task: Task = Task()
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("a MixedZoo needs at least one architecture group")
        first = self.groups[0].spec
        for g, zoo in enumerate(self.groups):
            if zoo.spec.input_shape != first.input_shape or zoo.spec.out_dim != first.out_dim:
                raise ZooFormatError(f"arch {g}: inputs {zoo.spec.input_shape} → {zoo.spec.out_dim} outputs differ "
                                     f"from arch 0's {first.input_shape} → {first.out_dim}")
            if zoo.task != self.task:
                raise ZooFormatError(f"arch {g}: task {zoo.task} differs from the zoo's {self.task}")
        table = pd.concat([z.table.assign(arch=g) for g, z in enumerate(self.groups)], ignore_index=True)
        if table["model_id"].duplicated().any():
            raise ZooFormatError(f"duplicate model_id {table['model_id'][table['model_id'].duplicated()].iloc[0]} "
                                 f"across architecture groups")
        keys = [layer_shapes(z.spec) for z in self.groups]
        batch_of_group = np.array([keys.index(k) for k in keys])  # [G]: a batch is named by its first group
        group = table["arch"].to_numpy()  # [N]
        key = batch_of_group[group] * len(self.groups) + group  # [N]: sorting rows by key orders them (batch, group)
        device = next(iter(self.groups[0].params.values())).device
        object.__setattr__(self, "_table", table)
        # Lookups built once, so that a step's bookkeeping is run sizes counted on the host and one sort on the device
        object.__setattr__(self, "_group", group)
        object.__setattr__(self, "_row", np.concatenate([np.arange(len(z)) for z in self.groups]))  # [N] in its group
        object.__setattr__(self, "_batch_of_group", batch_of_group)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_key_t", torch.as_tensor(key, device=device))
        object.__setattr__(self, "_row_t", torch.as_tensor(self._row, device=device))  # type: ignore[attr-defined]

    @property
    def table(self) -> pd.DataFrame:
        return self._table  # type: ignore[attr-defined]

    @property
    def specs(self) -> tuple[ArchSpec, ...]:
        return tuple(z.spec for z in self.groups)

    def __repr__(self) -> str:
        """One line (the default dataclass repr printed every weight tensor: kilobytes for a notebook cell)."""
        return describe_zoo(self)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labels(self) -> torch.Tensor:
        return torch.cat([z.labels for z in self.groups])

    @property
    def device(self) -> torch.device:
        """Where the zoo's tensors are (every group's, as `to` moves them all)."""
        return self.groups[0].device

    def map_rows(self, index: torch.Tensor, fn: Callable[[Batch], torch.Tensor], row_shape: Sequence[int],
                 by_layer_shapes: bool = False) -> torch.Tensor:
        """[len(index), *row_shape]: fn ([B_b, …] → [B_b, *row_shape]) on each of `batches(index, by_layer_shapes)`,
        put back in index order. The one place that undoes the grouping by architecture, so callers never see it;
        one architecture per call unless `by_layer_shapes` (then fn must run a `Batch` of several, see
        `methods.probing.forward_batch`)."""
        return map_rows(self, index, fn, row_shape, by_layer_shapes)

    def batches(self, index: torch.Tensor, by_layer_shapes: bool = True) -> list[Batch]:
        """The models at row positions `index` as one `Batch` per set of architectures that share their layer shapes
        (`by_layer_shapes`; else one per architecture): in it, one run per architecture group present, in group order,
        each run in index order."""
        shared = self._batch_of_group  # type: ignore[attr-defined]  # [G]
        batch_of_group = shared if by_layer_shapes else np.arange(len(self.groups))
        out: list[Batch] = []
        for _, runs in itertools.groupby(self._runs(index), key=lambda run: batch_of_group[run[0]]):
            groups, positions, rows = zip(*runs)
            out.append(Batch(tuple(self.groups[g].spec for g in groups), tuple(len(p) for p in positions),
                             self._gather(groups, rows), torch.cat(positions)))
        return out

    def _runs(self, index: torch.Tensor) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """(group, positions in `index` [B_g], rows within the group [B_g]) for each architecture group present, in
        (batch, group) order, each in index order. The run sizes are counted on the host, from the step's one copy of
        `index` there (B ints; none when `index` is on the CPU); the positions come from one stable sort beside it."""
        keys, counts = np.unique(self._key[index.cpu().numpy()], return_counts=True)  # type: ignore[attr-defined, call-overload]
        key_t, row_t = self._key_t.to(index.device), self._row_t.to(index.device)  # type: ignore[attr-defined]
        order = torch.argsort(key_t[index], stable=True)  # [B]: positions in index, run after run
        sizes = counts.tolist()
        return [(int(k) % len(self.groups), positions, rows)
                for k, positions, rows in zip(keys, order.split(sizes), row_t[index[order]].split(sizes))]

    def _gather(self, groups: Sequence[int], rows: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Params [sum(len(r)), …]: rows[j] of group groups[j], stacked in that order (groups of equal shapes)."""
        taken = [{k: v[r.to(v.device)] for k, v in self.groups[g].params.items()} for g, r in zip(groups, rows)]
        return taken[0] if len(taken) == 1 else {k: torch.cat([t[k] for t in taken]) for k in taken[0]}

    def split(self, name: str) -> MixedZoo:
        return MixedZoo(tuple(z.split(name) for z in self.groups), self.task, self.info)

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> MixedZoo:
        """Models at the given row positions, grouped by architecture (order within each group kept)."""
        idx = np.asarray(index, dtype=np.int64)
        group, row = self._group[idx], self._row[idx]  # type: ignore[attr-defined]
        return MixedZoo(tuple(z.subset(row[group == g]) for g, z in enumerate(self.groups)), self.task, self.info)

    def to(self, device: torch.device | str) -> MixedZoo:
        return MixedZoo(tuple(z.to(device) for z in self.groups), self.task, self.info)


AnyZoo = Zoo | MixedZoo


def map_rows(zoo: AnyZoo, index: torch.Tensor, fn: Callable[[Batch], torch.Tensor], row_shape: Sequence[int],
             by_layer_shapes: bool) -> torch.Tensor:
    """`Zoo.map_rows` and `MixedZoo.map_rows`: an empty index gives zeros [0, *row_shape] without calling fn
    (a batched forward of no models has no shapes to run)."""
    row_shape = tuple(row_shape)
    if len(index) == 0:
        return torch.zeros(0, *row_shape, device=zoo.device)
    batches = zoo.batches(index, by_layer_shapes)
    outs = [fn(b) for b in batches]  # [B_b, *row_shape] each, rows in batch order
    for b, out in zip(batches, outs):
        if tuple(out.shape) != (sum(b.counts), *row_shape):
            raise ValueError(f"map_rows: fn returned shape {tuple(out.shape)} for a batch of {sum(b.counts)} models, "
                             f"expected {(sum(b.counts), *row_shape)}")
    if len(batches) == 1 and batches[0].positions is None:
        return outs[0]
    positions = torch.cat([b.positions for b in batches])  # type: ignore[misc]  # [B]: where each row of the cat sits
    return torch.cat(outs)[torch.argsort(positions)]  # the inverse permutation: row j is index[j]'s model


def validate(zoo: Zoo, where: str = "zoo") -> None:
    """Check shapes against the spec, finiteness, row count, splits and labels; raise on the first problem."""
    err = lambda file, msg: ZooFormatError(f"{where}: {file}: {msg}")
    expected = zoo.spec.param_shapes()
    missing = sorted(set(expected) - set(zoo.params))
    extra = sorted(set(zoo.params) - set(expected))
    if missing or extra:
        raise err("weights.safetensors", f"parameter names differ from {type(zoo.spec).__name__}: missing {missing}, "
                                         f"unexpected {extra}")
    m = len(zoo.table)
    for name, shape in expected.items():
        got = tuple(zoo.params[name].shape)
        if got != (m, *shape):
            raise err("weights.safetensors", f"{name!r} has shape {got}, expected {(m, *shape)} "
                                             f"(models.csv has {m} rows)")
    ids = zoo.table["model_id"].to_numpy() if "model_id" in zoo.table else None
    name_of = lambda row: f"model_id {ids[row]} (row {row})" if ids is not None else f"row {row}"
    for name, shape in expected.items():
        bad = ~torch.isfinite(zoo.params[name].reshape(m, math.prod(shape))).all(dim=1)  # [M]
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            raise err("weights.safetensors", f"non-finite value in {name!r} of {name_of(row)}")
    for col in ("model_id", "split", zoo.task.label_column):
        if col not in zoo.table:
            raise err("models.csv", f"missing column {col!r}")
    if zoo.table["model_id"].duplicated().any():
        row = int(np.flatnonzero(zoo.table["model_id"].duplicated().to_numpy())[0])
        raise err("models.csv", f"duplicate {name_of(row)}")
    bad_split = ~zoo.table["split"].isin(SPLITS).to_numpy()
    if bad_split.any():
        row = int(np.flatnonzero(bad_split)[0])
        raise err("models.csv", f"unknown split {zoo.table['split'].iloc[row]!r} of {name_of(row)}; "
                                f"expected one of {SPLITS}")
    labels = pd.to_numeric(zoo.table[zoo.task.label_column], errors="coerce").to_numpy(dtype=np.float64)
    n = zoo.task.n_classes
    bad_label = ~np.isfinite(labels)
    if n is not None:
        bad_label |= (labels < 0) | (labels >= n) | (labels != np.round(labels))
    if bad_label.any():
        row = int(np.flatnonzero(bad_label)[0])
        rng = f" outside [0, {n})" if n is not None else " is not a finite number"
        value = zoo.table[zoo.task.label_column].iloc[row]
        value = value.item() if isinstance(value, np.generic) else value  # quote 10, not np.int64(10)
        raise err("models.csv", f"{zoo.task.label_column} {value!r} of {name_of(row)}{rng}")


def stack_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]], spec: ArchSpec,
                      names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Stack per-model state_dicts into zoo parameters, checking each against the spec (error names the item)."""
    expected = spec.param_shapes()
    for i, sd in enumerate(state_dicts):
        item = names[i] if names is not None else f"model {i}"
        if set(sd) != set(expected):
            raise ZooFormatError(f"{item}: parameter names {sorted(sd)} differ from {sorted(expected)}")
        for k, shape in expected.items():
            if not isinstance(sd[k], torch.Tensor):
                raise ZooFormatError(f"{item}: {k!r} is a {type(sd[k]).__name__}, not a tensor")
            if tuple(sd[k].shape) != shape:
                raise ZooFormatError(f"{item}: {k!r} has shape {tuple(sd[k].shape)}, expected {shape}")
            if not torch.isfinite(sd[k]).all():
                raise ZooFormatError(f"{item}: non-finite value in {k!r}")
    return {k: torch.stack([sd[k].float() for sd in state_dicts]) for k in expected}


def describe_zoo(zoo: Zoo | MixedZoo) -> str:
    """`Zoo(siren, 5,500 models: train 4,000 / val 500 / test 1,000; label, 10 classes; cpu)`."""
    counts = zoo.table["split"].value_counts()
    splits = " / ".join(f"{s} {counts.get(s, 0):,}" for s in SPLITS)
    kinds = ", ".join(sorted({spec.kind for spec in zoo.specs}))
    archs = f"{len(zoo.specs)} architectures, " if len(zoo.specs) > 1 else ""
    task = f"{zoo.task.n_classes} classes" if zoo.task.is_classification else "scalar"
    return (f"{type(zoo).__name__}({archs}{kinds}, {len(zoo):,} models: {splits}; {zoo.task.label_column}, {task}; "
            f"{zoo.device})")
