"""Mixed-architecture zoos: one batched forward per architecture, one format, one training path."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from probegen_nb.core.arch.cnn import CNNSpec, cnn_forward_runs
from probegen_nb.core.arch.registry import forward
from probegen_nb.core.zoo import MixedZoo, Task, Zoo, ZooFormatError
from probegen_nb.core.zoo_io import load_zoo, save_zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.train import build_model, train
from probegen_nb.methods.probing import forward_batch
from probegen_nb.probes.images import ImageVanillaConfig

SPECS = [CNNSpec.small_cnn_zoo(activation="relu"), CNNSpec.small_cnn_zoo(activation="tanh"),
         CNNSpec(1, (4, 8, 4), (3, 5, 3), 1, (1, 2, 1), ("gelu", "sigmoid", "none"), (-1, -1, 0))]


# Five architectures, two pairs of which share every layer shape (one pair with a residual link) and differ only in
# their activations: three batched forwards when shapes are shared, five when not.
SHARED_SPECS = [CNNSpec.small_cnn_zoo(activation="relu"),
                CNNSpec(1, (4, 8, 4), (3, 5, 3), 1, (1, 2, 1), ("gelu", "sigmoid", "none"), (-1, -1, 0)),
                CNNSpec.small_cnn_zoo(activation="tanh"),
                CNNSpec(1, (8, 8), (5, 3), 1, (2, 1), ("leaky_relu", "none"), (-1, -1)),
                CNNSpec(1, (4, 8, 4), (3, 5, 3), 1, (1, 2, 1), ("tanh", "sigmoid", "relu"), (-1, -1, 0))]


def make_mixed(sizes=(5, 4, 3), seed=0, specs=SPECS) -> MixedZoo:
    g = torch.Generator().manual_seed(seed)
    groups, start = [], 0
    for spec, m in zip(specs, sizes):
        params = {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
        ids = np.arange(start, start + m)
        table = pd.DataFrame({"model_id": ids, "split": ["train", "val", "test"] * (m // 3) + ["train"] * (m % 3),
                              "test_acc": np.linspace(0.1, 0.9, m)})
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
        start += m
    return MixedZoo(tuple(groups), Task("test_acc", None))


def test_round_trip(tmp_path) -> None:
    zoo = make_mixed()
    save_zoo(zoo, tmp_path / "z")
    meta = json.loads((tmp_path / "z" / "zoo.json").read_text())
    assert len(meta["archs"]) == 3 and "arch" not in meta
    back = load_zoo(tmp_path / "z")
    assert isinstance(back, MixedZoo) and back.specs == zoo.specs
    for a, b in zip(zoo.groups, back.groups):
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert back.table["model_id"].tolist() == list(range(12))


def test_represent_rows_equals_per_model_modules_in_any_order() -> None:
    zoo = make_mixed()
    model = build_model(RunConfig(hidden=16, n_hidden=1, method=ProbingConfig(ImageVanillaConfig(), 3)), zoo,
                        torch.Generator().manual_seed(0))
    index = torch.tensor([11, 0, 6, 3, 9, 5, 1])  # interleaves the three architectures
    rep = model.represent_rows(zoo, index).detach()
    probes = model.probes().detach()
    group, row = zoo.table["arch"].to_numpy(), np.concatenate([np.arange(len(z)) for z in zoo.groups])
    for j, i in enumerate(index.tolist()):
        sub = zoo.groups[group[i]]
        module = sub.spec.build_module()
        module.load_state_dict(sub.model_params(row[i]))
        torch.testing.assert_close(rep[j], module(probes).flatten(), atol=1e-5, rtol=1e-5)


def per_group_reference(model, zoo: MixedZoo, index: torch.Tensor, x: torch.Tensor, shuffle_group: int | None = None):
    """The per-group loop that `represent_rows` replaced, kept here as the reference: one forward per architecture
    group, torch.unique and index_copy. `shuffle_group` rolls that group's output rows (the negative control)."""
    group = torch.tensor(zoo.table["arch"].to_numpy())[index]
    row = torch.cat([torch.arange(len(z)) for z in zoo.groups])[index]
    out = x.new_zeros(len(index), model.rep_dim)
    for g in torch.unique(group).tolist():
        positions = (group == g).nonzero().squeeze(1)
        sub = zoo.groups[g]
        rep = forward(sub.spec, {k: v[row[positions]] for k, v in sub.params.items()}, x).flatten(1)
        out = out.index_copy(0, positions, rep.roll(1, 0) if g == shuffle_group else rep)
    return out


