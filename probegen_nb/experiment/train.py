"""One training run: a `Learner` (probing, or a weight-space baseline) fitted on the zoo's train split; one run folder.

Every notebook and benchmark trains through `train()`. A run folder (`experiment.run_folder`) holds `config.json`,
`metrics.json` (per-epoch history, best-val and last-step test metric, FLOPs per model, wall time, device),
`best.safetensors` and `last.safetensors` checkpoints, `probes.safetensors` (probing: the best-validation probes and
one snapshot per epoch) and `test_representations.safetensors` (of the best-validation model, which `train()` also
returns).

`train()` is one loop for every method: the learner says whether it is fitted by gradient steps (probing and the
torch baselines: `GradientFit`) or fits itself (StatNN's trees: one boosting stage per epoch, no checkpoints).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from probegen_nb.core.allocator import tune_cpu_allocator
from probegen_nb.core.device import describe_device, resolve_device, seed_everything
from probegen_nb.core.threads import ThreadGovernor
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.core.zoo_io import load_zoo, resolve_zoo_dir
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.config import RunConfig, probing
from probegen_nb.experiment.evaluate import metric, metric_name, predict, predict_from, represent_all
from probegen_nb.experiment.step_graph import ForwardBackward, use_cuda_graphs
from probegen_nb.methods.learner import EpochFit, Learner, loss_fn
from probegen_nb.probes.base import ProbeSource

__all__ = ["NonFiniteLossError", "RunResult", "build_model", "is_better", "loss_fn", "make_optimizer", "train",
           "train_models"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the message names the epoch and step and where the last good checkpoint is."""


@dataclass
class RunResult:
    config: RunConfig
    model: Learner
    metrics: dict[str, Any]
    out_dir: Path | None


def make_optimizer(config: RunConfig, model: Learner,
                   total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam at `config.lr` on the learner's parameter groups (each with its own weight decay: the predictor's is
    `config.weight_decay`), cosine-annealed to 0 over all `total_steps` (the paper's protocol)."""
    groups = model.param_groups(config.weight_decay)
    # the fused kernel: on CUDA one launch updates every parameter (the foreach path's launches dominate a step of 32
    # small models); on a CPU one pass per tensor instead of ~10 (2-core CPU, ProbeGen Q = 128: 0.48 vs 1.39 ms)
    optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=config.lr, fused=True)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))


def is_better(value: float, best: float) -> bool:
    """Model selection on the validation metric: a NaN (e.g. τ of constant predictions) is never better, and any
    number beats a NaN."""
    return not math.isnan(value) and (math.isnan(best) or value > best)


def train_models(config: RunConfig, train_split: AnyZoo) -> AnyZoo:
    """The models a run trains on: the train split, or its first `config.max_train_models`."""
    if config.max_train_models is None:
        return train_split
    return train_split.subset(range(min(config.max_train_models, len(train_split))))


def build_model(config: RunConfig, zoo: AnyZoo, generator: torch.Generator,
                probes: ProbeSource | None = None) -> Learner:
    """The run's learner for this zoo, built by its method config (input normalisations fitted on the run's train
    models); `probes` (a probing run only) replaces the sampled probe source."""
    d_out = zoo.task.n_classes if zoo.task.n_classes is not None else 1  # classes, or 1 regressed scalar
    train_zoo = train_models(config, zoo.split("train"))
    if probes is not None:
        return probing(config.method).build(train_zoo, d_out, config.hidden, config.n_hidden, generator, probes)
    return config.method.build(train_zoo, d_out, config.hidden, config.n_hidden, generator)


