"""Zoos of registered nn.Module architectures: the functional_call + vmap forward equals each model's own forward,
and the registry refuses names it does not know."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from probegen_nb.core.arch.cnn import CNN, CNNSpec, cnn_forward
from probegen_nb.core.arch.module import ModuleSpec, module_forward, register_architecture, registered_architectures
from probegen_nb.core.arch.registry import forward, spec_from_dict
from probegen_nb.core.arch.siren import SirenINR, SirenSpec, siren_forward
from probegen_nb.core.zoo import Task, Zoo, ZooFormatError
from probegen_nb.core.zoo_io import load_zoo, save_zoo

register_architecture("test_siren", lambda **kw: SirenINR(SirenSpec(**kw)))
register_architecture("test_cnn", lambda **kw: CNN(CNNSpec(**kw)))

MLP_SPEC = ModuleSpec("mlp", {"in_shape": [1, 8, 8], "hidden": [16, 12], "out_dim": 5}, (1, 8, 8), 5)
RESNET_SPEC = ModuleSpec("small_resnet", {"in_channels": 1, "channels": [4, 6], "out_dim": 5}, (1, 8, 8), 5)


def trained_stats(model: nn.Module, shape: tuple[int, ...], seed: int) -> nn.Module:
    """Non-trivial BatchNorm running statistics: a few train-mode passes on shifted, scaled random batches."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape, generator=g) * (1 + seed) + seed)
    return model.eval()


def models_of(spec: ModuleSpec, m: int) -> list[nn.Module]:
    out = []
    for i in range(m):
        torch.manual_seed(i)
        out.append(trained_stats(spec.build_module(), spec.input_shape, i))
    return out


def stacked(models: list[nn.Module], spec: ModuleSpec) -> dict[str, torch.Tensor]:
    return {k: torch.stack([mod.state_dict()[k] for mod in models]) for k in spec.param_shapes()}


@pytest.mark.parametrize("spec", [MLP_SPEC, RESNET_SPEC], ids=["mlp", "resnet_bn"])
@pytest.mark.parametrize("per_model", [False, True], ids=["shared", "per_model"])
def test_vmap_forward_equals_each_models_forward(spec: ModuleSpec, per_model: bool) -> None:
    models = models_of(spec, 4)
    x = torch.randn(4, 7, *spec.input_shape) if per_model else torch.randn(7, *spec.input_shape)
    out = forward(spec, stacked(models, spec), x)  # [M, P, K]
    with torch.no_grad():
        ref = torch.stack([mod(x[i] if per_model else x) for i, mod in enumerate(models)])
    assert out.shape == (4, 7, spec.out_dim)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_resnet_running_stats_are_used_and_non_trivial() -> None:
    """Negative control: the statistics differ from their init, and a perturbed buffer changes the output."""
    models = models_of(RESNET_SPEC, 2)
    params = stacked(models, RESNET_SPEC)
    assert "stem.1.running_mean" in params and "blocks.1.skip.1.running_var" in params  # buffers are zoo tensors
    assert not torch.allclose(params["stem.1.running_var"], torch.ones_like(params["stem.1.running_var"]))
    x = torch.randn(5, *RESNET_SPEC.input_shape)
    out = module_forward(RESNET_SPEC, params, x)
    moved = dict(params, **{"blocks.0.bn1.running_mean": params["blocks.0.bn1.running_mean"] + 0.5})
    assert (module_forward(RESNET_SPEC, moved, x) - out).abs().max() > 1e-3


def test_siren_as_a_module_equals_the_hand_written_forward() -> None:
    """Two independent forwards of the same stacked weights: SirenINR through functional_call + vmap, siren_forward."""
    siren = SirenSpec(hidden=(16, 16))
    spec = ModuleSpec("test_siren", {"hidden": [16, 16]}, (2,), 1)
    models = [siren.build_module() for _ in range(3)]
    params = {k: torch.stack([mod.state_dict()[k] for mod in models]) for k in siren.param_shapes()}
    assert set(spec.param_shapes()) == set(siren.param_shapes())
    x = torch.rand(50, 2) * 2 - 1
    torch.testing.assert_close(forward(spec, params, x), siren_forward(siren, params, x), atol=1e-5, rtol=1e-5)


def test_small_cnn_as_a_module_equals_the_hand_written_forward() -> None:
    cnn = CNNSpec.small_cnn_zoo()
    spec = ModuleSpec("test_cnn", {"channels": [16, 16, 16]}, (1, 32, 32), 10)
    models = [cnn.build_module() for _ in range(3)]
    params = {k: torch.stack([mod.state_dict()[k] for mod in models]) for k in cnn.param_shapes()}
    x = torch.randn(6, 1, 32, 32)
    torch.testing.assert_close(forward(spec, params, x), cnn_forward(cnn, params, x), atol=1e-5, rtol=1e-5)


def test_registry_refuses_an_unknown_name_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'no_such_net' is not registered.*'mlp'.*'small_resnet'"):
        ModuleSpec("no_such_net", {}, (1, 8, 8), 10)
    assert {"mlp", "small_resnet"} <= set(registered_architectures())


