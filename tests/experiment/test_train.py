"""Probe training: gradients reach probes and generator, the zoo stays frozen, runs reproduce, errors are clear."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

import probegen_nb.experiment.train as train_mod
from probegen_nb.core.zoo import Zoo
from probegen_nb.experiment import run_folder as rf
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.train import NonFiniteLossError, build_model, train
from probegen_nb.methods.probing import flops_per_model
from probegen_nb.probes.coords import (
    DeepLinearGenerator,
    FreeProbes,
    GaussianConfig,
    ProbeGenConfig,
    UniformConfig,
    VanillaConfig,
)
from probegen_nb.probes.registry import probe_config_from_dict, probe_config_to_dict


@pytest.fixture(scope="module")
def zoo(bias_sign_zoo: Zoo) -> Zoo:
    """The shared bias-sign SIREN zoo (conftest)."""
    return bias_sign_zoo


def small(**kw) -> RunConfig:
    return RunConfig().override({"n_probes": 8, "epochs": 2, "hidden": 32, "n_hidden": 1, "device": "cpu", **kw})


def test_gradient_reaches_probes_and_generator_not_the_zoo(zoo: Zoo) -> None:
    model = build_model(small(), zoo, torch.Generator().manual_seed(0))
    assert isinstance(model.probes, DeepLinearGenerator)
    batch = {k: v[:16] for k, v in zoo.params.items()}
    before = {k: v.clone() for k, v in zoo.params.items()}
    torch.nn.functional.cross_entropy(model(batch), zoo.labels[:16]).backward()
    assert model.probes.latents.grad is not None and model.probes.latents.grad.abs().sum() > 0
    for layer in model.probes.layers:
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert all(not v.requires_grad for v in zoo.params.values())
    train(small(epochs=1), zoo, progress=False)
    assert all(torch.equal(zoo.params[k], before[k]) for k in before)


def test_batched_representation_equals_per_model(zoo: Zoo) -> None:
    model = build_model(small(probes=VanillaConfig()), zoo, torch.Generator().manual_seed(1))
    rep = model.represent(zoo.params)
    probes = model.probes().detach()
    for i in (0, 7, 119):
        module = zoo.spec.build_module()
        module.load_state_dict(zoo.model_params(i))
        torch.testing.assert_close(rep[i].detach(), module(probes).flatten(), atol=1e-5, rtol=1e-5)


def test_a_seed_reproduces_a_run_exactly(zoo: Zoo, tmp_path) -> None:
    a = train(small(seed=3), zoo, out_dir=tmp_path / "a", progress=False)
    b = train(small(seed=3), zoo, out_dir=tmp_path / "b", progress=False)
    c = train(small(seed=4), zoo, progress=False)
    assert a.metrics["history"] == b.metrics["history"]
    sa, sb = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.metrics["history"] != c.metrics["history"]


@pytest.mark.parametrize("probes", [VanillaConfig(), UniformConfig()], ids=["learned", "fixed"])
def test_the_train_metric_is_on_the_models_trained_on(zoo: Zoo, probes, monkeypatch) -> None:
    """With `max_train_models`, the per-epoch train metric covers the first N train models, the ones the run trains
    on, not the unseen rest of the split (learned probes: evaluated every epoch; fixed: answers computed once)."""
    sizes: list[int] = []
    for name in ("predict", "represent_all"):
        real = getattr(train_mod, name)
        monkeypatch.setattr(train_mod, name, lambda model, z, real=real: sizes.append(len(z)) or real(model, z))
    for cap, expected in ((20, 20), (None, 80)):  # the zoo has 80 train models; uncapped is the negative control
        sizes.clear()
        run = train(small(probes=probes, epochs=1, max_train_models=cap), zoo, progress=False)
        assert sorted(set(sizes)) == sorted({expected, 20}), sizes  # train, then val and test (20 each)
        assert run.metrics["n_train_models"] == expected
    train_zoo = zoo.split("train").subset(range(20))
    run = train(small(probes=probes, epochs=1, max_train_models=20), zoo, progress=False)
    with torch.no_grad():
        accuracy = (run.model.predict_rows(train_zoo, torch.arange(20)).argmax(1) == train_zoo.labels).float().mean()
    assert run.metrics["history"][-1]["train_accuracy"] == pytest.approx(float(accuracy))


def test_run_folder_contents(zoo: Zoo, tmp_path) -> None:
    run = train(small(epochs=3), zoo, out_dir=tmp_path, progress=False)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "metrics.json", "best.safetensors",
                                                     "last.safetensors", "probes.safetensors",
                                                     "test_representations.safetensors"}
    assert rf.read_config(tmp_path) == run.config
    metrics = rf.read_metrics(tmp_path, run.config)
    assert len(metrics["history"]) == 3
    best = max(metrics["history"], key=lambda h: h["val_accuracy"])  # first maximum, as train() keeps it
    assert metrics["best_epoch"] == best["epoch"] and metrics["test_accuracy"] == best["test_accuracy"]
    assert metrics["last_test_accuracy"] == metrics["history"][-1]["test_accuracy"]
    probes = load_file(tmp_path / "probes.safetensors")
    # the run's probes are the best-validation epoch's (snapshot 0 is the initialisation)
    assert probes["snapshots"].shape == (4, 8, 2)
    assert torch.equal(probes["snapshots"][metrics["best_epoch"] + 1], probes["probes"])
    assert not torch.equal(probes["snapshots"][0], probes["snapshots"][-1])  # the probes moved
    reps = load_file(tmp_path / "test_representations.safetensors")
    assert reps["representations"].shape == (20, 8) and torch.equal(reps["labels"], zoo.split("test").labels)
    # the best checkpoint reloads into a model that reproduces the best epoch's test accuracy
    model = build_model(run.config, zoo, torch.Generator())
    model.load_state_dict(load_file(tmp_path / "best.safetensors"))
    test = zoo.split("test")
    acc = float((model(test.params).argmax(1) == test.labels).float().mean())
    assert acc == pytest.approx(metrics["test_accuracy"])


def test_learns_a_decodable_label(zoo: Zoo) -> None:
    run = train(small(epochs=20, n_probes=4, lr=3e-3, batch_size=16), zoo, progress=False)
    assert run.metrics["history"][-1]["train_accuracy"] == 1.0
    assert run.metrics["best_val_accuracy"] >= 0.9 and run.metrics["test_accuracy"] >= 0.7  # chance is 1/3


@pytest.mark.parametrize("each_step", [True, False], ids=["cpu-each-step", "gpu-after-the-epoch"])
def test_nan_loss_stops_with_epoch_and_step_keeping_last_good_checkpoint(zoo: Zoo, tmp_path, monkeypatch,
                                                                          each_step: bool) -> None:
    """Both checks name the first bad step: the CPU's at once, a GPU's after the epoch (no host sync per step)."""
    monkeypatch.setattr(train_mod, "checks_loss_each_step", lambda device: each_step)
    calls = {"n": 0}
    real = train_mod.loss_fn

    def poisoned(outputs, labels, classification):
        calls["n"] += 1
        loss = real(outputs, labels, classification)
        return loss * float("nan") if calls["n"] == 3 + 3 else loss  # 3 steps per epoch: epoch 1, step 2

    monkeypatch.setattr(train_mod, "loss_fn", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2 .*last\.safetensors"):
        train(small(batch_size=32, epochs=3), zoo, out_dir=tmp_path, progress=False)
    last = load_file(tmp_path / "last.safetensors")
    assert all(torch.isfinite(v).all() for v in last.values())


def test_probe_shape_mismatch_is_refused_before_training(zoo: Zoo, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"shape \(3,\).*take inputs of shape \(2,\)"):
        train(small(), zoo, out_dir=tmp_path / "run", probes=FreeProbes(8, (3,)), progress=False)
    assert not (tmp_path / "run").exists()


def test_probe_sources() -> None:
    g = torch.Generator().manual_seed(0)
    gen = ProbeGenConfig().build(1000, (2,), g)
    assert [type(m).__name__ for m in gen.layers] == ["Linear", "Linear"]  # deep linear: no activation
    assert gen.latents.shape == (1000, 32) and abs(gen.latents.std().item() - 1) < 0.05
    nonlinear = ProbeGenConfig(activation="relu", depth=3, width=64).build(5, (2,), g)
    assert [type(m).__name__ for m in nonlinear.layers] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert nonlinear().shape == (5, 2)
    uni = UniformConfig().build(4000, (2,), g)
    assert list(uni.parameters()) == [] and "probes" in uni.state_dict()
    assert uni().min() >= -1 and uni().max() <= 1 and uni().min() < -0.99
    gauss = GaussianConfig(std=0.5).build(4000, (2,), g)
    assert abs(gauss().std().item() - 0.5) < 0.03
    assert VanillaConfig().build(7, (2,), g)().requires_grad
    for config in (ProbeGenConfig(depth=4, activation="tanh"), VanillaConfig(), UniformConfig(), GaussianConfig(2.0)):
        assert probe_config_from_dict(probe_config_to_dict(config)) == config
    with pytest.raises(ValueError, match="unknown probe source 'probgen'"):
        probe_config_from_dict({"kind": "probgen"})
    with pytest.raises(ValueError, match="activation 'relu6'"):
        ProbeGenConfig(activation="relu6").build(3, (2,), g)


def test_run_config_rejects_typos() -> None:
    with pytest.raises(ValueError, match="unknown RunConfig fields"):
        RunConfig.from_dict({"n_probe": 3})
    config = RunConfig(method=ProbingConfig(ProbeGenConfig(width=64), generator_weight_decay=1e-3))
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_flops_match_the_matmul_count(zoo: Zoo) -> None:
    q = 16
    model = build_model(small(n_probes=q, hidden=64, n_hidden=2), zoo, torch.Generator())
    siren = q * 2 * (2 * 32 + 32 * 32 + 32 * 1)
    mlp = 2 * (q * 64 + 2 * 64 * 64 + 64 * 3)
    assert flops_per_model(model, zoo) == pytest.approx(siren + mlp, rel=0.02)


def test_a_rerun_stopped_part_way_never_reads_back_as_the_old_finished_run(zoo: Zoo, tmp_path, monkeypatch) -> None:
    """A finished run, then a different run into the same folder that is stopped mid-way: the folder must read as
    unfinished, not as the old run's results under the new config (it did before the fix)."""
    from probegen_nb.experiment.runs import load_run

    folder = tmp_path / "run"
    train(small(epochs=1), zoo, out_dir=folder, progress=False)
    assert load_run(folder, zoo).metrics["n_train_models"] == len(zoo.split("train"))  # finished and readable

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C during the first step of the rerun

    monkeypatch.setattr(train_mod, "loss_fn", stopped)
    with pytest.raises(KeyboardInterrupt):
        train(small(epochs=3, seed=9), zoo, out_dir=folder, progress=False)
    assert json.loads((folder / "config.json").read_text())["seed"] == 9
    with pytest.raises(FileNotFoundError, match="not a finished run folder"):
        load_run(folder, zoo)


def test_metrics_name_the_config_they_complete(zoo: Zoo, tmp_path) -> None:
    """The completion record names its config: a config.json swapped in afterwards is refused, not read as the run."""
    from probegen_nb.experiment.runs import load_run

    folder = tmp_path / "run"
    train(small(epochs=1), zoo, out_dir=folder, progress=False)
    other = replace(rf.read_config(folder), seed=9)
    (folder / "config.json").write_text(json.dumps({"schema_version": rf.SCHEMA_VERSION, **other.to_dict()}))
    with pytest.raises(ValueError, match="completes another config"):
        load_run(folder, zoo)