class GradientFit:
    """How `train()` fits a learner by gradient steps: Adam over `batch_size` models a step in a seeded order, on
    the zoo's rows (or, for fixed representations, on their cached values)."""

    def __init__(self, config: RunConfig, model: Learner, train_zoo: AnyZoo, labels: torch.Tensor,
                 cached: torch.Tensor | None, generator: torch.Generator, out: Path | None,
                 threads: ThreadGovernor, cuda_graphs: bool = False) -> None:
        self.config, self.model, self.train_zoo, self.labels, self.cached = config, model, train_zoo, labels, cached
        self.generator, self.out, self.threads = generator, out, threads
        self.classification = train_zoo.task.is_classification
        self.check_each_step = checks_loss_each_step(labels.device)
        steps_per_epoch = math.ceil(len(train_zoo) / config.batch_size)
        self.optimizer, self.schedule = make_optimizer(config, model,
                                                       steps_per_epoch * model.n_epochs(config.epochs))
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.forward_backward = ForwardBackward(self.loss_of, params, cuda_graphs, counters=[model])

    def loss_of(self, idx: torch.Tensor) -> torch.Tensor:
        """The loss of a step on the train models at positions `idx` [B]."""
        outputs = (self.model.predict_rows(self.train_zoo, idx) if self.cached is None
                   else self.model.predict_reps(self.cached[idx]))  # [B, d_out]
        return loss_fn(outputs, self.labels[idx], self.classification)

    def run_epoch(self, epoch: int) -> tuple[torch.Tensor, float]:
        order = torch.randperm(len(self.train_zoo), generator=self.generator).to(self.labels.device)
        losses = []
        for step, idx in enumerate(order.split(self.config.batch_size)):
            loss = self.forward_backward(idx)  # gradients in .grad
            if self.check_each_step and not torch.isfinite(loss):
                raise non_finite_loss(loss, epoch, step, self.out)
            self.optimizer.step()
            self.schedule.step()
            losses.append(loss)
            self.threads.update()
        return torch.stack(losses), self.optimizer.param_groups[0]["lr"]  # [steps]; lr after the epoch's last step

    def state(self, epoch: int, history: list[dict[str, Any]], best: dict[str, Any], snapshots: list[torch.Tensor],
              n_steps: int, seconds: float) -> rf.ResumeState:
        """What the run needs to continue after `epoch` as if never stopped."""
        return rf.ResumeState(epoch, dict(self.model.state_dict()), self.optimizer.state_dict(),
                              self.schedule.state_dict(), self.generator.get_state(), history, best, snapshots,
                              n_steps, seconds, self.model.queries)

    def restore(self, state: rf.ResumeState) -> None:
        """The model, optimizer, schedule and batch order of the run's resume state."""
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.schedule.load_state_dict(state.schedule)
        self.generator.set_state(state.rng)
        self.model.queries = state.queries


def train(config: RunConfig, zoo: AnyZoo | None = None, out_dir: str | Path | None = None,
          probes: ProbeSource | None = None, progress: bool = True, cuda_graphs: bool | None = None) -> RunResult:
    """Fit the config's method on the zoo's train split, evaluating train, val and test after every epoch; the run's
    model is its best-validation state. `cuda_graphs`: replay each step as a CUDA graph (a GPU's launch overhead;
    None: $PROBEGEN_CUDA_GRAPHS, off by default; see `experiment.step_graph`), an execution choice like the thread
    count: the same run to float rounding, recorded in metrics.json."""
    dev = resolve_device(config.device)
    threads = ThreadGovernor.start("train", dev)  # CPU: intra-op threads fitted to the machine's load
    if dev.type == "cpu":
        tune_cpu_allocator()  # CNN zoos: the probe tiles' activations reuse heap memory (measured: 1.2-1.5x a step)
    gen = seed_everything(config.seed)
    zoo = (zoo if zoo is not None else load_zoo(resolve_zoo_dir(config.zoo_dir))).to(dev)
    train_zoo = train_models(config, zoo.split("train"))
    # evaluated after every epoch; "train" is the models trained on (the split, or its first `max_train_models`): the
    # unseen rest of the split is no train metric, and evaluating it made a capped run's epochs up to 8x longer
    splits = {"train": train_zoo, "val": zoo.split("val"), "test": zoo.split("test")}
    if len(train_zoo) == 0:
        raise ValueError(f"zoo {config.zoo_dir}: the train split is empty")
    model = build_model(config, zoo, gen, probes).to(dev)
    labels = {s: z.labels.to(dev) for s, z in splits.items()}
    # Fixed representations (fixed probes, statistics) never change: computed once, the predictor trained on them (as
    # the public code does), instead of pushing the same probes through the zoo at every step.
    fixed = config.cache_responses and model.fixed_representation
    cached = {s: represent_all(model, z) for s, z in splits.items()} if fixed else None

    out = Path(out_dir) if out_dir is not None else None
    t_start = time.perf_counter()
    self_fit = model.self_fit(train_zoo, labels["train"], cached["train"] if cached else None, config.seed)
    fit: EpochFit
    grad: GradientFit | None  # every learner but the trees, which fit themselves
    graphs = use_cuda_graphs(dev, zoo, model, cuda_graphs)
    if self_fit is None:
        fit = grad = GradientFit(config, model, train_zoo, labels["train"], cached["train"] if cached else None, gen,
                                 out, threads, graphs)
    else:
        fit, grad = self_fit, None
    # a run killed part-way continues after its last finished epoch (gradient-fitted learners; trees refit fast)
    resume = rf.read_resume(out, config) if out is not None and grad is not None else None
    if out is not None and resume is None:
        rf.start_run(out, config)
    name = metric_name(zoo)
    history: list[dict[str, Any]] = []
    first = model.snapshot()
    snapshots = [first] if first is not None else []  # probing: the probes at init, then after every epoch
    best: dict[str, Any] = {"val": -math.inf, "epoch": -1, "test": math.nan, "state": None}
    n_steps, start, before = 0, 0, 0.0
    if resume is not None and grad is not None:
        grad.restore(resume)
        history, best, snapshots, n_steps = resume.history, resume.best, resume.snapshots, resume.n_steps
        start, before = resume.epoch + 1, resume.seconds
    t0 = t_start - before
    bar = tqdm(range(start, model.n_epochs(config.epochs)), desc=config.method.label, disable=not progress,
               initial=start, total=model.n_epochs(config.epochs))
    for epoch in bar:
        losses, lr = fit.run_epoch(epoch)  # [steps]
        n_steps += len(losses)
        finite = torch.isfinite(losses)  # on a GPU the epoch's one look at the losses
        if not finite.all():
            step = int((~finite).nonzero()[0])
            raise non_finite_loss(losses[step], epoch, step, out)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": float(losses.mean()), "lr": lr}
        for s, z in splits.items():
            outputs = predict(model, z)[0] if cached is None else predict_from(model, cached[s])
            record[f"{s}_{name}"] = metric(zoo, outputs, labels[s]) if len(z) else float("nan")
        history.append(record)
        snapshot = model.snapshot()
        if snapshot is not None:
            snapshots.append(snapshot)
        if best["state"] is None or is_better(record[f"val_{name}"], best["val"]):
            best = {"val": record[f"val_{name}"], "epoch": epoch, "test": record[f"test_{name}"],
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        if out is not None and model.saves_checkpoints:
            rf.save_last(out, model.state_dict())
            if grad is not None:
                rf.save_resume(out, config, grad.state(epoch, history, best, snapshots, n_steps,
                                                       time.perf_counter() - t0))
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record[f'val_{name}']:.3f}")
    seconds = time.perf_counter() - t0
    if best["state"] is not None:  # model selection: the run's model is its best-validation state
        model.load_state_dict(best["state"])
    metrics = run_metrics(config, model, zoo, history, best, seconds, n_steps, cached is not None, len(train_zoo),
                          threads, dev)
    metrics["cuda_graphs"] = graphs  # whether the steps were replayed as a CUDA graph
    if out is not None:
        _write_run_folder(out, model, best["state"], snapshots, splits["test"], metrics)
    return RunResult(config, model, metrics, out)


