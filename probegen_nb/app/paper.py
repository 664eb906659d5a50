"""`make paper` / `cli paper`: the paper's Table 1 at the largest scale the device affords, one resumable sweep per
benchmark, and the page that reads it (docs/results/paper-table.md).

Each benchmark compares ProbeGen with its two probe-source controls (INRs: vanilla and uniform probes; CNNs: vanilla
and dead-leaves images) at Q = 64 and 128 over 3 seeds, under the paper's protocol: the official epochs
(`experiment.protocol`: 150 on CIFAR10-GS, 30 on the INR zoos), Adam 3e-4 cosine-annealed, 32 models a step. The
INR benchmarks run on public-size zoos (one INR per image, 70,000 each), which the command builds first (resumable);
CIFAR10-GS runs on the embedded 2,000-CNN zoo. A CPU runs only CIFAR10-GS by default: a public-size INR zoo takes
80-120 min to build there (`--parts` asks for more, `--zoo` names another zoo).

Runs of one variant that differ only in their seed train as one program (`experiment.grouped`) where grouping is on;
each run's folder equals its solo run's. Rerunning the command skips finished runs and continues killed ones; the
page says how many runs of each benchmark have finished and the epochs, zoo, device and time they took. A benchmark
whose sweep is not on the machine writing the page keeps its section from the page before (`kept_sections`), each
section saying which command, commit and date made it: CIFAR10-GS on a CPU and the INR zoos on a GPU make one page.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import pandas as pd

from probegen_nb.core.device import resolve_device
from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.jobs import write_text_atomic
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment.ablations import Section, Variant, section_sweep, with_variant_columns
from probegen_nb.experiment.comparison import PROBING, PUBLISHED, ZooKind
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.protocol import protocol_epochs
from probegen_nb.experiment.run_folder import is_run_folder, read_metrics, read_results, read_sweep
from probegen_nb.experiment.stats import compare_variants, verdict
from probegen_nb.experiment.sweep import run_sweep, seconds_per_run

REPO = Path(__file__).resolve().parents[2]
N_PROBES = (64, 128)  # the paper's two values of Q
SEEDS = (0, 1, 2)
REFERENCE = "probegen"
PAGE = Path("docs/results/paper-table.md")


@dataclass(frozen=True)
class PaperBenchmark:
    """One benchmark of the table: its zoo (built by this command when `public_size`) and what is compared on it."""

    key: str  # "mnist", "fmnist", "cifar10-gs"
    title: str
    kind: ZooKind  # "inr" (classification, accuracy) or "cnn" (generalisation, Kendall τ)
    zoo_dir: str  # relative to the checkout
    public_size: bool  # one INR per image, built by this command when missing

    @property
    def metric(self) -> str:
        return "test_accuracy" if self.kind == "inr" else "test_kendall_tau"


BENCHMARKS: dict[str, PaperBenchmark] = {
    "mnist": PaperBenchmark("mnist", "MNIST INR classification", "inr", "data/zoos/mnist-inr-public", True),
    "fmnist": PaperBenchmark("fmnist", "Fashion-MNIST INR classification", "inr", "data/zoos/fmnist-inr-public", True),
    "cifar10-gs": PaperBenchmark("cifar10-gs", "CIFAR10-GS test-accuracy prediction", "cnn",
                                 "data/zoos/cifar10-gs-cnn-small", False),
}


def default_parts(device: str) -> tuple[str, ...]:
    """Every benchmark on an accelerator; CIFAR10-GS alone on a CPU (the public-size INR zoos take hours there)."""
    return tuple(BENCHMARKS) if resolve_device(device).type != "cpu" else ("cifar10-gs",)


def default_engine(device: str) -> Literal["local", "dask"]:
    """Where the groups of runs train when not told: on a CPU as Dask tasks on single-threaded workers, one per core
    (two groups at once on 2 cores: a run's tiny ops scale poorly over threads); on a GPU in this process."""
    return "dask" if resolve_device(device).type == "cpu" else "local"


def paper_section(benchmark: PaperBenchmark) -> Section:
    """ProbeGen and its two controls at each Q (variants "probegen @ 64", …): each compared with ProbeGen at its Q."""
    variants = tuple(Variant(v.method, {**v.overrides, "n_probes": q}, x=q)
                     for q in N_PROBES for v in PROBING[benchmark.kind].values())
    return Section(f"paper_{benchmark.key}", benchmark.title, benchmark.kind, variants, REFERENCE, axis="Q")


def fmnist_splits_json() -> Path:
    """The public Fashion-MNIST INR zoo's split file, from the project's shared data ($PROBEGEN_SHARED, else
    ../shared beside the checkout)."""
    shared = Path(os.environ.get("PROBEGEN_SHARED", REPO.parent / "shared"))
    path = shared / "data" / "splits" / "fmnist_inr_splits.json"
    if not path.is_file():
        raise FileNotFoundError(f"the public FMNIST split file is not at {path}; set PROBEGEN_SHARED to the shared "
                                f"data folder (see README)")
    return path


def build_public_zoo(benchmark: PaperBenchmark, zoo_dir: Path, device: str) -> float:
    """Build the benchmark's public-size INR zoo into `zoo_dir` unless it is there (a killed build resumes); the
    seconds it took (0 when it was there)."""
    from probegen_nb.core.data import load_dataset  # app may import zoos and core: the builder lives there
    from probegen_nb.zoos.inr import build_inr_zoo, default_chunk_size, plan_one_per_image

    if (zoo_dir / "zoo.json").is_file():
        return 0.0
    t0 = time.perf_counter()
    dataset = load_dataset(benchmark.key)  # type: ignore[arg-type]  # "mnist" or "fmnist"
    plan, _ = plan_one_per_image(dataset, fmnist_splits_json() if benchmark.key == "fmnist" else None)
    build_inr_zoo(plan, dataset, zoo_dir, chunk_size=default_chunk_size(device), device=device)
    return time.perf_counter() - t0


@dataclass
class PaperPart:
    """One benchmark after its sweep: its results (`results.csv` with `method` and `x`), the zoo and protocol it ran
    under, and the seconds this command spent on it."""

    benchmark: PaperBenchmark
    zoo_dir: str
    zoo_sizes: dict[str, int] | None  # split → models (None: the zoo is not on this machine)
    epochs: int
    protocol_epochs: int
    results: pd.DataFrame
    build_seconds: float
    wall_seconds: float
    n_runs: int


def run_paper(parts: Sequence[str], folder: str | Path = "runs/paper", seeds: Sequence[int] = SEEDS,
              device: str = "auto", zoos: Mapping[str, str] | None = None, epochs: int | None = None,
              max_train_models: int | None = None, engine: EngineConfig = EngineConfig(),
              group: bool | None = None, progress: bool = True) -> list[PaperPart]:
    """Build the missing public-size zoos, then run (or resume) each benchmark's sweep into `folder/paper_<key>/`.

    `zoos`: {benchmark: zoo folder} instead of the default; `epochs`, `max_train_models`: a shorter run than the
    protocol (a smoke test; the page says the protocol was not followed); `group`: seeds as one program (None: on an
    accelerator, as `run_sweep`)."""
    unknown = [p for p in parts if p not in BENCHMARKS]
    if unknown or not parts:
        raise ValueError(f"unknown paper benchmarks {unknown}; known: {list(BENCHMARKS)}" if unknown
                         else "no benchmarks to run")
    out = []
    for key in parts:
        benchmark = BENCHMARKS[key]
        t0 = time.perf_counter()
        zoo_dir = (zoos or {}).get(key, benchmark.zoo_dir)
        build = build_public_zoo(benchmark, Path(zoo_dir), device) if key not in (zoos or {}) and \
            benchmark.public_size else 0.0
        zoo = load_zoo(zoo_dir)
        own = protocol_epochs(zoo)
        base = RunConfig(zoo_dir=zoo_dir, epochs=own if epochs is None else epochs,
                         max_train_models=max_train_models, device=device)
        section = paper_section(benchmark)
        sweep = section_sweep(section, base, seeds, folder)
        results = run_sweep(sweep, engine, zoo=zoo if engine.kind == "local" else None, progress=progress,
                            group=group)
        sizes = {s: len(zoo.split(s)) for s in ("train", "val", "test")}
        out.append(PaperPart(benchmark, zoo_dir, sizes, base.epochs, own, with_variant_columns(section, results),
                             build, time.perf_counter() - t0, len(sweep.runs)))
    return out


def paper_table(part: PaperPart) -> pd.DataFrame:
    """One row per variant in the section's order: seeds finished, mean ± std of the metric, and against ProbeGen at
    the same Q the mean paired difference with its 95 % paired t interval (over the seeds both finished), plus the
    published number where one exists. A variant with no finished run has n = 0 and NaNs."""
    section = paper_section(part.benchmark)
    metric = part.benchmark.metric
    done = part.results[part.results["status"] == "done"] if len(part.results) else part.results
    published = {p.ours: p.value for p in PUBLISHED.get(part.benchmark.kind, {}).get(part.benchmark.key, ())
                 if p.ours}
    rows = []
    for v in section.variants:
        runs = done[done["variant"] == v.name] if len(done) else done
        ref = done[done["variant"] == f"{REFERENCE} @ {v.x:g}"] if len(done) else done
        row = {"variant": v.name, "method": v.method, "Q": int(v.x or 0), "n": len(runs),
               "mean": float(runs[metric].mean()) if len(runs) else float("nan"),
               "std": float(runs[metric].std(ddof=1)) if len(runs) > 1 else float("nan"),
               "diff": float("nan"), "diff_low": float("nan"), "diff_high": float("nan"), "n_paired": 0,
               "published": published.get(v.method, float("nan")),
               "train_minutes": float(runs["train_seconds"].mean()) / 60 if len(runs) else float("nan")}
        shared = sorted(set(runs["seed"]) & set(ref["seed"])) if len(runs) and len(ref) else []
        if shared and v.method != REFERENCE:
            pair = pd.concat([runs, ref])
            comparison = compare_variants(pair[pair["seed"].isin(shared)], metric, ref["variant"].iloc[0])
            row.update(diff=float(comparison.loc[v.name, "diff"]), diff_low=float(comparison.loc[v.name, "diff_low"]),
                       diff_high=float(comparison.loc[v.name, "diff_high"]), n_paired=len(shared))
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def _run_records(part: PaperPart, folder: Path) -> tuple[list[str], float]:
    """The devices the finished runs name in their metrics.json (in order of first appearance) and the minutes they
    trained in all (a group's wall time counted once)."""
    done = part.results[part.results["status"] == "done"] if len(part.results) else part.results
    dirs = [folder / f"paper_{part.benchmark.key}" / rid for rid in done["run_id"]]
    records = [read_metrics(d) for d in dirs if is_run_folder(d)]  # (a table built in memory has no folders)
    devices = list(dict.fromkeys(str(m.get("device", "?")) for m in records))
    return devices, sum(seconds_per_run(m) for m in records) / 60


SECTION_MADE = "- made by: "  # a section's first line: the command, commit and date that wrote it


def part_markdown(part: PaperPart, folder: Path, made: str = "") -> str:
    """A benchmark's section of the page: what made it, what ran, how long, and the table."""
    b, table, scale = part.benchmark, paper_table(part), (100.0 if part.benchmark.kind == "inr" else 1.0)
    unit = "test accuracy (%)" if b.kind == "inr" else "test Kendall τ"
    digits = 2 if b.kind == "inr" else 3
    done = int(table["n"].sum())
    devices, minutes = _run_records(part, folder)
    protocol = ("the official script's" if part.epochs == part.protocol_epochs
                else f"**not the paper's protocol** (its official script trains {part.protocol_epochs})")
    sizes = part.zoo_sizes
    lines = [f"## {b.title}", "", *([SECTION_MADE + made] if made else []),
             f"- zoo: `{part.zoo_dir}`, "
             + (f"{sizes['train']:,} / {sizes['val']:,} / {sizes['test']:,} models (train / val / test)" if sizes
                else "not on the machine that wrote this page")
             + (f"; built by this command in {part.build_seconds / 60:.1f} min" if part.build_seconds else ""),
             f"- epochs: {part.epochs}, {protocol}; seeds: {sorted(set(part.results['seed'])) if done else 'none'}",
             f"- runs finished: {done} of {part.n_runs}"
             + ("" if done == part.n_runs else " (rerun `make paper` to continue: finished runs are kept)"),
             f"- device: {'; '.join(devices) or 'none yet'}",
             f"- time: {minutes:.1f} min of training in all (a variant's seeds trained as one program count once)"
             + (f"; this invocation {part.wall_seconds / 60:.1f} min" if part.wall_seconds else ""), ""]
    lines += [f"| method | Q | seeds | {unit}, mean ± std | − ProbeGen at the same Q [95 % paired t interval] | "
              "reads as | published (ProbeGen) | train min (its group) |",
              "| --- | ---: | ---: | --- | --- | --- | --- | ---: |"]
    for _, r in table.iterrows():
        f = f".{digits}f"
        mean = "not finished" if r["n"] == 0 else (
            f"{r['mean'] * scale:{f}} ± " + ("n/a" if pd.isna(r["std"]) else f"{r['std'] * scale:{f}}"))
        if r["method"] == REFERENCE:
            diff, words = "reference", ""
        elif r["n_paired"] == 0:
            diff, words = "no paired seeds yet", ""
        else:
            lo, hi = r["diff_low"] * scale, r["diff_high"] * scale
            diff = f"{r['diff'] * scale:+{f}} " + ("[n/a]" if pd.isna(lo) else f"[{lo:+{f}}, {hi:+{f}}]")
            words = verdict(r["diff_low"], r["diff_high"], int(r["n_paired"]))
        pub = "" if pd.isna(r["published"]) else f"{r['published']:g}"
        group_min = "" if pd.isna(r["train_minutes"]) else f"{r['train_minutes']:.1f}"
        lines.append(f"| {r['method']} | {r['Q']} | {r['n']} | {mean} | {diff} | {words} | {pub} | {group_min} |")
    peers = [p for p in PUBLISHED.get(b.kind, {}).get(b.key, ()) if p.ours != REFERENCE]
    if peers:
        lines += ["", "Published on the public zoo (not rerun here): "
                  + ", ".join(f"{p.method} {p.value:g}" for p in peers) + f" ({peers[0].source})."]
    return "\n".join(lines)


def kept_sections(page: str) -> dict[str, str]:
    """{benchmark key: its section} of a page written earlier, each starting with what made it (a section of a page
    older than that line gets its page's header). Benchmarks often run on different machines (CIFAR10-GS on a CPU,
    the public-size INR zoos on a GPU): a page written where one benchmark's sweep is missing keeps its section."""
    from probegen_nb.app.docs import sections_of

    m = re.search(r"Generated by `(.+?)` at commit (\S+) on (\S+?);", page)
    made = f"`{m[1]}` at commit {m[2]} on {m[3]}" if m else "an earlier version of this page"
    by_title = {b.title: key for key, b in BENCHMARKS.items()}
    kept = {}
    for title, body in sections_of(page).items():
        if title in by_title:
            if not body.startswith(SECTION_MADE):
                body = f"{SECTION_MADE}{made}\n{body}"
            kept[by_title[title]] = f"## {title}\n\n{body}"
    return kept


def page_markdown(parts: Sequence[PaperPart], folder: Path, command: str, revision: str, today: str,
                  shown: Path | None = None, kept: Mapping[str, str] | None = None) -> str:
    """The whole page: how it was made, then one section per benchmark in the table's order: a part's, else the
    section `kept` from the page before (`shown`: the sweep folder as the page names it)."""
    made = f"`{command}` at commit {revision} on {today}"
    head = ["# The paper's Table 1, reproduced", "",
            f"Generated by {made}; do not edit by hand. Sweeps in `{shown or folder}/paper_<benchmark>/`; each "
            "section says what made it (one whose sweep was not on the machine that wrote this page is kept from the "
            "page before). Each difference is the method minus ProbeGen at the same Q, paired by seed, with its "
            "95 % paired t interval (`experiment.stats`): beyond seed noise only when it excludes 0. Published "
            "ProbeGen numbers on the public zoos (MNIST 98.4 %, FMNIST 87.7 %) are as quoted by a third party.", ""]
    by_key = {p.benchmark.key: p for p in parts}
    kept = kept or {}
    sections = [part_markdown(by_key[k], folder, made) if k in by_key else kept[k]
                for k in BENCHMARKS if k in by_key or k in kept]
    return "\n".join(head + [section + "\n" for section in sections])


def write_page(parts: Sequence[PaperPart], folder: str | Path, command: str, out: str | Path = REPO / PAGE,
               revision: str | None = None, today: str | None = None) -> Path:
    """Write the page atomically, keeping from the page already at `out` the sections of benchmarks not in `parts`;
    returns its path."""
    from probegen_nb.app.docs import commit

    shown = Path(folder).resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown  # runs/paper, not this machine's path
    before = Path(out).read_text(encoding="utf-8") if Path(out).is_file() else ""
    text = page_markdown(parts, Path(folder), command, revision or commit(),
                         today or datetime.now(timezone.utc).strftime("%Y-%m-%d"), shown, kept_sections(before))
    write_text_atomic(Path(out), text)
    return Path(out)


def read_part(key: str, folder: str | Path, zoo_dir: str | None = None) -> PaperPart | None:
    """A benchmark's part read back from its sweep folder (`sweep.json`, `results.csv`) without training; None before
    its sweep started. The zoo's sizes are read from the zoo when it is on this machine."""
    benchmark = BENCHMARKS[key]
    sweep_dir = Path(folder) / f"paper_{key}"
    results = read_results(sweep_dir)
    if results is None:
        return None
    configs = [RunConfig.from_dict(r["config"]) for r in read_sweep(sweep_dir)["runs"]]
    zoo_dir = zoo_dir or configs[0].zoo_dir
    try:
        zoo = load_zoo(zoo_dir)
    except FileNotFoundError:
        sizes, own = None, configs[0].epochs
    else:
        sizes, own = {s: len(zoo.split(s)) for s in ("train", "val", "test")}, protocol_epochs(zoo)
    return PaperPart(benchmark, zoo_dir, sizes, configs[0].epochs, own,
                     with_variant_columns(paper_section(benchmark), results), 0.0, 0.0, len(configs))
