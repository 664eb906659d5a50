"""The probe explorer's views: one plotly figure per view and plain callbacks that update it in place.

Each `*_figure(ex, …)` builds a `go.Figure`; `widgets` wraps it in a `go.FigureWidget` and wires ipywidgets to
the matching `update_*` function, which changes the figure's data (and title) through the plotly figure API that
both classes share. So the callbacks run, and are tested, without a browser or a kernel.
Probes are drawn as points on the coordinate square for INR zoos and as images for CNN zoos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from probegen_nb.core.arch.siren import SirenSpec, reconstruct
from probegen_nb.core.zoo import Zoo
from probegen_nb.explore.compute import (
    Explorer,
    LatentGenerator,
    anatomy,
    generate,
    latent_basis,
    latent_code,
    pca_2d,
    probe_displacement,
)
from probegen_nb.viz.browser import responsive

GAP = 2  # pixels between tiles of an image mosaic
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


# ---------------------------------------------------------------- images


def to_rgb(images: torch.Tensor | np.ndarray, symmetric: bool = True) -> np.ndarray:
    """[N, C, H, W] (C = 1 or 3) → uint8 [N, H, W, 3]; values in [-1, 1] (symmetric) or scaled by their max |x|."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if not symmetric:
        x = x / x.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).numpy()


def mosaic(images: np.ndarray, cols: int) -> np.ndarray:
    """uint8 [N, H, W, 3] → one [rows·(H+GAP), cols·(W+GAP), 3] image, row-major, white gaps."""
    n, h, w, _ = images.shape
    rows = -(-n // cols)
    tiles = np.full((rows * cols, h + GAP, w + GAP, 3), 255, dtype=np.uint8)  # each tile with its gap right/below
    tiles[:n, :h, :w] = images
    return tiles.reshape(rows, cols, h + GAP, w + GAP, 3).transpose(0, 2, 1, 3, 4).reshape(rows * (h + GAP), -1, 3)


def tile_outline(index: int, cols: int, size: int) -> tuple[list[float], list[float]]:
    """x, y of a closed rectangle around tile `index` of a mosaic of size×size tiles."""
    r, c = divmod(index, cols)
    x0, y0 = c * (size + GAP) - 1, r * (size + GAP) - 1
    x1, y1 = x0 + size + 1, y0 + size + 1
    return [x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0]


def _cols(n: int) -> int:
    return max(1, int(np.ceil(np.sqrt(n))))


def image_grid(images: torch.Tensor, symmetric: bool = True) -> np.ndarray:
    """[N, C, H, W] → one near-square RGB mosaic (see `to_rgb` for `symmetric`)."""
    return mosaic(to_rgb(images, symmetric), _cols(len(images)))


def _square_axes(fig: go.Figure, rows: int, cols: int) -> None:
    """Coordinate-probe panels: x right, y down (image convention, as the INR's pixel grid), square [-1, 1]²."""
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            k = (r - 1) * cols + c  # plotly names the k-th subplot's axes x{k}, y{k} ("x", "y" for the first)
            fig.update_xaxes(range=[-1.05, 1.05], constrain="domain", showticklabels=False, row=r, col=c)
            fig.update_yaxes(range=[1.05, -1.05], scaleanchor="x" if k == 1 else f"x{k}", showticklabels=False,
                             row=r, col=c)


def _background(ex: Explorer, showscale: bool = False) -> go.Heatmap:
    img = ex.background
    assert img is not None, "a background exists for coordinate probes only"
    grid = np.linspace(-1, 1, img.shape[0])
    return go.Heatmap(z=img, x=grid, y=grid, colorscale="Greys_r", showscale=showscale, hoverinfo="skip", zmin=0,
                      zmax=max(float(img.max()), 1e-6), opacity=0.6)


def _image_axes(fig: go.Figure, **where: int) -> None:
    """Hide ticks and grids on image panels (all, or the one at row=…, col=…)."""
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, **where)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, **where)


# ---------------------------------------------------------------- probe gallery


