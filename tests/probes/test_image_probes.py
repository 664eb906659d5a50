"""Image probe sources: shapes and range, the deep linear generator's linearity and depth, dead leaves' statistics,
real images of another data set."""

import json
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from probegen_nb.core.data import load_dataset
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.probes.dead_leaves import DeadLeavesConfig, _window_radii, dead_leaves, sample_radii
from probegen_nb.probes.images import (
    ConvProbeGenConfig,
    ConvProbeGenerator,
    ImageGaussianConfig,
    ImageVanillaConfig,
    LinearImageGenConfig,
)
from probegen_nb.probes.real_images import RealImageProbes, RealImagesConfig
from probegen_nb.probes.registry import PROBE_CONFIGS, probe_config_from_dict, probe_config_to_dict
from probegen_nb.zoos.cnn import images_to_inputs

ALL_CONFIGS = [ConvProbeGenConfig(), ConvProbeGenConfig(activation="relu", n_layers=7), LinearImageGenConfig(),
               ImageVanillaConfig(), DeadLeavesConfig(), DeadLeavesConfig(shapes="disks+rectangles", textures=True),
               ImageGaussianConfig(), RealImagesConfig()]


def pre_tanh(gen: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A generator's map from latents [N, Z] to its output before the final tanh."""
    if isinstance(gen, ConvProbeGenerator):
        return lambda z: gen.layers(z[:, :, None, None])
    return gen.layers


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: f"{c.kind}")
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(config, channels: int) -> None:
    for q in (1, 6):
        source = config.build(q, (channels, 32, 32), torch.Generator().manual_seed(q))
        x = source()
        assert x.shape == (q, channels, 32, 32) and source.input_shape == (channels, 32, 32) and source.n_probes == q
        assert x.min() >= -1 and x.max() <= 1 and torch.isfinite(x).all()
        assert x.std() > 1e-3 and (q == 1 or (x[1:] - x[:1]).abs().max() > 1e-3)  # not one constant, nor one probe


def test_conv_generator_structure_matches_the_paper() -> None:
    g = torch.Generator().manual_seed(0)
    gray, rgb = ConvProbeGenConfig().build(2, (1, 32, 32), g), ConvProbeGenConfig().build(2, (3, 32, 32), g)
    assert [type(m).__name__ for m in gray.layers] == ["ConvTranspose2d"] * 6  # deep linear: nothing between layers
    assert [type(m).__name__ for m in rgb.layers] == ["ConvTranspose2d"] * 5
    sizes, z = [], gray.latents[:, :, None, None]
    for layer in gray.layers:
        z = layer(z)
        sizes.append(tuple(z.shape[1:]))
    assert sizes == [(128, 4, 4), (64, 8, 8), (32, 16, 16), (32, 16, 16), (16, 32, 32), (1, 32, 32)]
    assert sum(p.numel() for p in gray.layers.parameters()) == 247_201
    assert sum(p.numel() for p in rgb.layers.parameters()) == 238_243
    assert gray.latents.shape == (2, 32)
    nonlinear = ConvProbeGenConfig(activation="relu").build(2, (3, 32, 32), g)
    assert [type(m).__name__ for m in nonlinear.layers] == ["ConvTranspose2d", "ReLU"] * 4 + ["ConvTranspose2d"]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in ConvProbeGenConfig(n_layers=8).build(1, (3, 32, 32), g)
               .layers) == 8
    wide = ConvProbeGenConfig(latent_dim=8, width_mult=4).build(3, (1, 32, 32), g)
    assert wide.layers[0].in_channels == 8 and wide.layers[0].out_channels == 32 and wide().shape == (3, 1, 32, 32)


def test_conv_generator_refuses_bad_settings() -> None:
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"input_shape \(C, 32, 32\), got \(1, 28, 28\)"):
        ConvProbeGenConfig().build(2, (1, 28, 28), g)
    with pytest.raises(ValueError, match=r"n_layers \(=4\) must be at least 5"):
        ConvProbeGenConfig(n_layers=4).build(2, (1, 32, 32), g)
    with pytest.raises(ValueError, match="activation 'relu6'"):
        ConvProbeGenConfig(activation="relu6").build(2, (1, 32, 32), g)
    with pytest.raises(ValueError, match=r"got \(2,\)"):
        DeadLeavesConfig().build(2, (2,), g)


