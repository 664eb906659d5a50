"""What one run depends on, as one frozen dataclass: the paper's protocol by default, `config.json` in the run folder.

`RunConfig.method` is what is trained: probing (`ProbingConfig`: a probe source and Q) or a weight-space baseline
(`BaselineConfig`); every other field is the protocol they share (splits, seed, epochs, lr, batch, predictor width
and depth), so no field of a config is ever unused.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar

import torch

from probegen_nb.baselines.registry import (
    BASELINE_CONFIGS,
    BaselineConfig,
    baseline_config_from_dict,
    baseline_config_to_dict,
)
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.methods.learner import init_from
from probegen_nb.methods.probing import ProbingModel
from probegen_nb.probes.base import ProbeSource
from probegen_nb.probes.coords import ProbeGenConfig
from probegen_nb.probes.registry import ProbeConfig, check_fits, probe_config_from_dict, probe_config_to_dict


@dataclass(frozen=True)
class ProbingConfig:
    """Probing: Q probes from a probe source, the zoo's answers to them fed to the predictor."""

    kind: ClassVar[str] = "probing"
    probes: ProbeConfig = field(default_factory=ProbeGenConfig)  # the probe source variant
    n_probes: int = 128  # Q: the paper uses 64 and 128
    generator_weight_decay: float = 0.0  # Adam L2 on the probe source's parameters (an ablation)

    def __post_init__(self) -> None:
        check_ranges(self, at_least={"n_probes": 1}, non_negative=("generator_weight_decay",))
        if isinstance(self.probes, tuple(BASELINE_CONFIGS.values())):
            raise ValueError(f"ProbingConfig.probes is {self.probes}, a baseline: pass it as RunConfig(method=...)")

    @property
    def label(self) -> str:
        """What a progress bar calls a run of it."""
        return f"{self.probes.kind} Q={self.n_probes}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "probes": probe_config_to_dict(self.probes), "n_probes": self.n_probes,
                "generator_weight_decay": self.generator_weight_decay}

    def build(self, train_zoo: AnyZoo, d_out: int, hidden: int, n_hidden: int, generator: torch.Generator,
              probes: ProbeSource | None = None) -> ProbingModel:
        """The probing model for the zoo's architectures: probes sampled from `generator` (or the `probes` given,
        e.g. a trained run's), their shapes checked against the architecture here, before training."""
        spec = train_zoo.specs[0]
        if probes is None:
            check_fits(self.probes, spec.input_shape)
        source = probes if probes is not None else self.probes.build(self.n_probes, spec.input_shape, generator)
        with init_from(generator):  # the predictor's init: one draw of the run's generator
            return ProbingModel(train_zoo.specs, source, spec.out_dim, d_out, hidden, n_hidden,
                                self.generator_weight_decay)


MethodConfig = ProbingConfig | BaselineConfig


def probing(method: MethodConfig) -> ProbingConfig:
    """`method` as probing; one clear error where a probe source is given to a baseline run."""
    if not isinstance(method, ProbingConfig):
        raise ValueError(f"probes= is for probing runs; this config trains the {method.kind} baseline")
    return method
PROBING_KEYS = ("probes", "n_probes", "generator_weight_decay")  # overrides that reach into a ProbingConfig


def method_to_dict(method: MethodConfig) -> dict[str, Any]:
    return method.to_dict() if isinstance(method, ProbingConfig) else baseline_config_to_dict(method)