def gallery_figure(ex: Explorer, selected: int = 0) -> go.Figure:
    """Every probe of every probe set side by side (learned and synthetic), the selected probe outlined."""
    names = list(ex.probes)
    titles = [f"{n} ({'fixed' if n in ex.synthetic or not ex.runs[n].model.probes.learned else 'learned'})"
              for n in names]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=titles, horizontal_spacing=0.03)
    for c, name in enumerate(names, 1):
        p = ex.probes[name]
        if ex.is_image:
            fig.add_trace(go.Image(z=image_grid(p), hoverinfo="skip"), row=1, col=c)
            x, y = tile_outline(selected, _cols(len(p)), p.shape[-1])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line={"color": "#d62728", "width": 3},
                                     hoverinfo="skip", showlegend=False), row=1, col=c)
        else:
            fig.add_trace(_background(ex), row=1, col=c)
            fig.add_trace(go.Scatter(x=p[:, 0].numpy(), y=p[:, 1].numpy(), mode="markers", showlegend=False,
                                     marker={"size": 5, "color": PALETTE[(c - 1) % 10]},
                                     hovertemplate="probe %{pointNumber}: (%{x:.2f}, %{y:.2f})<extra></extra>"),
                          row=1, col=c)
            fig.add_trace(go.Scatter(x=[float(p[selected, 0])], y=[float(p[selected, 1])], mode="markers",
                                     marker={"size": 16, "color": "rgba(0,0,0,0)", "line": {"color": "#d62728",
                                                                                            "width": 3}},
                                     hoverinfo="skip", showlegend=False), row=1, col=c)
    if ex.is_image:
        _image_axes(fig)
    else:
        _square_axes(fig, 1, len(names))
    responsive(fig, max(700, 300 * len(names))).update_layout(height=360, template="plotly_white",
                                                              margin={"t": 70, "b": 10})
    update_gallery(fig, ex, selected)
    return fig


def update_gallery(fig: go.Figure, ex: Explorer, selected: int) -> None:
    """Outline probe `selected` in every panel and say what it is in the title."""
    n = len(next(iter(ex.probes.values())))
    if not 0 <= selected < n:
        raise IndexError(f"probe {selected} is outside 0..{n - 1}")
    with fig.batch_update():
        for c, name in enumerate(ex.probes):
            p = ex.probes[name]
            if ex.is_image:
                x, y = tile_outline(selected, _cols(len(p)), p.shape[-1])
                fig.data[2 * c + 1].update(x=x, y=y)
            else:
                fig.data[3 * c + 2].update(x=[float(p[selected, 0])], y=[float(p[selected, 1])])
        where = "" if ex.is_image else " at " + ", ".join(
            f"{n}: ({float(p[selected, 0]):.2f}, {float(p[selected, 1]):.2f})" for n, p in ex.probes.items())
        fig.layout.title = f"Probe gallery: probe {selected} of {n}{where}"


# ---------------------------------------------------------------- model inspector


def inspector_figure(ex: Explorer, rows: Sequence[int] = (0, 1)) -> go.Figure:
    """Two models, one per row: what the model is (its reconstruction for INRs, its first-layer filters for CNNs),
    its responses on all probes, and the main run's prediction against the truth."""
    first = "reconstruction" if not ex.is_image else "first-layer filters"
    second = "prediction (truth in green)" if ex.is_classification else "predicted vs true accuracy"
    titles = [t for r in ("A", "B") for t in (f"{r}: {first}", f"{r}: responses to the {ex.main} probes", second)]
    fig = make_subplots(rows=2, cols=3, subplot_titles=titles, column_widths=[0.22, 0.53, 0.25],
                        horizontal_spacing=0.06, vertical_spacing=0.16)
    for r in (1, 2):
        fig.add_trace(go.Image(z=np.zeros((8, 8, 3), np.uint8), hoverinfo="skip") if ex.is_image
                      else go.Heatmap(z=np.zeros((2, 2)), colorscale="Greys_r", showscale=False, zmin=0, zmax=1),
                      row=r, col=1)
        fig.add_trace(go.Heatmap(z=np.zeros((2, 2)), colorscale="RdBu_r", zmid=0, showscale=False) if ex.is_image
                      else go.Bar(x=[0], y=[0], marker_color=PALETTE[0]), row=r, col=2)
        fig.add_trace(go.Bar(x=[0], y=[0]), row=r, col=3)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=r, col=1)
        fig.update_xaxes(showticklabels=False, row=r, col=1)
        fig.update_xaxes(title_text="probe", row=r, col=2)
        fig.update_yaxes(title_text="class" if ex.is_image else "output", row=r, col=2)
    responsive(fig, 1000).update_layout(height=560, template="plotly_white", showlegend=False, margin={"t": 90})
    update_inspector(fig, ex, rows)
    return fig


