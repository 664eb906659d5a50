"""A probing model: a probe source, the frozen zoo models' answers to the probes, and an MLP on the answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.core.arch.callable import CallableSpec
from probegen_nb.core.arch.cnn import cnn_forward_runs
from probegen_nb.core.arch.registry import ArchSpec, forward
from probegen_nb.core.zoo import AnyZoo, Batch, MixedZoo
from probegen_nb.methods.learner import EpochFit, eval_outputs
from probegen_nb.methods.predictor import Predictor
from probegen_nb.probes.base import ProbeSource


class ProbingModel(nn.Module):
    """Represents each model by its outputs on the probes (concatenated in probe order) and predicts from that.

    The zoo's weights are inputs, never parameters: gradients flow through the batched forward into the probes.
    A `methods.learner.Learner`: `probe_weight_decay` is the probe source's parameter group's.
    """

    saves_checkpoints = True

    def __init__(self, specs: Sequence[ArchSpec], probes: ProbeSource, n_model_outputs: int, d_out: int,
                 hidden: int, n_hidden: int, probe_weight_decay: float = 0.0) -> None:
        super().__init__()
        self.probe_weight_decay = probe_weight_decay
        for spec in specs:
            check_probe_shape(probes, spec)
            if isinstance(spec, CallableSpec) and not spec.differentiable and probes.learned:
                raise ValueError(f"{type(probes).__name__} learns its probes through the models' gradients, but the "
                                 f"zoo's black-box models are not differentiable: use fixed probes or probes "
                                 f"transferred from a white-box run (FixedProbes)")
        self.specs = tuple(specs)
        self.probes = probes
        self.rep_dim = probes.n_probes * n_model_outputs
        self.predictor = Predictor(self.rep_dim, d_out, hidden, n_hidden)
        self.queries = 0  # probes × models forwarded so far: a black-box model's cost

    def represent(self, params: Mapping[str, torch.Tensor], probes: torch.Tensor | None = None,
                  spec: ArchSpec | None = None) -> torch.Tensor:
        """[B, Q·K]: every model's outputs on every probe (models of one architecture, the first by default)."""
        x = self.probes() if probes is None else probes  # [Q, *input_shape]
        out = forward(spec or self.specs[0], params, x)  # [B, Q, K]
        self.queries += out.shape[0] * out.shape[1]
        return out.flatten(1)  # [B, Q·K]

    def represent_rows(self, zoo: AnyZoo, index: torch.Tensor, probes: torch.Tensor | None = None,
                       by_layer_shapes: bool | None = None) -> torch.Tensor:
        """[len(index), Q·K] for the zoo's models at row positions `index`, in any order: one batched forward per
        architecture, or per set of architectures that share their layer shapes (`by_layer_shapes`; by default where
        that is the faster, see `shares_forwards`)."""
        x = self.probes() if probes is None else probes  # [Q, *input_shape]
        shared = shares_forwards(x.device) if by_layer_shapes is None else by_layer_shapes
        self.queries += len(index) * x.shape[0]
        return zoo.map_rows(index, lambda b: forward_batch(b, x).flatten(1), (self.rep_dim,), shared)  # [B, Q·K]

    @property
    def fixed_representation(self) -> bool:
        """Whether a model's representation stays the same through training (fixed probes): then `train()` computes
        the zoo's answers once."""
        return not self.probes.learned

    def forward(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.predictor(self.represent(params))

    def predict_rows(self, zoo: AnyZoo, index: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.represent_rows(zoo, index))

    # --- the Learner protocol (methods.learner) ---

    def self_fit(self, train_zoo: AnyZoo, labels: torch.Tensor, representations: torch.Tensor | None,
                 seed: int) -> EpochFit | None:
        return None  # trained by train()'s gradient steps

    def n_epochs(self, configured: int) -> int:
        return configured

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return [{"params": list(self.probes.parameters()), "weight_decay": self.probe_weight_decay},
                {"params": list(self.predictor.parameters()), "weight_decay": weight_decay}]

    @torch.no_grad()
    def represent_all(self, zoo: AnyZoo, batch_size: int = 1024) -> torch.Tensor:
        """[M, Q·K] for all the zoo's models (zoo on the model's device), `batch_size` models at a time."""
        probes = self.probes()  # [Q, *input_shape]: generated once for the whole zoo
        index = torch.arange(len(zoo), device=probes.device)
        reps = [self.represent_rows(zoo, i, probes) for i in index.split(batch_size)]
        return torch.cat(reps) if reps else probes.new_zeros(0, self.rep_dim)

    def predict_from(self, representations: torch.Tensor) -> torch.Tensor:
        return eval_outputs(self, self.predictor, representations)

    def predict_reps(self, representations: torch.Tensor) -> torch.Tensor:
        return self.predictor(representations)

    def flops_per_model(self, zoo: AnyZoo) -> int:
        return flops_per_model(self, zoo)

    def param_counts(self) -> dict[str, int]:
        return {"probe_params": sum(p.numel() for p in self.probes.parameters()),
                "predictor_params": sum(p.numel() for p in self.predictor.parameters()),
                "n_params": sum(p.numel() for p in self.parameters())}

    def snapshot(self) -> torch.Tensor | None:
        return self.probes().detach().cpu()  # [Q, *input_shape]


def shares_forwards(device: torch.device) -> bool:
    """Whether architectures that share their layer shapes run as one batched forward by default: not on a CPU, where
    oneDNN's grouped convolution gets slower per model as models are added (2-core CPU, Q = 128, a step of 32 models:
    32 Wild Park architectures that differ only in activations 0.60 steps/s one forward each, 0.17 as one; the Small
    CNN Zoo's relu and tanh groups 4.5 and 3.4; `benchmarks/bench_probe_training.py`, `wild_park`). Elsewhere yes:
    fewer, larger kernels (unmeasured here; the benchmark records both)."""
    return device.type != "cpu"


def forward_batch(batch: Batch, x: torch.Tensor) -> torch.Tensor:
    """[B, Q, K]: the batch's models on probes x, one batched forward (architectures sharing one only as CNNs that
    differ in their activations)."""
    if len(batch.specs) == 1:
        return forward(batch.specs[0], batch.params, x)
    return cnn_forward_runs(batch.specs, batch.counts, batch.params, x)  # type: ignore[arg-type]


def check_probe_shape(probes: ProbeSource, spec: ArchSpec) -> None:
    """Refuse, before any training, a probe source whose inputs the zoo's architecture cannot take."""
    if tuple(probes.input_shape) != tuple(spec.input_shape):
        raise ValueError(f"{type(probes).__name__} makes probes of shape {tuple(probes.input_shape)}, but the zoo's "
                         f"{type(spec).__name__} models take inputs of shape {tuple(spec.input_shape)}")


@torch.no_grad()
def flops_per_model(model: ProbingModel, zoo: AnyZoo) -> int:
    """FLOPs to represent one model and predict from it: its forward on all probes, then the predictor
    (averaged over the zoo's architectures, weighted by their model counts).

    The probes are generated once for the whole zoo, so the generator is not counted.
    """
    groups = zoo.groups if isinstance(zoo, MixedZoo) else (zoo,)
    probes = model.probes()
    total = 0.0
    for group in groups:
        if len(group) == 0:  # a subset that kept no model of this architecture (weight 0, and no model to run)
            continue
        with FlopCounterMode(display=False) as counter:
            model.predictor(model.represent({k: v[:1] for k, v in group.params.items()}, probes, group.spec))
        total += counter.get_total_flops() * len(group) / len(zoo)
    return round(total)
