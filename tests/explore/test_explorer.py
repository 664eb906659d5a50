"""The probe explorer: run folders load back faithfully, its computations are right, and every view's callback changes
what the figure shows (the notebook only wires widgets to these)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.zoo import MixedZoo, Task, Zoo
from probegen_nb.core.zoo_io import save_zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.evaluate import predict
from probegen_nb.experiment.runs import find_runs, load_run
from probegen_nb.experiment.train import train
from probegen_nb.explore.compute import (
    Explorer,
    ModelQuery,
    anatomy,
    collapse,
    effective_rank,
    example_models,
    explorer_methods,
    jacobian_at,
    latent_basis,
    latent_code,
    nonlinear_variant,
    pca_2d,
    probe_displacement,
)
from probegen_nb.explore.views import (
    anatomy_figure,
    clicked_row,
    gallery_figure,
    inspector_figure,
    latent_figure,
    mosaic,
    replay_figure,
    representation_figure,
    tile_outline,
    to_rgb,
    update_gallery,
    update_inspector,
    update_latent,
    update_replay,
    update_representation,
)
from probegen_nb.probes.coords import ProbeGenConfig
from probegen_nb.probes.images import ConvProbeGenConfig
from probegen_nb.zoos.inr import init_siren_params


def inr_zoo() -> Zoo:
    m = 60
    params = init_siren_params(SirenSpec(), m, torch.Generator().manual_seed(0))
    labels = np.arange(m) % 3
    params["seq.2.bias"] = torch.tensor(labels - 1.0, dtype=torch.float32)[:, None] * 1.5
    table = pd.DataFrame({"model_id": range(100, 100 + m), "split": ["train"] * 36 + ["val"] * 12 + ["test"] * 12,
                          "label": labels})
    return Zoo(SirenSpec(), params, table, Task("label", 3))


def cnn_zoo() -> MixedZoo:
    g = torch.Generator().manual_seed(1)
    groups, start = [], 0
    for spec, m in ((CNNSpec.small_cnn_zoo(activation="relu"), 12), (CNNSpec.small_cnn_zoo(activation="tanh"), 9)):
        params = {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
        table = pd.DataFrame({"model_id": np.arange(start, start + m), "split": ["train", "val", "test"] * (m // 3),
                              "test_acc": np.linspace(0.1, 0.5, m) + 0.01 * start, "step": 100, "lr": 1e-3,
                              "activation": spec.activation[0], "optimizer": "adam"})
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
        start += m
    return MixedZoo(tuple(groups), Task("test_acc", None))


def trained_runs(zoo, root: Path, n_probes: int) -> dict[str, Path]:
    """Two short runs per zoo (ProbeGen and vanilla), written as run folders the way notebooks write them."""
    zoo_dir = save_zoo(zoo, root / "zoo")
    folders = {}
    for name, probes in explorer_methods(zoo).items():
        config = RunConfig(zoo_dir=str(zoo_dir), epochs=2, hidden=16, n_hidden=1, device="cpu",
                           method=ProbingConfig(probes, n_probes))
        folders[name] = train(config, zoo, out_dir=root / name, progress=False).out_dir
    return folders


@pytest.fixture(scope="module", params=["inr", "cnn"])
def explorer(request, tmp_path_factory) -> Explorer:
    root = tmp_path_factory.mktemp(request.param)
    zoo = inr_zoo() if request.param == "inr" else cnn_zoo()
    trained_runs(zoo, root, n_probes=8 if request.param == "inr" else 6)
    return Explorer.from_runs({n: load_run(p) for n, p in find_runs(root).items()})


# ---------------------------------------------------------------- run folders


def test_a_loaded_run_predicts_exactly_what_the_trained_one_did(tmp_path) -> None:
    zoo = inr_zoo()
    config = RunConfig(zoo_dir=str(save_zoo(zoo, tmp_path / "zoo")), epochs=3, hidden=16, n_hidden=1, device="cpu",
                       method=ProbingConfig(n_probes=8))
    result = train(config, zoo, out_dir=tmp_path / "run", progress=False)
    loaded = load_run(tmp_path / "run")
    test = zoo.split("test")
    assert torch.allclose(predict(loaded.model, test)[0], predict(result.model, test)[0], atol=1e-6)
    assert loaded.snapshots.shape == (4, 8, 2)  # before training + 3 epochs
    # snapshot 0 is before training, snapshot e + 1 after epoch e; the run's model is its best-validation checkpoint
    best = loaded.snapshots[result.metrics["best_epoch"] + 1]
    assert torch.allclose(best, result.model.probes().detach()) and torch.allclose(best, loaded.model.probes().detach())
    assert loaded.metrics["best_epoch"] == result.metrics["best_epoch"]


def test_find_runs_and_clear_errors(tmp_path, explorer) -> None:
    root = next(iter(explorer.runs.values())).folder.parent
    assert set(find_runs(root)) == {"probegen", "vanilla"}
    assert list(find_runs(root / "vanilla")) == ["vanilla"]
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        find_runs(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(root / "vanilla", broken)
    (broken / "best.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="best.safetensors"):
        load_run(broken)
    (broken / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        load_run(broken)
    moved = tmp_path / "moved"
    shutil.copytree(root / "vanilla", moved)
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "zoo_dir": str(tmp_path / "nowhere")}))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_run(moved)


# ---------------------------------------------------------------- computations


def test_explorer_contents(explorer: Explorer) -> None:
    m = len(explorer.labels)
    assert explorer.main == "probegen" and explorer.generator is not None
    assert len(explorer.synthetic) == 1 and explorer.synthetic[0] in explorer.probes
    q = len(explorer.probes["probegen"])
    for name in ("probegen", "vanilla"):
        assert explorer.responses[name].shape[:2] == (m, q)
    # the responses are the models' outputs on the run's probes, model by model
    row = m - 1
    answers = explorer.responses_to(explorer.probes["probegen"], [row, 0])
    assert torch.allclose(answers[0], explorer.responses["probegen"][row], atol=1e-5)
    assert torch.allclose(answers[1], explorer.responses["probegen"][0], atol=1e-5)


def test_find_models_and_examples(explorer: Explorer) -> None:
    labels = explorer.labels.numpy()
    if explorer.is_classification:
        rows = explorer.find_models(ModelQuery(label=2))
        assert len(rows) and (labels[rows] == 2).all() and len(rows) == (labels == 2).sum()
        assert [labels[r] for r in example_models(explorer, 3)] == [0, 1, 2]
    else:
        lo, hi = np.quantile(labels, [0.25, 0.75])
        rows = explorer.find_models(ModelQuery(label_range=(lo, hi)))
        inside = (labels >= lo) & (labels <= hi)
        assert inside[rows].all() and len(rows) == inside.sum()
        picks = example_models(explorer, 3)
        assert labels[picks[0]] == labels.min() and labels[picks[-1]] == labels.max()
    assert explorer.row_of(int(explorer.model_ids[3])) == 3
    with pytest.raises(KeyError, match="not among"):
        explorer.row_of(-5)


def test_latent_codes_move_between_probes_and_along_the_basis(explorer: Explorer) -> None:
    gen = explorer.generator
    z = gen.latents.detach()
    assert torch.equal(latent_code(gen, 2, 4, 0.0), z[2])
    assert torch.allclose(latent_code(gen, 2, 4, 1.0), z[4])
    basis = latent_basis(gen, 3)
    assert torch.allclose(basis.directions @ basis.directions.T, torch.eye(3), atol=1e-5)
    moved = latent_code(gen, 2, None, 0.0, (1.0, 0.0, 0.0), basis)
    assert torch.allclose(moved - z[2], basis.scales[0] * basis.directions[0], atol=1e-5)
    # the latents really spread most along the first direction
    spread = ((z - z.mean(0)) @ basis.directions.T).std(0)
    assert torch.allclose(spread, basis.scales, rtol=1e-4)


def test_collapse_is_exact_for_deep_linear_and_not_for_nonlinear() -> None:
    gen = torch.Generator().manual_seed(0)
    for config, shape in ((ProbeGenConfig(depth=3), (2,)), (ConvProbeGenConfig(), (1, 32, 32))):
        linear = config.build(5, shape, gen)
        a, b = collapse(linear)
        z = torch.randn(7, linear.latents.shape[1])
        with torch.no_grad():
            assert torch.allclose(linear.pre_output(z), z @ a.T + b, atol=1e-4)
        bent = nonlinear_variant(config).build(5, shape, gen)
        a2, b2 = collapse(bent)
        with torch.no_grad():
            assert not torch.allclose(bent.pre_output(z), z @ a2.T + b2, atol=1e-3)
        jac = jacobian_at(bent, bent.latents)
        assert jac.shape == (5, a.shape[0], a.shape[1])
        assert not torch.allclose(jac[0], jac[1])  # a non-linear map has a different Jacobian at each probe


def test_effective_rank() -> None:
    assert effective_rank(torch.tensor([1.0, 1.0, 1.0, 1.0])) == pytest.approx(4.0)
    assert effective_rank(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert 1.0 < effective_rank(torch.tensor([1.0, 0.1, 0.01])) < 2.0
    assert effective_rank(torch.zeros(3)) == 0.0


def test_anatomy_sees_the_low_rank_of_generated_probes() -> None:
    g = torch.Generator().manual_seed(0)
    linear = ConvProbeGenConfig(latent_dim=4).build(24, (1, 32, 32), g)  # rank ≤ 4 before the tanh
    probes = {"gen": linear().detach(), "noise": torch.randn(24, 1, 32, 32, generator=g)}
    a = anatomy(linear, None, probes)
    assert len(a.linear_singular_values) == 4 and a.linear_effective_rank <= 4
    assert a.probe_effective_rank["gen"] < a.probe_effective_rank["noise"] / 2
    assert a.nonlinear_singular_values is None


def test_displacement_and_pca() -> None:
    snaps = torch.zeros(3, 4, 2)
    snaps[2, :, 0] = 3.0
    assert probe_displacement(snaps, 0) == 0.0 and probe_displacement(snaps, 2) == pytest.approx(3.0)
    with pytest.raises(IndexError, match="snapshots"):
        probe_displacement(snaps, 3)
    x = torch.zeros(50, 5)
    x[:, 3] = torch.linspace(-5, 5, 50)  # all the variance on one axis
    xy, ratio = pca_2d(x)
    assert ratio[0] == pytest.approx(1.0) and np.allclose(np.abs(xy[:, 0]), np.abs(np.linspace(-5, 5, 50)), atol=1e-4)


def test_images_and_mosaics() -> None:
    imgs = torch.tensor([-1.0, 0.0, 1.0]).reshape(3, 1, 1, 1).expand(3, 1, 4, 4)
    rgb = to_rgb(imgs)
    assert rgb.shape == (3, 4, 4, 3) and rgb[0].max() == 0 and rgb[2].min() == 255
    tiles = mosaic(rgb, cols=2)
    x, y = tile_outline(2, cols=2, size=4)  # row 1, col 0
    assert tiles.shape[:2] == (2 * 6, 2 * 6) and (tiles[6:10, 0:4] == 255).all() and (tiles[0:4, 6:10] == 128).all()
    assert min(x) == -1 and min(y) == 5


# ---------------------------------------------------------------- views: each callback changes the figure


def snapshot(fig: go.Figure) -> dict:
    return fig.to_plotly_json()


def test_gallery_outlines_the_selected_probe(explorer: Explorer) -> None:
    fig = gallery_figure(explorer)
    before = snapshot(fig)
    update_gallery(fig, explorer, 3)
    assert snapshot(fig) != before and "probe 3" in fig.layout.title.text
    if not explorer.is_image:  # the ring sits on probe 3 of the first set
        p = explorer.probes[next(iter(explorer.probes))]
        assert fig.data[2].x[0] == pytest.approx(float(p[3, 0]))
    with pytest.raises(IndexError):
        update_gallery(fig, explorer, 99)


def test_inspector_shows_the_chosen_models(explorer: Explorer) -> None:
    fig = inspector_figure(explorer, (0, 1))
    before = snapshot(fig)
    update_inspector(fig, explorer, (2, 3))
    assert snapshot(fig) != before
    title = fig.layout.title.text
    assert explorer.describe(2) in title and explorer.describe(3) in title
    resp = explorer.responses[explorer.main]
    shown = np.asarray(fig.data[1].z if explorer.is_image else fig.data[1].y)
    expected = resp[2].T.numpy() if explorer.is_image else resp[2, :, 0].numpy()
    assert np.allclose(shown, expected)
    with pytest.raises(ValueError, match="two models"):
        update_inspector(fig, explorer, (1,))


def test_latent_view_regenerates_the_probe(explorer: Explorer) -> None:
    models = example_models(explorer, 3)
    fig = latent_figure(explorer, models)
    before = snapshot(fig)
    probe = update_latent(fig, explorer, models, 0, 1, 0.5, (1.0, -0.5))
    assert snapshot(fig) != before and "t = 0.50" in fig.layout.title.text
    gen = explorer.generator
    expected = gen.generate(latent_code(gen, 0, 1, 0.5, (1.0, -0.5))[None]).detach()
    assert torch.allclose(probe, expected, atol=1e-5)
    answers = explorer.responses_to(probe, models)[:, 0]
    shown = np.asarray(fig.data[1].z) if explorer.is_image else np.asarray(fig.data[4].y)
    assert np.allclose(shown, answers.numpy() if explorer.is_image else answers[:, 0].numpy(), atol=1e-5)


def test_latent_view_refuses_a_run_without_latents(explorer: Explorer) -> None:
    vanilla_only = replace(explorer, main="vanilla")
    with pytest.raises(ValueError, match="no latent codes"):
        latent_figure(vanilla_only, [0])


def test_replay_moves_through_the_epochs(explorer: Explorer) -> None:
    fig = replay_figure(explorer, 0)
    before = snapshot(fig)
    assert "epoch 0 of 2" in fig.layout.title.text
    update_replay(fig, explorer, 2)
    assert snapshot(fig) != before and "epoch 2 of 2" in fig.layout.title.text


def test_anatomy_figure_compares_linear_and_nonlinear(explorer: Explorer) -> None:
    config = explorer.runs[explorer.main].config.method.probes
    shape = explorer.test.specs[0].input_shape
    bent = nonlinear_variant(config).build(len(explorer.probes["probegen"]), shape, torch.Generator().manual_seed(0))
    fig = anatomy_figure(explorer, bent)
    names = [t.name for t in fig.data]
    assert any("deep linear" in n for n in names) and any("non-linear" in n for n in names)
    assert sum(" probes (eff. rank" in n for n in names) == len(explorer.probes)


def test_representation_map_links_to_the_inspector(explorer: Explorer) -> None:
    fig = representation_figure(explorer, selected=[0])
    n = len(explorer.labels)
    assert len(fig.data[0].x) == n and list(fig.data[0].customdata) == list(range(n))
    before = snapshot(fig)
    row = clicked_row([4])
    update_representation(fig, [row, 1])
    assert snapshot(fig) != before
    assert fig.data[1].x[0] == fig.data[0].x[4] and list(fig.data[1].text) == ["A", "B"]
    assert clicked_row([]) is None


def test_model_options_for_pickers(explorer: Explorer) -> None:
    last = len(explorer.labels) - 1
    options = explorer.model_options(ModelQuery(), limit=2, include=[last])
    assert [row for _, row in options] == [0, 1, last] and options[2][0] == explorer.describe(last)


def test_figures_fit_their_cell_and_keep_a_png_width(explorer: Explorer) -> None:
    """No view has a fixed width (1,000 px figures clipped at a 1280 px window): each takes its cell's width and
    keeps the width it is drawn at in its PNG copy. Negative control: a fixed-width figure is seen."""
    from probegen_nb.viz.browser import EXPORT_WIDTH, export_layout

    a, b = example_models(explorer, 2)
    figures = {"gallery": gallery_figure(explorer), "inspector": inspector_figure(explorer, (a, b)),
               "replay": replay_figure(explorer), "representation": representation_figure(explorer),
               "latent": latent_figure(explorer, [a, b]), "anatomy": anatomy_figure(explorer, None)}
    for name, fig in figures.items():
        assert fig.layout.width is None and fig.layout.autosize, name
        width = export_layout(fig.to_dict())["layout"]["width"]
        assert 600 <= width == fig.layout.meta[EXPORT_WIDTH], name
    fixed = go.Figure(layout={"width": 1000})
    assert fixed.layout.width == 1000 and export_layout(fixed.to_dict())["layout"]["width"] == 1000


def test_the_representation_map_has_a_class_legend(explorer: Explorer) -> None:
    fig = representation_figure(explorer)
    legend = [t.name for t in fig.data if t.showlegend is not False]
    if explorer.is_classification:
        assert fig.layout.showlegend
        assert legend == [f"class {c}" for c in sorted(set(explorer.labels.tolist()))]
        colours = {t.name: t.marker.color for t in fig.data[2:]}
        first = fig.data[0].marker.color  # each model's colour is its class's legend colour
        assert all(colours[f"class {int(c)}"] == first[r] for r, c in enumerate(explorer.labels.tolist()))
    else:  # accuracy: a colour bar, no legend
        assert not fig.layout.showlegend and fig.data[0].marker.showscale
