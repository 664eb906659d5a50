"""`make paper` / `cli paper`: the paper's grid and protocol pinned, a short sweep that writes the page and resumes
without retraining, the table's pairing against ProbeGen at the same Q (with a control), and a partial sweep's page."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import probegen_nb.experiment.sweep as sweep_mod
from probegen_nb import cli
from probegen_nb.app import paper
from probegen_nb.core.zoo_io import load_zoo, save_zoo
from probegen_nb.experiment.ablations import section_sweep
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.protocol import protocol_epochs
from probegen_nb.experiment.stats import paired_t_interval

from paths import ZOOS

CNN_ZOO = ZOOS / "cifar10-gs-cnn-small"


def test_the_grid_is_the_papers_table() -> None:
    """Per benchmark: ProbeGen and its two controls at Q = 64 and 128, 3 seeds, the official epochs (150 on
    CIFAR10-GS), the paper's optimizer settings; CPU default runs CIFAR10-GS alone."""
    expected = {"inr": {"probegen", "vanilla", "uniform"}, "cnn": {"probegen-conv", "vanilla-image", "dead-leaves"}}
    for key, b in paper.BENCHMARKS.items():
        section = paper.paper_section(b)
        kinds = {(v.overrides["probes"].kind, v.overrides["n_probes"]) for v in section.variants}
        assert kinds == {(k, q) for k in expected[b.kind] for q in (64, 128)}, key
    zoo = load_zoo(CNN_ZOO)
    assert protocol_epochs(zoo) == 150
    sweep = section_sweep(paper.paper_section(paper.BENCHMARKS["cifar10-gs"]),
                          RunConfig(zoo_dir=str(CNN_ZOO), epochs=protocol_epochs(zoo)), paper.SEEDS, "unused")
    assert len(sweep.runs) == 18 and {r.config.seed for r in sweep.runs} == {0, 1, 2}
    assert {(r.config.epochs, r.config.lr, r.config.batch_size) for r in sweep.runs} == {(150, 3e-4, 32)}
    assert paper.default_parts("cpu") == ("cifar10-gs",)
    assert paper.default_engine("cpu") == "dask"
    assert cli.PAPER_BENCHMARKS == tuple(paper.BENCHMARKS)