def rep_and_probe_grad(fn, x0: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x0.clone().requires_grad_()
    rep = fn(x)
    return rep.detach(), torch.autograd.grad((rep * weights).sum(), x)[0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("by_layer_shapes", [True, False])
def test_batched_path_equals_the_per_group_loop(seed: int, by_layer_shapes: bool) -> None:
    zoo = make_mixed((4, 3, 5, 3, 4), seed, SHARED_SPECS)
    model = build_model(RunConfig(hidden=16, n_hidden=1, method=ProbingConfig(ImageVanillaConfig(), 3)), zoo,
                        torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(zoo), generator=g)[:15]  # a random batch order that interleaves the architectures
    batches = zoo.batches(index)
    assert [len(b.specs) for b in batches] == [2, 2, 1]  # the two shape-sharing pairs each run as one forward
    assert all(len(b.specs) == 1 for b in zoo.batches(index, by_layer_shapes=False))
    x0 = model.probes().detach()  # [Q, 1, 32, 32]
    weights = torch.randn(len(index), model.rep_dim, generator=g)  # a loss that weighs every output differently
    rep, grad = rep_and_probe_grad(lambda x: model.represent_rows(zoo, index, x, by_layer_shapes=by_layer_shapes),
                                   x0, weights)
    ref, ref_grad = rep_and_probe_grad(lambda x: per_group_reference(model, zoo, index, x), x0, weights)
    torch.testing.assert_close(rep, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-5)
    assert grad.abs().max() > 1e-2  # the gradient compared is not vanishingly small

    # Negative controls: rows of one group in the wrong order, and a shared forward with one run's activations for all
    assert (zoo.table["arch"].to_numpy()[index.numpy()] == 1).sum() >= 2  # so that rolling group 1 changes rows
    bad, bad_grad = rep_and_probe_grad(lambda x: per_group_reference(model, zoo, index, x, shuffle_group=1), x0,
                                       weights)
    assert not torch.allclose(rep, bad, atol=1e-3) and not torch.allclose(grad, bad_grad, atol=1e-3)
    shared = batches[0]
    one_act = forward(shared.specs[0], shared.params, x0)
    assert not torch.allclose(cnn_forward_runs(shared.specs, shared.counts, shared.params, x0), one_act, atol=1e-3)


def test_batches_keep_every_position_once() -> None:
    zoo = make_mixed((4, 3, 5, 3, 4), 0, SHARED_SPECS)
    index = torch.tensor([18, 2, 7, 0, 11, 3, 16, 9])
    for batches in (zoo.batches(index, by_layer_shapes=False), zoo.batches(index)):
        positions = torch.cat([b.positions for b in batches])
        assert sorted(positions.tolist()) == list(range(len(index)))
        model_ids = torch.cat([b.params["fc.bias"][:, 0] for b in batches])  # one row per model, in batch order
        expected = torch.cat([z.params["fc.bias"][:, 0] for z in zoo.groups])[index[positions]]
        assert torch.equal(model_ids, expected)
    with pytest.raises(ValueError, match="more than their activations"):
        cnn_forward_runs(SHARED_SPECS[:2], (1, 1), {}, torch.zeros(1, 1, 32, 32))


def one_row(zoo: MixedZoo, i: int) -> tuple[CNNSpec, dict[str, torch.Tensor]]:
    """Row i's architecture and its params [1, …], read straight from its group: the per-row reference."""
    g = int(zoo.table["arch"].iloc[i])
    r = i - sum(len(z) for z in zoo.groups[:g])
    return zoo.groups[g].spec, {k: v[r:r + 1] for k, v in zoo.groups[g].params.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("by_layer_shapes", [True, False])
def test_map_rows_puts_row_i_at_position_i(seed: int, by_layer_shapes: bool) -> None:
    """Property: for a shuffled index (repeats included) over five interleaved architectures, map_rows' row j is
    exactly what fn gives index[j]'s model alone; a missing or wrong un-permute fails it."""
    zoo = make_mixed((4, 3, 5, 3, 4), seed, SHARED_SPECS)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, 32, 32, generator=g)  # [Q, 1, 32, 32]
    index = torch.cat([torch.randperm(len(zoo), generator=g), torch.randint(len(zoo), (5,), generator=g)])
    got = zoo.map_rows(index, lambda b: forward_batch(b, x).flatten(1), (2 * 10,), by_layer_shapes)  # [B, Q·K]
    ref = torch.stack([forward(*one_row(zoo, i), x).flatten() for i in index.tolist()])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    ids = zoo.map_rows(index, lambda b: b.params["fc.bias"], (10,), by_layer_shapes)  # exact: no arithmetic
    assert torch.equal(ids, torch.cat([one_row(zoo, i)[1]["fc.bias"] for i in index.tolist()]))
    assert zoo.map_rows(index[:1], lambda b: b.params["fc.bias"], (10,)).shape == (1, 10)  # one model
    assert zoo.map_rows(index[:0], lambda b: b.params["fc.bias"], (10,)).shape == (0, 10)  # none: fn not called
    with pytest.raises(ValueError, match=r"fn returned shape \(\d+, 10\)"):
        zoo.map_rows(index, lambda b: b.params["fc.bias"], (3,))
    assert zoo.device == torch.device("cpu") == zoo.groups[0].device


def test_split_subset_and_training() -> None:
    zoo = make_mixed((6, 6, 6))
    assert len(zoo.split("train")) == 6 and set(zoo.split("test").table["arch"]) == {0, 1, 2}
    sub = zoo.subset([17, 2, 8])
    assert sorted(sub.table["model_id"]) == [2, 8, 17]
    run = train(RunConfig(epochs=2, hidden=16, n_hidden=1, device="cpu",
                          method=ProbingConfig(ImageVanillaConfig(), 4)), zoo,
                progress=False)
    assert run.metrics["metric"] == "kendall_tau" and len(run.metrics["history"]) == 2
    assert run.metrics["flops_per_model"] > 0


def test_a_subset_that_keeps_no_model_of_an_architecture_trains_to_the_end() -> None:
    """A MixedZoo subset with an empty architecture group (e.g. the embedded CIFAR10-GS zoo's first relu models)
    used to fail after its last epoch, counting FLOPs on a model that is not there; its FLOPs are the kept
    architecture's."""
    zoo = make_mixed((6, 6, 6))
    relu_only = zoo.subset(list(range(6)))  # the first group's models: groups 1 and 2 are empty
    assert [len(g) for g in relu_only.groups][1:] == [0, 0]
    config = RunConfig(epochs=1, hidden=16, n_hidden=1, device="cpu", method=ProbingConfig(ImageVanillaConfig(), 4))
    run = train(config, relu_only, progress=False)
    alone = build_model(config, zoo.groups[0], torch.Generator().manual_seed(0))
    assert run.metrics["flops_per_model"] == alone.flops_per_model(zoo.groups[0]) > 0


def test_errors(tmp_path) -> None:
    zoo = make_mixed()
    save_zoo(zoo, tmp_path / "z")
    table = pd.read_csv(tmp_path / "z" / "models.csv")
    table.loc[4, "arch"] = 7
    table.to_csv(tmp_path / "z" / "models.csv", index=False)
    with pytest.raises(ZooFormatError, match=r"models.csv: arch 7 of row 4"):
        load_zoo(tmp_path / "z")
    table.loc[4, "arch"] = 1  # now arch 0 has 4 rows for 5 weight rows, arch 1 has 5 for 4
    table.to_csv(tmp_path / "z" / "models.csv", index=False)
    with pytest.raises(ZooFormatError, match=r"weights.safetensors: arch 0: 'layers.0.weight' has shape"):
        load_zoo(tmp_path / "z")
    with pytest.raises(ValueError, match="at least one"):
        MixedZoo(())


def test_a_zoo_prints_as_one_short_line() -> None:
    """`repr(zoo)` printed every weight tensor (8 kB for the embedded zoo in a notebook cell)."""
    zoo = make_mixed((6, 6, 6))
    text = repr(zoo)
    assert "\n" not in text and len(text) < 200 and "tensor" not in text
    assert text.startswith("MixedZoo(3 architectures, cnn, 18 models: train") and text.endswith("; cpu)")
    assert repr(zoo.groups[0]).startswith("Zoo(cnn, ")
