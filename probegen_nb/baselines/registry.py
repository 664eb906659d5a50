"""Every baseline config by kind: the one module that imports them all, so `config.json` reads back exactly.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from probegen_nb.baselines.graph_net import GraphNetConfig
from probegen_nb.baselines.nfn import NFNConfig
from probegen_nb.baselines.statnn import StatNNConfig
from probegen_nb.baselines.weight_mlp import WeightMLPConfig

BaselineConfig = StatNNConfig | WeightMLPConfig | NFNConfig | GraphNetConfig
BASELINE_CONFIGS: dict[str, type] = {c.kind: c for c in BaselineConfig.__args__}  # kind → config type


def baseline_config_to_dict(config: BaselineConfig) -> dict[str, Any]:
    return {"kind": config.kind, **asdict(config)}


def baseline_config_from_dict(d: dict[str, Any]) -> BaselineConfig:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in BASELINE_CONFIGS:
        raise ValueError(f"unknown baseline {kind!r}; known: {sorted(BASELINE_CONFIGS)}")
    return BASELINE_CONFIGS[kind](**d)
