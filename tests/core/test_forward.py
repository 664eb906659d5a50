"""The batched forward must equal the per-model nn.Module forward, keep the symmetries, and pass gradients."""

import pytest
import torch
import torch.nn.functional as F

from probegen_nb.core.arch import cnn as cnn_module
from probegen_nb.core.arch.cnn import CNNSpec, probe_tile
from probegen_nb.core.arch.registry import forward, spec_from_dict
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.zoos.inr import init_siren_params


def make_params(spec: SirenSpec, m: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = init_siren_params(spec, m, g)
    # trained INRs have non-zero biases everywhere; random ones make the test sensitive to bias handling
    return {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in params.items()}


def per_model(spec: SirenSpec, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    outs = []
    for i in range(next(iter(params.values())).shape[0]):
        module = spec.build_module()
        module.load_state_dict({k: v[i] for k, v in params.items()})
        outs.append(module(x if x.dim() == 2 else x[i]))
    return torch.stack(outs)


@pytest.mark.parametrize("m,p", [(1, 1), (1, 50), (7, 1), (7, 33)])
@pytest.mark.parametrize("spec", [SirenSpec(), SirenSpec(in_dim=3, hidden=(16, 8, 4), out_dim=2, w0=10.0)])
def test_batched_equals_per_model(spec: SirenSpec, m: int, p: int) -> None:
    params = make_params(spec, m)
    g = torch.Generator().manual_seed(1)
    shared = torch.rand(p, spec.in_dim, generator=g) * 2 - 1
    own = torch.rand(m, p, spec.in_dim, generator=g) * 2 - 1
    for x in (shared, own):
        got = forward(spec, params, x)
        assert got.shape == (m, p, spec.out_dim)
        torch.testing.assert_close(got, per_model(spec, params, x), atol=1e-5, rtol=1e-5)


def test_permuting_hidden_units_leaves_output_unchanged() -> None:
    spec = SirenSpec()
    params = make_params(spec, 4)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(2))
    permuted = dict(params)
    permuted["seq.0.weight"] = params["seq.0.weight"][:, perm]
    permuted["seq.0.bias"] = params["seq.0.bias"][:, perm]
    permuted["seq.1.weight"] = params["seq.1.weight"][:, :, perm]
    x = torch.rand(20, 2) * 2 - 1
    torch.testing.assert_close(forward(spec, permuted, x), forward(spec, params, x), atol=1e-5, rtol=1e-5)
    # and a wrong permutation (rows only) does change it, so the test above can fail
    broken = dict(permuted, **{"seq.1.weight": params["seq.1.weight"]})
    assert not torch.allclose(forward(spec, broken, x), forward(spec, params, x), atol=1e-3)


def test_permuting_models_permutes_outputs() -> None:
    spec = SirenSpec()
    params = make_params(spec, 5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    x = torch.rand(10, 2) * 2 - 1
    out = forward(spec, {k: v[perm] for k, v in params.items()}, x)
    torch.testing.assert_close(out, forward(spec, params, x)[perm])


def test_gradient_reaches_inputs_and_params() -> None:
    spec = SirenSpec()
    params = {k: v.requires_grad_() for k, v in make_params(spec, 3).items()}
    x = (torch.rand(6, 2) * 2 - 1).requires_grad_()
    forward(spec, params, x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    # the input gradient matches finite differences of the per-model forward
    eps, i = 1e-3, 2
    xp, xm = x.detach().clone(), x.detach().clone()
    xp[i, 0] += eps
    xm[i, 0] -= eps
    detached = {k: v.detach() for k, v in params.items()}
    fd = (forward(spec, detached, xp).square().sum() - forward(spec, detached, xm).square().sum()) / (2 * eps)
    assert abs(float(fd) - float(x.grad[i, 0])) < 1e-2 * max(1.0, abs(float(fd)))


def test_spec_round_trip_and_rejects_unknown() -> None:
    spec = SirenSpec(hidden=(16, 16))
    assert spec_from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown architecture kind 'cnn9'"):
        spec_from_dict({"kind": "cnn9"})
    with pytest.raises(ValueError, match="bad 'siren'"):
        spec_from_dict({"kind": "siren", "widht": 3})
    assert SirenSpec().n_params() == 2 * 32 + 32 + 32 * 32 + 32 + 32 + 1


# ---------------------------------------------------------------- CNNs

WILD = CNNSpec(3, (8, 16, 8, 12), (3, 5, 7, 3), 1, (1, 2, 3, 1), ("relu", "gelu", "tanh", "sigmoid"), (-1, -1, 0, 1))
CNN_SPECS = [CNNSpec.small_cnn_zoo(), CNNSpec.small_cnn_zoo(activation="tanh"), WILD,
             CNNSpec(1, (4, 4), 3, 1, 1, ("leaky_relu", "none"), image_size=8)]


def cnn_params(spec: CNNSpec, m: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.3 * torch.randn(m, *shape, generator=g) for k, shape in spec.param_shapes().items()}


def per_model_cnn(spec: CNNSpec, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    outs = []
    for i in range(params["fc.weight"].shape[0]):
        module = spec.build_module()
        module.load_state_dict({k: v[i] for k, v in params.items()})
        outs.append(module(x if x.dim() == 4 else x[i]))
    return torch.stack(outs)


@pytest.mark.parametrize("spec", CNN_SPECS, ids=["small-relu", "small-tanh", "wild-residual", "tiny"])
@pytest.mark.parametrize("m,p", [(1, 1), (5, 3)])
def test_cnn_batched_equals_per_model(spec: CNNSpec, m: int, p: int) -> None:
    params = cnn_params(spec, m)
    g = torch.Generator().manual_seed(1)
    shared = torch.rand(p, *spec.input_shape, generator=g) * 2 - 1
    own = torch.rand(m, p, *spec.input_shape, generator=g) * 2 - 1
    for x in (shared, own):
        got = forward(spec, params, x)
        assert got.shape == (m, p, spec.out_dim)
        torch.testing.assert_close(got, per_model_cnn(spec, params, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_taps", [0, cnn_module.UNFOLD_MAX_TAPS], ids=["conv", "unfold"])
@pytest.mark.parametrize("spec", [CNNSpec.small_cnn_zoo(), WILD], ids=["small", "wild-residual"])
def test_cnn_first_layer_formulations_equal_per_model(spec: CNNSpec, max_taps: int, monkeypatch) -> None:
    """On shared inputs the CPU runs layer 0 as unfold + batched matmul (small kernels) or as one convolution; both
    give the per-model modules' outputs and input gradients, and the chosen one is really the one used."""
    monkeypatch.setattr(cnn_module, "UNFOLD_MAX_TAPS", max_taps)
    unfolds: list[int] = []
    real_unfold = F.unfold
    monkeypatch.setattr(cnn_module.F, "unfold", lambda *a, **k: unfolds.append(1) or real_unfold(*a, **k))
    params = cnn_params(spec, 4)
    x = (torch.rand(6, *spec.input_shape, generator=torch.Generator().manual_seed(2)) * 2 - 1).requires_grad_()
    got, want = forward(spec, params, x), per_model_cnn(spec, params, x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    (g_got,), (g_want,) = (torch.autograd.grad(y.square().sum(), [x]) for y in (got, want))
    torch.testing.assert_close(g_got, g_want, atol=1e-4, rtol=1e-4)
    assert bool(unfolds) == (max_taps > 0)


def test_a_large_cnn_zoo_goes_in_chunks_of_models_on_shared_inputs(monkeypatch) -> None:
    """More than MODEL_CHUNK models on shared probes run chunk by chunk; values and all gradients still equal the
    per-model modules', and the chunks really happen (5 models in chunks of 2: three tiled forwards)."""
    spec = CNNSpec.small_cnn_zoo(padding=0)
    monkeypatch.setattr(cnn_module, "MODEL_CHUNK", 2)
    calls: list[int] = []
    real = cnn_module._cnn_forward
    monkeypatch.setattr(cnn_module, "_cnn_forward",
                        lambda s, p, *a: calls.append(len(p["fc.weight"])) or real(s, p, *a))
    params = {k: v.requires_grad_() for k, v in cnn_params(spec, 5).items()}
    x = (torch.rand(3, *spec.input_shape, generator=torch.Generator().manual_seed(4)) * 2 - 1).requires_grad_()
    leaves = [x, *params.values()]
    got = forward(spec, params, x)
    assert calls == [2, 2, 1]
    want = torch.stack([torch.func.functional_call(spec.build_module(), {k: v[i] for k, v in params.items()}, (x,))
                        for i in range(5)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(got.square().sum(), leaves), torch.autograd.grad(want.square().sum(), leaves)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spec", [CNNSpec.small_cnn_zoo(), WILD], ids=["small", "wild-residual"])
def test_cnn_probe_tiles_equal_per_model_values_and_gradients(spec: CNNSpec, monkeypatch) -> None:
    """Inputs go through the zoo in tiles on the CPU: with a budget small enough for tiles of 2 and 1 inputs, outputs
    and the gradients (of shared probes, of per-model inputs, of the weights) still equal the per-model modules'."""
    params = {k: v.requires_grad_() for k, v in cnn_params(spec, 3).items()}
    g = torch.Generator().manual_seed(3)
    for x in (torch.rand(5, *spec.input_shape, generator=g) * 2 - 1, torch.rand(3, 5, *spec.input_shape, generator=g)):
        check_tiles(spec, params, x.requires_grad_(), monkeypatch)
    assert probe_tile(spec, 3, 5, torch.device("cuda")) == 5  # one launch for everything on a GPU


def test_a_small_cnn_zoo_is_tiled_by_default_on_the_cpu() -> None:
    """The default budget (4 MiB) splits 32 Small CNNs' 128 probes (16×16×16 activations, 512 KiB a probe) into
    tiles of 8, the size measured fastest here (benchmarks/bench_probe_training.py)."""
    assert probe_tile(CNNSpec.small_cnn_zoo(), 32, 128, torch.device("cpu")) == 8
    assert probe_tile(CNNSpec.small_cnn_zoo(), 256, 128, torch.device("cpu")) == 1


def check_tiles(spec: CNNSpec, params: dict[str, torch.Tensor], x: torch.Tensor, monkeypatch) -> None:
    leaves = [x, *params.values()]
    module = spec.build_module()  # the reference module, called on each model's weights (differentiable)
    expected = torch.stack([torch.func.functional_call(module, {k: v[i] for k, v in params.items()},
                                                       (x if x.dim() == 4 else x[i],)) for i in range(3)])
    want = torch.autograd.grad(expected.square().sum(), leaves)
    per_probe = 4 * 3 * max(c * s * s for c, s in zip(spec.channels, spec.feature_sizes()))
    for tile in (2, 1):
        monkeypatch.setattr(cnn_module, "PROBE_TILE_BYTES", tile * per_probe)
        assert probe_tile(spec, 3, 5, x.device) == tile  # tiles really used (the comparison is not vacuous)
        got = forward(spec, params, x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        for a, b in zip(torch.autograd.grad(got.square().sum(), leaves), want):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_cnn_residual_changes_the_function() -> None:
    """The residual path is really used: dropping it changes outputs (so a loader that drops it is caught)."""
    params = cnn_params(WILD, 2)
    x = torch.rand(3, *WILD.input_shape) * 2 - 1
    plain = CNNSpec(**{**WILD.__dict__, "residual": (-1, -1, -1, -1)})
    assert not torch.allclose(forward(WILD, params, x), forward(plain, params, x), atol=1e-4)


def wild_by_hand(params: dict[str, torch.Tensor], i: int, x: torch.Tensor, residuals: bool) -> torch.Tensor:
    """WILD's model i written out layer by layer, independent of CNNSpec's code: layer 2 adds layer 0's output to
    its first 8 channels, layer 3 adds layer 1's output to its first 12, each before its own activation."""
    w = lambda k: params[f"layers.{k}.weight"][i]
    b = lambda k: params[f"layers.{k}.bias"][i]
    h0 = torch.relu(F.conv2d(x, w(0), b(0), padding=1))  # [P, 8, 32, 32]
    h1 = F.gelu(F.conv2d(h0, w(1), b(1), padding=2))  # [P, 16, 32, 32]
    z2 = F.conv2d(h1, w(2), b(2), padding=3)  # [P, 8, 32, 32]
    h2 = torch.tanh(z2 + h0 if residuals else z2)
    z3 = F.conv2d(h2, w(3), b(3), padding=1)  # [P, 12, 32, 32]
    h3 = torch.sigmoid(z3 + h1[:, :12] if residuals else z3)
    return h3.mean(dim=(2, 3)) @ params["fc.weight"][i].T + params["fc.bias"][i]  # [P, 10]


def test_cnn_residuals_match_a_hand_written_forward() -> None:
    """Both the batched forward and the reference module equal a forward written out by hand with the residual
    links; the same hand-written forward without them differs (the negative control: the comparison can fail)."""
    params = cnn_params(WILD, 3)
    x = torch.rand(4, *WILD.input_shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    by_hand = torch.stack([wild_by_hand(params, i, x, residuals=True) for i in range(3)])
    torch.testing.assert_close(forward(WILD, params, x), by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_model_cnn(WILD, params, x), by_hand, atol=1e-5, rtol=1e-5)
    without = torch.stack([wild_by_hand(params, i, x, residuals=False) for i in range(3)])
    assert (forward(WILD, params, x) - without).abs().max() > 1e-3


def test_cnn_permuting_channels_leaves_output_unchanged() -> None:
    spec = CNNSpec.small_cnn_zoo()
    params = cnn_params(spec, 3)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(5))
    permuted = dict(params)
    permuted["layers.1.weight"] = params["layers.1.weight"][:, perm]
    permuted["layers.1.bias"] = params["layers.1.bias"][:, perm]
    permuted["layers.2.weight"] = params["layers.2.weight"][:, :, perm]
    x = torch.rand(4, 1, 32, 32)
    torch.testing.assert_close(forward(spec, permuted, x), forward(spec, params, x), atol=1e-5, rtol=1e-5)


def test_cnn_gradient_reaches_input_probes() -> None:
    spec = CNNSpec.small_cnn_zoo()
    x = torch.rand(4, 1, 32, 32, requires_grad=True)
    forward(spec, cnn_params(spec, 3), x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_cnn_spec_validation() -> None:
    assert CNNSpec.small_cnn_zoo().n_params() == 4970
    assert spec_from_dict(WILD.to_dict()) == WILD
    with pytest.raises(ValueError, match="kernel_size has 2 entries"):
        CNNSpec(1, (4, 4, 4), (3, 3))
    with pytest.raises(ValueError, match="'swish'"):
        CNNSpec(1, (4,), 3, 1, 1, ("swish",))
    with pytest.raises(ValueError, match=r"residual\[2\]"):
        CNNSpec.small_cnn_zoo().__class__(1, (4, 4, 4), 3, 2, 1, "relu", (-1, -1, 0))  # sizes 16 vs 4
