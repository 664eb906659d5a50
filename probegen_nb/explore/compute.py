"""The probe explorer's data and computations (notebook 04): what the views show, without any plotting.

`Explorer` gathers one zoo's test models, the probes of every trained run on it (and a synthetic set for
comparison), each run's responses and predictions. The functions below answer the questions the views ask: which
models match a query, what a latent code generates, how the probes moved while training, what a deep linear
generator collapses to and why that gives structured probes. `views` turns the answers into figures, `widgets`
wires them to controls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.registry import forward
from probegen_nb.core.arch.siren import SirenSpec, reconstruct
from probegen_nb.core.zoo import AnyZoo, Zoo
from probegen_nb.experiment.config import ProbingConfig
from probegen_nb.experiment.evaluate import predict
from probegen_nb.experiment.runs import LoadedRun
from probegen_nb.probes.base import Activation
from probegen_nb.probes.coords import DeepLinearGenerator, ProbeGenConfig, UniformConfig, VanillaConfig
from probegen_nb.probes.dead_leaves import DeadLeavesConfig
from probegen_nb.probes.images import ConvProbeGenConfig, ConvProbeGenerator, ImageVanillaConfig, LinearImageGenConfig
from probegen_nb.probes.registry import ProbeConfig

SYNTHETIC_KINDS = ("uniform", "gaussian", "dead-leaves", "gaussian-image")

LatentGenerator = DeepLinearGenerator | ConvProbeGenerator  # probe sources with latent codes [Q, Z]


@dataclass(frozen=True)
class ModelQuery:
    """Which test models to list: by class (classification zoos) and/or by a range of the label (e.g. accuracy)."""

    label: int | None = None  # a class id; None: any
    label_range: tuple[float, float] | None = None  # inclusive bounds on a scalar label; None: any


@dataclass
class Explorer:
    """A zoo's test models seen through every trained run on it. All tensors on the CPU.

    `probes` holds every probe set by name (trained runs and synthetic ones); `responses` and `outputs` exist for the
    trained runs. `main` names the run whose generator the latent and anatomy views explore.
    """

    runs: dict[str, LoadedRun]
    main: str
    test: AnyZoo
    probes: dict[str, torch.Tensor]  # name → [Q, *input_shape]
    responses: dict[str, torch.Tensor]  # run → [M, Q, K]
    outputs: dict[str, torch.Tensor]  # run → predictor outputs [M, d_out]
    labels: torch.Tensor  # [M]
    background: np.ndarray | None = None  # INR zoos: the mean test image [H, W], drawn under coordinate probes
    synthetic: list[str] = field(default_factory=list)  # names in `probes` that no run trained

    @classmethod
    def from_runs(cls, runs: dict[str, LoadedRun], main: str | None = None, max_models: int | None = None,
                  seed: int = 0) -> Explorer:
        """Runs trained on one zoo; `main` defaults to the first run with a generator; a synthetic probe set
        (uniform points for INRs, dead leaves for images) is added when no run used one; `max_models` keeps the
        first test models only (a quick look at a big zoo)."""
        if not runs:
            raise ValueError("the explorer needs at least one run")
        first = next(iter(runs.values()))
        test = first.zoo.split("test").to("cpu")
        if max_models is not None:
            test = test.subset(range(min(max_models, len(test))))
        if len(test) == 0:
            raise ValueError(f"{first.folder}: the zoo has no test models to explore")
        main = main or next((n for n, r in runs.items() if hasattr(r.model.probes, "generate")), next(iter(runs)))
        if main not in runs:
            raise ValueError(f"main run {main!r} is not one of {sorted(runs)}")
        probes, responses, outputs = {}, {}, {}
        for name, run in runs.items():
            model = run.model.to("cpu").eval()
            out, rep = predict(model, test)
            probes[name] = model.probes().detach()
            responses[name] = rep.reshape(len(test), model.probes.n_probes, -1)
            outputs[name] = out
        synthetic = []
        if not any(isinstance(r.config.method, ProbingConfig) and r.config.method.probes.kind in SYNTHETIC_KINDS
                   for r in runs.values()):
            spec = test.specs[0]
            config = DeadLeavesConfig() if isinstance(spec, CNNSpec) else UniformConfig()
            name = f"{config.kind} (untrained)"
            q = first.model.probes.n_probes
            probes[name] = config.build(q, spec.input_shape, torch.Generator().manual_seed(seed))().detach()
            synthetic.append(name)
        background = None
        if isinstance(test, Zoo) and isinstance(test.spec, SirenSpec):  # coordinate probes: show the mean image
            background = reconstruct(test.spec, test.params).mean(axis=0)
        return cls(runs, main, test, probes, responses, outputs, test.labels, background, synthetic)

    # ---------------------------------------------------------------- facts about the zoo

    @property
    def is_image(self) -> bool:
        return len(self.test.specs[0].input_shape) == 3

    @property
    def is_classification(self) -> bool:
        return self.test.task.is_classification

    @property
    def model_ids(self) -> np.ndarray:
        return self.test.table["model_id"].to_numpy()

    @property
    def learned_runs(self) -> list[str]:
        """The runs whose probes were learned (and so moved while training)."""
        return [n for n, r in self.runs.items() if r.model.probes.learned]

    @property
    def generator(self) -> LatentGenerator | None:
        """The main run's probe generator, if its probes come from latent codes."""
        source = self.runs[self.main].model.probes
        return source if isinstance(source, (DeepLinearGenerator, ConvProbeGenerator)) else None

    def row_of(self, model_id: int) -> int:
        rows = np.flatnonzero(self.model_ids == model_id)
        if len(rows) == 0:
            raise KeyError(f"model_id {model_id} is not among the {len(self.model_ids)} test models")
        return int(rows[0])

    def find_models(self, query: ModelQuery = ModelQuery()) -> np.ndarray:
        """Row positions of the test models matching the query, in zoo order."""
        labels = self.labels.numpy()
        keep = np.ones(len(labels), dtype=bool)
        if query.label is not None:
            keep &= labels == query.label
        if query.label_range is not None:
            lo, hi = query.label_range
            keep &= (labels >= lo) & (labels <= hi)
        return np.flatnonzero(keep)

    def model_options(self, query: ModelQuery = ModelQuery(), include: list[int] | tuple[int, ...] = (),
                      limit: int = 300) -> list[tuple[str, int]]:
        """(description, row) pairs for a model picker: the first `limit` matches, plus the rows in `include`."""
        rows = list(dict.fromkeys([*self.find_models(query)[:limit].tolist(), *include]))
        return [(self.describe(r), int(r)) for r in rows]

    def describe(self, row: int) -> str:
        """One line naming a test model: its id, label, and for CNN zoos the hyper-parameters that shaped it."""
        r = self.test.table.iloc[row]
        if self.is_classification:
            return f"model {r['model_id']} · class {r[self.test.task.label_column]}"
        extra = [f"{k}={r[k]}" for k in ("activation", "optimizer", "step") if k in r]
        if "lr" in r:
            extra.append(f"lr={r['lr']:.1e}")
        return f"model {r['model_id']} · test acc {r[self.test.task.label_column]:.3f} · " + " ".join(extra)

    def prediction(self, row: int, run: str | None = None) -> torch.Tensor:
        """The run's prediction for one test model: class probabilities, or the predicted scalar [1]."""
        out = self.outputs[run or self.main][row]
        return out.softmax(0) if self.is_classification else out

    def model_params(self, row: int) -> tuple[object, dict[str, torch.Tensor]]:
        """(spec, parameters of one model, each with a leading batch dimension of 1)."""
        batch, = self.test.batches(torch.tensor([row]), by_layer_shapes=False)
        return batch.specs[0], batch.params

    def responses_to(self, probes: torch.Tensor, rows: np.ndarray | list[int]) -> torch.Tensor:
        """[len(rows), N, K]: the chosen test models' outputs on any probes [N, *input_shape], batched per
        architecture."""
        index = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        with torch.no_grad():  # map_rows keeps the requested order, whatever the architectures
            return self.test.map_rows(index, lambda b: forward(b.specs[0], b.params, probes),
                                      (len(probes), self.test.specs[0].out_dim))


