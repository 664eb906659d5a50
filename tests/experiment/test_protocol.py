"""The paper's protocol, pinned: changing a default (depth, lr, batch, the loss, the metric) must fail a test here.

Values from ProbeGen (Kahana et al., ICLR 2025), section 5 and appendix: Q = 128 probes (64 also reported), a latent
code of 32 through a 2-layer deep linear generator of width 32 for INRs, the predictor MLP with a 256-wide first layer
and four 256 → 256 hidden layers, Adam at 3e-4 with a cosine schedule, 32 models a batch, 30 epochs, cross-entropy for
classes, MSE for regressed accuracies, Kendall τ as the generalization metric (as in NFN and Neural Graphs).
"""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.evaluate import kendall_tau, metric, metric_name
from probegen_nb.experiment.train import build_model, is_better, loss_fn, make_optimizer, train
from probegen_nb.probes.coords import DeepLinearGenerator, ProbeGenConfig, UniformConfig
from probegen_nb.probes.images import ConvProbeGenConfig, ConvProbeGenerator
from probegen_nb.zoos.inr import init_siren_params

from paths import ZOOS

PAPER_RUN = {"epochs": 30, "lr": 3e-4, "batch_size": 32, "hidden": 256, "n_hidden": 4,
             "weight_decay": 0.0, "max_train_models": None, "device": "auto", "cache_responses": True}
PAPER_PROBING = {"n_probes": 128, "generator_weight_decay": 0.0}
PAPER_GENERATOR = {"latent_dim": 32, "width": 32, "depth": 2, "activation": None, "init_spread": None}
PAPER_CONV_GENERATOR = {"latent_dim": 32, "width_mult": 16, "n_layers": None, "activation": None,
                        "unit_variance_init": False}


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    m = 80
    params = init_siren_params(SirenSpec(), m, torch.Generator().manual_seed(0))
    labels = np.arange(m) % 10
    table = pd.DataFrame({"model_id": range(m), "split": ["train"] * 48 + ["val"] * 16 + ["test"] * 16,
                          "label": labels})
    return Zoo(SirenSpec(), params, table, Task("label", 10))


def test_run_config_defaults_are_the_papers() -> None:
    config = RunConfig()
    got = {k: getattr(config, k) for k in PAPER_RUN}
    assert got == PAPER_RUN
    assert isinstance(config.method, ProbingConfig) and config.method.probes == ProbeGenConfig()
    assert {k: getattr(config.method, k) for k in PAPER_PROBING} == PAPER_PROBING
    assert dataclasses.asdict(ProbeGenConfig()) == PAPER_GENERATOR
    assert dataclasses.asdict(ConvProbeGenConfig()) == PAPER_CONV_GENERATOR


def test_the_built_model_is_the_papers(zoo: Zoo) -> None:
    """What RunConfig() really builds, layer by layer: a mutation anywhere on the way (config, predictor class,
    probing model) changes these shapes."""
    model = build_model(RunConfig(), zoo, torch.Generator().manual_seed(0))
    linears = [(m.in_features, m.out_features) for m in model.predictor.modules() if isinstance(m, nn.Linear)]
    assert linears == [(128 * 1, 256)] + [(256, 256)] * 4 + [(256, 10)]
    kinds = [type(m) for m in model.predictor.net]
    assert kinds == [nn.Linear, nn.ReLU] * 5 + [nn.Linear]
    source = model.probes
    assert isinstance(source, DeepLinearGenerator) and source.latents.shape == (128, 32)
    layers = list(source.layers)
    assert [type(m) for m in layers] == [nn.Linear, nn.Linear]  # deep linear: no activation between
    assert [(m.in_features, m.out_features) for m in layers] == [(32, 32), (32, 2)]


