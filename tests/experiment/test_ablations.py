"""The ablation grids are the issue's, and their tables pair each variant with the right reference."""

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from probegen_nb.experiment.ablations import (
    SMOKE_AXES,
    Ablations,
    Section,
    Variant,
    compare_section,
    describe,
    schedule_table,
    section_claims,
    section_sweep,
    sections,
)
from probegen_nb.experiment.config import RunConfig
from probegen_nb.probes.coords import ProbeGenConfig, VanillaConfig
from probegen_nb.probes.real_images import RealImagesConfig


def test_the_grids_are_the_papers_ablations() -> None:
    grid = sections()
    qs = sorted({v.x for v in grid["n_probes"].variants})
    assert qs == [8, 16, 32, 64, 128, 256]
    assert {v.method for v in grid["n_probes"].variants} == {"probegen", "vanilla", "uniform"}
    assert sorted({v.x for v in grid["n_probes_images"].variants}) == [16, 32, 64, 128]
    assert sorted({v.x for v in grid["train_size"].variants}) == [250, 500, 1000, 2000, 4000]
    assert sorted({v.x for v in grid["train_size_images"].variants}) == [175, 350, 700, 1400]
    assert {v.method for v in grid["train_size_images"].variants} == {"probegen", "dead-leaves"}
    assert grid["train_size_images"].zoo == "cnn" and grid["train_size_images"].base == {"n_probes": 64}
    assert [v.overrides["probes"].unit_variance_init for v in grid["image_sources"].variants
            if v.method.startswith("probegen (unit")] == [True]
    assert sorted({v.x for v in grid["regularisation"].variants if v.x is not None}) == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    gens = [v.overrides["probes"] for v in grid["generator"].variants]
    assert sorted({g.depth for g in gens}) == [1, 2, 3, 4, 6]
    assert sorted({g.width for g in gens}) == [32, 128, 512]
    assert sorted({g.latent_dim for g in gens}) == [8, 32, 128]
    # one factor at a time: every generator variant differs from the default in at most one field
    default = ProbeGenConfig()
    for g in gens:
        assert sum(getattr(g, f) != getattr(default, f) for f in ("depth", "width", "latent_dim")) <= 1
    acts = {v.overrides["probes"].activation for v in grid["nonlinear"].variants}
    assert acts == {None, "relu", "gelu", "tanh"}
    kinds = {v.overrides["probes"].kind for v in grid["image_sources"].variants}
    assert kinds == {"probegen-conv", "probegen-fc", "vanilla-image", "dead-leaves", "gaussian-image", "real-images"}
    real = [v.overrides["probes"] for v in grid["image_sources"].variants if v.method == "mnist-digits"]
    assert real == [RealImagesConfig(dataset="mnist")]
    assert grid["image_sources"].base == {"n_probes": 64}
    spread = grid["spread"]
    assert spread.zoo == "inr" and spread.axis is None
    assert sorted(v.overrides["probes"].init_spread or 0 for v in spread.variants if v.method.startswith("probegen")) \
        == [0, 0.45, 0.58]  # the default start (None) and two wider ones
    assert sorted(v.overrides["probes"].std for v in spread.variants if v.method.startswith("gaussian")) \
        == [0.33, 0.45, 0.58]  # fixed probes at ProbeGen's default spread, between, and uniform's
    assert any(v.overrides["probes"].kind == "uniform" for v in spread.variants)
    for s in grid.values():  # every section holds its reference and names variants uniquely
        assert any(v.method == s.reference for v in s.variants)
        assert len({v.name for v in s.variants}) == len(s.variants)


def test_smoke_grids_are_small_subsets() -> None:
    full, smoke = sections(), sections(SMOKE_AXES)
    assert smoke.keys() == full.keys()
    for key in full:
        assert len(smoke[key].variants) < len(full[key].variants)
    assert [v.name for v in smoke["image_sources"].variants] == list(SMOKE_AXES.image_sources)
    with pytest.raises(ValueError, match=r"unknown image sources \['noise'\]"):
        sections(replace(SMOKE_AXES, image_sources=("probegen", "noise")))


def test_section_sweep_is_variants_times_seeds_with_the_overrides() -> None:
    s = sections(SMOKE_AXES)["image_sources"]
    sweep = section_sweep(s, RunConfig(epochs=3), [0, 1, 2], "/tmp/x")
    assert len(sweep.runs) == 3 * len(s.variants)
    assert {r.config.method.n_probes for r in sweep.runs} == {8}  # the section's base
    assert {r.config.epochs for r in sweep.runs} == {3}
    assert {r.config.seed for r in sweep.runs} == {0, 1, 2}
    assert sweep.folder.name == "image_sources"


AXIS = Section("q", "Q", "inr", (Variant("probegen", {"probes": ProbeGenConfig()}, 8),
                                 Variant("vanilla", {"probes": VanillaConfig()}, 8),
                                 Variant("probegen", {"probes": ProbeGenConfig()}, 16),
                                 Variant("vanilla", {"probes": VanillaConfig()}, 16)), axis="Q")


