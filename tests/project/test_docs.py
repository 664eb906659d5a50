"""The docs: README is a front door (short, its links resolve), and `make docs` writes each results page from its
sweep folder: the numbers are results.csv's, the interval is the paired t interval, and a sweep not run yet gives a
page that says which command makes it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

from probegen_nb.app import paper
from probegen_nb.app.docs import ResultsPage, SweepTable, page_markdown, pages, stamp_problems, write_pages
from probegen_nb.core.zoo import Zoo
from probegen_nb.experiment.config import ProbingConfig, RunConfig
from probegen_nb.experiment.run_folder import read_results
from probegen_nb.experiment.stats import paired_t_interval
from probegen_nb.experiment.sweep import Sweep, grid, run_sweep
from probegen_nb.probes.coords import ProbeGenConfig, UniformConfig

from paths import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)


def test_readme_is_a_front_door() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text) < 12_000, len(text)
    for needed in ("make test", "make demo", "make docs", "import probegen_nb as pg", "docs/results/"):
        assert needed in text, needed


def relative_links(path: Path) -> list[str]:
    """Every link in a markdown file that points into the checkout (no scheme, no pure #anchor), anchor removed."""
    targets = [t.split("#")[0] for t in LINK.findall(path.read_text())]
    return [t for t in targets if t and not re.match(r"[a-z]+:", t)]


def test_every_relative_link_resolves() -> None:
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    assert len(files) > 5  # the docs exist, so the check below is not vacuous
    broken = [f"{f.relative_to(REPO)} → {t}" for f in files for t in relative_links(f)
              if not (f.parent / t).exists()]
    assert not broken, broken
    assert sum(len(relative_links(f)) for f in files) > 5


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("[ok](p.md) [gone](nope.md#x) [web](https://example.org) [anchor](#top)")
    assert relative_links(page) == ["p.md", "nope.md"]
    assert [t for t in relative_links(page) if not (tmp_path / t).exists()] == ["nope.md"]


def test_every_page_names_the_make_target_that_writes_it() -> None:
    makefile = (REPO / "Makefile").read_text()
    for page in pages():
        assert re.search(rf"^{page.command.removeprefix('make ')}:", makefile, re.M), page.command
        assert page.tables and all(t.folder.startswith("runs/") for t in page.tables)


def test_a_missing_sweep_says_which_command_makes_it(tmp_path: Path) -> None:
    page = ResultsPage("x", "X", "make seeds", (SweepTable("T", "runs/none", "test_accuracy"),))
    text = page_markdown(page, tmp_path, revision="abc1234", today="2026-01-01")
    assert "not generated yet: run `make seeds`" in text and "|" not in text
    written = write_pages(tmp_path, tmp_path / "out")
    assert {p.name for p in written} == {f"{p.name}.md" for p in pages()}
    assert all("not generated yet" in p.read_text() for p in written)


def test_a_sweep_becomes_its_table(class_shift_zoo: Zoo, tmp_path: Path) -> None:
    base = RunConfig(method=ProbingConfig(n_probes=4), epochs=1, hidden=16, n_hidden=1, lr=3e-3, device="cpu")
    runs = grid(base, {"probegen": {"probes": ProbeGenConfig()}, "uniform": {"probes": UniformConfig()}}, [0, 1, 2])
    run_sweep(Sweep("tiny", runs, tmp_path / "runs" / "tiny"), zoo=class_shift_zoo, progress=False)
    page = ResultsPage("tiny", "Tiny", "make seeds", (SweepTable("Tiny sweep", "runs/tiny", "test_accuracy"),))
    text = page_markdown(page, tmp_path, revision="abc1234", today="2026-01-01")
    assert "produced by `make seeds`; commit abc1234; generated 2026-01-01; 6 finished runs of 6" in text
    results = read_results(tmp_path / "runs" / "tiny")
    assert isinstance(results, pd.DataFrame)
    acc = {v: g.set_index("seed")["test_accuracy"] for v, g in results.groupby("variant")}
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    for variant, by_seed in acc.items():
        assert f"{by_seed.mean():.4f} ± {by_seed.std(ddof=1):.4f}" in rows[variant]
    diffs = (acc["uniform"] - acc["probegen"]).to_numpy()
    low, high = paired_t_interval(diffs)
    assert f"{diffs.mean():+.4f} [{low:+.4f}, {high:+.4f}]" in rows["uniform"]
    assert "reference" in rows["probegen"]

    # a fresh clone has no sweep folders: the committed table is kept as generated, and a hand edit is not
    shutil.rmtree(tmp_path / "runs")
    assert page_markdown(page, tmp_path, revision="def5678", today="2027-01-01", previous=text) == text
    assert stamp_problems(text) == []
    edited = text.replace(f"{by_seed.mean():.4f}", f"{by_seed.mean() + 0.01:.4f}")
    assert edited != text and stamp_problems(edited) == ["section 'Tiny sweep': edited by hand after `make docs` "
                                                         "wrote it (its stamp does not match)"]
    again = page_markdown(page, tmp_path, revision="def5678", today="2027-01-01", previous=edited)
    assert "not generated yet: run `make seeds`" in again and "|" not in again


def test_make_docs_leaves_the_committed_pages_as_they_are(tmp_path: Path) -> None:
    """The committed docs/results pages are what `make docs` writes on a fresh clone (no sweep folders: each table is
    kept as committed, or says how to make it), besides the paper's table, which `make paper` writes
    (tests/app/test_paper.py); a hand edit of a table, or a page no generator writes any more, fails here."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "docs" / "results", clone / "docs" / "results")
    written = write_pages(clone, tmp_path / "out")
    committed = sorted(p.name for p in (REPO / "docs" / "results").glob("*.md"))
    assert committed == sorted([p.name for p in written] + [paper.PAGE.name])
    for path in written:
        text = (REPO / "docs" / "results" / path.name).read_text()
        assert stamp_problems(text) == [], path.name
        assert path.read_text() == text, path.name
    assert "| probegen |" in (tmp_path / "out" / "seeds.md").read_text(), "make seeds' table is committed"


def test_a_sweep_whose_runs_all_failed_is_not_a_table(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "failed"
    folder.mkdir(parents=True)
    pd.DataFrame({"run_id": ["a", "b"], "variant": ["probegen", "uniform"], "seed": [0, 0],
                  "status": ["failed", "failed"], "error": ["NaN loss", "NaN loss"]}).to_csv(folder / "results.csv")
    page = ResultsPage("f", "F", "make seeds", (SweepTable("T", "runs/failed", "test_accuracy"),))
    assert "not generated yet: run `make seeds`" in page_markdown(page, tmp_path, revision="x", today="y")
