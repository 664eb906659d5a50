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
PROBE_INPUTS: dict[str, str] = {c.kind: c.inputs for c in ProbeConfig.__args__}  # kind → what it probes


def probe_config_to_dict(config: ProbeConfig) -> dict[str, Any]:
    return {"kind": config.kind, **asdict(config)}


def probe_config_from_dict(d: dict[str, Any]) -> ProbeConfig:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in PROBE_CONFIGS:
        raise ValueError(f"unknown probe source {kind!r}; known: {sorted(PROBE_CONFIGS)}")
    return PROBE_CONFIGS[kind](**d)


def input_kind(input_shape: tuple[int, ...]) -> str:
    """What a model takes: "images" ([C, H, W]) or "coordinates" (a vector, e.g. an INR's (x, y))."""
    return "images" if len(input_shape) == 3 else "coordinates"


def sources_for(input_shape: tuple[int, ...]) -> list[str]:
    """The probe sources that fit models taking inputs of this shape."""
    return sorted(k for k, inputs in PROBE_INPUTS.items() if inputs == input_kind(input_shape))


def check_fits(config: ProbeConfig, input_shape: tuple[int, ...]) -> None:
    """Refuse a probe source made for another kind of model (a coordinate generator on a CNN zoo would build a
    flat 1,024-output generator and train, silently, on probes the paper never used)."""
    kind = input_kind(input_shape)
    if config.inputs != kind:
        raise ValueError(f"probe source {config.kind!r} makes {config.inputs} probes, but this zoo's models take "
                         f"{kind} (input shape {tuple(input_shape)}); sources for this zoo: "
                         f"{', '.join(sources_for(input_shape))}")
