"""The probe explorer's widget wiring (notebook 04): each view's controls, its live figure, and the links between views.

Written by hand because ipywidgets has no ready-made layer of linked views over plotly figures: `widgets.link` ties
one trait to another, but here a control must recompute a figure through an `update_*` callback of `views.py`, and a
click on one view must open a model in another. Each panel builds its ipywidgets controls and a `go.FigureWidget`,
observes the controls, and exposes `.widget` for `display`. None of it needs a browser or a kernel (a FigureWidget is
built in plain Python, and assigning a control's `.value` runs its observers at once), so pytest drives the panels
as a user would, and `check_wiring` does the same in the notebook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go

from probegen_nb.explore.compute import Explorer, ModelQuery, example_models
from probegen_nb.explore.views import (
    clicked_row,
    gallery_figure,
    inspector_figure,
    latent_figure,
    n_epochs_saved,
    replay_figure,
    representation_figure,
    update_gallery,
    update_inspector,
    update_latent,
    update_replay,
    update_representation,
)

NO_MATCH = "no test model matches the filter"
FALLBACK = "{title}: an interactive view; open the notebook in JupyterLab (trusted, or after Run All) to see it"


class View:
    """What a notebook displays for one view: its widget, with a one-line text/plain fallback naming the view.

    JupyterLab shows the text/plain of a widget output where it cannot render the widget (an untrusted notebook, no
    widget state): ipywidgets' default there is the whole widget tree's repr, `VBox(children=(... FigureWidget({...`,
    kilobytes of figure data."""

    def __init__(self, widget: widgets.Widget, title: str) -> None:
        self.widget, self.title = widget, title

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs)
        return {**bundle, "text/plain": FALLBACK.format(title=self.title)}


class _Panel:
    """Displays as its `.widget` (see `View`)."""

    widget: widgets.Widget
    title = "view"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return View(self.widget, self.title)._repr_mimebundle_(**kwargs)


class GalleryPanel(_Panel):
    """Probe gallery: a slider picks the probe that every probe set outlines."""

    title = "Probe gallery"

    def __init__(self, ex: Explorer) -> None:
        self.ex = ex
        self.slider = widgets.IntSlider(value=0, min=0, max=len(ex.probes[ex.main]) - 1, description="probe")
        self.figure = go.FigureWidget(gallery_figure(ex))
        self.slider.observe(self._show, names="value")
        self.widget = widgets.VBox([self.slider, self.figure])

    def _show(self, change: dict[str, Any]) -> None:
        update_gallery(self.figure, self.ex, change["new"])


class InspectorPanel(_Panel):
    """Model inspector: a filter (class, or a range of the label) lists the models two pickers choose from; a model id
    typed in the text box, or a click on another view (`open_as_a`), opens that model as model A.

    When the filter matches nothing the pickers are empty (value None), the figure keeps the last pair and `status`
    says why; `listeners` hear every new pair shown (the representation map rings them)."""

    title = "Model inspector"

    def __init__(self, ex: Explorer, start: Sequence[int] | None = None) -> None:
        self.ex = ex
        start = list(start if start is not None else example_models(ex, 2))
        if ex.test.task.n_classes is not None:  # classification
            classes = [(f"class {c}", c) for c in range(ex.test.task.n_classes)]
            self.filter = widgets.Dropdown(options=[("any class", -1), *classes], value=-1, description="filter")
        else:
            lo, hi = float(ex.labels.min()), float(ex.labels.max())
            self.filter = widgets.FloatRangeSlider(value=(lo, hi), min=lo, max=hi, step=0.005, description="accuracy")
        options = ex.model_options(ModelQuery(), include=start)
        self.pick_a = widgets.Dropdown(options=options, value=start[0], description="model A")
        self.pick_b = widgets.Dropdown(options=options, value=start[-1], description="model B")
        self.by_id = widgets.Text(placeholder=f"e.g. {ex.model_ids[0]}", description="model id",
                                  continuous_update=False)
        self.status = widgets.Label()
        self.figure = go.FigureWidget(inspector_figure(ex, (start[0], start[-1])))
        self.listeners: list[Callable[[tuple[int, int]], None]] = []
        self.filter.observe(self._refilter, names="value")
        self.by_id.observe(self._open_id, names="value")
        self.pick_a.observe(self._show, names="value")
        self.pick_b.observe(self._show, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.filter, self.by_id, self.status]),
                                    widgets.HBox([self.pick_a, self.pick_b]), self.figure])

    @property
    def query(self) -> ModelQuery:
        """The filter's setting as a query (-1 in the class dropdown means any class)."""
        if self.ex.is_classification:
            return ModelQuery(label=None if self.filter.value < 0 else self.filter.value)
        return ModelQuery(label_range=tuple(self.filter.value))

    @property
    def selected(self) -> tuple[int, int] | None:
        """The (A, B) rows shown, or None while a picker is empty."""
        a, b = self.pick_a.value, self.pick_b.value
        return None if a is None or b is None else (a, b)

    def open_as_a(self, row: int) -> None:
        """Show test model `row` as model A, listing it even if the filter leaves it out; an empty B gets it too, so
        the inspector always shows the model just opened."""
        self._open(self.pick_a, row)
        if self.pick_b.value is None:
            self._open(self.pick_b, row)

    def show(self, a: int, b: int) -> None:
        """Show rows a and b (e.g. to put the inspector back as it was)."""
        self._open(self.pick_a, a)
        self._open(self.pick_b, b)

    def _open(self, pick: widgets.Dropdown, row: int) -> None:
        if row not in [v for _, v in pick.options]:
            keep = [r for r in (row, pick.value) if r is not None]
            pick.options = self.ex.model_options(self.query, include=keep)
        pick.value = row

    def _open_id(self, change: dict[str, Any]) -> None:
        text = change["new"].strip()
        if not text:
            return
        try:
            row = self.ex.row_of(int(text))
        except ValueError:
            self.status.value = f"not a model id: {text!r}"
        except KeyError as e:
            self.status.value = e.args[0]
        else:
            self.status.value = ""
            self.open_as_a(row)

    def _refilter(self, _: dict[str, Any]) -> None:
        """A picker whose model the filter leaves out moves to a listed model other than the other picker's, so that
        A and B stay two models while the filter lists two."""
        options = self.ex.model_options(self.query)
        values = [v for _, v in options]
        a = self.pick_a.value if self.pick_a.value in values else None
        b = self.pick_b.value if self.pick_b.value in values else None
        a = a if a is not None else next((v for v in values if v != b), b)
        b = b if b is not None else next((v for v in values if v != a), a)
        for pick, keep in ((self.pick_a, a), (self.pick_b, b)):
            pick.options = options or [("no model matches", None)]
            pick.value = keep
        self.status.value = "" if options else NO_MATCH

    def _show(self, _: dict[str, Any]) -> None:
        if self.selected is not None:
            update_inspector(self.figure, self.ex, self.selected)
            for listener in self.listeners:
                listener(self.selected)