# ---------------------------------------------------------------- latent codes


@dataclass(frozen=True)
class LatentBasis:
    """Principal directions of a generator's learned latent codes: sliders move along these, in units of the
    latents' own spread, so every slider changes the probe by a comparable, meaningful amount."""

    directions: torch.Tensor  # [k, Z], orthonormal rows
    scales: torch.Tensor  # [k]: the latents' standard deviation along each direction


def latent_basis(generator: LatentGenerator, k: int = 4) -> LatentBasis:
    z = generator.latents.detach()
    centred = z - z.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    k = min(k, vh.shape[0])
    return LatentBasis(vh[:k], s[:k] / math.sqrt(max(1, len(z) - 1)))


def latent_code(generator: LatentGenerator, i: int, j: int | None = None, t: float = 0.0,
                offsets: list[float] | tuple[float, ...] = (), basis: LatentBasis | None = None) -> torch.Tensor:
    """[Z]: probe i's latent moved a fraction t towards probe j's, plus `offsets` (in standard deviations) along
    the basis directions."""
    z = generator.latents.detach()
    code = z[i] if j is None else torch.lerp(z[i], z[j], t)
    if offsets:
        basis = basis or latent_basis(generator, len(offsets))
        code = code + (torch.tensor(offsets[: len(basis.scales)]) * basis.scales) @ basis.directions
    return code


@torch.no_grad()
def generate(generator: LatentGenerator, codes: torch.Tensor) -> torch.Tensor:
    """Probes [N, *input_shape] for latent codes [N, Z] (or one code [Z] → [1, …])."""
    return generator.generate(codes.reshape(-1, codes.shape[-1]))


# ---------------------------------------------------------------- training replay


