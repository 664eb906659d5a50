"""One training run: probes, generator and predictor trained jointly through the frozen zoo; one run folder.

Every notebook and benchmark trains through `train()`. A run folder holds `config.json`, `metrics.json` (per-epoch
history, best-val and last-step test metric, FLOPs per model, wall time, device), `best.safetensors` and
`last.safetensors` checkpoints, `probes.safetensors` (the best-validation probes and one snapshot per epoch) and
`test_representations.safetensors` (of the best-validation model, which `train()` also returns).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from probegen_nb.core.device import (
    ThreadGovernor,
    describe_device,
    resolve_device,
    seed_everything,
    tune_cpu_allocator,
)
from probegen_nb.core.jobs import save_tensors_atomic, write_json_atomic
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.evaluate import metric, metric_name, predict, predict_from, represent_all
from probegen_nb.methods.probing import ProbingModel, flops_per_model
from probegen_nb.probes.base import ProbeSource


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the message names the epoch and step and where the last good checkpoint is."""


@dataclass
class RunResult:
    config: RunConfig
    model: ProbingModel
    metrics: dict[str, Any]
    out_dir: Path | None


def loss_fn(outputs: torch.Tensor, labels: torch.Tensor, classification: bool) -> torch.Tensor:
    """Cross-entropy for class labels, MSE for scalar labels."""
    return F.cross_entropy(outputs, labels) if classification else F.mse_loss(outputs.squeeze(1), labels)


def make_optimizer(config: RunConfig, model: ProbingModel,
                   total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam at `config.lr` on the probe source and the predictor (each with its own weight decay), cosine-annealed
    to 0 over all `total_steps` (the paper's protocol)."""
    groups = [{"params": list(model.probes.parameters()), "weight_decay": config.generator_weight_decay},
              {"params": list(model.predictor.parameters()), "weight_decay": config.weight_decay}]
    optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=config.lr)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))


def is_better(value: float, best: float) -> bool:
    """Model selection on the validation metric: a NaN (e.g. τ of constant predictions) is never better, and any
    number beats a NaN."""
    return not math.isnan(value) and (math.isnan(best) or value > best)


def build_model(config: RunConfig, zoo: AnyZoo, generator: torch.Generator,
                probes: ProbeSource | None = None) -> ProbingModel:
    """The probing model for this zoo; probe shapes are checked against the architecture here, before training."""
    spec = zoo.specs[0]
    source = probes if probes is not None else config.probes.build(config.n_probes, spec.input_shape, generator)
    d_out = zoo.task.n_classes if zoo.task.is_classification else 1
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return ProbingModel(zoo.specs, source, spec.out_dim, d_out, config.hidden, config.n_hidden)


