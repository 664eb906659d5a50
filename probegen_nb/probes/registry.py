"""Every probe-source config by kind: the one module that imports them all, so `config.json` reads back exactly.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from probegen_nb.probes.coords import GaussianConfig, ProbeGenConfig, UniformConfig, VanillaConfig
from probegen_nb.probes.dead_leaves import DeadLeavesConfig
from probegen_nb.probes.images import ConvProbeGenConfig, ImageGaussianConfig, ImageVanillaConfig, LinearImageGenConfig
from probegen_nb.probes.real_images import RealImagesConfig

ProbeConfig = (ProbeGenConfig | VanillaConfig | UniformConfig | GaussianConfig | ConvProbeGenConfig
               | LinearImageGenConfig | ImageVanillaConfig | DeadLeavesConfig | ImageGaussianConfig | RealImagesConfig)
PROBE_CONFIGS: dict[str, type] = {c.kind: c for c in ProbeConfig.__args__}  # kind → config type


def probe_config_to_dict(config: ProbeConfig) -> dict[str, Any]:
    return {"kind": config.kind, **asdict(config)}


def probe_config_from_dict(d: dict[str, Any]) -> ProbeConfig:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in PROBE_CONFIGS:
        raise ValueError(f"unknown probe source {kind!r}; known: {sorted(PROBE_CONFIGS)}")
    return PROBE_CONFIGS[kind](**d)
