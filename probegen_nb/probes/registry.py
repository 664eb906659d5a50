"""Every probe-source config by kind: the one module that imports them all, so `config.json` reads back exactly.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from probegen_nb.probes.coords import GaussianConfig, ProbeGenConfig, UniformConfig, VanillaConfig
from probegen_nb.probes.dead_leaves import DeadLeavesConfig
from probegen_nb.probes.images import ConvProbeGenConfig, ImageGaussianConfig, ImageVanillaConfig, LinearImageGenConfig
from probegen_nb.probes.real_images import RealImagesConfig

ProbeConfig = (ProbeGenConfig | VanillaConfig | UniformConfig | GaussianConfig | ConvProbeGenConfig
               | LinearImageGenConfig | ImageVanillaConfig | DeadLeavesConfig | ImageGaussianConfig | RealImagesConfig)
PROBE_CONFIGS: dict[str, type] = {c.kind: c for c in ProbeConfig.__args__}  # kind → config type


def probe_config_to_dict(config: ProbeConfig) -> dict[str, Any]:
    """The config as JSON values, without fields marked `omit_at_default` that hold their default (fields added
    after runs existed: those runs' dicts, and so their run ids, stay as they were)."""
    values = asdict(config)
    for f in fields(config):
        if f.metadata.get("omit_at_default") and values[f.name] == f.default:
            del values[f.name]
    return {"kind": config.kind, **values}


def probe_config_from_dict(d: dict[str, Any]) -> ProbeConfig:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in PROBE_CONFIGS:
        raise ValueError(f"unknown probe source {kind!r}; known: {sorted(PROBE_CONFIGS)}")
    return PROBE_CONFIGS[kind](**d)
