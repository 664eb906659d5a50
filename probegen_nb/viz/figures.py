"""Figures. Every notebook figure comes from a function here, which the tests call too.

Static figures (image grids, distributions) use matplotlib/seaborn; interactive ones plotly. `export.save_figure`
writes either kind into a run folder.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray, titles: list[str] | None = None,
                        psnr: np.ndarray | None = None) -> plt.Figure:
    """Two rows per block: original images above their INR reconstructions. originals/reconstructions: [n, H, W]."""
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(originals[j], cmap="gray", vmin=0, vmax=1 if originals.dtype != np.uint8 else 255)
        axes[1, j].imshow(reconstructions[j], cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(titles[j] if titles else "", fontsize=8)
        if psnr is not None:
            axes[1, j].set_title(f"{psnr[j]:.1f} dB", fontsize=8)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("INR", fontsize=9)
    fig.tight_layout()
    return fig


def psnr_histogram(table: pd.DataFrame) -> plt.Figure:
    """Distribution of reconstruction PSNR per split (`psnr`, `split` columns of a zoo table)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.histplot(data=table, x="psnr", hue="split", bins=40, element="step", stat="density", common_norm=False, ax=ax)
    ax.axvline(table["psnr"].mean(), color="k", ls="--", lw=1, label=f"mean {table['psnr'].mean():.1f} dB")
    ax.set_xlabel("PSNR (dB)")
    ax.set_title("INR reconstruction quality")
    fig.tight_layout()
    return fig


def weight_std_comparison(table: pd.DataFrame) -> plt.Figure:
    """Bar chart of per-layer weight std, this zoo vs the public zoo (a `weightstats.compare_weight_std` table)."""
    long = table.melt(id_vars="layer", value_vars=["this_zoo", "public_zoo"], var_name="zoo", value_name="weight std")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sns.barplot(data=long, x="layer", y="weight std", hue="zoo", ax=ax)
    for i, r in enumerate(table["ratio"]):
        ax.text(i, max(table["this_zoo"].iloc[i], table["public_zoo"].iloc[i]) * 1.02, f"×{r:.2f}", ha="center",
                fontsize=8)
    ax.set_title("Per-layer weight std across models")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- probing runs


