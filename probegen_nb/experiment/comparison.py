"""Baselines side by side (notebook 06, `make baselines`): ProbeGen, the probe-source controls and every weight-space
baseline on one zoo, under one protocol, with what each costs.

A comparison is an ablation section without an axis (`experiment.ablations.Section`): the same resumable sweep,
seeds and paired differences against ProbeGen. This module adds what a comparison needs beyond the metric: the
parameters, FLOPs per model and their ratio to ProbeGen's, train seconds, the training curves read back from the run
folders, and the numbers published on the public zoos to read the table against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from probegen_nb.baselines.graph_net import GraphNetConfig
from probegen_nb.baselines.nfn import NFNConfig
from probegen_nb.baselines.statnn import StatNNConfig
from probegen_nb.baselines.weight_mlp import WeightMLPConfig
from probegen_nb.experiment.ablations import Section, SectionResult, Variant
from probegen_nb.experiment.run_folder import read_metrics
from probegen_nb.probes.coords import ProbeGenConfig, UniformConfig, VanillaConfig
from probegen_nb.probes.dead_leaves import DeadLeavesConfig
from probegen_nb.probes.images import ConvProbeGenConfig, ImageVanillaConfig

ZooKind = Literal["inr", "cnn"]
N_PROBES: dict[str, int] = {"inr": 128, "cnn": 64}  # the paper's Q for INR classification and CNN generalisation
TREES = "statnn"  # the method whose "epochs" are boosting stages: no training curve beside the others

BASELINES: dict[str, Variant] = {  # every weight-space baseline, the same on both zoos
    TREES: Variant(TREES, {"baseline": StatNNConfig(head="gbt")}),
    "statnn-mlp": Variant("statnn-mlp", {"baseline": StatNNConfig(head="mlp")}),
    "weight-mlp": Variant("weight-mlp", {"baseline": WeightMLPConfig(augment=False)}),
    "weight-mlp+aug": Variant("weight-mlp+aug", {"baseline": WeightMLPConfig(augment=True)}),
    "nfn-np": Variant("nfn-np", {"baseline": NFNConfig(mode="np")}),
    "nfn-hnp": Variant("nfn-hnp", {"baseline": NFNConfig(mode="hnp")}),
    "graph-net": Variant("graph-net", {"baseline": GraphNetConfig()}),
}
PROBING: dict[str, dict[str, Variant]] = {  # ProbeGen and the probe sources it is read against, per zoo
    "inr": {"probegen": Variant("probegen", {"probes": ProbeGenConfig()}),
            "vanilla": Variant("vanilla", {"probes": VanillaConfig()}),
            "uniform": Variant("uniform", {"probes": UniformConfig()})},
    "cnn": {"probegen": Variant("probegen", {"probes": ConvProbeGenConfig()}),
            "vanilla": Variant("vanilla", {"probes": ImageVanillaConfig()}),
            "dead-leaves": Variant("dead-leaves", {"probes": DeadLeavesConfig()})},
}


@dataclass(frozen=True)
class Published:
    """A number published on a public zoo, with where it was read."""

    method: str  # as the source names it
    value: float  # accuracy in % (INRs) or Kendall τ (CNNs)
    source: str
    ours: str | None = None  # the method of this toolkit that reimplements it, if any


PUBLISHED: dict[str, dict[str, tuple[Published, ...]]] = {  # zoo kind → data set → the published rows
    "inr": {
        "mnist": (
            Published("DWSNet", 85.7, "quoted in ScaleGMN / Neural Graphs"),
            Published("NFN-NP", 78.5, "quoted in ScaleGMN / Neural Graphs", "nfn-np"),
            Published("NFN-HNP", 79.1, "quoted in ScaleGMN / Neural Graphs", "nfn-hnp"),
            Published("NG-GNN", 91.4, "quoted in ScaleGMN / Neural Graphs", "graph-net"),
            Published("ScaleGMN", 96.6, "quoted in ScaleGMN / Neural Graphs"),
            Published("ProbeGen", 98.4, "quoted by a third party", "probegen"),
        ),
        "fmnist": (
            Published("DWSNet", 67.1, "quoted in ScaleGMN / Neural Graphs"),
            Published("NFN-NP", 68.2, "quoted in ScaleGMN / Neural Graphs", "nfn-np"),
            Published("NFN-HNP", 68.9, "quoted in ScaleGMN / Neural Graphs", "nfn-hnp"),
            Published("NG-GNN", 68.0, "quoted in ScaleGMN / Neural Graphs", "graph-net"),
            Published("ScaleGMN", 80.5, "quoted in ScaleGMN / Neural Graphs"),
            Published("ProbeGen", 87.7, "quoted by a third party", "probegen"),
        ),
    },
    "cnn": {
        "cifar10-gs": (
            Published("StatNN", 0.915, "quoted in ScaleGMN / Neural Graphs", TREES),
            Published("NFN-NP", 0.922, "quoted in ScaleGMN / Neural Graphs", "nfn-np"),
            Published("NFN-HNP", 0.934, "quoted in ScaleGMN / Neural Graphs", "nfn-hnp"),
            Published("NG-GNN", 0.930, "quoted in ScaleGMN / Neural Graphs", "graph-net"),
            Published("NG-T", 0.935, "quoted in ScaleGMN / Neural Graphs"),
        ),
    },
}


def comparison_section(kind: ZooKind, n_probes: int | None = None) -> Section:
    """Every method on a zoo of `kind` ("inr": SIREN classification; "cnn": CNN generalisation) as one section:
    ProbeGen first (the reference), its probe-source controls, then every baseline, at Q = `n_probes` (default: the
    paper's for the zoo kind, `N_PROBES`)."""
    if kind not in PROBING:
        raise ValueError(f"unknown zoo kind {kind!r}; known: {sorted(PROBING)}")
    variants = (*PROBING[kind].values(), *BASELINES.values())
    return Section(f"baselines_{kind}", f"ProbeGen and the baselines ({kind.upper()} zoo)", kind, tuple(variants),
                   base={"n_probes": N_PROBES[kind] if n_probes is None else n_probes})


LONG_EPOCHS = 100  # the diagnosis' longer schedule (the protocol's is 30)
HIGH_LR = 1e-3  # the diagnosis' higher learning rate (the protocol's is 3e-4)


def underfitting_section(kind: ZooKind, long_epochs: int = LONG_EPOCHS, n_probes: int | None = None) -> Section:
    """Does the strongest weight-space network lose here because it cannot fit its train zoo in the protocol's 30
    epochs at lr 3e-4? NFN-HNP as in the comparison (the reference), with lr 1e-3, with `long_epochs` epochs, and
    with both."""
    nfn = {"baseline": NFNConfig(mode="hnp")}
    epochs = long_epochs
    variants = (Variant("nfn-hnp", nfn), Variant(f"nfn-hnp lr={HIGH_LR:g}", {**nfn, "lr": HIGH_LR}),
                Variant(f"nfn-hnp {epochs} epochs", {**nfn, "epochs": epochs}),
                Variant(f"nfn-hnp lr={HIGH_LR:g}, {epochs} epochs", {**nfn, "lr": HIGH_LR, "epochs": epochs}))
    return Section(f"underfitting_{kind}", f"Does NFN-HNP underfit under the protocol? ({kind.upper()} zoo)", kind,
                   variants, reference="nfn-hnp", base={"n_probes": N_PROBES[kind] if n_probes is None else n_probes})


def cost_table(result: SectionResult) -> pd.DataFrame:
    """The comparison's table with its cost: per method the metric (mean, std, paired difference against ProbeGen
    and its interval, as `compare_section`), trainable parameters (tree nodes for the trees), FLOPs per model and
    `flops_vs_probegen` (the method's FLOPs over ProbeGen's), and `seconds_per_run` (mean over seeds; a group of
    seeds trained as one program counts its wall time once, shared by its runs, so grouped and solo methods compare)."""
    done = result.done
    cost = done.groupby("variant", sort=False)[["n_params", "flops_per_model", "seconds_per_run"]].mean()
    table = result.table.join(cost)
    reference = result.section.reference
    table["flops_vs_probegen"] = table["flops_per_model"] / table.loc[reference, "flops_per_model"]
    return table


def with_published(table: pd.DataFrame, kind: ZooKind, dataset: str, scale: float = 1.0) -> pd.DataFrame:
    """`table` with a `published` column (the public zoo's number for the method it reimplements, times `scale`,
    e.g. 0.01 for % → fraction) and a `published_as` column naming the published method; blank where none."""
    rows = {p.ours: p for p in PUBLISHED.get(kind, {}).get(dataset, ()) if p.ours}
    out = table.copy()
    out["published"] = [rows[m].value * scale if m in rows else float("nan") for m in out.index]
    out["published_as"] = [rows[m].method if m in rows else "" for m in out.index]
    return out


def published_table(kind: ZooKind) -> pd.DataFrame:
    """Every published number for zoos of `kind`, one row per (data set, method)."""
    return pd.DataFrame([{"dataset": d, "method": p.method, "value": p.value, "source": p.source,
                          "reimplemented_here_as": p.ours or ""}
                         for d, rows in PUBLISHED.get(kind, {}).items() for p in rows])


def training_curves(result: SectionResult, folder: str | Path) -> pd.DataFrame:
    """Per epoch, per run: the train loss and the val and test metric (long format: `variant`, `seed`, `epoch`,
    `split`, `value`), read from each finished run's `metrics.json` under `folder/<section key>/`. The trees
    (boosting stages, not epochs) are left out."""
    rows = []
    name = result.metric.removeprefix("test_")
    for run in result.done.itertuples():
        if run.variant == TREES:
            continue
        metrics = read_metrics(Path(folder) / result.section.key / run.run_id)
        for record in metrics["history"]:
            for split in ("val", "test"):
                rows.append({"variant": run.variant, "seed": run.seed, "epoch": record["epoch"],
                             "split": split, "value": record[f"{split}_{name}"]})
            rows.append({"variant": run.variant, "seed": run.seed, "epoch": record["epoch"], "split": "train loss",
                         "value": record["train_loss"]})
    return pd.DataFrame(rows, columns=["variant", "seed", "epoch", "split", "value"])


def diagnosis_table(result: SectionResult, curves: pd.DataFrame) -> pd.DataFrame:
    """Per variant of `underfitting_section`: the test metric (mean over seeds), the train loss after the last
    epoch (mean over seeds; a loss far above 0 is a model that has not fitted its train zoo) and the best epoch."""
    loss = curves[curves["split"] == "train loss"].sort_values("epoch").groupby(["variant", "seed"])["value"].last()
    done = result.done
    table = pd.DataFrame({
        result.metric: done.groupby("variant", sort=False)[result.metric].mean(),
        "final_train_loss": loss.groupby("variant").mean(),
        "best_epoch": done.groupby("variant", sort=False)["best_epoch"].mean(),
    })
    return table.loc[[v.name for v in result.section.variants if v.name in table.index]]


def describe_diagnosis(table: pd.DataFrame, metric: str, reference: str) -> str:
    """One sentence read off `diagnosis_table`: the best variant, its gain over the reference, and whether the
    reference had fitted its train zoo (its final train loss against the best variant's)."""
    best = table[metric].idxmax()
    gain = table.loc[best, metric] - table.loc[reference, metric]
    return (f"{reference} reaches {table.loc[reference, metric]:.3f} with final train loss "
            f"{table.loc[reference, 'final_train_loss']:.3f}; the best variant, {best}, reaches "
            f"{table.loc[best, metric]:.3f} ({gain:+.3f}) with final train loss "
            f"{table.loc[best, 'final_train_loss']:.3f}.")