def results(values: dict[str, list[float]], column: str = "test_accuracy") -> pd.DataFrame:
    rows = [{"variant": v, "seed": s, column: x, "status": "done"} for v, xs in values.items()
            for s, x in enumerate(xs)]
    return pd.DataFrame(rows)


def test_numeric_axes_compare_with_the_reference_at_the_same_x() -> None:
    r = results({"probegen @ 8": [0.5, 0.6, 0.7], "vanilla @ 8": [0.4, 0.5, 0.6],
                 "probegen @ 16": [0.9, 0.9, 0.9], "vanilla @ 16": [0.95, 0.95, 0.95]})
    table = compare_section(AXIS, r, "test_accuracy")
    assert list(table.index) == ["probegen @ 8", "vanilla @ 8", "probegen @ 16", "vanilla @ 16"]
    # paired with probegen at its own Q: -0.1 at 8 and +0.05 at 16 (against Q=8's probegen it would be +0.35)
    assert table.loc["vanilla @ 8", "diff"] == pytest.approx(-0.1)
    assert table.loc["vanilla @ 16", "diff"] == pytest.approx(0.05)
    assert table.loc["vanilla @ 16", "diff_low"] == pytest.approx(0.05)
    assert list(table["x"]) == [8, 8, 16, 16] and list(table["method"]) == ["probegen", "vanilla"] * 2
    text = describe(AXIS, table, "test accuracy")
    assert text.startswith("The best test accuracy is 0.950 ± 0.000 (vanilla @ 16, 3 seeds).")
    assert "below probegen beyond seed noise: vanilla @ 8" in text
    assert "above probegen beyond seed noise: vanilla @ 16" in text
    # one claim per non-reference row, against the reference at the same Q, read off its own interval
    assert section_claims(AXIS, table, "test_accuracy") == [
        "probegen @ 8 beats vanilla @ 8 on test_accuracy by +0.100 [+0.100, +0.100] over 3 seeds",
        "vanilla @ 16 beats probegen @ 16 on test_accuracy by +0.050 [+0.050, +0.050] over 3 seeds"]


def test_describe_calls_a_noisy_gap_noise() -> None:
    s = Section("n", "N", "inr", (Variant("probegen", {}), Variant("vanilla", {})))
    r = results({"probegen": [0.50, 0.60, 0.70], "vanilla": [0.55, 0.50, 0.72]})  # diffs +0.05, -0.1, +0.02
    text = describe(s, compare_section(s, r, "test_accuracy"), "acc")
    assert "not distinguishable from probegen at 3 seeds" in text and "vanilla" in text.split("3 seeds")[-1]
    assert "beyond seed noise" not in text
    claims = section_claims(s, compare_section(s, r, "test_accuracy"), "test_accuracy")
    assert len(claims) == 1 and "not distinguishable" in claims[0] and "beats" not in claims[0]


def test_ablations_run_only_chosen_sections_and_name_an_unknown_one() -> None:
    grid = sections()
    plan = Ablations(grid, ["generator"], {}, [0], Path("unused"), {})
    assert plan.run("spread") is None and plan.done == {}  # known, not chosen: nothing runs
    with pytest.raises(ValueError, match="unknown ablation section 'sprad'"):
        plan.run("sprad")


def test_schedule_table_pairs_last_step_with_best_val() -> None:
    r = pd.DataFrame({"variant": ["a"] * 3, "seed": [0, 1, 2], "status": "done",
                      "test_accuracy": [0.90, 0.80, 0.85], "last_test_accuracy": [0.88, 0.79, 0.83]})
    t = schedule_table(r, "accuracy")
    assert t.loc["a", "best_val"] == pytest.approx(0.85)
    assert t.loc["a", "last_step"] == pytest.approx(2.5 / 3)
    assert t.loc["a", "diff"] == pytest.approx(-0.05 / 3)
    assert t.loc["a", "diff_high"] < 0  # every seed's last step is worse: the interval excludes 0


def test_a_failed_run_drops_its_seed_from_the_pairing() -> None:
    r = results({"probegen @ 8": [0.5, 0.6, 0.7], "vanilla @ 8": [0.4, 0.5, 0.9],
                 "probegen @ 16": [0.9, 0.9, 0.9], "vanilla @ 16": [0.95, 0.95, 0.95]})
    r.loc[(r["variant"] == "probegen @ 8") & (r["seed"] == 2), "status"] = "failed"
    table = compare_section(AXIS, r, "test_accuracy")
    assert table.loc["vanilla @ 8", "n"] == 2 and table.loc["vanilla @ 8", "diff"] == pytest.approx(-0.1)
    assert table.loc["vanilla @ 16", "n"] == 3  # the other Q keeps all its seeds