class RepresentationPanel(_Panel):
    """Representation map: rings the inspector's two models; a click on a model opens it as the inspector's model A."""

    title = "Representation map"

    def __init__(self, ex: Explorer, inspector: InspectorPanel) -> None:
        self.inspector = inspector
        self.figure = go.FigureWidget(representation_figure(ex, selected=inspector.selected or ()))
        self.figure.data[0].on_click(self._clicked)
        inspector.listeners.append(self._ring)
        self.widget = self.figure

    def _clicked(self, trace: Any, points: Any, state: Any) -> None:
        row = clicked_row(points.point_inds)
        if row is not None:
            self.inspector.open_as_a(row)

    def _ring(self, rows: tuple[int, int]) -> None:
        update_representation(self.figure, rows)


class LatentPanel(_Panel):
    """Latent explorer: sliders move probe i's latent code towards probe j's (t) and along the latents' principal
    directions; the generated probe and the answers of `models` follow. Needs a run with a generator."""

    title = "Latent explorer"

    def __init__(self, ex: Explorer, models: Sequence[int], n_directions: int = 3) -> None:
        self.ex, self.models = ex, list(models)
        self.figure = go.FigureWidget(latent_figure(ex, self.models))  # raises for a run without latent codes
        n = len(ex.probes[ex.main])
        self.i = widgets.IntSlider(value=0, min=0, max=n - 1, description="probe i")
        self.j = widgets.IntSlider(value=min(1, n - 1), min=0, max=n - 1, description="probe j")
        self.t = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="t")
        self.directions = [widgets.FloatSlider(value=0.0, min=-3.0, max=3.0, step=0.25, description=f"PC {k + 1}")
                           for k in range(n_directions)]
        for slider in self.controls:
            slider.observe(self._move, names="value")
        self._move()
        self.widget = widgets.VBox([widgets.HBox([widgets.VBox([self.i, self.j, self.t]),
                                                  widgets.VBox(self.directions)]), self.figure])

    @property
    def controls(self) -> list[widgets.ValueWidget]:
        return [self.i, self.j, self.t, *self.directions]

    def _move(self, _: dict[str, Any] | None = None) -> None:
        update_latent(self.figure, self.ex, self.models, self.i.value, self.j.value, self.t.value,
                      [s.value for s in self.directions])


