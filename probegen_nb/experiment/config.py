"""What one run depends on, as one frozen dataclass: the paper's protocol by default, `config.json` in the run folder.

A run trains probing (the probe fields) unless `baseline` names a weight-space baseline, which then trains under the
same protocol (splits, seed, epochs, lr, batch, predictor width and depth).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from probegen_nb.baselines.registry import (
    BASELINE_CONFIGS,
    BaselineConfig,
    baseline_config_from_dict,
    baseline_config_to_dict,
)
from probegen_nb.probes.coords import ProbeGenConfig
from probegen_nb.probes.registry import ProbeConfig, probe_config_from_dict, probe_config_to_dict


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on; the paper's protocol by default."""

    zoo_dir: str = "../data/zoos/mnist-inr-small"  # zoo folder (ignored when a Zoo is passed to train())
    probes: ProbeConfig = field(default_factory=ProbeGenConfig)  # the probe source variant
    n_probes: int = 128  # Q: the paper uses 64 and 128
    epochs: int = 30  # passes over the train split
    lr: float = 3e-4  # Adam, cosine-annealed to 0 over all steps
    batch_size: int = 32  # models per step
    hidden: int = 256  # predictor width
    n_hidden: int = 4  # predictor's [Linear(hidden→hidden), ReLU] blocks after the first layer
    weight_decay: float = 0.0  # Adam L2 on the predictor
    generator_weight_decay: float = 0.0  # Adam L2 on the probe source's parameters (an ablation)
    max_train_models: int | None = None  # use only the first N train models (data-size ablations, smoke runs)
    cache_responses: bool = True  # fixed probes: the zoo's answers computed once, not every step (same results)
    seed: int = 0  # seeds init, probe sampling and batch order
    device: str = "auto"  # "auto": cuda > mps > cpu
    baseline: BaselineConfig | None = None  # None: probing; else a weight-space baseline (probe fields unused)

    def __post_init__(self) -> None:
        check_ranges(self, at_least={"n_probes": 1, "epochs": 1, "batch_size": 1, "hidden": 1, "n_hidden": 0,
                                     "max_train_models": 1, "seed": 0},
                     non_negative=("weight_decay", "generator_weight_decay"), positive=("lr",))
        baselines = tuple(BASELINE_CONFIGS.values())
        if isinstance(self.probes, baselines):
            raise ValueError(f"RunConfig.probes is {self.probes}, a baseline: pass it as baseline=")
        if self.baseline is not None and not isinstance(self.baseline, baselines):
            raise ValueError(f"RunConfig.baseline {self.baseline!r} is not a baseline config "
                             f"({', '.join(sorted(BASELINE_CONFIGS))})")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values; a probing run's has no `baseline` key (as before baselines existed, so its
        run id in a sweep is unchanged)."""
        d = asdict(self)
        d["probes"] = probe_config_to_dict(self.probes)
        if self.baseline is None:
            del d["baseline"]
        else:
            d["baseline"] = baseline_config_to_dict(self.baseline)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown RunConfig fields {unknown}; known: {sorted(names)}")
        d = dict(d)
        if isinstance(d.get("probes"), dict):
            d["probes"] = probe_config_from_dict(d["probes"])
        if isinstance(d.get("baseline"), dict):
            d["baseline"] = baseline_config_from_dict(d["baseline"])
        return cls(**d)


def config_from_v0(d: dict[str, Any]) -> RunConfig:
    """A RunConfig from a config.json written before `schema_version` (see `experiment.run_folder`)."""
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