def update_inspector(fig: go.Figure, ex: Explorer, rows: Sequence[int]) -> None:
    """Show test models `rows` (two positions) in the inspector's two rows."""
    if len(rows) != 2:
        raise ValueError(f"the inspector compares two models, got {len(rows)}")
    resp = ex.responses[ex.main]
    with fig.batch_update():
        lines = []
        for r, row in enumerate(rows):
            model, responses, prediction = fig.data[3 * r: 3 * r + 3]
            if ex.is_image:
                _, params = ex.model_params(row)
                w = params["layers.0.weight"][0]  # [channels, C, k, k]
                model.z = image_grid(w, symmetric=False)
                responses.z = resp[row].T.numpy()  # [K, Q]
            else:
                test = ex.test
                assert isinstance(test, Zoo) and isinstance(test.spec, SirenSpec), "coordinate probes: an INR zoo"
                model.z = reconstruct(test.spec, test.subset([row]).params)[0]
                responses.update(x=np.arange(resp.shape[1]), y=resp[row, :, 0].numpy())
            pred = ex.prediction(row).numpy()
            truth = ex.labels[row].item()
            if ex.is_classification:
                colors = ["#2ca02c" if k == truth else "#9e9e9e" for k in range(len(pred))]
                prediction.update(x=list(range(len(pred))), y=pred, marker_color=colors)
                verdict = f"predicted {int(pred.argmax())} (p = {pred.max():.2f}), true {truth}"
            else:
                prediction.update(x=["true", "predicted"], y=[truth, float(pred[0])],
                                  marker_color=["#2ca02c", PALETTE[0]])
                verdict = f"predicted {float(pred[0]):.3f}, true {truth:.3f}"
            lines.append(f"{'AB'[r]}: {ex.describe(row)} → {verdict}")
        fig.layout.title = {"text": "<br>".join(lines), "font": {"size": 12}}


# ---------------------------------------------------------------- latent explorer


def latent_figure(ex: Explorer, models: Sequence[int], i: int = 0, j: int = 1) -> go.Figure:
    """A probe generated from a latent code moved between probes i and j and along principal directions, and how
    the chosen models answer it."""
    _require_generator(ex)  # refuse early, before building anything
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.08,
                        subplot_titles=("generated probe", "responses of the chosen models"))
    if ex.is_image:
        fig.add_trace(go.Image(z=np.zeros((32, 32, 3), np.uint8), hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Heatmap(z=np.zeros((len(models), 10)), colorscale="RdBu_r", zmid=0,
                                 y=[f"model {ex.model_ids[m]}" for m in models]), row=1, col=2)
        fig.update_xaxes(title_text="class logit", row=1, col=2)
        _image_axes(fig, row=1, col=1)
    else:
        fig.add_trace(_background(ex), row=1, col=1)
        p = ex.probes[ex.main]
        fig.add_trace(go.Scatter(x=p[:, 0].numpy(), y=p[:, 1].numpy(), mode="markers", hoverinfo="skip",
                                 marker={"size": 4, "color": "#9e9e9e"}, name="learned probes"), row=1, col=1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", line={"color": PALETTE[1], "width": 2},
                                 name="path from probe i to j"), row=1, col=1)
        fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", name="generated probe",
                                 marker={"size": 14, "color": "#d62728", "symbol": "x"}), row=1, col=1)
        fig.add_trace(go.Bar(x=[ex.describe(m) for m in models], y=np.zeros(len(models)),
                             marker_color=[PALETTE[int(ex.labels[m]) % 10] for m in models]), row=1, col=2)
        fig.update_yaxes(title_text="output at the probe", row=1, col=2)
        _square_axes(fig, 1, 1)
    responsive(fig, 1000).update_layout(height=420, template="plotly_white", showlegend=False, margin={"t": 80})
    update_latent(fig, ex, models, i, j, 0.0, ())
    return fig