class ReplayPanel(_Panel):
    """Training replay: a slider over the saved epochs. The CSS classes `pg-replay-slider` and `pg-replay` let the
    browser test find the slider and the plot."""

    title = "Training replay"

    def __init__(self, ex: Explorer) -> None:
        self.ex = ex
        self.slider = widgets.IntSlider(value=0, min=0, max=n_epochs_saved(ex) - 1, description="epoch")
        self.slider.add_class("pg-replay-slider")
        self.figure = go.FigureWidget(replay_figure(ex))
        self.slider.observe(self._show, names="value")
        self.widget = widgets.VBox([self.slider, self.figure])
        self.widget.add_class("pg-replay")

    def _show(self, change: dict[str, Any]) -> None:
        update_replay(self.figure, self.ex, change["new"])


# ---------------------------------------------------------------- checking the wiring


def simulate_click(figure: go.FigureWidget, trace: int, point: int) -> None:
    """Deliver the message the browser sends when point `point` of trace `trace` is clicked (plotly has no public
    way to fake a click; this is the path a real one takes into the `on_click` callbacks)."""
    t = figure.data[trace]
    figure._js2py_pointsCallback = {"event_type": "plotly_click", "points": {
        "xs": [t.x[point]], "ys": [t.y[point]], "point_indexes": [point], "trace_indexes": [trace]}}


@dataclass(frozen=True)
class WiringReport:
    """What `check_wiring` moved and saw follow, one line per check."""

    followed: tuple[str, ...]

    @property
    def summary(self) -> str:
        return "every view followed its controls"


def _traces(figure: go.FigureWidget) -> list[str]:
    return [t.to_json() for t in figure.data]  # JSON text: compares numpy arrays by value


def _set(control: widgets.ValueWidget, value: Any) -> Callable[[], None]:
    """A user's move of one control, to run later."""
    return lambda: setattr(control, "value", value)


def _elsewhere(slider: widgets.ValueWidget, prefer: float | None = None) -> float:
    """A value for the slider other than its current one: `prefer` if it differs, else the far end."""
    if prefer is not None and slider.value != prefer:
        return prefer
    return slider.max if slider.value != slider.max else slider.min