def test_the_conv_generator_is_the_papers() -> None:
    """Grayscale image zoos: 6 transposed convolutions, 1 → 4 → 8 → 16 → 16 → 32 → 32, no activations, tanh out."""
    source = ConvProbeGenConfig().build(64, (1, 32, 32), torch.Generator().manual_seed(0))
    assert isinstance(source, ConvProbeGenerator)
    convs = [m for m in source.layers]
    assert all(isinstance(m, nn.ConvTranspose2d) for m in convs) and len(convs) == 6
    x = source.latents[:, :, None, None]
    sizes = []
    for m in convs:
        x = m(x)
        sizes.append(x.shape[-1])
    assert sizes == [4, 8, 16, 16, 32, 32]
    assert source().abs().max() <= 1


def test_optimizer_is_adam_at_3e4_cosine_to_zero(zoo: Zoo) -> None:
    config = RunConfig()
    model = build_model(config, zoo, torch.Generator().manual_seed(0))
    optimizer, schedule = make_optimizer(config, model, total_steps=100)
    assert isinstance(optimizer, torch.optim.Adam)
    assert [g["lr"] for g in optimizer.param_groups] == [3e-4, 3e-4]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.0]
    lrs = []
    for _ in range(100):
        optimizer.step()
        schedule.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[49] == pytest.approx(1.5e-4, rel=1e-6)  # half way down the cosine
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_a_run_takes_ceil_models_over_32_steps_an_epoch_down_a_cosine(zoo: Zoo) -> None:
    """What train() really does with the protocol: 48 train models in batches of 32 are 2 steps an epoch, and the
    learning rate follows the cosine from 3e-4 to 0 over all 4 steps (half way after the first epoch)."""
    run = train(RunConfig(epochs=2, device="cpu", method=ProbingConfig(n_probes=8)), zoo, progress=False)
    assert run.metrics["steps"] == 2 * math.ceil(48 / 32)
    lrs = [record["lr"] for record in run.metrics["history"]]
    assert lrs == pytest.approx([1.5e-4, 0.0], abs=1e-12)


def test_losses_are_cross_entropy_and_mse() -> None:
    logits, classes = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert loss_fn(logits, classes, classification=True).item() == pytest.approx(expected, rel=1e-6)
    outputs, targets = torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 0.0])
    assert loss_fn(outputs, targets, classification=False).item() == pytest.approx(5.0)  # MSE; L1 would give 2


def test_the_generalization_metric_is_kendall_tau() -> None:
    """One discordant pair in five ranks: Kendall τ = (8 − 2) / 10 = 0.6, where Spearman's ρ would be 0.8."""
    pred, target = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0])
    assert kendall_tau(pred, target) == pytest.approx(0.6)
    spec = CNNSpec.small_cnn_zoo()
    table = pd.DataFrame({"model_id": range(5), "split": ["test"] * 5, "test_acc": target.numpy()})
    scalar = Zoo(spec, {k: torch.zeros(5, *s) for k, s in spec.param_shapes().items()}, table, Task("test_acc", None))
    assert metric_name(scalar) == "kendall_tau"
    assert metric(scalar, pred[:, None], target) == pytest.approx(0.6)


def test_kendall_tau_of_a_constant_prediction_is_nan_not_zero() -> None:
    assert math.isnan(kendall_tau(torch.ones(6), torch.arange(6.0)))
    assert not is_better(float("nan"), 0.1) and is_better(0.1, float("nan")) and is_better(0.2, 0.1)
    assert not is_better(0.1, 0.2)