def run_metrics(config: RunConfig, model: Learner, zoo: AnyZoo, history: list[dict[str, Any]],
                best: dict[str, Any], seconds: float, n_steps: int, cached: bool, n_train: int,
                threads: ThreadGovernor, device: torch.device) -> dict[str, Any]:
    """The run's metrics.json record, for every method (`model` holds its best-validation state)."""
    name = metric_name(zoo)
    return {
        "metric": name,
        "history": history,
        "best_epoch": best["epoch"],
        f"best_val_{name}": best["val"],
        f"test_{name}": best["test"],  # the test metric of the best-validation state
        f"last_test_{name}": history[-1][f"test_{name}"] if history else float("nan"),
        "flops_per_model": model.flops_per_model(zoo),
        "train_seconds": seconds,
        "steps": n_steps,  # optimizer steps taken (ceil(train models / batch) per epoch), or boosting stages
        "responses_cached": cached,  # fixed representations: computed once, the predictor trained on them
        "n_train_models": n_train,
        **model.param_counts(),  # probe_params, predictor_params, n_params (everything fitted)
        "threads": (used := threads.finish()),  # the intra-op threads used and why (see core.threads.ThreadGovernor)
        "device": describe_device(device, threads=int(used["threads"]) if used["threads"] else None),
        "config_sha256": rf.config_digest(config),  # the completion record names the config it completes
        "queries": model.queries,  # probes × models forwarded, evaluation included: a black-box model's cost
    }


def checks_loss_each_step(device: torch.device) -> bool:
    """The CPU stops at the first non-finite loss; a GPU would wait at every step for the loss to reach the host, so
    it looks at the epoch's losses once, after the epoch, and names the same first bad step."""
    return device.type == "cpu"


def non_finite_loss(loss: torch.Tensor, epoch: int, step: int, out: Path | None) -> NonFiniteLossError:
    """The error of a run whose loss stopped being finite, pointing at the last epoch's checkpoint when one exists."""
    where = f" (last good checkpoint: {out / 'last.safetensors'})" if out and epoch else ""
    return NonFiniteLossError(f"loss became {loss.detach().item()} at epoch {epoch}, step {step}{where}")


def _write_run_folder(out: Path, model: Learner, best_state: dict[str, torch.Tensor] | None,
                      snapshots: list[torch.Tensor], test_zoo: AnyZoo, metrics: dict[str, Any]) -> None:
    """`model` holds the best-validation state: its probes and test representations are what the run reports."""
    if best_state is not None and model.saves_checkpoints:
        rf.save_best(out, best_state)
    probes = model.snapshot()
    if probes is not None:
        rf.save_probes(out, probes, torch.stack(snapshots))
    if len(test_zoo):
        outputs, reps = predict(model, test_zoo)
        rf.save_test_representations(out, outputs, reps, test_zoo.labels,
                                     torch.tensor(test_zoo.table["model_id"].to_numpy()))
    rf.finish_run(out, metrics)