def results_table(metrics_by_method: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Mean ± std over seeds of each method's headline numbers (best-val test metric, last-step, FLOPs, time)."""
    rows = []
    for method, runs in metrics_by_method.items():
        name = runs[0]["metric"]
        best = np.array([r[f"test_{name}"] for r in runs])
        last = np.array([r[f"last_test_{name}"] for r in runs])
        rows.append({"method": method, "seeds": len(runs), f"test_{name}": best.mean(), f"test_{name}_std": best.std(),
                     f"last_test_{name}": last.mean(), "flops_per_model": runs[0]["flops_per_model"],
                     "train_seconds": float(np.mean([r["train_seconds"] for r in runs]))})
    return pd.DataFrame(rows).set_index("method")


def learning_curves(histories: dict[str, list[dict[str, Any]]], metric: str = "accuracy"):
    """Plotly: train loss and val/test metric per epoch, one colour per method."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss", metric))
    palette = sns.color_palette("tab10").as_hex()
    for i, (method, hist) in enumerate(histories.items()):
        color, epochs = palette[i % 10], [h["epoch"] for h in hist]
        fig.add_trace(go.Scatter(x=epochs, y=[h["train_loss"] for h in hist], name=method, legendgroup=method,
                                 line={"color": color}), row=1, col=1)
        for split, dash in (("val", "dot"), ("test", "solid")):
            fig.add_trace(go.Scatter(x=epochs, y=[h[f"{split}_{metric}"] for h in hist], name=f"{method} {split}",
                                     legendgroup=method, line={"color": color, "dash": dash}), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=380, title="Learning curves", template="plotly_white")
    return fig


def coordinate_probes(probes_by_method: dict[str, np.ndarray], backgrounds: np.ndarray,
                      background_titles: list[str] | None = None) -> plt.Figure:
    """Probe points (x, y) drawn on the coordinate square over images (e.g. class means), one row per method.

    probes: [Q, 2] in the INR's coordinates; backgrounds: [n, H, W] shown on [-1, 1]² (x → column, y → row).
    """
    n_rows, n_cols = len(probes_by_method), len(backgrounds)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.7 * n_rows), squeeze=False)
    for r, (method, pts) in enumerate(probes_by_method.items()):
        inside = (np.abs(pts) <= 1).all(axis=1)
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(backgrounds[c], cmap="gray", extent=(-1, 1, 1, -1), vmin=0, vmax=max(1e-6, backgrounds.max()))
            ax.scatter(pts[inside, 0], pts[inside, 1], s=6, c="tab:red", linewidths=0)
            ax.set_xlim(-1, 1)
            ax.set_ylim(1, -1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and background_titles:
                ax.set_title(background_titles[c], fontsize=8)
        axes[r, 0].set_ylabel(f"{method}\n{inside.sum()}/{len(pts)} inside", fontsize=8)
    fig.suptitle("Probe locations on the 28×28 coordinate square (over class-mean images)", fontsize=9)
    fig.tight_layout()
    return fig


def response_heatmap(representations: np.ndarray, labels: np.ndarray, title: str = "",
                     class_names: list[str] | None = None) -> plt.Figure:
    """Models × probes heatmap of the responses, models sorted by class, class boundaries marked."""
    order = np.argsort(labels, kind="stable")
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.heatmap(representations[order], cmap="magma", ax=ax, cbar_kws={"label": "response"}, xticklabels=False,
                yticklabels=False)
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for b in bounds:
        ax.axhline(float(b), color="w", lw=0.6)
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(labels)]])
    names = class_names or [str(c) for c in range(int(labels.max()) + 1)]
    ax.set_yticks((starts + ends) / 2, [names[int(labels[order][s])] for s in starts], fontsize=7)
    ax.set_xlabel("probe")
    ax.set_ylabel("test model (sorted by class)")
    ax.set_title(title or "Responses of test models to the probes", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- CNN zoos and accuracy prediction

CATEGORICAL_HPARAMS = ("activation", "optimizer", "init", "bias_init", "train_fraction")
CONTINUOUS_HPARAMS = ("lr", "l2", "dropout", "init_std")


def accuracy_distribution(table: pd.DataFrame, column: str = "test_acc") -> plt.Figure:
    """Distribution of the zoo's test accuracy, one curve per checkpoint step."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    hue = "step" if "step" in table else None
    sns.histplot(data=table, x=column, hue=hue, bins=40, element="step", palette="viridis", ax=ax)
    q1, q3 = table[column].quantile([0.25, 0.75])
    ax.set_title(f"{column}: median {table[column].median():.3f}, IQR {q3 - q1:.3f}, max {table[column].max():.3f}")
    fig.tight_layout()
    return fig


def hyperparameter_effects(table: pd.DataFrame, column: str = "test_acc") -> plt.Figure:
    """How each hyper-parameter relates to the final checkpoints' accuracy: boxes for categorical ones, scatter
    (log axis where the parameter was drawn log-uniformly) for continuous ones."""
    final = table[table["step"] == table["step"].max()] if "step" in table else table
    cats = [c for c in CATEGORICAL_HPARAMS if c in final]
    conts = [c for c in CONTINUOUS_HPARAMS if c in final]
    n = len(cats) + len(conts)
    cols = min(n, 5)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3 * cols, 2.8 * -(-n // cols)), squeeze=False)
    for ax, c in zip(axes.flat, cats + conts):
        if c in cats:
            sns.boxplot(data=final, x=c, y=column, ax=ax, color="#9ecae1", fliersize=1)
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        else:
            sns.scatterplot(data=final, x=c, y=column, ax=ax, s=8, hue="activation" if "activation" in final else None,
                            legend=False)
            if c in ("lr", "l2", "init_std"):
                ax.set_xscale("log")
        ax.set_title(c, fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"Effect of each hyper-parameter on {column} (final checkpoints)", fontsize=10)
    fig.tight_layout()
    return fig


def prediction_scatter(results: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> plt.Figure:
    """Predicted vs true accuracy per method: {method: (predicted, true, kendall_tau)}."""
    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.4), squeeze=False)
    for ax, (method, (pred, true, tau)) in zip(axes[0], results.items()):
        ax.scatter(true, pred, s=6, alpha=0.6)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("true test accuracy")
        ax.set_ylabel("predicted")
        ax.set_title(f"{method}: Kendall τ = {tau:.3f}", fontsize=10)
    fig.tight_layout()
    return fig


def image_probe_gallery(probes_by_method: dict[str, np.ndarray], n_show: int = 12) -> plt.Figure:
    """The first `n_show` probe images of each method ([Q, C, H, W] in [-1, 1]), one row per method."""
    rows = len(probes_by_method)
    fig, axes = plt.subplots(rows, n_show, figsize=(1.0 * n_show, 1.15 * rows), squeeze=False)
    for r, (method, probes) in enumerate(probes_by_method.items()):
        for c in range(n_show):
            ax = axes[r, c]
            img = (probes[c].transpose(1, 2, 0) + 1) / 2
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img.clip(0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(method, fontsize=8)
    fig.tight_layout()
    return fig


def logits_good_vs_bad(representations: np.ndarray, accuracy: np.ndarray, n_classes: int = 10,
                       quantile: float = 0.25) -> plt.Figure:
    """Mean logits per probe (probes × classes) of the most and least accurate models (top/bottom quantile)."""
    logits = representations.reshape(len(representations), -1, n_classes)  # [M, Q, K]
    lo, hi = np.quantile(accuracy, [quantile, 1 - quantile])
    good, bad = logits[accuracy >= hi].mean(0), logits[accuracy <= lo].mean(0)
    vmax = float(np.abs(np.concatenate([good, bad])).max())
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    for ax, (title, m) in zip(axes, ((f"best {quantile:.0%} (acc ≥ {hi:.2f})", good),
                                     (f"worst {quantile:.0%} (acc ≤ {lo:.2f})", bad), ("difference", good - bad))):
        im = ax.imshow(m.T, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("probe")
        ax.set_ylabel("class logit")
    fig.colorbar(im, ax=axes, shrink=0.8)
    return fig


def ablation_plot(results: pd.DataFrame, metric: str, title: str, axis: str | None = None, log_x: bool = False,
                  reference: str | None = None) -> plt.Figure:
    """One ablation's runs (columns `method`, `x`, `variant`, `metric`, one row per run): with a numeric `axis`,
    lines of mean ± std over seeds per method (variants without an x, e.g. the reference of a weight-decay sweep,
    as a horizontal band); without one, a point plot of every variant with its seed std."""
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    if axis:
        on_axis = results[results["x"].notna()]
        sns.lineplot(data=on_axis, x="x", y=metric, hue="method", errorbar="sd", marker="o", ax=ax)
        for method, runs in results[results["x"].isna()].groupby("method"):
            mean, std = runs[metric].mean(), runs[metric].std()
            ax.axhline(mean, color="k", ls="--", lw=1, label=f"{method} (no x)")
            ax.axhspan(mean - std, mean + std, color="k", alpha=0.08)
        ax.set_xlabel(axis)
        if log_x:
            ax.set_xscale("log")
        ax.legend(fontsize=8)
    else:
        order = list(dict.fromkeys(results["variant"]))
        sns.pointplot(data=results, x="variant", y=metric, order=order, errorbar="sd", linestyle="none",
                      capsize=0.2, ax=ax)
        if reference is not None and reference in order:
            ax.axhline(results.loc[results["variant"] == reference, metric].mean(), color="k", ls="--", lw=1)
        ax.tick_params(axis="x", rotation=30)
        ax.set_xlabel("")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def metric_vs_flops(table: pd.DataFrame, metric: str, title: str, probing: tuple[str, ...] = ()):
    """Plotly: one point per method (the table's index) at its FLOPs per model (log x) and mean metric, with the
    seed std as error bars; circles for the `probing` methods, squares for the weight-space baselines; the legend
    and the hover name each method and its cost."""
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = sns.color_palette("tab10").as_hex()
    for i, (method, row) in enumerate(table.iterrows()):
        fig.add_trace(go.Scatter(
            x=[row["flops_per_model"]], y=[row["mean"]], mode="markers", name=method,
            marker={"size": 11, "color": palette[i % 10], "symbol": "circle" if method in probing else "square"},
            error_y={"type": "data", "array": [0.0 if pd.isna(row["std"]) else row["std"]]},
            hovertemplate=f"<b>{method}</b><br>{metric} %{{y:.3f}} ± {row['std']:.3f}<br>FLOPs/model %{{x:.3s}}"
                          f"<br>params {row['n_params']:,.0f}<br>train {row['seconds_per_run']:.0f} s a run"
                          "<extra></extra>"))
    fig.update_xaxes(type="log", title_text="FLOPs per model (log scale)")
    fig.update_yaxes(title_text=metric.replace("_", " "))
    fig.update_layout(title=title + "<br><sup>circles: probing; squares: weight-space baselines</sup>", height=440,
                      template="plotly_white")
    return fig


def training_curves_plot(curves: pd.DataFrame, metric: str, title: str) -> plt.Figure:
    """Seaborn: train loss and validation metric per epoch (mean ± std over seeds), one line per method
    (`experiment.comparison.training_curves`' long table)."""
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.6))
    for ax, split, label in ((axes[0], "train loss", "train loss"), (axes[1], "val", f"val {metric}")):
        sns.lineplot(data=curves[curves["split"] == split], x="epoch", y="value", hue="variant", errorbar="sd",
                     ax=ax, legend=ax is axes[1])
        ax.set_ylabel(label.replace("_", " "))
    axes[0].set_yscale("log")
    if axes[1].get_legend() is not None:
        sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title=None)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