def test_fixed_probe_responses_are_cached_and_change_nothing(zoo: Zoo, class_shift_zoo: Zoo) -> None:
    """Caching the answers to fixed probes is a speed-up only: the same run through the per-step forward gives the
    same history. On a zoo whose class the answers decode (so val and test accuracy are high and each split's rows
    matter): evaluating a split on another split's cached answers changes its accuracy and fails here."""
    config = RunConfig(epochs=20, lr=1e-2, batch_size=16, hidden=32, n_hidden=1, device="cpu",
                       method=ProbingConfig(UniformConfig(), 16))  # 0.1 s; ends at val 1.0, test 0.9
    cached = train(config, class_shift_zoo, progress=False)
    stepped = train(dataclasses.replace(config, cache_responses=False), class_shift_zoo, progress=False)
    assert cached.metrics["responses_cached"] is True and stepped.metrics["responses_cached"] is False
    for a, b in zip(cached.metrics["history"], stepped.metrics["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        for s in ("train", "val", "test"):
            assert a[f"{s}_accuracy"] == pytest.approx(b[f"{s}_accuracy"], abs=1e-9), (s, a, b)
    last = cached.metrics["history"][-1]
    assert last["val_accuracy"] > 0.75 and last["test_accuracy"] > 0.75  # chance is 1/3: the labels are decoded
    learned = train(RunConfig(epochs=1, device="cpu", method=ProbingConfig(n_probes=16)), zoo, progress=False)
    assert learned.metrics["responses_cached"] is False  # learned probes move: nothing to cache


def test_protocol_epochs_per_benchmark_are_the_official_scripts() -> None:
    """150 epochs on CIFAR10-GS, 30 on the INR zoos and Wild Park (the official scripts); `train` on the command line
    takes them from the zoo unless --epochs says otherwise."""
    from probegen_nb.cli import build_parser, train_config
    from probegen_nb.core.zoo_io import load_zoo
    from probegen_nb.experiment.protocol import benchmark_of, protocol_epochs

    inr, cnn = load_zoo(ZOOS / "mnist-inr-small"), load_zoo(ZOOS / "cifar10-gs-cnn-small")
    assert (benchmark_of(inr), protocol_epochs(inr)) == ("mnist-inr", 30)
    assert (benchmark_of(cnn), protocol_epochs(cnn)) == ("cifar10-gs", 150)
    for info, benchmark in (({"builder": "probegen_nb.zoos.public.cnn.convert_small_cnn_zoo"}, "cifar10-gs"),
                            ({"builder": "probegen_nb.zoos.public.cnn.convert_cnn_wild_park"}, "wild-park"),
                            ({"dataset": "cifar10"}, "wild-park"), ({"dataset": "fmnist"}, "other")):
        assert benchmark_of(dataclasses.replace(cnn, info=info)) == benchmark
    assert protocol_epochs(dataclasses.replace(cnn, info={"dataset": "cifar10"})) == 30
    assert benchmark_of(dataclasses.replace(inr, info={"dataset": "fmnist"})) == "fmnist-inr"
    args = build_parser().parse_args(["train", "--zoo", "z", "--out", "o"])
    assert train_config(args, cnn).epochs == 150 and train_config(args, inr).epochs == 30
    args = build_parser().parse_args(["train", "--zoo", "z", "--out", "o", "--epochs", "7"])
    assert train_config(args, cnn).epochs == 7


@pytest.mark.parametrize("field,value", [("epochs", 0), ("epochs", -1), ("batch_size", 0),
                                         ("max_train_models", -5), ("max_train_models", 0), ("lr", 0.0),
                                         ("lr", float("nan")), ("hidden", 0), ("n_hidden", -1),
                                         ("weight_decay", -1e-4), ("epochs", True)])
def test_run_config_refuses_out_of_range_settings(field: str, value: object) -> None:
    """Before the check `--n-probes 0` trained to a complete run at chance, `--epochs 0` crashed late with
    KeyError 'test' and `--max-train-models -5` said the train split was empty."""
    with pytest.raises(ValueError, match=rf"RunConfig\.{field} \(={value!r}\) must be"):
        RunConfig(**{field: value})


@pytest.mark.parametrize(("field", "value"), [("n_probes", 0), ("n_probes", 2.5), ("generator_weight_decay", -1.0)])
def test_probing_config_refuses_out_of_range_settings(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"ProbingConfig\.{field} \(={value!r}\) must be"):
        ProbingConfig(**{field: value})


def test_run_config_accepts_the_edges() -> None:
    """Negative control: the smallest valid values and numpy integers (sweep grids) construct."""
    RunConfig(epochs=1, batch_size=1, hidden=1, n_hidden=0, max_train_models=1, lr=1e-9, seed=0, weight_decay=0.0,
              method=ProbingConfig(n_probes=1))
    RunConfig(max_train_models=None, method=ProbingConfig(n_probes=np.int64(64)))
