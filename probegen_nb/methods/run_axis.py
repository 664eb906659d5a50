"""A leading run axis: R probing models of the same shapes (seeds, or variants that differ only in values) as one
program, every step one batched forward and backward for all of them.

Each run keeps its own `ProbingModel` as the leaves that its own optimizer updates; a step stacks those leaves along
the run axis R (`torch.stack`, differentiable, so each run's gradient lands in its own leaves) and runs
  * the probe sources and the predictors with `torch.func.functional_call` + `vmap` over R: one program for any
    probe source (coordinate and image generators, free and fixed probes) with no batched copy of each to write;
  * the zoo's batched forward on R·B models, run r's probes going to its own B models (the forwards take per-model
    inputs [M, Q, …]): the run axis folds into the model axis the zoo forward already batches over.
Per-run leaves, rather than one stacked leaf per parameter, keep each run's optimizer exactly its solo one (per-run
lr, weight decay and schedule, the same Adam code) for one stack copy per parameter and step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.zoo import AnyZoo, Batch
from probegen_nb.methods.probing import ProbingModel, forward_batch, shares_forwards


def module_signature(module: nn.Module) -> tuple[Any, ...]:
    """What modules must share to run as one program: their structure (repr: layer types, sizes, activations) and
    every parameter's and buffer's name, shape and dtype."""
    tensors = [(k, tuple(v.shape), v.dtype) for k, v in (*module.named_parameters(), *module.named_buffers())]
    return type(module).__name__, repr(module), tuple(tensors)


class RunStack:
    """R probing models (each built as its solo run builds it) trained as one program along a leading run axis."""

    def __init__(self, models: Sequence[ProbingModel]) -> None:
        if not models:
            raise ValueError("RunStack: no models")
        first = models[0]
        for r, m in enumerate(models):
            for part in ("probes", "predictor"):
                if module_signature(getattr(m, part)) != module_signature(getattr(first, part)):
                    raise ValueError(f"RunStack: run {r}'s {part} differ in shape or structure from run 0's; "
                                     f"runs of different shapes cannot share one program")
            if m.specs != first.specs or m.rep_dim != first.rep_dim:
                raise ValueError(f"RunStack: run {r} is for another zoo architecture than run 0")
        self.models = tuple(models)
        # A CNN's first layer on probes shared by its models is one convolution with every model's filters, a far
        # cheaper kernel than the grouped convolution that per-model inputs need (2-core CPU, 64 CNNs, dead leaves,
        # Q = 8: 2 runs 1.2 s as one forward of R·B models vs 0.7 s in sequence), so CNN zoos take one forward per
        # run (R forwards a step: runs, not models, in the loop); INR zoos fold R into the model axis.
        self.shared_inputs = any(isinstance(spec, CNNSpec) for spec in first.specs)
        self.rep_dim = first.rep_dim
        self._probe_names = [k for k, _ in first.probes.named_parameters()] + [k for k, _ in
                                                                               first.probes.named_buffers()]
        self._pred_names = [k for k, _ in first.predictor.named_parameters()]
        # vmap over the run axis of a stateless call of run 0's modules (its tensors swapped for the stacked ones)
        def probes_of(p: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(first.probes, p, ())

        def predict_with(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(first.predictor, p, (x,))

        self._probes_fn: Callable[..., torch.Tensor] = vmap(probes_of)
        self._predict_fn: Callable[..., torch.Tensor] = vmap(predict_with)

    def __len__(self) -> int:
        return len(self.models)

    def _stacked(self, part: str, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """{name: [R, …]}: every run's tensor of that name, stacked (differentiably: gradients reach each run's
        leaf)."""
        tensors = [dict((*getattr(m, part).named_parameters(), *getattr(m, part).named_buffers()))
                   for m in self.models]
        return {k: torch.stack([t[k] for t in tensors]) for k in names}

    def probes(self) -> torch.Tensor:
        """[R, Q, *input_shape]: each run's probes."""
        return self._probes_fn(self._stacked("probes", self._probe_names))

    def represent_rows(self, zoo: AnyZoo, index: torch.Tensor, probes: torch.Tensor | None = None) -> torch.Tensor:
        """[R, B, Q·K]: run r's probes through the zoo's models at row positions index[r] (index [R, B]), as one
        batched forward of R·B models (per architecture, as `ProbingModel.represent_rows`)."""
        x = self.probes() if probes is None else probes  # [R, Q, *input_shape]
        r, b = index.shape
        if self.shared_inputs:  # CNNs: run by run, each on its shared probes
            return torch.stack([self.models[0].represent_rows(zoo, index[i], x[i]) for i in range(r)])
        per_model = x[:, None].expand(r, b, *x.shape[1:]).reshape(r * b, *x.shape[1:])  # [R·B, Q, *input_shape]

        def run(batch: Batch) -> torch.Tensor:
            xb = per_model if batch.positions is None else per_model[batch.positions]  # [B_b, Q, *input_shape]
            return forward_batch(batch, xb).flatten(1)  # [B_b, Q·K]

        reps = zoo.map_rows(index.reshape(-1), run, (self.rep_dim,), shares_forwards(x.device))  # [R·B, Q·K]
        return reps.view(r, b, self.rep_dim)

    def predict(self, representations: torch.Tensor) -> torch.Tensor:
        """[R, B, d_out]: run r's predictor on its representations [R, B, Q·K]."""
        return self._predict_fn(self._stacked("predictor", self._pred_names), representations)

    def predict_rows(self, zoo: AnyZoo, index: torch.Tensor) -> torch.Tensor:
        """[R, B, d_out]: each run's predictions for its own models index[r] (index [R, B])."""
        return self.predict(self.represent_rows(zoo, index))

    @torch.no_grad()
    def represent_all(self, zoo: AnyZoo, batch_size: int = 1024) -> torch.Tensor:
        """[R, M, Q·K]: every run's representations of all the zoo's models, about `batch_size` models a forward."""
        x = self.probes()  # [R, Q, *input_shape]
        r = len(self)
        index = torch.arange(len(zoo), device=x.device)
        chunks = [self.represent_rows(zoo, i[None].expand(r, -1), x) for i in index.split(max(1, batch_size // r))]
        return torch.cat(chunks, dim=1) if chunks else x.new_zeros(r, 0, self.rep_dim)

    @torch.no_grad()
    def predict_all(self, zoo: AnyZoo, cached: torch.Tensor | None = None) -> torch.Tensor:
        """[R, M, d_out]: every run's predictions for all the zoo's models (from `cached` [R, M, Q·K] if given)."""
        reps = self.represent_all(zoo) if cached is None else cached
        return self.predict(reps)


def run_losses(outputs: torch.Tensor, labels: torch.Tensor, classification: bool) -> torch.Tensor:
    """[R]: each run's mean loss over its batch (outputs [R, B, d_out], labels [R, B]), the solo run's loss_fn per
    run. Their sum's gradient in run r's parameters is run r's solo gradient."""
    if classification:
        per_model = nn.functional.cross_entropy(outputs.flatten(0, 1), labels.flatten(), reduction="none")
    else:
        per_model = nn.functional.mse_loss(outputs.squeeze(2).flatten(), labels.flatten(), reduction="none")
    return per_model.view(labels.shape).mean(dim=1)
