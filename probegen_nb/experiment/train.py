"""One training run: probes, generator and predictor trained jointly through the frozen zoo; one run folder.

Every notebook and benchmark trains through `train()`. A run folder holds `config.json`, `metrics.json` (per-epoch
history, best-val and last-step test metric, FLOPs per model, wall time, device), `best.safetensors` and
`last.safetensors` checkpoints, `probes.safetensors` (the best-validation probes and one snapshot per epoch) and
`test_representations.safetensors` (of the best-validation model, which `train()` also returns).

A config with a `baseline` trains that weight-space baseline through the same loop and writes the same folder, less
`probes.safetensors`; StatNN's trees are fit by scikit-learn instead, boosting stages standing for epochs, and keep
no checkpoints (see `probegen_nb.baselines.trees`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from probegen_nb.baselines.base import Baseline, rows_params, shared_param_shapes
from probegen_nb.baselines.base import flops_per_model as baseline_flops_per_model
from probegen_nb.baselines.nfn import NFNConfig
from probegen_nb.baselines.statnn import StatNNConfig, layer_statistics, zoo_statistics
from probegen_nb.baselines.trees import StatNNTrees, fit_trees
from probegen_nb.baselines.weight_mlp import WeightMLPConfig
from probegen_nb.core.allocator import tune_cpu_allocator
from probegen_nb.core.device import describe_device, resolve_device, seed_everything
from probegen_nb.core.jobs import save_tensors_atomic, write_json_atomic
from probegen_nb.core.threads import ThreadGovernor
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.core.zoo_io import load_zoo, resolve_zoo_dir
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.evaluate import metric, metric_name, predict, predict_from, represent_all
from probegen_nb.methods.probing import ProbingModel, flops_per_model
from probegen_nb.probes.base import ProbeSource
from probegen_nb.probes.registry import check_fits


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/Inf; the message names the epoch and step and where the last good checkpoint is."""


Model = ProbingModel | Baseline  # what the torch loop trains


@dataclass
class RunResult:
    config: RunConfig
    model: Model | StatNNTrees
    metrics: dict[str, Any]
    out_dir: Path | None


def loss_fn(outputs: torch.Tensor, labels: torch.Tensor, classification: bool) -> torch.Tensor:
    """Cross-entropy for class labels, MSE for scalar labels."""
    return F.cross_entropy(outputs, labels) if classification else F.mse_loss(outputs.squeeze(1), labels)