def test_deep_linear_generators_are_linear_in_the_latent() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 32, generator=g, dtype=torch.float64), torch.randn(2, 32, generator=g, dtype=torch.float64)
    zero = torch.zeros_like(z1)
    with torch.no_grad():
        for config in (ConvProbeGenConfig(), ConvProbeGenConfig(n_layers=5)):
            gen = config.build(2, (1, 32, 32), g).double()
            f = pre_tanh(gen)
            # affine: f(z) = A z + b, so f(z1) + f(z2) - f(0) = f(z1 + z2) and f(3 z1) - f(0) = 3 (f(z1) - f(0))
            torch.testing.assert_close(f(z1) + f(z2) - f(zero), f(z1 + z2))
            torch.testing.assert_close(f(3 * z1) - f(zero), 3 * (f(z1) - f(zero)))
            torch.testing.assert_close(gen(), torch.tanh(f(gen.latents)))
            assert (f(z1) - f(zero)).abs().mean() > 1e-3  # the check is not vacuous
        f = pre_tanh(LinearImageGenConfig(depth=3).build(2, (3, 32, 32), g).double())
        torch.testing.assert_close(f(z1) + f(z2) - f(zero), f(z1 + z2))
        for config in (ConvProbeGenConfig(activation="relu"), LinearImageGenConfig(activation="relu")):
            f = pre_tanh(config.build(2, (1, 32, 32), g).double())
            gap = (f(z1) + f(z2) - f(zero) - f(z1 + z2)).abs().max()
            assert gap > 1e-3, f"{config}: non-linear generator behaved linearly (gap {gap})"


@pytest.mark.parametrize("activation", [None, "gelu"])
def test_conv_generator_runs_many_latents_through_its_basis_only_when_deep_linear(activation) -> None:
    """Deep linear, 128 probes run the stack on Z + 1 = 33 codes (the affine map's basis) and equal running it on all
    128, values and gradients; with an activation between the layers the map is not affine, so all 128 go through."""
    gen = ConvProbeGenConfig(activation=activation).build(128, (1, 32, 32), torch.Generator().manual_seed(0)).double()
    seen: list[int] = []
    gen.layers[0].register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    weights = torch.rand(128, 1024, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for run in (lambda: gen.pre_output(gen.latents), lambda: gen.layers(gen.latents[:, :, None, None]).flatten(1)):
        out = run()
        grads = torch.autograd.grad((weights * torch.tanh(out)).sum(), list(gen.parameters()))
        results.append((out, grads))
    assert seen == [33 if activation is None else 128, 128]
    (got, got_grads), (want, want_grads) = results
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    assert want.std() > 1e-3 and all(b.abs().max() > 0 for b in want_grads)  # the comparison is not vacuous


@pytest.mark.parametrize("config", [ConvProbeGenConfig(), ConvProbeGenConfig(activation="gelu"), LinearImageGenConfig(),
                                    ImageVanillaConfig()], ids=lambda c: c.kind)
def test_gradients_reach_latents_and_every_layer(config) -> None:
    source = config.build(3, (3, 32, 32), torch.Generator().manual_seed(0))
    target = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    (source() - target).square().mean().backward()
    named = dict(source.named_parameters())
    assert named and ("probes" in named or "latents" in named)
    for name, p in named.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: c.kind)
def test_build_is_seeded_by_the_generator(config) -> None:
    def state(seed: int) -> dict[str, torch.Tensor]:
        return config.build(5, (3, 32, 32), torch.Generator().manual_seed(seed)).state_dict()

    a, b, c = state(7), state(7), state(8)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_vanilla_and_gaussian_images() -> None:
    g = torch.Generator().manual_seed(0)
    free = ImageVanillaConfig().build(64, (3, 32, 32), g)
    assert abs(free.probes.std().item() - 1) < 0.02 and torch.equal(free(), torch.tanh(free.probes))
    noise = ImageGaussianConfig(std=0.5).build(64, (3, 32, 32), g)
    assert list(noise.parameters()) == [] and "probes" in noise.state_dict() and not noise.learned
    clipped = (noise().abs() == 1).float().mean().item()
    assert 0.03 < clipped < 0.065  # P(|N(0, 0.25)| > 1) = 4.6%


def test_dead_leaves_is_seeded_and_stored_as_a_buffer() -> None:
    a = dead_leaves(8, 3, 32, torch.Generator().manual_seed(0))
    assert torch.equal(a, dead_leaves(8, 3, 32, torch.Generator().manual_seed(0)))
    assert (a != dead_leaves(8, 3, 32, torch.Generator().manual_seed(1))).float().mean() > 0.9
    source = DeadLeavesConfig().build(8, (3, 32, 32), torch.Generator().manual_seed(0))
    assert list(source.parameters()) == [] and not source.learned
    assert set(source.state_dict()) == {"probes"} and source.state_dict()["probes"].shape == (8, 3, 32, 32)
    assert not source().requires_grad


