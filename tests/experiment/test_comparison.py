"""Notebook 06's comparison: which methods run on which zoo under which protocol, the cost table's arithmetic, the
published numbers beside ours, and the training curves read back from run folders."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from probegen_nb.baselines.graph_net import GraphNetConfig
from probegen_nb.baselines.nfn import NFNConfig
from probegen_nb.baselines.statnn import StatNNConfig
from probegen_nb.baselines.weight_mlp import WeightMLPConfig
from probegen_nb.experiment.ablations import SectionResult, compare_section
from probegen_nb.experiment.comparison import (
    PUBLISHED,
    comparison_section,
    cost_table,
    published_table,
    training_curves,
    with_published,
)
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.evaluate import represent_all
from probegen_nb.experiment.sweep import summarize_metrics
from probegen_nb.experiment.train import train
from probegen_nb.probes.coords import ProbeGenConfig, UniformConfig, VanillaConfig
from probegen_nb.probes.dead_leaves import DeadLeavesConfig
from probegen_nb.probes.images import ConvProbeGenConfig, ImageVanillaConfig
from probegen_nb.viz.figures import metric_vs_flops, training_curves_plot

BASELINE_ROWS = {"statnn": StatNNConfig(head="gbt"), "statnn-mlp": StatNNConfig(head="mlp"),
                 "weight-mlp": WeightMLPConfig(augment=False), "weight-mlp+aug": WeightMLPConfig(augment=True),
                 "nfn-np": NFNConfig(mode="np"), "nfn-hnp": NFNConfig(mode="hnp"), "graph-net": GraphNetConfig()}


@pytest.mark.parametrize("kind, probing, q", [
    ("inr", {"probegen": ProbeGenConfig(), "vanilla": VanillaConfig(), "uniform": UniformConfig()}, 128),
    ("cnn", {"probegen": ConvProbeGenConfig(), "vanilla": ImageVanillaConfig(), "dead-leaves": DeadLeavesConfig()},
     64)])
def test_comparison_runs_every_method_at_the_papers_q(kind: str, probing: dict, q: int) -> None:
    section = comparison_section(kind)
    assert section.reference == "probegen" and section.variants[0].method == "probegen"
    assert section.axis is None and section.zoo == kind
    assert section.base == {"n_probes": q}  # the paper's Q: 128 for INR classification, 64 for CNN generalisation
    got = {v.method: v.overrides for v in section.variants}
    assert got == {**{m: {"probes": p} for m, p in probing.items()},
                   **{m: {"baseline": b} for m, b in BASELINE_ROWS.items()}}
    assert comparison_section(kind, n_probes=8).base == {"n_probes": 8}
    with pytest.raises(ValueError, match="unknown zoo kind"):
        comparison_section("transformer")  # type: ignore[arg-type]


def _fake_result(tmp_path: Path) -> SectionResult:
    """Two seeds of three methods with known metrics and costs, as `run_section` returns them (each row through
    `summarize_metrics`, as a sweep writes it). ProbeGen's two seeds trained as one group of 20 s."""
    section = comparison_section("cnn")
    rows = []
    for seed in (0, 1):
        for variant, tau, flops, params, secs, group in (("probegen", 0.80 + seed * 0.02, 1_000, 500, 20.0, 2),
                                                         ("nfn-np", 0.70 + seed * 0.04, 30_000, 900, 30.0 + seed, 1),
                                                         ("statnn", 0.75, 40, 12 + seed, 1.0, 1)):
            metrics = {"metric": "kendall_tau", "best_val_kendall_tau": tau, "test_kendall_tau": tau,
                       "last_test_kendall_tau": tau, "best_epoch": 1, "flops_per_model": flops, "n_params": params,
                       "train_seconds": secs, **({"group_size": group} if group > 1 else {})}  # solo: no key
            rows.append({"run_id": f"{variant}-{seed}", "variant": variant, "seed": seed,
                         **summarize_metrics(metrics), "status": "done"})
    results = pd.DataFrame(rows)
    results = results.assign(method=results["variant"], x=None)
    table = compare_section(section, results, "test_kendall_tau")
    return SectionResult(section, results, table, "test_kendall_tau", "")