def update_latent(fig: go.Figure, ex: Explorer, models: Sequence[int], i: int, j: int, t: float,
                  offsets: Sequence[float]) -> torch.Tensor:
    """Regenerate the probe for probe i's latent moved t of the way to probe j's plus `offsets` (standard
    deviations along the latents' principal directions); returns the probe."""
    gen = _require_generator(ex)
    basis = latent_basis(gen, max(1, len(offsets)))
    probe = generate(gen, latent_code(gen, i, j, t, tuple(offsets), basis))  # [1, *shape]
    answers = ex.responses_to(probe, list(models))[:, 0]  # [n_models, K]
    with fig.batch_update():
        if ex.is_image:
            fig.data[0].z = to_rgb(probe)[0]
            fig.data[1].z = answers.numpy()
        else:
            ts = torch.linspace(0, 1, 33)
            path = generate(gen, torch.stack([latent_code(gen, i, j, float(s), tuple(offsets), basis) for s in ts]))
            fig.data[2].update(x=path[:, 0].numpy(), y=path[:, 1].numpy())
            fig.data[3].update(x=[float(probe[0, 0])], y=[float(probe[0, 1])])
            fig.data[4].y = answers[:, 0].numpy()
        shown = ", ".join(f"{o:+.1f}" for o in offsets)
        fig.layout.title = f"Latent of probe {i} → probe {j}, t = {t:.2f}; principal-direction offsets ({shown}) σ"
    return probe


def _require_generator(ex: Explorer) -> LatentGenerator:
    if ex.generator is None:
        raise ValueError(f"run {ex.main!r} learns its probes directly: it has no latent codes to explore")
    return ex.generator


# ---------------------------------------------------------------- training replay


def replay_figure(ex: Explorer, epoch: int = 0, n_show: int = 16) -> go.Figure:
    """The learned probes of every trained run at a saved epoch (0 = before training)."""
    names = ex.learned_runs
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.04)
    for c, name in enumerate(names, 1):
        snaps = ex.runs[name].snapshots
        if ex.is_image:
            fig.add_trace(go.Image(z=image_grid(snaps[0][:n_show]), hoverinfo="skip"), row=1, col=c)
        else:
            fig.add_trace(_background(ex), row=1, col=c)
            fig.add_trace(go.Scatter(x=snaps[0][:, 0].numpy(), y=snaps[0][:, 1].numpy(), mode="markers",
                                     marker={"size": 4, "color": "#bdbdbd"}, hoverinfo="skip"), row=1, col=c)
            fig.add_trace(go.Scatter(x=[], y=[], mode="markers", marker={"size": 5, "color": PALETTE[c - 1]},
                                     hoverinfo="skip"), row=1, col=c)
    if ex.is_image:
        _image_axes(fig)
    else:
        _square_axes(fig, 1, len(names))
    responsive(fig, max(600, 340 * len(names))).update_layout(height=380, template="plotly_white",
                                                              showlegend=False, margin={"t": 80})
    update_replay(fig, ex, epoch, n_show)
    return fig


def n_epochs_saved(ex: Explorer) -> int:
    """Snapshots available to every trained run (epoch 0 is before training)."""
    return min(len(ex.runs[n].snapshots) for n in ex.learned_runs)


def update_replay(fig: go.Figure, ex: Explorer, epoch: int, n_show: int = 16) -> None:
    """Show the probes as they were after `epoch` epochs; the title says how far they have moved."""
    names = ex.learned_runs
    moved = []
    with fig.batch_update():
        for c, name in enumerate(names):
            snaps = ex.runs[name].snapshots
            e = min(epoch, len(snaps) - 1)
            moved.append(f"{name} {probe_displacement(snaps, e):.2f}")
            if ex.is_image:
                fig.data[c].z = image_grid(snaps[e][:n_show])
            else:
                fig.data[3 * c + 2].update(x=snaps[e][:, 0].numpy(), y=snaps[e][:, 1].numpy())
        total = n_epochs_saved(ex) - 1
        fig.layout.title = f"Training replay: epoch {epoch} of {total} · mean move from init: " + ", ".join(moved)


# ---------------------------------------------------------------- generator anatomy