def test_loading_a_zoo_of_an_unregistered_architecture_fails_without_importing(tmp_path) -> None:
    """zoo.json naming an importable class path is refused, not imported: only the registry is consulted."""
    with pytest.raises(ValueError, match="not registered"):
        spec_from_dict({"kind": "module", "name": "torch.nn.Linear", "kwargs": {}, "input_shape": [4], "out_dim": 2})
    zoo = Zoo(MLP_SPEC, stacked(models_of(MLP_SPEC, 2), MLP_SPEC),
              pd.DataFrame({"model_id": [0, 1], "split": ["train", "test"], "label": [0, 1]}), Task(n_classes=5))
    save_zoo(zoo, tmp_path / "z")
    meta = (tmp_path / "z" / "zoo.json").read_text().replace('"name": "mlp"', '"name": "os.system"')
    (tmp_path / "z" / "zoo.json").write_text(meta)
    with pytest.raises(ZooFormatError, match=r"'os.system' is not registered"):
        load_zoo(tmp_path / "z")


def test_re_registering_a_name_as_another_class_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("mlp", nn.Linear)


def test_spec_round_trips_through_json_and_checks_out_dim() -> None:
    assert spec_from_dict(RESNET_SPEC.to_dict()) == RESNET_SPEC
    assert hash(spec_from_dict(RESNET_SPEC.to_dict())) == hash(RESNET_SPEC)
    with pytest.raises(ValueError, match=r"not \(1, 7\)"):
        ModuleSpec("mlp", {"in_shape": [1, 8, 8], "out_dim": 5}, (1, 8, 8), 7).param_shapes()
    with pytest.raises(ValueError, match="JSON values"):
        ModuleSpec("mlp", {"in_shape": torch.ones(2)}, (1, 8, 8), 5)


def table_of(m: int, labels: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"model_id": range(100, 100 + m), "split": (["train", "val", "test"] * m)[:m],
                         "label": labels if labels is not None else [i % 5 for i in range(m)],
                         "note": [f"model {i}" for i in range(m)]})


def test_zoo_from_modules_round_trips_exactly(tmp_path) -> None:
    models = models_of(RESNET_SPEC, 4)
    zoo = Zoo.from_modules(models, RESNET_SPEC, table_of(4), Task(n_classes=5), {"recipe": "test"})
    assert set(zoo.params) == set(RESNET_SPEC.param_shapes())
    for i, mod in enumerate(models):  # buffers too: every float state_dict entry is the model's own
        for k, v in mod.state_dict().items():
            if v.is_floating_point():
                assert torch.equal(zoo.params[k][i], v), k
    save_zoo(zoo, tmp_path / "z")
    back = load_zoo(tmp_path / "z")
    assert isinstance(back, Zoo) and back.spec == RESNET_SPEC and back.task == zoo.task
    assert set(back.params) == set(zoo.params) and all(torch.equal(back.params[k], v) for k, v in zoo.params.items())
    pd.testing.assert_frame_equal(back.table, zoo.table)
    x = torch.randn(3, *RESNET_SPEC.input_shape)
    with torch.no_grad():
        ref = torch.stack([mod(x) for mod in models])
    torch.testing.assert_close(forward(back.spec, back.params, x), ref, atol=1e-5, rtol=1e-5)
    # the state_dict names are the file's keys, and a model rebuilt from the zoo is the original
    rebuilt = RESNET_SPEC.build_module().eval()
    rebuilt.load_state_dict(back.model_params(2), strict=False)
    torch.testing.assert_close(rebuilt(x), ref[2], atol=1e-6, rtol=1e-6)


def test_zoo_from_state_dicts_names_the_first_bad_model() -> None:
    models = models_of(MLP_SPEC, 3)
    other = ModuleSpec("mlp", {"in_shape": [1, 8, 8], "hidden": [16, 9], "out_dim": 5}, (1, 8, 8), 5).build_module()
    sds = [m.state_dict() for m in models]
    with pytest.raises(ZooFormatError, match=r"model_id 102 \(row 2\).*'net.3.weight' has shape \(9, 16\)"):
        Zoo.from_state_dicts([sds[0], sds[1], other.state_dict()], MLP_SPEC, table_of(3))
    bad = dict(sds[1], **{"net.1.bias": sds[1]["net.1.bias"] * float("nan")})
    with pytest.raises(ZooFormatError, match=r"model_id 101 \(row 1\): non-finite value in 'net.1.bias'"):
        Zoo.from_state_dicts([sds[0], bad, sds[2]], MLP_SPEC, table_of(3))
    with pytest.raises(ZooFormatError, match=r"label 7 of model_id 101 \(row 1\) outside \[0, 5\)"):
        Zoo.from_modules(models, MLP_SPEC, table_of(3, [0, 7, 1]), Task(n_classes=5))
    with pytest.raises(ZooFormatError, match="3 models but the table has 2 rows"):
        Zoo.from_modules(models, MLP_SPEC, table_of(2))
    assert len(Zoo.from_modules(models, MLP_SPEC, table_of(3), Task(n_classes=5))) == 3  # the control: valid input