def test_cost_table_adds_params_flops_ratio_and_seconds(tmp_path: Path) -> None:
    table = cost_table(_fake_result(tmp_path))
    assert list(table.index) == ["probegen", "statnn", "nfn-np"]  # the section's order, not the results'
    assert table.loc["nfn-np", "flops_vs_probegen"] == pytest.approx(30.0)  # baseline / ProbeGen, not the inverse
    assert table.loc["statnn", "flops_vs_probegen"] == pytest.approx(0.04)
    assert table.loc["probegen", "flops_vs_probegen"] == pytest.approx(1.0)
    assert table.loc["nfn-np", "seconds_per_run"] == pytest.approx(30.5)  # the mean over seeds
    assert table.loc["probegen", "seconds_per_run"] == pytest.approx(10.0)  # a group's 20 s shared by its 2 runs
    assert table.loc["statnn", "n_params"] == pytest.approx(12.5)
    assert table.loc["nfn-np", "mean"] == pytest.approx(0.72)
    assert table.loc["nfn-np", "diff"] == pytest.approx(-0.09)  # paired against ProbeGen: (−0.10 − 0.08) / 2


def test_published_numbers_sit_beside_the_methods_that_reimplement_them(tmp_path: Path) -> None:
    table = cost_table(_fake_result(tmp_path))
    shown = with_published(table, "cnn", "cifar10-gs")
    assert shown.loc["nfn-np", "published"] == pytest.approx(0.922) and shown.loc["nfn-np", "published_as"] == "NFN-NP"
    assert shown.loc["statnn", "published"] == pytest.approx(0.915)
    assert np.isnan(shown.loc["probegen", "published"]) and shown.loc["probegen", "published_as"] == ""
    assert with_published(table, "cnn", "another-zoo")["published"].isna().all()  # nothing for a zoo of your own
    inr = with_published(table.rename(index={"nfn-np": "graph-net"}), "inr", "fmnist", scale=0.01)
    assert inr.loc["graph-net", "published"] == pytest.approx(0.680)  # % → fraction
    everything = published_table("inr")
    assert len(everything) == sum(len(v) for v in PUBLISHED["inr"].values())
    assert {"DWSNet", "ScaleGMN"} <= set(everything["method"])  # the methods not reimplemented are listed too


def test_training_curves_are_read_from_every_run_but_the_trees(tmp_path: Path) -> None:
    result = _fake_result(tmp_path)
    for run in result.results.itertuples():
        folder = tmp_path / result.section.key / run.run_id
        folder.mkdir(parents=True)
        history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_kendall_tau": 0.1 * e + run.seed,
                    "test_kendall_tau": 0.2 * e} for e in range(3)]
        (folder / "metrics.json").write_text(json.dumps({"history": history}))
    curves = training_curves(result, tmp_path)
    assert set(curves["variant"]) == {"probegen", "nfn-np"}  # the trees' stages are not epochs
    assert len(curves) == 2 * 2 * 3 * 3  # methods × seeds × epochs × (val, test, train loss)
    val = curves[(curves["split"] == "val") & (curves["variant"] == "nfn-np") & (curves["seed"] == 1)]
    assert val["value"].tolist() == pytest.approx([1.0, 1.1, 1.2])
    fig = training_curves_plot(curves, "kendall_tau", "t")
    assert len(fig.axes) == 2


def test_metric_vs_flops_draws_one_point_per_method_on_a_log_axis(tmp_path: Path) -> None:
    table = cost_table(_fake_result(tmp_path))
    fig = metric_vs_flops(table, "test_kendall_tau", "t", probing=("probegen",))
    assert [t.name for t in fig.data] == ["probegen", "statnn", "nfn-np"]
    assert fig.layout.xaxis.type == "log"
    assert [t.marker.symbol for t in fig.data] == ["circle", "square", "square"]
    assert fig.data[2].x[0] == 30_000 and fig.data[2].y[0] == pytest.approx(0.72)