def probe_displacement(snapshots: torch.Tensor, epoch: int) -> float:
    """Mean distance (L2 over each probe's values) the probes moved from their initial values by `epoch`."""
    if not 0 <= epoch < len(snapshots):
        raise IndexError(f"epoch {epoch} is outside the {len(snapshots)} saved snapshots (0 = before training)")
    return float((snapshots[epoch] - snapshots[0]).flatten(1).norm(dim=1).mean())


# ---------------------------------------------------------------- generator anatomy


def collapse(generator: LatentGenerator) -> tuple[torch.Tensor, torch.Tensor]:
    """A deep linear generator's layer stack as the single affine map it is: (A [D, Z], b [D]) with
    pre_output(z) = A z + b. For a non-linear stack this is only its linearisation at z = 0."""
    z0 = torch.zeros(1, generator.latents.shape[1])
    with torch.no_grad():
        b = generator.pre_output(z0)[0]
    a = jacobian_at(generator, z0)[0]
    return a, b


def jacobian_at(generator: LatentGenerator, latents: torch.Tensor) -> torch.Tensor:
    """[N, D, Z]: d pre_output / d z at each latent code (forward mode: Z columns, far fewer than D rows)."""
    f = lambda z: generator.pre_output(z[None])[0]
    with torch.no_grad():
        return torch.func.vmap(torch.func.jacfwd(f))(latents.detach())


def effective_rank(singular_values: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values (Roy & Vetterli, 2007): how many directions carry weight."""
    s = singular_values.clamp_min(0)
    if float(s.sum()) == 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass(frozen=True)
class Anatomy:
    """Why a deep linear generator gives structured probes, in numbers."""

    linear_singular_values: torch.Tensor  # [r]: of the collapsed map A
    linear_effective_rank: float
    nonlinear_singular_values: torch.Tensor | None  # [Q, r]: of the non-linear generator's Jacobian at each probe
    nonlinear_effective_rank: float | None  # mean over the probes
    probe_singular_values: dict[str, torch.Tensor]  # name → [min(Q, D)]: of the centred probe matrix [Q, D]
    probe_effective_rank: dict[str, float]


def anatomy(linear: LatentGenerator, nonlinear: LatentGenerator | None, probes: dict[str, torch.Tensor]) -> Anatomy:
    """Spectra of the collapsed deep linear map, of the non-linear variant's Jacobians at its own probes, and of
    each probe set: a deep linear generator's probes all live in the same low-dimensional affine subspace."""
    a, _ = collapse(linear)
    s_lin = torch.linalg.svdvals(a)
    s_non, r_non = None, None
    if nonlinear is not None:
        s_non = torch.linalg.svdvals(jacobian_at(nonlinear, nonlinear.latents))
        r_non = float(np.mean([effective_rank(s) for s in s_non]))
    spectra = {}
    for name, p in probes.items():
        flat = p.detach().flatten(1)
        spectra[name] = torch.linalg.svdvals(flat - flat.mean(0))[: len(flat) - 1]  # centring removes one
    return Anatomy(s_lin, effective_rank(s_lin), s_non, r_non, spectra,
                   {n: effective_rank(s) for n, s in spectra.items()})


# ---------------------------------------------------------------- representation map


def pca_2d(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """([M, 2] coordinates, [2] explained variance ratios) of the rows of x on their two principal axes."""
    centred = x.flatten(1).double() - x.flatten(1).double().mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    coords = centred @ vh[:2].T
    var = s.square()
    return coords.float().numpy(), (var[:2] / var.sum().clamp_min(1e-12)).float().numpy()


# ---------------------------------------------------------------- choosing what to show and train


def example_models(ex: Explorer, n: int = 4) -> list[int]:
    """n test models worth comparing: the first of classes 0, 1, … (classification), or models spread evenly over
    the label's range, worst to best (e.g. accuracy)."""
    labels = ex.labels.numpy()
    if ex.is_classification:
        picks = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)[:n]]
    else:
        order = np.argsort(labels, kind="stable")
        picks = [int(order[round(q * (len(order) - 1))]) for q in np.linspace(0, 1, n)]
    return list(dict.fromkeys(picks))  # distinct, in order


def explorer_methods(zoo: AnyZoo) -> dict[str, ProbeConfig]:
    """The probe sources notebook 04 trains when it is given no runs: ProbeGen and vanilla probing for the zoo's
    input type (coordinates or images)."""
    if len(zoo.specs[0].input_shape) == 3:
        return {"probegen": ConvProbeGenConfig(), "vanilla": ImageVanillaConfig()}
    return {"probegen": ProbeGenConfig(), "vanilla": VanillaConfig()}


def nonlinear_variant(config: ProbeConfig, activation: Activation = "relu") -> ProbeConfig:
    """The same generator with an activation between its layers: the anatomy view's comparison."""
    if not isinstance(config, (ProbeGenConfig, ConvProbeGenConfig, LinearImageGenConfig)):  # the configs with one
        raise ValueError(f"{config.kind} probes have no generator to make non-linear")
    return replace(config, activation=activation)
