"""Many probing runs of the same shapes trained as one program (`methods.run_axis.RunStack`), each run's result and
folder equal to its solo `train()` run's.

`group_runs` says which configs may share a program; `train_group` trains one such group. Each run keeps what makes
it a run: its seed (the same initial parameters as its solo run: each model is built by `build_model` from the run's
own generator), its own batch order (`randperm` from that generator every epoch), its own optimizer and schedule
(`make_optimizer`), its own best-validation model selection and its own run folder, written by the functions
`train()` writes with. Only the arithmetic is shared: every step is one batched forward and backward of R runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from probegen_nb.core.allocator import tune_cpu_allocator
from probegen_nb.core.device import describe_device, resolve_device, seed_everything
from probegen_nb.core.threads import ThreadGovernor
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.core.zoo_io import load_zoo, resolve_zoo_dir
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.evaluate import metric, metric_name
from probegen_nb.experiment.step_graph import ForwardBackward, use_cuda_graphs
from probegen_nb.experiment.train import (
    RunResult,
    _write_run_folder,
    build_model,
    checks_loss_each_step,
    is_better,
    make_optimizer,
    non_finite_loss,
    train_models,
)
from probegen_nb.methods.probing import ProbingModel, flops_per_model
from probegen_nb.methods.run_axis import RunStack, run_losses

# Config fields that are values, never shapes: runs differing only in them may share a program (the optimizer's
# hyperparameters are per run; a probe config's fields listed here change a tensor's values, not its shape or the
# module's structure). Any field not listed keeps runs apart, so a new field is safe by default.
VALUE_FIELDS = frozenset({"seed", "lr", "weight_decay", "generator_weight_decay"})
PROBE_VALUE_FIELDS = frozenset({"init_spread", "unit_variance_init", "low", "high", "std", "r_min", "r_max", "shapes",
                                "textures", "n_shapes", "dataset", "split"})


def group_key(config: RunConfig) -> str | None:
    """What runs must share to train as one program (zoo, device, protocol and every shape: n_probes, the probe
    source's kind and structure fields, predictor width and depth, batch, epochs, train models); None for a run that
    trains alone (a baseline)."""
    if not isinstance(config.method, ProbingConfig):
        return None
    d = {k: v for k, v in config.to_dict().items() if k not in VALUE_FIELDS}
    d["method"] = {k: v for k, v in d["method"].items() if k not in VALUE_FIELDS}
    d["method"]["probes"] = {k: v for k, v in d["method"]["probes"].items() if k not in PROBE_VALUE_FIELDS}
    return json.dumps(d, sort_keys=True)


def group_runs(configs: Sequence[RunConfig], max_size: int | None = None) -> list[list[int]]:
    """Positions of `configs` partitioned into groups that may train as one program (`group_key`), in order of first
    appearance, each at most `max_size` runs; a baseline run is a group of its own."""
    if max_size is not None and max_size < 1:
        raise ValueError(f"group_runs: max_size (={max_size}) must be at least 1")
    groups: dict[str, list[list[int]]] = {}
    out: list[list[int]] = []
    for i, c in enumerate(configs):
        key = group_key(c)
        if key is None:
            out.append([i])
            continue
        open_groups = groups.setdefault(key, [])
        if not open_groups or (max_size is not None and len(open_groups[-1]) >= max_size):
            open_groups.append([])
            out.append(open_groups[-1])
        open_groups[-1].append(i)
    return out


def train_group(configs: Sequence[RunConfig], zoo: AnyZoo | None = None,
                out_dirs: Sequence[str | Path | None] | None = None,
                cuda_graphs: bool | None = None) -> list[RunResult]:
    """Train the runs `configs` (one `group_key`) as one program; each result and folder as its solo `train()`'s,
    up to float reassociation in the batched matmuls. `metrics["train_seconds"]` is the group's wall time, shared by
    its `group_size` runs. `cuda_graphs` as `train()`'s: the group's step replayed as one CUDA graph."""
    configs = list(configs)
    dirs = list(out_dirs) if out_dirs is not None else [None] * len(configs)
    if not configs or len(dirs) != len(configs):
        raise ValueError(f"train_group: {len(configs)} configs and {len(dirs)} out_dirs; need one folder (or None) "
                         f"per config, at least one config")
    keys = {group_key(c) for c in configs}
    if None in keys or len(keys) > 1:
        bad = next(i for i, c in enumerate(configs) if group_key(c) is None or group_key(c) != group_key(configs[0]))
        raise ValueError(f"train_group: run {bad} (seed {configs[bad].seed}) cannot share a program with run 0: "
                         f"a baseline, or other shapes, zoo or protocol (see group_runs)")
    first = configs[0]
    dev = resolve_device(first.device)
    threads = ThreadGovernor.start("train", dev)
    if dev.type == "cpu":
        tune_cpu_allocator()
    zoo = (zoo if zoo is not None else load_zoo(resolve_zoo_dir(first.zoo_dir))).to(dev)
    classification = zoo.task.is_classification
    train_zoo = train_models(first, zoo.split("train"))
    splits = {"train": train_zoo, "val": zoo.split("val"), "test": zoo.split("test")}
    if len(train_zoo) == 0:
        raise ValueError(f"zoo {first.zoo_dir}: the train split is empty")
    gens, models = [], []
    for c in configs:  # each run seeded and built exactly as its solo run
        gens.append(seed_everything(c.seed))
        model = build_model(c, zoo, gens[-1]).to(dev)
        assert isinstance(model, ProbingModel)
        models.append(model)
    stack = RunStack(models)
    r_runs = len(configs)
    labels = {s: z.labels.to(dev) for s, z in splits.items()}
    steps_per_epoch = math.ceil(len(train_zoo) / first.batch_size)
    opts = [make_optimizer(c, m, steps_per_epoch * first.epochs) for c, m in zip(configs, models)]
    fixed = first.cache_responses and models[0].fixed_representation
    cached = {s: stack.represent_all(z) for s, z in splits.items()} if fixed else None  # [R, M_s, Q·K] each

    outs = [Path(d) if d is not None else None for d in dirs]
    name = metric_name(zoo)
    histories: list[list[dict[str, Any]]] = [[] for _ in configs]
    with torch.no_grad():
        snapshots = [[p.cpu()] for p in stack.probes()]
    bests: list[dict[str, Any]] = [{"val": -math.inf, "epoch": -1, "state": None} for _ in configs]
    n_steps, start, before = 0, 0, 0.0
    # a group killed part-way continues after its last finished epoch when every run saved that epoch (each run's
    # state is its solo run's format); otherwise every run starts again
    states = [rf.read_resume(o, c) if o is not None else None for o, c in zip(outs, configs)]
    if all(st is not None for st in states) and len({st.epoch for st in states if st is not None}) == 1:
        for r, st in enumerate(states):
            assert st is not None
            models[r].load_state_dict(st.model)
            opts[r][0].load_state_dict(st.optimizer)
            opts[r][1].load_state_dict(st.schedule)
            gens[r].set_state(st.rng)
            models[r].queries = st.queries
            histories[r], bests[r], snapshots[r] = st.history, st.best, st.snapshots
        n_steps, start, before = states[0].n_steps, states[0].epoch + 1, states[0].seconds  # type: ignore[union-attr]
    else:
        for out, c in zip(outs, configs):
            if out is not None:
                rf.start_run(out, c)
    t0 = time.perf_counter() - before
    check_each_step = checks_loss_each_step(dev)
    arange = torch.arange(r_runs, device=dev)[:, None]  # [R, 1]

    def loss_of(idx: torch.Tensor) -> torch.Tensor:  # [R]: each run's loss on its models idx[r] (idx [R, B])
        outputs = (stack.predict_rows(train_zoo, idx) if cached is None
                   else stack.predict(cached["train"][arange, idx]))  # [R, B, d_out]
        return run_losses(outputs, labels["train"][idx], classification)

    graphs = use_cuda_graphs(dev, zoo, stack, cuda_graphs)
    params = [p for opt, _ in opts for g in opt.param_groups for p in g["params"]]
    # backward of the sum of the runs' mean losses: each run's gradient is its solo gradient
    forward_backward = ForwardBackward(loss_of, params, graphs, counters=models)
    for epoch in range(start, first.epochs):
        order = torch.stack([torch.randperm(len(train_zoo), generator=g) for g in gens]).to(dev)  # [R, N]
        losses = []
        for step, idx in enumerate(order.split(first.batch_size, dim=1)):  # idx [R, B]: run r's models
            loss = forward_backward(idx)  # [R]; gradients in .grad
            if check_each_step and not torch.isfinite(loss).all():
                r = int((~torch.isfinite(loss)).nonzero()[0])
                raise _in_run(non_finite_loss(loss[r], epoch, step, outs[r]), r, configs[r])
            for opt, schedule in opts:
                opt.step()
                schedule.step()
            losses.append(loss)
            threads.update()
        n_steps += len(losses)
        per_step = torch.stack(losses)  # [steps, R]
        finite = torch.isfinite(per_step)
        if not finite.all():
            step, r = (int(v) for v in (~finite).nonzero()[0])
            raise _in_run(non_finite_loss(per_step[step, r], epoch, step, outs[r]), r, configs[r])
        mean_loss = per_step.mean(0)  # [R]
        predictions = {s: stack.predict_all(z, None if cached is None else cached[s]) for s, z in splits.items()}
        with torch.no_grad():
            probes_now = stack.probes().cpu()  # [R, Q, *input_shape]
        for r, (model, (opt, _)) in enumerate(zip(models, opts)):
            record: dict[str, Any] = {"epoch": epoch, "train_loss": float(mean_loss[r]),
                                      "lr": opt.param_groups[0]["lr"]}
            for s, z in splits.items():
                record[f"{s}_{name}"] = metric(zoo, predictions[s][r], labels[s]) if len(z) else float("nan")
            histories[r].append(record)
            snapshots[r].append(probes_now[r])
            if bests[r]["state"] is None or is_better(record[f"val_{name}"], bests[r]["val"]):
                bests[r] = {"val": record[f"val_{name}"], "epoch": epoch, "test": record[f"test_{name}"],
                            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            if outs[r] is not None:
                rf.save_last(outs[r], model.state_dict())  # type: ignore[arg-type]
        seconds_so_far = time.perf_counter() - t0
        for r, (c, model, (opt, schedule), out) in enumerate(zip(configs, models, opts, outs)):
            if out is not None:
                rf.save_resume(out, c, rf.ResumeState(epoch, dict(model.state_dict()), opt.state_dict(),
                                                      schedule.state_dict(), gens[r].get_state(), histories[r],
                                                      bests[r], snapshots[r], n_steps, seconds_so_far,
                                                      model.queries))
    seconds = time.perf_counter() - t0
    flops = flops_per_model(models[0], zoo)  # runs of one group share every shape, hence their FLOPs
    thread_info = threads.finish()  # after the FLOP count, as in train(): under the governor's threads
    results = []
    for r, (c, model, best, history, out) in enumerate(zip(configs, models, bests, histories, outs)):
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        metrics = {
            "metric": name,
            "history": history,
            "best_epoch": best["epoch"],
            f"best_val_{name}": best["val"],
            f"test_{name}": best["test"],
            f"last_test_{name}": history[-1][f"test_{name}"] if history else float("nan"),
            "flops_per_model": flops,
            "train_seconds": seconds,  # the group's: its runs trained together
            "steps": n_steps,
            "responses_cached": cached is not None,
            "n_train_models": len(train_zoo),
            **model.param_counts(),
            "threads": thread_info,
            "device": describe_device(dev, threads=int(thread_info["threads"]) if thread_info["threads"] else None),
            "config_sha256": rf.config_digest(c),
            "group_size": r_runs,  # runs trained as one program with this one
            "cuda_graphs": graphs,  # whether the group's steps were replayed as a CUDA graph
        }
        if out is not None:
            _write_run_folder(out, model, best["state"], snapshots[r], splits["test"], metrics)
        results.append(RunResult(c, model, metrics, out))
    return results


def _in_run(error: Exception, r: int, config: RunConfig) -> Exception:
    """The error of run r, named (its type kept, so a sweep records what a solo run would)."""
    return type(error)(f"run {r} of the group (seed {config.seed}): {error}")
