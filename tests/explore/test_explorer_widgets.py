"""The explorer's widget wiring, driven as a user would drive it: every control changes its figure's data, the linked
views follow (a click on the map or a typed id opens that model in the inspector), and `check_wiring` notices a
panel that was disconnected."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_explorer import cnn_zoo, inr_zoo, trained_runs

from probegen_nb.experiment.runs import find_runs, load_run
from probegen_nb.explore.compute import Explorer, example_models
from probegen_nb.explore.widgets import (
    NO_MATCH,
    GalleryPanel,
    InspectorPanel,
    LatentPanel,
    ReplayPanel,
    RepresentationPanel,
    check_wiring,
    copies,
    simulate_click,
)


@pytest.fixture(scope="module", params=["inr", "cnn"])
def explorer(request, tmp_path_factory) -> Explorer:
    """The explorer of tests/explore/test_explorer.py: tiny ProbeGen and vanilla runs on an INR zoo (3 classes) and on a
    mixed relu/tanh CNN zoo (accuracy labels)."""
    root = tmp_path_factory.mktemp(request.param)
    zoo = inr_zoo() if request.param == "inr" else cnn_zoo()
    trained_runs(zoo, root, n_probes=8 if request.param == "inr" else 6)
    return Explorer.from_runs({n: load_run(p) for n, p in find_runs(root).items()})


def panels(ex: Explorer) -> dict:
    inspector = InspectorPanel(ex)
    return {"gallery": GalleryPanel(ex), "inspector": inspector, "representation": RepresentationPanel(ex, inspector),
            "replay": ReplayPanel(ex), "latent": LatentPanel(ex, example_models(ex, 3))}


def traces(figure) -> list[str]:
    return [t.to_json() for t in figure.data]  # JSON text: compares numpy arrays by value


def ringed(representation: RepresentationPanel) -> list[tuple[float, float]]:
    """The (x, y) of the models ringed on the map, A first."""
    fig = representation.figure
    return list(zip(fig.data[1].x, fig.data[1].y))


def position(representation: RepresentationPanel, row: int) -> tuple[float, float]:
    return representation.figure.data[0].x[row], representation.figure.data[0].y[row]


# ---------------------------------------------------------------- each control moves its view


def test_the_gallery_slider_outlines_the_probe(explorer: Explorer) -> None:
    gallery = GalleryPanel(explorer)
    before = traces(gallery.figure)
    gallery.slider.value = 3
    assert traces(gallery.figure) != before and "probe 3 of" in gallery.figure.layout.title.text
    assert gallery.widget.children == (gallery.slider, gallery.figure)


def test_the_replay_slider_moves_through_the_epochs_and_keeps_its_css_classes(explorer: Explorer) -> None:
    replay = ReplayPanel(explorer)
    assert replay.slider.max == 2 and "epoch 0 of 2" in replay.figure.layout.title.text
    before = traces(replay.figure)
    replay.slider.value = 2
    assert traces(replay.figure) != before and "epoch 2 of 2" in replay.figure.layout.title.text
    assert "pg-replay-slider" in replay.slider._dom_classes and "pg-replay" in replay.widget._dom_classes


def test_the_pickers_show_the_models_and_the_map_rings_them(explorer: Explorer) -> None:
    inspector = InspectorPanel(explorer)
    representation = RepresentationPanel(explorer, inspector)
    a, b = inspector.selected
    assert ringed(representation) == [position(representation, a), position(representation, b)]
    before = traces(inspector.figure)
    row = next(r for r in range(len(explorer.labels)) if r not in (a, b))
    inspector.pick_a.value = row
    assert inspector.selected == (row, b) and traces(inspector.figure) != before
    assert explorer.describe(row) in inspector.figure.layout.title.text
    assert ringed(representation) == [position(representation, row), position(representation, b)]
    inspector.pick_b.value = a
    assert explorer.describe(a) in inspector.figure.layout.title.text.split("<br>")[1]


def test_a_typed_model_id_opens_it_as_model_a_even_outside_the_filter(explorer: Explorer) -> None:
    inspector = InspectorPanel(explorer)
    representation = RepresentationPanel(explorer, inspector)
    labels = explorer.labels.numpy()
    outside = int(np.argmax(labels)) if not explorer.is_classification else int(np.flatnonzero(labels == 1)[0])
    inspector.filter.value = 0 if explorer.is_classification else (float(labels.min()), float(np.median(labels)))
    assert outside not in [v for _, v in inspector.pick_a.options]  # the filter leaves it out…
    inspector.by_id.value = str(explorer.model_ids[outside])
    assert inspector.pick_a.value == outside and inspector.status.value == ""  # …the id opens it all the same
    assert explorer.describe(outside) in inspector.figure.layout.title.text
    assert ringed(representation)[0] == position(representation, outside)


def test_a_wrong_model_id_says_why_and_changes_nothing(explorer: Explorer) -> None:
    inspector = InspectorPanel(explorer)
    shown, before = inspector.selected, traces(inspector.figure)
    inspector.by_id.value = "-5"
    assert "not among" in inspector.status.value
    inspector.by_id.value = "model seven"
    assert inspector.status.value == "not a model id: 'model seven'"
    inspector.by_id.value = ""  # clearing the box is not an error
    assert inspector.status.value == "not a model id: 'model seven'"
    assert inspector.selected == shown and traces(inspector.figure) == before


def test_a_click_on_the_map_opens_that_model_as_model_a(explorer: Explorer) -> None:
    inspector = InspectorPanel(explorer)
    representation = RepresentationPanel(explorer, inspector)
    last = len(explorer.labels) - 1
    _, b = inspector.selected
    before = traces(inspector.figure)
    simulate_click(representation.figure, 0, last)
    assert inspector.selected == (last, b) and traces(inspector.figure) != before
    assert explorer.describe(last) in inspector.figure.layout.title.text
    assert ringed(representation)[0] == position(representation, last)
    simulate_click(representation.figure, 1, 0)  # a click on a ring, not on a model: nothing to open
    assert inspector.selected == (last, b)


def test_the_filter_lists_only_matching_models(explorer: Explorer) -> None:
    inspector = InspectorPanel(explorer)
    labels = explorer.labels.numpy()
    if explorer.is_classification:
        inspector.filter.value = 2
        match = labels == 2
    else:
        lo, hi = np.quantile(labels, [0.5, 1.0])
        inspector.filter.value = (float(lo), float(hi))
        match = (labels >= inspector.filter.value[0]) & (labels <= inspector.filter.value[1])
    listed = [v for _, v in inspector.pick_a.options]
    assert listed == np.flatnonzero(match).tolist()
    assert match[list(inspector.selected)].all()  # both pickers moved into the filter
    assert explorer.describe(inspector.pick_a.value) in inspector.figure.layout.title.text


def test_a_filter_that_leaves_both_models_out_keeps_two_models(explorer: Explorer) -> None:
    """Both pickers move into the filter on two different models (they both took its first model before)."""
    inspector = InspectorPanel(explorer)
    labels = explorer.labels.numpy()
    a, b = inspector.selected
    if explorer.is_classification:  # a class neither model is of
        inspector.filter.value = next(c for c in range(explorer.test.task.n_classes) if c not in labels[[a, b]])
    else:  # the worst and the best model shown, then the accuracies between theirs
        values = np.unique(labels)
        a, b = int(labels.argmin()), int(labels.argmax())
        inspector.show(a, b)
        inspector.filter.value = (float(values[1]), float(values[-2]))
    listed = [v for _, v in inspector.pick_a.options]
    assert len(listed) >= 2 and a not in listed and b not in listed
    assert inspector.selected == tuple(listed[:2])


def test_a_filter_that_matches_nothing_leaves_a_defined_state(explorer: Explorer) -> None:
    if explorer.is_classification:  # the first two test models are of classes 0 and 1: class 2 matches nothing
        explorer = Explorer.from_runs(explorer.runs, max_models=2)
        assert 2 not in explorer.labels.tolist()
        empty = 2
    else:  # a range strictly between two neighbouring accuracies
        values = np.unique(explorer.labels.numpy())
        middle = float(values[:2].mean())
        empty = (middle, middle)
    inspector = InspectorPanel(explorer)
    representation = RepresentationPanel(explorer, inspector)
    shown, before, rings = inspector.selected, traces(inspector.figure), ringed(representation)
    inspector.filter.value = empty
    assert inspector.pick_a.value is None and inspector.pick_b.value is None and inspector.selected is None
    assert inspector.pick_a.options == (("no model matches", None),) and inspector.status.value == NO_MATCH
    assert traces(inspector.figure) == before and ringed(representation) == rings  # the last pair stays on show
    inspector.by_id.value = str(explorer.model_ids[1])  # a model can still be opened by id: as A and B
    assert inspector.selected == (1, 1) and ringed(representation) == [position(representation, 1)] * 2
    inspector.filter.value = -1 if explorer.is_classification else (inspector.filter.min, inspector.filter.max)
    assert inspector.status.value == "" and inspector.selected == (1, 1)  # still listed, so kept
    inspector.show(*shown)
    assert traces(inspector.figure) == before


def test_the_latent_sliders_regenerate_the_probe(explorer: Explorer) -> None:
    latent = LatentPanel(explorer, example_models(explorer, 3))
    for slider, value in [(latent.i, 2), (latent.t, 0.5), (latent.j, 3), *[(s, 1.5) for s in latent.directions]]:
        before = traces(latent.figure)
        slider.value = value
        assert traces(latent.figure) != before, slider.description
    assert "probe 2 → probe 3, t = 0.50" in latent.figure.layout.title.text
    assert "(+1.5, +1.5, +1.5)" in latent.figure.layout.title.text


def test_the_latent_panel_refuses_a_run_without_latents(explorer: Explorer) -> None:
    with pytest.raises(ValueError, match="no latent codes"):
        LatentPanel(replace(explorer, main="vanilla"), [0])


# ---------------------------------------------------------------- the wiring check


def test_check_wiring_moves_everything_and_puts_it_back(explorer: Explorer) -> None:
    p = panels(explorer)
    figures = {name: traces(panel.figure) for name, panel in p.items()}
    controls = (p["gallery"].slider.value, p["replay"].slider.value, p["inspector"].filter.value,
                p["inspector"].selected, [s.value for s in p["latent"].controls])
    report = check_wiring(**p)
    assert report.summary == "every view followed its controls"
    for view in p:
        assert any(line.startswith(f"{view} followed") for line in report.followed), view
    assert "representation followed a click on a model" in report.followed
    assert "inspector followed a click on a model" in report.followed
    assert sum(line.startswith("latent followed") for line in report.followed) == 3 + len(p["latent"].directions)
    assert (p["gallery"].slider.value, p["replay"].slider.value, p["inspector"].filter.value,
            p["inspector"].selected, [s.value for s in p["latent"].controls]) == controls
    assert p["inspector"].by_id.value == ""
    assert {name: traces(panel.figure) for name, panel in p.items()} == figures  # the views are back as they were


def test_check_wiring_without_a_latent_panel(explorer: Explorer) -> None:
    p = panels(explorer)
    del p["latent"]
    report = check_wiring(**p)
    assert not any(line.startswith("latent") for line in report.followed)


DISCONNECTED = [  # how to cut one link → what the check must say
    pytest.param(lambda p: p["gallery"].slider.unobserve_all("value"),
                 "gallery: the figure did not follow the probe slider", id="gallery"),
    pytest.param(lambda p: p["replay"].slider.unobserve_all("value"),
                 "replay: the figure did not follow the epoch slider", id="replay"),
    pytest.param(lambda p: p["inspector"].pick_b.unobserve_all("value"),
                 "inspector: the figure did not follow model B's picker", id="inspector"),
    pytest.param(lambda p: p["inspector"].listeners.clear(),  # the map no longer rings the inspector's models
                 "representation: the figure did not follow model A's picker", id="representation-rings"),
    pytest.param(lambda p: p["representation"].figure.data[0].on_click(None),
                 "inspector: the figure did not follow a click on a model", id="representation-click"),
    pytest.param(lambda p: p["latent"].directions[-1].unobserve_all("value"),
                 "latent: the figure did not follow the PC 3 slider", id="latent"),
]


@pytest.mark.parametrize(("cut", "message"), DISCONNECTED)
def test_check_wiring_names_a_disconnected_view(explorer: Explorer, cut, message: str) -> None:
    """Negative control: with one link cut, the check fails and says which view did not follow."""
    p = panels(explorer)
    cut(p)
    with pytest.raises(AssertionError) as failure:
        check_wiring(**p)
    assert str(failure.value) == message


def test_the_notebooks_wiring_check_on_copies_leaves_the_shown_panels_unmoved(explorer: Explorer) -> None:
    """Notebook 04 checks the wiring on `copies`: no control of the panels shown changes, even for a moment (in the
    browser a moved control stayed moved after Run All). Negative control: the same check on the panels shown moves
    them (and puts them back), which this recorder sees."""
    p = panels(explorer)
    figures = {name: traces(panel.figure) for name, panel in p.items()}
    moves: list[str] = []
    controls = [p["gallery"].slider, p["replay"].slider, p["inspector"].filter, p["inspector"].pick_a,
                p["inspector"].pick_b, p["inspector"].by_id, *p["latent"].controls]
    for control in controls:
        control.observe(lambda change: moves.append(change["owner"].description), names="value")
    shown = (p["inspector"].selected, [c.value for c in controls])
    report = check_wiring(**copies(**p))
    assert report.summary == "every view followed its controls" and len(report.followed) >= 10
    assert moves == []
    assert (p["inspector"].selected, [c.value for c in controls]) == shown
    assert {name: traces(panel.figure) for name, panel in p.items()} == figures

    check_wiring(**p)
    assert {"probe", "epoch", "model A", "model B", "PC 1"} <= set(moves)


def test_copies_start_where_the_shown_panels_are(explorer: Explorer) -> None:
    p = panels(explorer)
    p["gallery"].slider.value = 2
    p["latent"].directions[0].value = 1.0
    rows = next(r for r in range(len(explorer.labels)) if r not in p["inspector"].selected), 0
    p["inspector"].show(*rows)
    c = copies(**p)
    assert c["gallery"].slider.value == 2 and c["latent"].directions[0].value == 1.0
    assert c["inspector"].selected == rows and c["inspector"] is not p["inspector"]
    def data(panels: dict) -> dict:  # each trace without its uid (random per figure)
        return {n: [{k: v for k, v in t.to_plotly_json().items() if k != "uid"} for t in q.figure.data]
                for n, q in panels.items()}

    assert repr(data(c)) == repr(data(p))