def train(config: RunConfig, zoo: AnyZoo | None = None, out_dir: str | Path | None = None,
          probes: ProbeSource | None = None, progress: bool = True) -> RunResult:
    """Train one probing model on the zoo's train split, evaluating val and test after every epoch."""
    dev = resolve_device(config.device)
    threads = ThreadGovernor.start("train", dev)  # CPU: intra-op threads fitted to the machine's load
    if dev.type == "cpu":
        tune_cpu_allocator()  # CNN zoos: the probe tiles' activations reuse heap memory (measured: 1.2-1.5x a step)
    gen = seed_everything(config.seed)
    zoo = (zoo if zoo is not None else load_zoo(config.zoo_dir)).to(dev)
    model = build_model(config, zoo, gen, probes).to(dev)
    classification = zoo.task.is_classification
    splits = {s: zoo.split(s) for s in ("train", "val", "test")}
    train_zoo = splits["train"]
    if config.max_train_models is not None:
        train_zoo = train_zoo.subset(range(min(config.max_train_models, len(train_zoo))))
    if len(train_zoo) == 0:
        raise ValueError(f"zoo {config.zoo_dir}: the train split is empty")
    labels = {s: z.labels.to(dev) for s, z in splits.items()}
    train_labels = train_zoo.labels.to(dev)

    steps_per_epoch = math.ceil(len(train_zoo) / config.batch_size)
    optimizer, schedule = make_optimizer(config, model, steps_per_epoch * config.epochs)
    # Fixed probes never change, so neither do the models' answers: compute them once and train the predictor on
    # them (as the public code does), instead of pushing the same probes through the zoo at every step.
    fixed = config.cache_responses and not model.probes.learned
    cached = {s: represent_all(model, z) for s, z in {**splits, "fit": train_zoo}.items()} if fixed else None

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", config.to_dict())
    name = metric_name(zoo)
    history: list[dict[str, Any]] = []
    snapshots = [model.probes().detach().cpu()]
    best: dict[str, Any] = {"val": -math.inf, "epoch": -1, "state": None}
    t0, n_steps = time.perf_counter(), 0
    bar = tqdm(range(config.epochs), desc=f"{config.probes.kind} Q={config.n_probes}", disable=not progress)
    for epoch in bar:
        order = torch.randperm(len(train_zoo), generator=gen).to(dev)
        losses = []
        for step, idx in enumerate(order.split(config.batch_size)):
            outputs = model.predict_rows(train_zoo, idx) if cached is None else model.predictor(cached["fit"][idx])
            loss = loss_fn(outputs, train_labels[idx], classification)
            if not torch.isfinite(loss):
                where = f" (last good checkpoint: {out / 'last.safetensors'})" if out and epoch else ""
                raise NonFiniteLossError(f"loss became {loss.detach().item()} at epoch {epoch}, step {step}{where}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
            threads.update()
        n_steps += len(losses)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": float(torch.stack(losses).mean()),
                                  "lr": optimizer.param_groups[0]["lr"]}  # after the epoch's last step
        for s, z in splits.items():
            outputs = predict(model, z)[0] if cached is None else predict_from(model, cached[s])
            record[f"{s}_{name}"] = metric(zoo, outputs, labels[s]) if len(z) else float("nan")
        history.append(record)
        snapshots.append(model.probes().detach().cpu())
        if best["state"] is None or is_better(record[f"val_{name}"], best["val"]):
            best = {"val": record[f"val_{name}"], "epoch": epoch, "test": record[f"test_{name}"],
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        if out is not None:
            save_tensors_atomic(out / "last.safetensors", model.state_dict())
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record[f'val_{name}']:.3f}")
    seconds = time.perf_counter() - t0
    if best["state"] is not None:  # model selection: the run's model is its best-validation checkpoint
        model.load_state_dict(best["state"])

    metrics = {
        "metric": name,
        "history": history,
        "best_epoch": best["epoch"],
        f"best_val_{name}": best["val"],
        f"test_{name}": best["test"],  # the test metric of the best-validation checkpoint
        f"last_test_{name}": history[-1][f"test_{name}"] if history else float("nan"),
        "flops_per_model": flops_per_model(model, zoo),
        "train_seconds": seconds,
        "steps": n_steps,  # optimizer steps taken: ceil(train models / batch) per epoch
        "responses_cached": cached is not None,  # fixed probes: answers computed once, the predictor trained on them
        "n_train_models": len(train_zoo),
        "probe_params": sum(p.numel() for p in model.probes.parameters()),
        "predictor_params": sum(p.numel() for p in model.predictor.parameters()),
        "threads": threads.finish(),  # the intra-op threads used and why (see core.device.ThreadGovernor)
        "device": describe_device(dev),
    }
    if out is not None:
        _write_run_folder(out, model, best["state"], snapshots, splits["test"], metrics)
    return RunResult(config, model, metrics, out)


def _write_run_folder(out: Path, model: ProbingModel, best_state: dict[str, torch.Tensor] | None,
                      snapshots: list[torch.Tensor], test_zoo: AnyZoo, metrics: dict[str, Any]) -> None:
    """`model` holds the best-validation state: its probes and test representations are what the run reports."""
    if best_state is not None:
        save_tensors_atomic(out / "best.safetensors", best_state)
    save_tensors_atomic(out / "probes.safetensors", {"probes": model.probes().detach(),
                                                     "snapshots": torch.stack(snapshots)})
    if len(test_zoo):
        outputs, reps = predict(model, test_zoo)
        save_tensors_atomic(out / "test_representations.safetensors",
                      {"representations": reps, "outputs": outputs, "labels": test_zoo.labels,
                       "model_id": torch.tensor(test_zoo.table["model_id"].to_numpy())})
    write_json_atomic(out / "metrics.json", metrics)