def anatomy_figure(ex: Explorer, nonlinear: LatentGenerator | None = None) -> go.Figure:
    """Left: singular values of the deep linear generator collapsed to one map, beside the non-linear variant's
    Jacobian at each of its probes. Right: singular values of every probe set (centred), on the same scale."""
    gen = _require_generator(ex)
    a = anatomy(gen, nonlinear, ex.probes)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "generator: singular values (÷ largest)", "probe sets: singular values (÷ largest)"))
    s = a.linear_singular_values
    fig.add_trace(go.Scatter(y=(s / s[0]).numpy(), mode="lines+markers", line={"color": PALETTE[0]},
                             name=f"deep linear, collapsed (eff. rank {a.linear_effective_rank:.1f})"), row=1, col=1)
    if a.nonlinear_singular_values is not None:
        sn = a.nonlinear_singular_values / a.nonlinear_singular_values[:, :1]
        lo, mid, hi = (sn.quantile(q, dim=0).numpy() for q in (0.1, 0.5, 0.9))
        k = np.arange(len(mid))
        fig.add_trace(go.Scatter(x=np.concatenate([k, k[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                                 line={"width": 0}, fillcolor="rgba(255,127,14,0.2)", hoverinfo="skip",
                                 name="non-linear: 10–90 % over probes"), row=1, col=1)
        fig.add_trace(go.Scatter(x=k, y=mid, mode="lines", line={"color": PALETTE[1]},
                                 name=f"non-linear Jacobian at its probes, median (eff. rank "
                                      f"{a.nonlinear_effective_rank:.1f})"), row=1, col=1)
    for c, (name, sp) in enumerate(a.probe_singular_values.items()):
        fig.add_trace(go.Scatter(y=(sp / sp[0].clamp_min(1e-12)).numpy(), mode="lines", line={"color": PALETTE[c + 2]},
                                 name=f"{name} probes (eff. rank {a.probe_effective_rank[name]:.1f})"), row=1, col=2)
    fig.update_yaxes(type="log", range=[-4, 0.1])
    fig.update_xaxes(title_text="index")
    responsive(fig, 1050).update_layout(height=420, template="plotly_white", legend={"font": {"size": 10}},
                      title="Generator anatomy: a deep linear generator is one low-rank affine map, so its probes "
                            "share a few directions")
    return fig


# ---------------------------------------------------------------- representation map


def representation_figure(ex: Explorer, run: str | None = None, selected: Sequence[int] = ()) -> go.Figure:
    """PCA of the test models' response vectors, coloured by class or accuracy; hover names the model; the
    models open in the inspector are ringed."""
    run = run or ex.main
    xy, ratio = pca_2d(ex.responses[run])
    labels = ex.labels.numpy()
    color = ([PALETTE[int(v) % 10] for v in labels] if ex.is_classification else labels)
    marker: dict[str, Any] = {"size": 6, "color": color, "opacity": 0.8}
    if not ex.is_classification:
        marker |= {"colorscale": "Viridis", "showscale": True, "colorbar": {"title": "test acc"}}
    fig = go.Figure(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker,
                               customdata=np.arange(len(labels)),
                               hovertext=[ex.describe(r) for r in range(len(labels))], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=[], y=[], mode="markers+text", textposition="top center", hoverinfo="skip",
                             marker={"size": 18, "color": "rgba(0,0,0,0)", "line": {"color": "black", "width": 2}}))
    if ex.is_classification:  # the class legend: one empty trace per class (traces 0 and 1 keep their roles)
        for c in np.unique(labels).tolist():
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"class {int(c)}",
                                     marker={"size": 8, "color": PALETTE[int(c) % 10]}))
    for trace in fig.data[:2]:
        trace.showlegend = False
    responsive(fig, 700).update_layout(height=480, template="plotly_white", showlegend=ex.is_classification,
                                       legend={"title": {"text": "class"}, "itemclick": False,
                                               "itemdoubleclick": False},
                                       title=f"{run}: test models' responses, PCA ({ratio[0]:.0%} + "
                                             f"{ratio[1]:.0%} of the variance); click a model to inspect it",
                                       xaxis_title="PC 1", yaxis_title="PC 2", title_font_size=12)
    update_representation(fig, selected)
    return fig


def update_representation(fig: go.Figure, selected: Sequence[int]) -> None:
    """Ring the models at row positions `selected` (labelled A, B, …)."""
    xs, ys = fig.data[0].x, fig.data[0].y
    fig.data[1].update(x=[xs[r] for r in selected], y=[ys[r] for r in selected],
                       text=[chr(ord("A") + k) for k in range(len(selected))])


def clicked_row(point_indices: Sequence[int]) -> int | None:
    """The row position of a clicked point on the representation map (its first point), or None."""
    return int(point_indices[0]) if len(point_indices) else None
