"""ProbeGen's coordinate generator: the initial-spread option rescales its probes and nothing else."""

import pytest
import torch

from probegen_nb.probes.coords import ProbeGenConfig


def build(config: ProbeGenConfig) -> torch.Tensor:
    return config.build(128, (2,), torch.Generator().manual_seed(0))().detach()  # [Q, 2] initial probes


def test_init_spread_rescales_the_initial_probes_about_the_origin() -> None:
    default, spread = build(ProbeGenConfig()), build(ProbeGenConfig(init_spread=0.58))
    assert spread.std(0).mean().item() == pytest.approx(0.58, rel=1e-5)
    assert default.std(0).mean().item() < 0.45  # negative control: PyTorch's init starts them near the centre
    ratio = spread / default  # the same probes, times one scalar: same latents, same directions
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)


def test_init_spread_changes_only_the_output_layer_by_one_scalar() -> None:
    """Same latents and hidden layer as the default build of the same seed (nothing re-drawn), the output layer's
    weight and bias times one scalar, and the same draws left for the predictor that is built next."""
    built, draws = [], []
    for config in (ProbeGenConfig(), ProbeGenConfig(init_spread=0.58)):
        g = torch.Generator().manual_seed(0)
        built.append(config.build(128, (2,), g))
        draws.append(torch.rand(4, generator=g))
    default, spread = built
    assert torch.equal(default.latents, spread.latents) and torch.equal(draws[0], draws[1])
    assert torch.equal(default.layers[0].weight, spread.layers[0].weight)
    scale = spread.layers[-1].weight / default.layers[-1].weight
    assert torch.allclose(scale, scale.flatten()[0].expand_as(scale), rtol=1e-5) and scale.flatten()[0] > 1
    assert torch.allclose(spread.layers[-1].bias, scale.flatten()[0] * default.layers[-1].bias)


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan")])
def test_init_spread_must_be_a_positive_std(bad: float) -> None:
    with pytest.raises(ValueError, match="init_spread"):
        ProbeGenConfig(init_spread=bad)