def copies(gallery: GalleryPanel, inspector: InspectorPanel, representation: RepresentationPanel,
           replay: ReplayPanel, latent: LatentPanel | None = None) -> dict[str, Any]:
    """Fresh panels like these (same explorer, same settings), which no page shows, as `check_wiring`'s arguments.

    Moving the shown panels, even when every control is put back, left them moved in a browser after Run All (the
    latent sliders at +2, both pickers on one model): the page hears of each move. The notebook checks the wiring
    on copies, so the panels a reader sees are never moved."""
    g, i = GalleryPanel(gallery.ex), InspectorPanel(inspector.ex, start=inspector.selected)
    g.slider.value = gallery.slider.value
    i.filter.value = inspector.filter.value
    if inspector.selected is not None:
        i.show(*inspector.selected)
    r = ReplayPanel(replay.ex)
    r.slider.value = replay.slider.value
    lat = None
    if latent is not None:
        lat = LatentPanel(latent.ex, latent.models, len(latent.directions))
        for mine, theirs in zip(lat.controls, latent.controls, strict=True):
            mine.value = theirs.value
    return {"gallery": g, "inspector": i, "representation": RepresentationPanel(i.ex, i), "replay": r,
            "latent": lat}


def check_wiring(gallery: GalleryPanel, inspector: InspectorPanel, representation: RepresentationPanel,
                 replay: ReplayPanel, latent: LatentPanel | None = None) -> WiringReport:
    """Move every control once, as a user would, check that the data of its figure (and of the views linked to it)
    changed, then put the controls back. Raises AssertionError naming the view that did not follow."""
    ex = inspector.ex
    followed: list[str] = []

    def expect(what: str, move: Callable[[], None], **figures: go.FigureWidget) -> None:
        before = {view: _traces(figure) for view, figure in figures.items()}
        move()
        for view, figure in figures.items():
            if _traces(figure) == before[view]:
                raise AssertionError(f"{view}: the figure did not follow {what}")
            followed.append(f"{view} followed {what}")

    def expect_opened(row: int, what: str) -> None:
        if inspector.pick_a.value != row:
            raise AssertionError(f"inspector: {what} did not open row {row} as model A (A is {inspector.pick_a.value})")

    start = (gallery.slider.value, replay.slider.value, inspector.filter.value, inspector.selected,
             [s.value for s in latent.controls] if latent else [])
    try:
        expect("the probe slider", _set(gallery.slider, _elsewhere(gallery.slider)), gallery=gallery.figure)
        expect("the epoch slider", _set(replay.slider, _elsewhere(replay.slider)), replay=replay.figure)

        for name, pick in (("model A's picker", inspector.pick_a), ("model B's picker", inspector.pick_b)):
            row = next(v for _, v in pick.options if v != pick.value)
            expect(name, _set(pick, row), inspector=inspector.figure, representation=representation.figure)
        row = next(r for r in (len(ex.labels) // 2, 0, 1) if r != inspector.pick_a.value)
        expect("a model id typed", _set(inspector.by_id, str(ex.model_ids[row])), inspector=inspector.figure,
               representation=representation.figure)
        expect_opened(row, "the model id typed")
        row = next(r for r in (len(ex.labels) - 1, 0, 1) if r != inspector.pick_a.value)
        expect("a click on a model", lambda: simulate_click(representation.figure, 0, row),
               inspector=inspector.figure, representation=representation.figure)
        expect_opened(row, "a click on the representation map")
        # narrow the filter to another model's label: model A is no longer listed, so the pickers move
        label = next(v for v in ex.labels.tolist() if v != ex.labels[inspector.pick_a.value].item())
        expect("the filter", _set(inspector.filter, label if ex.is_classification else (label, label)),
               inspector=inspector.figure)

        if latent is not None:  # t before j: at t = 0 probe j does not shape the generated probe
            moves = [("probe i", latent.i, None), ("t", latent.t, 0.5), ("probe j", latent.j, None),
                     *[(s.description, s, 2.0) for s in latent.directions]]
            for name, slider, prefer in moves:
                expect(f"the {name} slider", _set(slider, _elsewhere(slider, prefer)), latent=latent.figure)
    finally:
        gallery.slider.value, replay.slider.value, inspector.filter.value, models, values = start
        if models is not None:
            inspector.show(*models)
        inspector.by_id.value = ""
        for slider, value in zip(latent.controls if latent else [], values, strict=True):
            slider.value = value
    return WiringReport(tuple(followed))