def method_from_dict(d: Mapping[str, Any]) -> MethodConfig:
    d = dict(d)
    if d.get("kind") != ProbingConfig.kind:
        return baseline_config_from_dict(d)
    d.pop("kind")
    unknown = sorted(set(d) - {f.name for f in fields(ProbingConfig)})
    if unknown:
        raise ValueError(f"unknown ProbingConfig fields {unknown}")
    if isinstance(d.get("probes"), dict):
        d["probes"] = probe_config_from_dict(d["probes"])
    return ProbingConfig(**d)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on; the paper's protocol by default."""

    zoo_dir: str = "../data/zoos/mnist-inr-small"  # zoo folder (ignored when a Zoo is passed to train())
    method: MethodConfig = field(default_factory=ProbingConfig)  # what is trained: probing or a baseline
    epochs: int = 30  # passes over the train split
    lr: float = 3e-4  # Adam, cosine-annealed to 0 over all steps
    batch_size: int = 32  # models per step
    hidden: int = 256  # predictor width
    n_hidden: int = 4  # predictor's [Linear(hidden→hidden), ReLU] blocks after the first layer
    weight_decay: float = 0.0  # Adam L2 on the predictor (and on a baseline's encoder)
    max_train_models: int | None = None  # use only the first N train models (data-size ablations, smoke runs)
    cache_responses: bool = True  # fixed representations: computed once, not every step (same results)
    seed: int = 0  # seeds init, probe sampling and batch order
    device: str = "auto"  # "auto": cuda > mps > cpu

    def __post_init__(self) -> None:
        check_ranges(self, at_least={"epochs": 1, "batch_size": 1, "hidden": 1, "n_hidden": 0,
                                     "max_train_models": 1, "seed": 0},
                     non_negative=("weight_decay",), positive=("lr",))
        if not isinstance(self.method, (ProbingConfig, *BASELINE_CONFIGS.values())):
            raise ValueError(f"RunConfig.method {self.method!r} is neither a ProbingConfig nor a baseline config "
                             f"({', '.join(sorted(BASELINE_CONFIGS))})")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values."""
        return {**asdict(self), "method": method_to_dict(self.method)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown RunConfig fields {unknown}; known: {sorted(names)}")
        d = dict(d)
        if isinstance(d.get("method"), Mapping):
            d["method"] = method_from_dict(d["method"])
        return cls(**d)

    def override(self, overrides: Mapping[str, Any]) -> RunConfig:
        """This config with `overrides` applied: RunConfig fields, `baseline` (a baseline config: the method), or
        probing's own fields (`probes`, `n_probes`, `generator_weight_decay`), which need a probing method."""
        known = {f.name for f in fields(RunConfig)} | {"baseline", *PROBING_KEYS}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown overrides {unknown}; known: {sorted(known)}")
        own = {k: v for k, v in overrides.items() if k not in ("baseline", *PROBING_KEYS)}
        if "baseline" in overrides:
            if "method" in own:
                raise ValueError("overrides name both `method` and `baseline`: give one")
            own["method"] = overrides["baseline"]
        config = replace(self, **own)
        probing = {k: v for k, v in overrides.items() if k in PROBING_KEYS}
        if probing:
            if not isinstance(config.method, ProbingConfig):
                raise ValueError(f"overrides {sorted(probing)} are probing fields; this run trains the "
                                 f"{config.method.kind} baseline")
            config = replace(config, method=replace(config.method, **probing))
        return config


def config_from_v0(d: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from a config.json written before `schema_version` (see `experiment.run_folder`): the method was
    `probes`, `n_probes` and `generator_weight_decay`, or `baseline` when it was set."""
    d = dict(d)
    if "method" in d:
        raise ValueError("a config with `method` but no schema_version: not written by this code or its predecessor")
    probes, n_probes = d.pop("probes", None), d.pop("n_probes", 128)
    gwd, baseline = d.pop("generator_weight_decay", 0.0), d.pop("baseline", None)
    if baseline is not None:
        d["method"] = baseline_config_from_dict(baseline)
    else:
        source = probe_config_from_dict(probes) if probes is not None else ProbeGenConfig()
        d["method"] = ProbingConfig(source, n_probes, gwd)
    return RunConfig.from_dict(d)


def check_ranges(config: Any, at_least: dict[str, int] = {}, non_negative: tuple[str, ...] = (),  # noqa: B006
                 positive: tuple[str, ...] = ()) -> None:
    """One clear error for the first field out of range (a field left at None is not checked): a run with no probes,
    no epochs or a negative learning rate would otherwise train to a complete-looking folder at chance, or crash late
    with an unrelated error."""
    name = type(config).__name__
    for field_name, low in at_least.items():
        value = getattr(config, field_name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                                  or int(value) < low):
            raise ValueError(f"{name}.{field_name} (={value!r}) must be an integer of at least {low}")
    for field_name in non_negative + positive:
        value = getattr(config, field_name)
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)) and (
            float(value) > 0 if field_name in positive else float(value) >= 0)
        if not ok:
            raise ValueError(f"{name}.{field_name} (={value!r}) must be a finite number "
                             f"{'above 0' if field_name in positive else 'of at least 0'}")
