"""The batched trainer of registered architectures equals a per-model loop with torch.optim.Adam."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probegen_nb.core.arch.module import ModuleSpec
from probegen_nb.zoos.module_trainer import ModuleTrainConfig, init_params, sample_batches, train_modules

MLP_SPEC = ModuleSpec("mlp", {"in_shape": [1, 8, 8], "hidden": [16], "out_dim": 4}, (1, 8, 8), 4)
RESNET_SPEC = ModuleSpec("small_resnet", {"in_channels": 1, "channels": [4, 6], "out_dim": 4}, (1, 8, 8), 4)


def reference(spec: ModuleSpec, params: dict[str, torch.Tensor], batches, lr: torch.Tensor, steps: int,
              bn_batches: int) -> list[nn.Module]:
    models = []
    for i in range(len(lr)):
        model = spec.build_module()
        model.load_state_dict({k: v[i] for k, v in params.items()}, strict=False)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=float(lr[i]))
        for t in range(steps):
            x, y = batches(t)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
        with torch.no_grad():  # precise BN: the cumulative average over the stats batches
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None
            for j in range(bn_batches):
                model(batches(-1 - j)[0][i])
        models.append(model)
    return models


@pytest.mark.parametrize("spec", [MLP_SPEC, RESNET_SPEC], ids=["mlp", "resnet_bn"])
def test_batched_training_equals_a_per_model_loop(spec: ModuleSpec) -> None:
    m, steps = 3, 5
    g = torch.Generator().manual_seed(0)
    data, labels = torch.randn(40, 1, 8, 8, generator=g), torch.randint(0, 4, (40,), generator=g)
    allowed = labels[None, :] != torch.arange(m)[:, None]  # model i never sees class i
    drawn = {}  # the same batches for both: memoised by step

    sampler = sample_batches(data, labels, allowed, 8, torch.Generator().manual_seed(1))
    batches = lambda t: drawn.setdefault(t, sampler(t))
    lr = torch.tensor([1e-2, 3e-3, 0.0])  # per model; lr 0 leaves model 2 as it was
    init = init_params(spec, m, seed=0)
    out = train_modules(spec, init, batches, lr, ModuleTrainConfig(steps=steps, bn_batches=2))
    assert all(not bool((drawn[t][1][i] == i).any()) for t in drawn for i in range(m))  # per-model data
    ref = reference(spec, init, batches, lr, steps, 2)
    for i, model in enumerate(ref):
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(out[k][i], v, atol=1e-5, rtol=1e-5, msg=f"{k} of model {i}")
    w = next(iter(k for k in init if k.endswith("weight")))
    assert not torch.allclose(out[w][0], init[w][0]) and torch.equal(out[w][2], init[w][2])
    if spec is RESNET_SPEC:  # the statistics were recomputed, and differ between models
        assert not torch.allclose(out["stem.1.running_mean"][0], out["stem.1.running_mean"][1])