def test_dead_leaves_shapes_occlude() -> None:
    """Flat shapes stacked over each other: most neighbouring pixels are equal, yet each image has many regions."""
    g = torch.Generator().manual_seed(0)
    for shapes in ("disks", "disks+rectangles"):
        x = dead_leaves(32, 1, 32, g, shapes=shapes)
        same = torch.cat([(x[..., 1:] == x[..., :-1]).flatten(1), (x[..., 1:, :] == x[..., :-1, :]).flatten(1)], 1)
        assert same.float().mean() > 0.5, shapes
        regions = torch.tensor([len(img.unique()) for img in x])
        assert regions.min() > 10 and regions.max() < 600, (shapes, regions)
    textured = dead_leaves(32, 1, 32, g, textures=True)
    assert (textured[..., 1:] == textured[..., :-1]).float().mean() < 0.1
    noise = torch.rand(32, 1, 32, 32, generator=g)
    assert (noise[..., 1:] == noise[..., :-1]).float().mean() < 0.01


def test_dead_leaves_stops_after_n_shapes() -> None:
    one = dead_leaves(16, 1, 32, torch.Generator().manual_seed(0), n_shapes=1)
    assert all(len(img.unique()) <= 2 for img in one)  # one shape over the background
    rgb = dead_leaves(4, 3, 32, torch.Generator().manual_seed(0))
    assert (rgb[:, 0] != rgb[:, 1]).float().mean() > 0.9  # colours, not grey
    with pytest.raises(ValueError, match="r_min=4.0, r_max=2.0"):
        dead_leaves(1, 1, 32, torch.Generator(), r_min=4.0, r_max=2.0)
    with pytest.raises(ValueError, match="'triangles'"):
        dead_leaves(1, 1, 32, torch.Generator(), shapes="triangles")


def test_radii_are_scale_invariant() -> None:
    """Density ∝ r⁻³: each octave has a quarter of the shapes of the one below, and the same total area."""
    r = sample_radii(400_000, 1.0, 16.0, torch.Generator().manual_seed(0))
    assert r.min() >= 1 and r.max() <= 16
    octave = r.log2().floor().clamp(max=3).long()
    counts = torch.bincount(octave, minlength=4).double()
    torch.testing.assert_close(counts[:-1] / counts[1:], torch.full((3,), 4.0, dtype=torch.float64), rtol=0.1, atol=0)
    area = torch.zeros(4, dtype=torch.float64).index_add_(0, octave, r.double().square())
    torch.testing.assert_close(area / area.mean(), torch.ones(4, dtype=torch.float64), rtol=0.05, atol=0)


def test_window_radii_match_the_shapes_that_reach_the_image() -> None:
    """Drawing only shapes that reach the image equals drawing on a wide margin and dropping those that miss."""
    g = torch.Generator().manual_seed(0)
    r = sample_radii(2_000_000, 1.0, 16.0, g)
    cx, cy = (torch.rand(2, len(r), generator=g) * 64 - 16).unbind()  # centres on [-r_max, 32 + r_max]²
    reach = (cx >= -r) & (cx <= 32 + r) & (cy >= -r) & (cy <= 32 + r)
    kept, direct = r[reach], _window_radii(200_000, 32, 1.0, 16.0, g)
    qs = torch.tensor([0.1, 0.5, 0.9, 0.99])
    torch.testing.assert_close(direct.quantile(qs), kept.quantile(qs), rtol=0.03, atol=0)


def test_configs_round_trip_and_register() -> None:
    configs = [ConvProbeGenConfig(latent_dim=16, width_mult=8, n_layers=6, activation="relu"),
               LinearImageGenConfig(hidden=64, depth=3, activation="tanh"), ImageVanillaConfig(),
               DeadLeavesConfig(r_min=2.0, r_max=8.0, shapes="disks+rectangles", textures=True, n_shapes=50),
               ImageGaussianConfig(std=0.3), RealImagesConfig(), RealImagesConfig(dataset="cifar10-gs", split="train")]
    for config in configs:
        assert PROBE_CONFIGS[config.kind] is type(config)
        assert probe_config_from_dict(json.loads(json.dumps(probe_config_to_dict(config)))) == config
        run = RunConfig(method=ProbingConfig(config, 64))
        assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict()))) == run