def test_runs_record_every_trained_parameter(class_shift_zoo) -> None:
    """`n_params` counts the encoder of a baseline too, not only its predictor."""
    zoo = class_shift_zoo
    run = train(RunConfig(epochs=1, max_train_models=16, method=NFNConfig(mode="np")), zoo, progress=False)
    m = run.metrics
    assert m["n_params"] == sum(p.numel() for p in run.model.parameters()) > m["predictor_params"]
    probing = train(RunConfig(epochs=1, max_train_models=16), zoo, progress=False).metrics
    assert summarize_metrics(probing)["n_params"] == probing["probe_params"] + probing["predictor_params"]


def test_graph_net_evaluates_in_cache_sized_batches_with_the_same_answers(class_shift_zoo) -> None:
    zoo = class_shift_zoo
    model = GraphNetConfig().build(zoo, 3, 32, 1, torch.Generator().manual_seed(0)).eval()
    sizes = []
    represent = model.represent
    model.represent = lambda params: (sizes.append(len(next(iter(params.values())))), represent(params))[1]
    small = represent_all(model, zoo)
    assert max(sizes) == model.eval_batch_size == 16 and len(zoo) > 16
    sizes.clear()
    model.eval_batch_size = 4096
    whole = represent_all(model, zoo)
    assert sizes == [len(zoo)]  # the negative control: one batch when the model allows it
    assert torch.allclose(small, whole, atol=1e-5)


def test_the_underfitting_diagnosis_varies_only_lr_and_epochs_of_nfn_hnp() -> None:
    from probegen_nb.experiment.comparison import underfitting_section

    section = underfitting_section("inr")
    assert section.reference == "nfn-hnp" and section.zoo == "inr"
    got = {v.name: {k: x for k, x in v.overrides.items() if k != "baseline"} for v in section.variants}
    assert got == {"nfn-hnp": {}, "nfn-hnp lr=0.001": {"lr": 1e-3}, "nfn-hnp 100 epochs": {"epochs": 100},
                   "nfn-hnp lr=0.001, 100 epochs": {"lr": 1e-3, "epochs": 100}}
    assert all(v.overrides["baseline"] == NFNConfig(mode="hnp") for v in section.variants)
    short = underfitting_section("inr", long_epochs=4, n_probes=8)
    assert max(v.overrides.get("epochs", 0) for v in short.variants) == 4 and short.base == {"n_probes": 8}


def test_diagnosis_table_reads_the_final_train_loss_and_names_the_best_variant() -> None:
    from probegen_nb.experiment.ablations import SectionResult
    from probegen_nb.experiment.comparison import describe_diagnosis, diagnosis_table, underfitting_section

    section = underfitting_section("inr")
    names = [v.name for v in section.variants]
    results = pd.DataFrame({"variant": names, "seed": 0, "test_accuracy": [0.33, 0.52, 0.45, 0.61],
                            "best_epoch": [19, 28, 90, 97], "status": "done"})
    curves = pd.DataFrame([{"variant": n, "seed": 0, "epoch": e, "split": split, "value": v}
                           for n, last in zip(names, (1.7, 0.9, 1.1, 0.2)) for e in (1, 0)  # epochs out of order
                           for split, v in (("train loss", last if e == 1 else 2.3), ("val", 0.5))])
    table = diagnosis_table(SectionResult(section, results, pd.DataFrame(), "test_accuracy", ""), curves)
    assert list(table.index) == names
    assert table["final_train_loss"].tolist() == pytest.approx([1.7, 0.9, 1.1, 0.2])  # the last epoch's, not the first
    text = describe_diagnosis(table, "test_accuracy", "nfn-hnp")
    assert "nfn-hnp reaches 0.330 with final train loss 1.700" in text
    assert "nfn-hnp lr=0.001, 100 epochs, reaches 0.610 (+0.280) with final train loss 0.200" in text