def make_optimizer(config: RunConfig, model: Model,
                   total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam at `config.lr` on the probe source and the predictor (each with its own weight decay; a baseline's
    parameters with the predictor's), cosine-annealed to 0 over all `total_steps` (the paper's protocol)."""
    if isinstance(model, ProbingModel):
        groups: list[dict[str, Any]] = [
            {"params": list(model.probes.parameters()), "weight_decay": config.generator_weight_decay},
            {"params": list(model.predictor.parameters()), "weight_decay": config.weight_decay}]
    else:
        groups = [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    # CUDA: the fused kernel updates every parameter in one launch (the foreach path's launches dominate a step of
    # 32 small models); the CPU keeps the default path, whose results the tests pin
    fused = all(p.is_cuda for g in groups for p in g["params"])
    optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=config.lr, fused=fused or None)
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
                probes: ProbeSource | None = None) -> Model:
    """The run's model for this zoo: the probing model (probe shapes are checked against the architecture here,
    before training), or the config's baseline with its input normalisation fitted on the run's train models."""
    d_out = zoo.task.n_classes if zoo.task.n_classes is not None else 1  # classes, or 1 regressed scalar
    if config.baseline is not None:
        if probes is not None:
            raise ValueError(f"probes= is for probing runs; this config trains the {config.baseline.kind} baseline")
        if isinstance(config.baseline, StatNNConfig) and config.baseline.fits_trees:
            raise ValueError("StatNNConfig(head='gbt') fits scikit-learn trees: train() runs it, build_model cannot")
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            return config.baseline.build(train_models(config, zoo.split("train")), d_out, config.hidden,
                                         config.n_hidden, generator)
    spec = zoo.specs[0]
    if probes is None:
        check_fits(config.probes, spec.input_shape)
    source = probes if probes is not None else config.probes.build(config.n_probes, spec.input_shape, generator)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return ProbingModel(zoo.specs, source, spec.out_dim, d_out, config.hidden, config.n_hidden)


def train(config: RunConfig, zoo: AnyZoo | None = None, out_dir: str | Path | None = None,
          probes: ProbeSource | None = None, progress: bool = True) -> RunResult:
    """Train one probing model (or the config's baseline) on the zoo's train split, evaluating val and test after
    every epoch."""
    dev = resolve_device(config.device)
    threads = ThreadGovernor.start("train", dev)  # CPU: intra-op threads fitted to the machine's load
    if dev.type == "cpu":
        tune_cpu_allocator()  # CNN zoos: the probe tiles' activations reuse heap memory (measured: 1.2-1.5x a step)
    gen = seed_everything(config.seed)
    zoo = (zoo if zoo is not None else load_zoo(resolve_zoo_dir(config.zoo_dir))).to(dev)
    classification = zoo.task.is_classification
    train_zoo = train_models(config, zoo.split("train"))
    # evaluated after every epoch; "train" is the models trained on (the split, or its first `max_train_models`): the
    # unseen rest of the split is no train metric, and evaluating it made a capped run's epochs up to 8x longer
    splits = {"train": train_zoo, "val": zoo.split("val"), "test": zoo.split("test")}
    if len(train_zoo) == 0:
        raise ValueError(f"zoo {config.zoo_dir}: the train split is empty")
    if isinstance(config.baseline, StatNNConfig) and config.baseline.fits_trees:
        if probes is not None:
            raise ValueError("probes= is for probing runs; this config fits StatNN's trees")
        return _train_trees(config, zoo, splits, train_zoo, out_dir, threads)
    model = build_model(config, zoo, gen, probes).to(dev)
    labels = {s: z.labels.to(dev) for s, z in splits.items()}
    train_labels = train_zoo.labels.to(dev)

    steps_per_epoch = math.ceil(len(train_zoo) / config.batch_size)
    optimizer, schedule = make_optimizer(config, model, steps_per_epoch * config.epochs)
    # Fixed probes never change, so neither do the models' answers: compute them once and train the predictor on
    # them (as the public code does), instead of pushing the same probes through the zoo at every step.
    fixed = config.cache_responses and model.fixed_representation
    cached = {s: represent_all(model, z) for s, z in splits.items()} if fixed else None

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        start_run_folder(out, config)
    name = metric_name(zoo)
    history: list[dict[str, Any]] = []
    snapshots = [model.probes().detach().cpu()] if isinstance(model, ProbingModel) else []
    best: dict[str, Any] = {"val": -math.inf, "epoch": -1, "state": None}
    t0, n_steps = time.perf_counter(), 0
    check_each_step = checks_loss_each_step(dev)
    bar = tqdm(range(config.epochs), desc=run_label(config), disable=not progress)
    for epoch in bar:
        order = torch.randperm(len(train_zoo), generator=gen).to(dev)
        losses = []
        for step, idx in enumerate(order.split(config.batch_size)):
            outputs = model.predict_rows(train_zoo, idx) if cached is None else model.predictor(cached["train"][idx])
            loss = loss_fn(outputs, train_labels[idx], classification)
            if check_each_step and not torch.isfinite(loss):
                raise non_finite_loss(loss, epoch, step, out)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
            threads.update()
        n_steps += len(losses)
        finite = torch.isfinite(torch.stack(losses))  # [steps]; on a GPU the epoch's one look at the losses
        if not finite.all():
            step = int((~finite).nonzero()[0])
            raise non_finite_loss(losses[step], epoch, step, out)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": float(torch.stack(losses).mean()),
                                  "lr": optimizer.param_groups[0]["lr"]}  # after the epoch's last step
        for s, z in splits.items():
            outputs = predict(model, z)[0] if cached is None else predict_from(model, cached[s])
            record[f"{s}_{name}"] = metric(zoo, outputs, labels[s]) if len(z) else float("nan")
        history.append(record)
        if isinstance(model, ProbingModel):
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
        "flops_per_model": (flops_per_model(model, zoo) if isinstance(model, ProbingModel)
                            else baseline_flops_per_model(model, zoo)),
        "train_seconds": seconds,
        "steps": n_steps,  # optimizer steps taken: ceil(train models / batch) per epoch
        "responses_cached": cached is not None,  # fixed probes: answers computed once, the predictor trained on them
        "n_train_models": len(train_zoo),
        "probe_params": sum(p.numel() for p in model.probes.parameters()) if isinstance(model, ProbingModel) else 0,
        "predictor_params": sum(p.numel() for p in model.predictor.parameters()),
        "n_params": sum(p.numel() for p in model.parameters()),  # everything trained: probes or encoder + predictor
        "threads": threads.finish(),  # the intra-op threads used and why (see core.threads.ThreadGovernor)
        "device": describe_device(dev),
        "config_sha256": config_digest(config),  # the completion record names the config it completes
        "queries": model.queries if isinstance(model, ProbingModel) else 0,  # probes × models forwarded, evaluation too
    }
    if out is not None:
        _write_run_folder(out, model, best["state"], snapshots, splits["test"], metrics)
    return RunResult(config, model, metrics, out)


def checks_loss_each_step(device: torch.device) -> bool:
    """The CPU stops at the first non-finite loss; a GPU would wait at every step for the loss to reach the host, so
    it looks at the epoch's losses once, after the epoch, and names the same first bad step."""
    return device.type == "cpu"


# What a run writes besides config.json; metrics.json, written last, is the record that the run finished
RESULT_FILES = ("metrics.json", "best.safetensors", "probes.safetensors", "test_representations.safetensors",
                "last.safetensors")


def start_run_folder(out: Path, config: RunConfig) -> None:
    """Start a run in `out`: an earlier run's results there are removed first (its completion record, metrics.json,
    before anything else), so a run that is stopped part-way leaves a folder that reads as unfinished, never as the
    old run under the new config."""
    out.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    write_json_atomic(out / "config.json", config.to_dict())


def config_digest(config: RunConfig) -> str:
    """sha256 of what the run is (config.json without where the zoo lies and which device ran it, which a user may
    edit when moving things): metrics.json names the config it completes."""
    what = {k: v for k, v in config.to_dict().items() if k not in ("zoo_dir", "device")}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def non_finite_loss(loss: torch.Tensor, epoch: int, step: int, out: Path | None) -> NonFiniteLossError:
    """The error of a run whose loss stopped being finite, pointing at the last epoch's checkpoint when one exists."""
    where = f" (last good checkpoint: {out / 'last.safetensors'})" if out and epoch else ""
    return NonFiniteLossError(f"loss became {loss.detach().item()} at epoch {epoch}, step {step}{where}")


def run_label(config: RunConfig) -> str:
    """What a progress bar calls the run: the probe source and Q, or the baseline and its variant."""
    b = config.baseline
    if b is None:
        return f"{config.probes.kind} Q={config.n_probes}"
    if isinstance(b, StatNNConfig):
        return f"{b.kind} {b.head}"
    if isinstance(b, NFNConfig):
        return f"{b.kind} {b.mode}"
    return f"{b.kind}{' +aug' * b.augment}" if isinstance(b, WeightMLPConfig) else b.kind


def _write_run_folder(out: Path, model: Model, best_state: dict[str, torch.Tensor] | None,
                      snapshots: list[torch.Tensor], test_zoo: AnyZoo, metrics: dict[str, Any]) -> None:
    """`model` holds the best-validation state: its probes and test representations are what the run reports."""
    if best_state is not None:
        save_tensors_atomic(out / "best.safetensors", best_state)
    if isinstance(model, ProbingModel):
        save_tensors_atomic(out / "probes.safetensors", {"probes": model.probes().detach(),
                                                         "snapshots": torch.stack(snapshots)})
    if len(test_zoo):
        _write_test_representations(out, *predict(model, test_zoo), test_zoo)
    write_json_atomic(out / "metrics.json", metrics)


def _write_test_representations(out: Path, outputs: torch.Tensor, reps: torch.Tensor, test_zoo: AnyZoo) -> None:
    save_tensors_atomic(out / "test_representations.safetensors",
                        {"representations": reps, "outputs": outputs, "labels": test_zoo.labels,
                         "model_id": torch.tensor(test_zoo.table["model_id"].to_numpy())})


def _train_trees(config: RunConfig, zoo: AnyZoo, splits: dict[str, AnyZoo], train_zoo: AnyZoo,
                 out_dir: str | Path | None, threads: ThreadGovernor) -> RunResult:
    """StatNN's trees as a `train()` run: the same splits, seed and metrics, boosting stages for epochs (fit once,
    evaluated after every stage, the best-validation stage count kept), the same run folder less the checkpoints."""
    head = config.baseline
    assert isinstance(head, StatNNConfig)
    names = tuple(shared_param_shapes(zoo))
    features = {s: zoo_statistics(z, names).cpu().numpy() for s, z in splits.items()}  # [M_s, 7·T] each
    labels = {s: z.labels for s, z in splits.items()}  # on the CPU, beside the trees' outputs
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        start_run_folder(out, config)
    name = metric_name(zoo)
    t0 = time.perf_counter()
    trees = fit_trees(head, features["train"], labels["train"].numpy(), zoo.task.n_classes, config.seed)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val": -math.inf, "epoch": -1, "test": math.nan}
    staged = {s: trees.staged_outputs(features[s]) for s in splits}
    for stage, outputs in enumerate(zip(*staged.values())):
        record: dict[str, Any] = {"epoch": stage, "train_loss": float(trees.estimator.train_score_[stage]),
                                  "lr": head.tree_learning_rate}
        for s, o in zip(staged, outputs):
            record[f"{s}_{name}"] = metric(zoo, torch.from_numpy(o), labels[s]) if len(o) else float("nan")
        history.append(record)
        if best["epoch"] < 0 or is_better(record[f"val_{name}"], best["val"]):
            best = {"val": record[f"val_{name}"], "epoch": stage, "test": record[f"test_{name}"]}
    trees.n_stages = best["epoch"] + 1  # model selection: the run's trees are its best-validation stages
    seconds = time.perf_counter() - t0
    with FlopCounterMode(display=False) as counter:  # the statistics: reductions and a sort, which it counts as 0
        layer_statistics(rows_params(train_zoo, torch.zeros(1, dtype=torch.long, device=zoo.device)), names)
    metrics = {
        "metric": name,
        "history": history,
        "best_epoch": best["epoch"],
        f"best_val_{name}": best["val"],
        f"test_{name}": best["test"],
        f"last_test_{name}": history[-1][f"test_{name}"],
        "flops_per_model": counter.get_total_flops() + trees.comparisons(features["train"][:1]),
        "train_seconds": seconds,
        "steps": int(trees.estimator.n_estimators_),  # boosting stages fitted
        "responses_cached": True,  # the statistics are computed once
        "n_train_models": len(train_zoo),
        "probe_params": 0,
        "predictor_params": trees.n_nodes(),  # nodes of the trees used: split (feature, threshold) or leaf value
        "n_params": trees.n_nodes(),
        "threads": threads.finish(),
        "device": describe_device(torch.device("cpu")),  # scikit-learn's trees run on the CPU
        "config_sha256": config_digest(config),
    }
    if out is not None:
        test = splits["test"]
        if len(test):
            _write_test_representations(out, trees.predict(features["test"]), torch.from_numpy(features["test"]),
                                        test)
        write_json_atomic(out / "metrics.json", metrics)
    return RunResult(config, trees, metrics, out)