def test_unit_variance_init_starts_from_distinct_full_contrast_probes() -> None:
    default = ConvProbeGenConfig().build(32, (1, 32, 32), torch.Generator().manual_seed(0))
    unit = ConvProbeGenConfig(unit_variance_init=True).build(32, (1, 32, 32), torch.Generator().manual_seed(0))
    with torch.no_grad():
        pre_default, pre_unit = default.pre_output(default.latents), unit.pre_output(unit.latents)
    assert pre_default.std(0).mean() < 0.05  # PyTorch's init: every probe nearly the same flat image
    assert abs(float(pre_unit.std()) - 1.0) < 1e-4 and pre_unit.std(0).mean() > 0.5  # distinct probes
    assert all(float(layer.bias.detach().abs().max()) == 0 for layer in unit.layers)
    z = torch.randn(5, 32)
    with torch.no_grad():  # still one linear map of the latent (zero bias: linear, not just affine)
        assert torch.allclose(unit.pre_output(2 * z), 2 * unit.pre_output(z), atol=1e-4)


@pytest.fixture(scope="module")
def mnist_test_images() -> np.ndarray:
    return load_dataset("mnist").images("test")  # uint8 [10000, 28, 28]


def test_real_images_are_the_drawn_dataset_images(mnist_test_images: np.ndarray) -> None:
    """Each probe is the MNIST test image at its drawn index, converted as the CNN zoo converts its own inputs."""
    for q, channels in ((1, 1), (16, 1), (16, 3)):
        source = RealImagesConfig().build(q, (channels, 32, 32), torch.Generator().manual_seed(3))
        indices = torch.randperm(len(mnist_test_images), generator=torch.Generator().manual_seed(3))[:q]
        assert torch.equal(source.indices, indices)  # drawn by the build generator, without replacement
        expected = images_to_inputs(mnist_test_images[indices.numpy()])  # [Q, 1, 32, 32]
        assert torch.equal(source(), expected.expand(q, channels, 32, 32))
    x = source()
    assert (x[..., :2, :] == -1).all() and (x[..., :, -2:] == -1).all()  # the 2-pixel padding is black
    assert x.min() == -1 and x.max() == 1 and len(x.unique()) > 100  # full range, real grey levels


def test_real_images_differ_between_seeds(mnist_test_images: np.ndarray) -> None:
    a, b = (RealImagesConfig().build(64, (1, 32, 32), torch.Generator().manual_seed(s)) for s in (0, 1))
    assert len(set(a.indices.tolist()) & set(b.indices.tolist())) < 8  # two draws of 64 from 10,000 barely overlap
    assert (a() != b()).any(dim=(1, 2, 3)).float().mean() > 0.9
    again = RealImagesConfig().build(64, (1, 32, 32), torch.Generator().manual_seed(0))
    assert torch.equal(a(), again())


def test_real_images_are_fixed_buffers() -> None:
    source = RealImagesConfig().build(8, (3, 32, 32), torch.Generator().manual_seed(0))
    assert list(source.parameters()) == [] and not source.learned and not source().requires_grad
    state = source.state_dict()
    assert set(state) == {"probes", "indices"} and state["probes"].shape == (8, 3, 32, 32)
    reloaded = RealImagesConfig().build(8, (3, 32, 32), torch.Generator().manual_seed(1))
    reloaded.load_state_dict(state)
    assert torch.equal(reloaded(), source())


def test_real_images_convert_channels() -> None:
    """RGB images average to grey for grayscale zoos and are kept as they are for RGB ones."""
    rgb = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy()
    grey = RealImageProbes(rgb, 5, (1, 32, 32), torch.Generator().manual_seed(0))
    colour = RealImageProbes(rgb, 5, (3, 32, 32), torch.Generator().manual_seed(0))
    expected = images_to_inputs(rgb[grey.indices.numpy()])  # [5, 3, 32, 32]
    assert torch.equal(colour(), expected)
    torch.testing.assert_close(grey(), expected.mean(1, keepdim=True))


def test_real_images_refuse_what_they_cannot_produce() -> None:
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"RealImagesConfig\(dataset='mnist', split='test'\): its 28×28 images "
                                         r"become 32×32 CNN inputs, not the 28×28 of input_shape \(1, 28, 28\)"):
        RealImagesConfig().build(4, (1, 28, 28), g)
    with pytest.raises(ValueError, match=r"got \(784,\)"):
        RealImagesConfig().build(4, (784,), g)
    rgb = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="cannot turn 3-channel images into 2-channel probes"):
        RealImageProbes(rgb, 4, (2, 32, 32), g)
    with pytest.raises(ValueError, match=r"n_probes \(=10001\) must be between 1 and the 10000 images"):
        RealImagesConfig().build(10_001, (1, 32, 32), g)
    with pytest.raises(ValueError, match=r"dataset 'svhn' is not one of"):
        probe_config_from_dict({"kind": "real-images", "dataset": "svhn"})
    with pytest.raises(ValueError, match=r"split 'val' is not one of"):
        RealImagesConfig(split="val")
