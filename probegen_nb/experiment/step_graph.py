"""A training step's forward and backward, replayed as one CUDA graph.

On a GPU a step of 32 small models is launch-bound: the H200 trained ProbeGen (Q = 128) at 2.86 ms a step with the
GPU mostly idle, a few hundred kernel launches (the rows' gather, the probe generator, the zoo's forward, the
predictor, the loss, and their backward) each costing more than its arithmetic. Captured once as a CUDA graph
(`torch.cuda.graph`), a step is one launch; the optimizer stays outside the graph (fused Adam is one launch of its
own), so the schedule changes its learning rate as a plain float and the optimizer's state and checkpoints are the
eager run's.

How: the first `warmup` full-size batches run eagerly on a side stream (real steps; cuBLAS and autograd set up
outside the capture), the next one is captured with the parameters' gradients unset, so backward allocates them in
the graph's memory, and from then on every full-size batch is copied into the captured index and replayed: the
replay overwrites the same `.grad` tensors the optimizer reads. A batch of another size (an epoch's last) runs
eagerly, its gradients zeroed in place so they stay the graph's tensors. Python-side counters the forward updates
(`queries`) run only at capture, so each replay adds the capture's increment.

GPU only, and opt-in until measured on a GPU (`use_cuda_graphs`): on a CPU there are no launches to save and the step
runs eagerly, through the same class. A step can be captured when its forward never waits for the host: one
architecture (a mixed zoo sorts its rows by architecture on the host), differentiable models, a probing learner.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from probegen_nb.core.arch.callable import CallableSpec
from probegen_nb.core.device import is_cuda
from probegen_nb.core.zoo import AnyZoo, Zoo
from probegen_nb.methods.probing import ProbingModel
from probegen_nb.methods.run_axis import RunStack

__all__ = ["CUDA_GRAPHS_ENV", "ForwardBackward", "graph_blocker", "use_cuda_graphs"]

CUDA_GRAPHS_ENV = "PROBEGEN_CUDA_GRAPHS"  # "1"/"on" or "0"/"off" (default): capture training steps on CUDA


def parse_switch(value: str | None, source: str = CUDA_GRAPHS_ENV) -> bool | None:
    """on/off words, None/"" for unset; anything else is a ValueError naming where it came from."""
    if value is None or value.strip() == "":
        return None
    text = value.strip().lower()
    if text in ("1", "on", "true", "yes"):
        return True
    if text in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"{source}={value!r}: expected 1/on or 0/off")


def graph_blocker(zoo: AnyZoo, learner: Any) -> str | None:
    """Why this run's step cannot be captured as a CUDA graph (its forward would wait for the host), or None."""
    if not isinstance(learner, (ProbingModel, RunStack)):
        return f"{type(learner).__name__} is not a probing learner (only probing steps are captured)"
    if not isinstance(zoo, Zoo):
        return "the zoo mixes architectures (its rows are sorted by architecture on the host every step)"
    if isinstance(zoo.spec, CallableSpec):
        return "the zoo's models are Python callables (black boxes), not tensor programs"
    return None


def use_cuda_graphs(device: torch.device, zoo: AnyZoo, learner: Any, requested: bool | None = None) -> bool:
    """Whether this run captures its step: `requested` (train()'s `cuda_graphs`), else $PROBEGEN_CUDA_GRAPHS, else
    off. Asked for explicitly where it cannot work, a ValueError says why; through the environment (a whole sweep),
    runs that cannot be captured, and every run on a CPU, train eagerly."""
    explicit = requested is not None
    wanted = requested if explicit else parse_switch(os.environ.get(CUDA_GRAPHS_ENV))
    if not wanted:
        return False
    blocker = "CUDA graphs need a CUDA device" if not is_cuda(device) else graph_blocker(zoo, learner)
    if blocker is not None and explicit:
        raise ValueError(f"cuda_graphs=True: {blocker}; train with cuda_graphs=False")
    return blocker is None


class ForwardBackward:
    """One training step's forward (`loss_of(index)`: the loss, any shape) and the backward of its sum into the
    `params`' `.grad`; eagerly, or by replaying a CUDA graph (`graphs`, see the module). The caller then steps its
    optimizer(s). `counters`: objects whose `queries` the forward increments (kept right under replay)."""

    def __init__(self, loss_of: Callable[[torch.Tensor], torch.Tensor], params: Sequence[torch.Tensor],
                 graphs: bool = False, counters: Sequence[Any] = (), warmup: int = 3) -> None:
        self.loss_of, self.params, self.graphs = loss_of, list(params), graphs
        self.counters, self.warmup = list(counters), warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.full_shape: torch.Size | None = None  # the batch shape that is captured: the first one seen
        self.eager_steps = 0  # full-size steps run before the capture
        self.side: torch.cuda.Stream | None = None  # the warm-up steps' stream
        self.static_index: torch.Tensor | None = None
        self.static_loss: torch.Tensor | None = None
        self.query_step: list[int] = []  # each counter's increment in one forward, measured at capture

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        """The step's loss (detached) for the models at `index`, gradients in `.grad`."""
        if self.full_shape is None:
            self.full_shape = index.shape
        if not self.graphs or index.shape != self.full_shape:
            return self._eager(index)
        if self.graph is None:
            if self.eager_steps < self.warmup:
                self.eager_steps += 1
                return self._on_side_stream(index)
            self._capture(index)
        assert self.static_index is not None and self.static_loss is not None and self.graph is not None
        self.static_index.copy_(index)
        self.graph.replay()
        for counter, step in zip(self.counters, self.query_step):
            counter.queries += step
        return self.static_loss.clone()

    def _eager(self, index: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            for p in self.params:
                p.grad = None
        else:  # keep the graph's gradient tensors: the replays write them, the optimizer reads them
            for p in self.params:
                if p.grad is not None:
                    p.grad.zero_()
        loss = self.loss_of(index)
        loss.sum().backward()
        return loss.detach()

    def _on_side_stream(self, index: torch.Tensor) -> torch.Tensor:
        if self.side is None:
            self.side = torch.cuda.Stream(device=index.device)
        side = self.side
        side.wait_stream(torch.cuda.current_stream(index.device))
        with torch.cuda.stream(side):
            loss = self._eager(index)
        torch.cuda.current_stream(index.device).wait_stream(side)
        return loss

    def _capture(self, index: torch.Tensor) -> None:
        self.static_index = index.clone()
        for p in self.params:
            p.grad = None  # backward inside the capture allocates them in the graph's memory
        before = [c.queries for c in self.counters]
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.static_loss = self.loss_of(self.static_index)
                self.static_loss.sum().backward()
        except RuntimeError as e:
            raise RuntimeError(f"capturing the training step as a CUDA graph failed ({str(e)[:300]}); train with "
                               f"cuda_graphs=False (or {CUDA_GRAPHS_ENV}=0)") from e
        self.query_step = [c.queries - b for c, b in zip(self.counters, before)]
        for c, b in zip(self.counters, before):
            c.queries = b  # capture records the forward, it does not run it: the replay that follows counts it
        self.graph = graph
