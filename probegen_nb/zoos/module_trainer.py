"""Train a zoo of any registered architecture (`ModuleSpec`) as one batched computation: `torch.func.grad` under
`vmap` over the model axis, each model with its own data stream and its own learning rate.

Adam is written here on the stacked tensors [M, …]: `torch.optim` takes one learning rate per parameter group, and
the stacked tensor of a parameter holds all M models, while Adam's update is invariant to scaling a gradient, so a
per-model learning rate cannot be had by scaling gradients either.

BatchNorm: gradient steps use the batch statistics (train mode), as per-model training would; the running statistics
are then recomputed in one batched pass over each model's own data (`recompute_bn_stats`, a cumulative average, the
"precise BN" of the literature) instead of tracked through the steps, which `grad` under `vmap` cannot update in place.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from tqdm.auto import tqdm

from probegen_nb.core.arch.module import ModuleSpec, template

# (step) → per-model inputs [M, B, *input_shape] and class labels [M, B]
Batches = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ModuleTrainConfig:
    """Adam on every model at once: `steps` steps of `batch_size` examples per model."""

    steps: int = 300
    batch_size: int = 64
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    bn_batches: int = 8  # batches per model for the BatchNorm statistics after training (0: keep them)


def init_params(spec: ModuleSpec, n_models: int, seed: int, device: torch.device | str = "cpu"
                ) -> dict[str, torch.Tensor]:
    """[M, …] float state of M fresh models, model i built by the constructor's own init under seed `seed + i`
    (once per zoo, so a loop over models is fine here)."""
    names = list(spec.param_shapes())
    states = []
    with torch.random.fork_rng():
        for i in range(n_models):
            torch.manual_seed(seed + i)
            states.append(spec.build_module().state_dict())
    return {k: torch.stack([s[k] for s in states]).float().to(device) for k in names}


@functools.lru_cache(maxsize=16)
def _train_template(spec: ModuleSpec) -> nn.Module:
    """The template in train mode (dropout on, BatchNorm on batch statistics, cumulative running averages)."""
    module = copy.deepcopy(template(spec).module).train()
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # running stats = the average over the batches of one `recompute_bn_stats` pass
    return module


def sample_batches(inputs: torch.Tensor, labels: torch.Tensor, allowed: torch.Tensor, batch_size: int,
                   generator: torch.Generator) -> Batches:
    """Per-model batches: model i draws (with replacement) among the examples where `allowed[i]` ([M, N] bool) is
    True, e.g. every class but the one it leaves out. inputs [N, *shape], labels [N]."""
    weights = allowed.float()  # [M, N]
    if bool((weights.sum(1) == 0).any()):
        raise ValueError(f"model {int((weights.sum(1) == 0).nonzero()[0])} is allowed no training example")

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.multinomial(weights, batch_size, replacement=True, generator=generator)  # [M, B]
        return inputs[idx.to(inputs.device)], labels[idx.to(labels.device)]  # [M, B, *shape], [M, B]
    return batches


def train_modules(spec: ModuleSpec, params: dict[str, torch.Tensor], batches: Batches, lr: torch.Tensor,
                  config: ModuleTrainConfig = ModuleTrainConfig(), progress: bool = False) -> dict[str, torch.Tensor]:
    """Train M models (params [M, …]) by cross-entropy on `batches(step)`, model i at learning rate lr[i] ([M]);
    returns the trained state [M, …] (BatchNorm statistics recomputed on `batches`, see the module docstring)."""
    module = _train_template(spec)
    bufs = template(spec).module.state_dict()
    learned = {k for k, _ in template(spec).module.named_parameters()}
    p = {k: v.detach().clone() for k, v in params.items() if k in learned}  # [M, …]
    fixed = {k: v for k, v in params.items() if k not in learned}  # buffers, unchanged by the steps
    extras = {k: v.to(lr.device).clone() for k, v in bufs.items() if not v.is_floating_point()}

    def loss(pi: dict[str, torch.Tensor], bi: dict[str, torch.Tensor], x: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor:
        own = {k: v.clone() for k, v in (bi | extras).items()}  # train-mode BatchNorm writes its buffers: copies
        return F.cross_entropy(functional_call(module, (pi, own), (x,)), y)

    step_fn = vmap(grad_and_value(loss))
    m1 = {k: torch.zeros_like(v) for k, v in p.items()}
    m2 = {k: torch.zeros_like(v) for k, v in p.items()}
    for t in tqdm(range(1, config.steps + 1), desc=f"train {spec.name} zoo", disable=not progress):
        x, y = batches(t - 1)  # [M, B, *shape], [M, B]
        grads, _ = step_fn(p, fixed, x, y)
        with torch.no_grad():
            for k, g in grads.items():  # Adam, per-model lr broadcast over each tensor's own axes
                m1[k].mul_(config.beta1).add_(g, alpha=1 - config.beta1)
                m2[k].mul_(config.beta2).addcmul_(g, g, value=1 - config.beta2)
                step = lr.view(-1, *[1] * (g.dim() - 1)) / (1 - config.beta1 ** t)
                denom = (m2[k] / (1 - config.beta2 ** t)).sqrt_().add_(config.eps)
                p[k].sub_(step * m1[k] / denom)
    out = {**p, **{k: v.clone() for k, v in fixed.items()}}
    if fixed and config.bn_batches:
        recompute_bn_stats(spec, out, batches, config.bn_batches)
    return out


@torch.no_grad()
def recompute_bn_stats(spec: ModuleSpec, params: dict[str, torch.Tensor], batches: Batches, n_batches: int) -> None:
    """BatchNorm running statistics of every model, in place: reset, then the cumulative average over `n_batches` of
    each model's own batches, in one batched train-mode pass (vmap updates the stacked buffers in place)."""
    module = _train_template(spec)
    learned = {k for k, _ in module.named_parameters()}
    bufs = {k: v for k, v in params.items() if k not in learned}  # [M, …]
    for k, v in bufs.items():
        v.fill_(1.0 if k.endswith("running_var") else 0.0)
    extras = {k: torch.zeros_like(v, device=v.device) for k, v in module.state_dict().items()
              if not v.is_floating_point()}  # num_batches_tracked: the batches seen, shared by all models
    weights = {k: v for k, v in params.items() if k in learned}
    run = vmap(lambda p, b, x: functional_call(module, (p, b, extras), (x,)))
    for i in range(n_batches):
        x, _ = batches(-1 - i)
        run(weights, bufs, x)