@pytest.fixture(scope="module")
def small_cnn_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 train, 32 val and 32 test CNNs of the embedded CIFAR10-GS zoo, as a zoo folder (its build record kept)."""
    zoo = load_zoo(CNN_ZOO)
    rows = np.concatenate([np.flatnonzero(zoo.table["split"].to_numpy() == s)[:n]
                           for s, n in (("train", 48), ("val", 32), ("test", 32))])
    out = tmp_path_factory.mktemp("paper") / "cnn-zoo"
    save_zoo(zoo.subset(rows.tolist()), out)
    return out


def test_a_short_paper_sweep_writes_the_page_and_resumes_without_training(small_cnn_zoo, tmp_path,
                                                                          monkeypatch) -> None:
    parts = paper.run_paper(["cifar10-gs"], tmp_path / "runs", seeds=(0, 1), device="cpu",
                            zoos={"cifar10-gs": str(small_cnn_zoo)}, epochs=1, group=True, progress=False)
    (part,) = parts
    assert (part.results["status"] == "done").all() and len(part.results) == 12
    assert part.protocol_epochs == 150 and part.epochs == 1
    page = paper.write_page(parts, tmp_path / "runs", "make paper", tmp_path / "page.md", "abc123", "2026-12-05")
    text = page.read_text()
    assert "**not the paper's protocol** (its official script trains 150)" in text
    assert "runs finished: 12 of 12" in text and "48 / 32 / 32 models" in text
    table = paper.paper_table(part)
    for v in paper.paper_section(part.benchmark).variants:  # every row, with the numbers of its runs
        row = table.loc[v.name]
        runs = part.results[part.results["variant"] == v.name]
        assert row["n"] == 2 and math.isclose(row["mean"], runs["test_kendall_tau"].mean())
        assert f"| {v.method} | {int(v.x or 0)} | 2 | {row['mean']:.3f} ± {row['std']:.3f} |" in text

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sweep_mod, "train", refuse)
    monkeypatch.setattr(sweep_mod, "train_group", refuse)
    again = paper.run_paper(["cifar10-gs"], tmp_path / "runs", seeds=(0, 1), device="cpu",
                            zoos={"cifar10-gs": str(small_cnn_zoo)}, epochs=1, group=True, progress=False)
    pd.testing.assert_frame_equal(paper.paper_table(again[0]), table)
    # the page from the folders alone (`cli paper --table-only`) has the same table
    cli.main(["paper", "--table-only", "--out", str(tmp_path / "runs"), "--page", str(tmp_path / "again.md"),
              "--zoo", f"cifar10-gs={small_cnn_zoo}"])
    body = lambda t: t[t.index("| method |"):]  # noqa: E731 (the header names the command and the time)
    assert body((tmp_path / "again.md").read_text()) == body(text)


def fake_part(values: dict[str, list[float]], n_runs: int = 18, key: str = "cifar10-gs") -> paper.PaperPart:
    """A part (CIFAR10-GS unless `key` says) whose finished runs have these test metrics per variant (one per seed,
    from 0)."""
    b = paper.BENCHMARKS[key]
    metric = "test_kendall_tau" if b.kind == "cnn" else "test_accuracy"
    rows = [{"run_id": f"{name}-{seed}", "variant": name, "seed": seed, metric: value,
             "train_seconds": 60.0, "status": "done", "error": ""}
            for name, vals in values.items() for seed, value in enumerate(vals)]
    results = pd.DataFrame(rows)
    results["method"] = [v.split(" @ ")[0] for v in results["variant"]]
    return paper.PaperPart(b, "zoo", {"train": 1, "val": 1, "test": 1}, 150, 150, results, 0.0, 0.0, n_runs)


def test_each_method_is_paired_with_probegen_at_its_own_q() -> None:
    pg64, pg128 = [0.90, 0.92, 0.91], [0.50, 0.70, 0.40]  # very different: pairing with the wrong Q shows
    van64 = [0.88, 0.91, 0.87]
    part = fake_part({"probegen @ 64": pg64, "vanilla @ 64": van64, "dead-leaves @ 64": [0.9, 0.9, 0.9],
                      "probegen @ 128": pg128, "vanilla @ 128": [0.6, 0.6, 0.6], "dead-leaves @ 128": [0.5, 0.5, 0.5]})
    row = paper.paper_table(part).loc["vanilla @ 64"]
    diffs = np.array(van64) - np.array(pg64)
    low, high = paired_t_interval(diffs)
    assert math.isclose(row["diff"], diffs.mean()) and math.isclose(row["diff_low"], low)
    assert math.isclose(row["diff_high"], high) and row["n_paired"] == 3
    row128 = paper.paper_table(part).loc["vanilla @ 128"]
    assert math.isclose(row128["diff"], 0.6 - np.mean(pg128))
    wrong = np.array(van64) - np.array(pg128)  # negative control: the other Q's ProbeGen gives another number
    assert not math.isclose(row["diff"], wrong.mean(), abs_tol=0.05)


def test_a_partial_sweep_says_what_is_missing() -> None:
    part = fake_part({"probegen @ 64": [0.9, 0.91], "vanilla @ 64": [0.8, 0.82, 0.85], "vanilla @ 128": [0.7]})
    table = paper.paper_table(part)
    assert table.loc["vanilla @ 64", "n_paired"] == 2  # paired over the seeds both finished
    assert table.loc["dead-leaves @ 64", "n"] == 0 and math.isnan(table.loc["dead-leaves @ 64", "mean"])
    text = paper.part_markdown(part, Path("unused"))
    assert "runs finished: 6 of 18 (rerun `make paper` to continue" in text
    assert "| dead-leaves | 64 | 0 | not finished |" in text
    assert "| vanilla | 128 | 1 | 0.700 ± n/a | no paired seeds yet |" in text


def test_the_paper_command_refuses_a_malformed_zoo_option(tmp_path) -> None:
    for bad, message in (("mnist", "NAME=VALUE"), ("mnsit=data/zoos/x", re.escape("unknown benchmarks ['mnsit']"))):
        with pytest.raises(SystemExit, match=message):
            cli.main(["paper", "--zoo", bad, "--out", str(tmp_path), "--page", str(tmp_path / "p.md")])
    with pytest.raises(SystemExit, match="no paper sweep under"):
        cli.main(["paper", "--table-only", "--out", str(tmp_path), "--page", str(tmp_path / "p.md")])
    assert not (tmp_path / "p.md").exists()


def test_a_page_keeps_the_sections_of_benchmarks_run_elsewhere(tmp_path) -> None:
    """CIFAR10-GS on a CPU, then MNIST on a GPU where CIFAR10-GS's sweep is not: the second page keeps the first's
    CIFAR10-GS section as it was, saying what made it, and adds MNIST's; a new CIFAR10-GS part replaces its section
    (negative control: a kept section never stands beside a new one)."""
    page = tmp_path / "page.md"
    paper.write_page([fake_part({"probegen @ 64": [0.9, 0.91], "vanilla @ 64": [0.8, 0.82]})], tmp_path / "cpu",
                     "make paper", page, "abc123", "2026-12-05")
    first = paper.kept_sections(page.read_text())
    assert list(first) == ["cifar10-gs"] and "- made by: `make paper` at commit abc123 on 2026-12-05" in first[
        "cifar10-gs"]
    mnist = fake_part({"probegen @ 64": [0.98, 0.97], "uniform @ 64": [0.96, 0.95]}, key="mnist")
    paper.write_page([mnist], tmp_path / "gpu", "cli paper --parts mnist", page, "def456", "2026-12-07")
    text = page.read_text()
    second = paper.kept_sections(text)
    assert list(second) == ["mnist", "cifar10-gs"]  # the table's order, not the order they ran in
    assert second["cifar10-gs"] == first["cifar10-gs"]
    assert second["mnist"].startswith("## MNIST INR classification\n\n- made by: `cli paper --parts mnist` at "
                                      "commit def456 on 2026-12-07\n")
    assert "| uniform | 64 | 2 | 95.50 ± 0.71 |" in second["mnist"] and "| vanilla | 64 | 2 | 0.810 ±" in text
    paper.write_page([fake_part({"probegen @ 64": [0.5, 0.6], "vanilla @ 64": [0.4, 0.4]})], tmp_path / "cpu",
                     "make paper", page, "fed789", "2026-12-08")
    third = page.read_text()
    assert third.count("## CIFAR10-GS") == 1 and "| vanilla | 64 | 2 | 0.400 ±" in third
    assert "| vanilla | 64 | 2 | 0.810 ±" not in third and paper.kept_sections(third)["mnist"] == second["mnist"]


def test_a_section_of_an_older_page_gets_its_header_as_what_made_it() -> None:
    old = ("# The paper's Table 1, reproduced\n\nGenerated by `make paper` at commit 6d448fc on 2026-12-05; do not "
           "edit by hand.\n\n## CIFAR10-GS test-accuracy prediction\n\n- zoo: `z`\n\n| method |\n\n"
           "## Not a benchmark of the table\n\ntext\n")
    kept = paper.kept_sections(old)
    assert list(kept) == ["cifar10-gs"]
    assert kept["cifar10-gs"] == ("## CIFAR10-GS test-accuracy prediction\n\n- made by: `make paper` at commit "
                                  "6d448fc on 2026-12-05\n- zoo: `z`\n\n| method |")
