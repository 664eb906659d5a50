"""The paper's ablations as declared grids (notebook 05, `make ablations`): what each section varies, on which zoo,
against which reference, and the sentences that read its table.

Each section is a list of `Variant`s (a method, an optional numeric x, `RunConfig` overrides) run as one sweep over
seeds (`experiment.sweep`); `compare_section` pairs every variant with its reference over the same seeds
(`experiment.stats`). With a numeric axis the reference is the reference method at the same x (Q, train size), so
the table answers "how far from ProbeGen at this Q", not "how far from ProbeGen at the default Q".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.experiment.claims import PairedClaim, check_consistent
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.stats import compare_variants
from probegen_nb.experiment.sweep import Sweep, SweepRun, run_sweep
from probegen_nb.probes.base import Activation
from probegen_nb.probes.coords import GaussianConfig, ProbeGenConfig, UniformConfig, VanillaConfig
from probegen_nb.probes.dead_leaves import DeadLeavesConfig
from probegen_nb.probes.images import ConvProbeGenConfig, ImageGaussianConfig, ImageVanillaConfig, LinearImageGenConfig
from probegen_nb.probes.real_images import RealImagesConfig


@dataclass(frozen=True)
class Variant:
    """One row of an ablation: `method` (the hue of its figure), `x` on the section's numeric axis (or None), and
    the `RunConfig` fields it sets."""

    method: str
    overrides: dict[str, Any]
    x: float | None = None

    @property
    def name(self) -> str:
        return self.method if self.x is None else f"{self.method} @ {self.x:g}"


@dataclass(frozen=True)
class Section:
    """One ablation: its variants on one zoo (`zoo`: "inr" or "cnn"), the method every variant is compared with,
    and the axis its figure draws (`axis`: a numeric field's label, or None for a point plot of variants)."""

    key: str
    title: str
    zoo: str
    variants: tuple[Variant, ...]
    reference: str = "probegen"
    axis: str | None = None
    log_x: bool = False
    base: dict[str, Any] = field(default_factory=dict)  # RunConfig fields every variant of the section shares


INR_METHODS = {"probegen": ProbeGenConfig(), "vanilla": VanillaConfig(), "uniform": UniformConfig()}
ACTIVATIONS: tuple[Activation, ...] = ("relu", "gelu", "tanh")
WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


IMAGE_SOURCES = ("probegen", "probegen+relu", "probegen+gelu", "probegen+tanh", "probegen (unit-variance init)",
                 "fc-linear", "vanilla", "dead-leaves", "gaussian", "mnist-digits")  # section 5's variants


@dataclass(frozen=True)
class AblationAxes:
    """What each section's grid spans; the defaults are the paper's (the notebook's CI run passes `SMOKE_AXES`)."""

    qs: tuple[int, ...] = (8, 16, 32, 64, 128, 256)  # Q on the INR zoo
    image_qs: tuple[int, ...] = (16, 32, 64, 128)  # Q on the CNN zoo
    train_sizes: tuple[int, ...] = (250, 500, 1000, 2000, 4000)  # train INRs
    image_train_sizes: tuple[int, ...] = (175, 350, 700, 1400)  # train CNNs (at most the zoo's)
    weight_decays: tuple[float, ...] = WEIGHT_DECAYS
    depths: tuple[int, ...] = (1, 3, 4, 6)  # besides the default generator's
    widths: tuple[int, ...] = (128, 512)
    latent_dims: tuple[int, ...] = (8, 128)
    activations: tuple[Activation, ...] = ACTIVATIONS
    image_sources: tuple[str, ...] = IMAGE_SOURCES
    init_spreads: tuple[float, ...] = (0.45, 0.58)
    gaussian_stds: tuple[float, ...] = (0.33, 0.45, 0.58)
    image_n_probes: int = 64  # the paper's Q on CNN zoos


# two points of each axis and the cheapest variants: every section in seconds per run (CI, `make demo`)
SMOKE_AXES = AblationAxes(qs=(8, 16), image_qs=(8, 16), train_sizes=(64, 128), image_train_sizes=(64, 128),
                          weight_decays=WEIGHT_DECAYS[::4], depths=(1, 3), widths=(128,), latent_dims=(8,),
                          activations=ACTIVATIONS[:1], image_sources=("probegen", "probegen+relu", "vanilla",
                                                                      "dead-leaves", "mnist-digits"),
                          init_spreads=(0.58,), gaussian_stds=(0.33,), image_n_probes=8)


def sections(axes: AblationAxes = AblationAxes()) -> dict[str, Section]:
    """Every ablation of notebook 05 by key, spanning `axes`."""
    unknown = sorted(set(axes.image_sources) - set(IMAGE_SOURCES))
    if unknown:
        raise ValueError(f"unknown image sources {unknown}; known: {list(IMAGE_SOURCES)}")
    qs, image_qs, sizes, decays = axes.qs, axes.image_qs, axes.train_sizes, axes.weight_decays
    default = ProbeGenConfig()
    gen = [Variant("probegen", {"probes": default})]
    gen += [Variant(f"depth={d}", {"probes": ProbeGenConfig(depth=d)}) for d in axes.depths]
    gen += [Variant(f"width={w}", {"probes": ProbeGenConfig(width=w)}) for w in axes.widths]
    gen += [Variant(f"latent={z}", {"probes": ProbeGenConfig(latent_dim=z)}) for z in axes.latent_dims]
    nonlinear = [Variant("probegen", {"probes": default})]
    nonlinear += [Variant(f"probegen+{a}", {"probes": ProbeGenConfig(activation=a)}) for a in axes.activations]
    reg = [Variant("probegen", {"probes": default})]
    reg += [Variant(name, {"probes": probes, "generator_weight_decay": wd}, wd)
            for name, probes in (("probegen+relu", ProbeGenConfig(activation="relu")), ("vanilla", VanillaConfig()))
            for wd in decays]
    conv = ConvProbeGenConfig()
    images = [Variant("probegen", {"probes": conv}),
              *[Variant(f"probegen+{a}", {"probes": ConvProbeGenConfig(activation=a)}) for a in ACTIVATIONS],
              Variant("probegen (unit-variance init)", {"probes": ConvProbeGenConfig(unit_variance_init=True)}),
              Variant("fc-linear", {"probes": LinearImageGenConfig()}),
              Variant("vanilla", {"probes": ImageVanillaConfig()}),
              Variant("dead-leaves", {"probes": DeadLeavesConfig()}),
              Variant("gaussian", {"probes": ImageGaussianConfig()}),
              Variant("mnist-digits", {"probes": RealImagesConfig(dataset="mnist")})]
    images = [v for v in images if v.name in axes.image_sources or v.method == "probegen"]
    image_sizes = axes.image_train_sizes
    # where the probes start: ProbeGen's default init puts them near the centre (std ≈ 0.34 per coordinate), uniform
    # probes have 0.58; fixed Gaussian probes at the same spreads show what the spread alone is worth
    spread = [Variant("probegen", {"probes": default})]
    spread += [Variant(f"probegen init_spread={s_}", {"probes": ProbeGenConfig(init_spread=s_)})
               for s_ in axes.init_spreads]
    spread += [Variant(f"gaussian std={s_}", {"probes": GaussianConfig(std=s_)}) for s_ in axes.gaussian_stds]
    spread.append(Variant("uniform", {"probes": UniformConfig()}))
    against_dead_leaves = (("probegen", conv), ("dead-leaves", DeadLeavesConfig()))
    found = {
        "n_probes": Section("n_probes", "1. Number of probes Q (MNIST INRs)", "inr", tuple(
            Variant(m, {"probes": p, "n_probes": q}, q) for q in qs for m, p in INR_METHODS.items()),
            axis="Q (probes)", log_x=True),
        "n_probes_images": Section("n_probes_images", "1b. Number of probes Q (CIFAR10-GS CNNs)", "cnn", tuple(
            Variant(m, {"probes": p, "n_probes": q}, q) for q in image_qs
            for m, p in against_dead_leaves), axis="Q (probes)", log_x=True),
        "generator": Section("generator", "2. Generator depth, width and latent size (MNIST INRs)", "inr", tuple(gen)),
        "nonlinear": Section("nonlinear", "3. Linear vs non-linear generator (MNIST INRs)", "inr", tuple(nonlinear)),
        "regularisation": Section("regularisation", "4. Weight decay on the probes instead of linearity (MNIST INRs)",
                                  "inr", tuple(reg), axis="weight decay on the probe parameters", log_x=True),
        "image_sources": Section("image_sources", "5. Probe sources for images (CIFAR10-GS CNNs)", "cnn",
                                 tuple(images), base={"n_probes": axes.image_n_probes}),
        "train_size": Section("train_size", "6. Train-zoo size (MNIST INRs)", "inr", tuple(
            Variant(m, {"probes": p, "max_train_models": n}, n) for n in sizes for m, p in INR_METHODS.items()),
            axis="train models", log_x=True),
        "train_size_images": Section("train_size_images", "6b. Train-zoo size (CIFAR10-GS CNNs; at most the zoo's)",
                                     "cnn", tuple(Variant(m, {"probes": p, "max_train_models": n}, n)
                                                  for n in image_sizes
                                                  for m, p in against_dead_leaves),
                                     axis="train models", log_x=True, base={"n_probes": axes.image_n_probes}),
        "spread": Section("spread", "6c. Where the probes start: initial spread (MNIST INRs)", "inr", tuple(spread)),
    }
    return found


def section_sweep(section: Section, base: RunConfig, seeds: Sequence[int], folder: str | Path) -> Sweep:
    """The section's variants × seeds as one sweep in `folder/<key>`."""
    runs = [SweepRun(v.name, replace(base.override(section.base).override(v.overrides), seed=int(s)))
            for s in seeds for v in section.variants]
    return Sweep(section.key, runs, Path(folder) / section.key)


def with_variant_columns(section: Section, results: pd.DataFrame) -> pd.DataFrame:
    """`results` with the section's `method` and `x` per row (from the variant names)."""
    by_name = {v.name: v for v in section.variants}
    out = results.copy()
    out["method"] = [by_name[n].method for n in out["variant"]]
    out["x"] = [by_name[n].x for n in out["variant"]]
    return out


def compare_section(section: Section, results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ± std per variant and the paired difference against the reference method (at the same x on a numeric
    axis); rows in the section's order, with `method` and `x` columns."""
    results = with_variant_columns(section, results)
    done = results[results["status"] == "done"]
    tables = []
    for x, runs in (done.groupby("x", dropna=False, sort=False) if section.axis else [(None, done)]):
        ref = [v.name for v in section.variants if v.method == section.reference and v.x == x]
        reference = ref[0] if ref else next(v.name for v in section.variants if v.method == section.reference)
        if reference not in set(runs["variant"]):
            runs = pd.concat([runs, done[done["variant"] == reference]])
        # pair over the seeds every variant of the group finished (a failed run drops its seed from the group)
        seed_sets = [set(g["seed"]) for _, g in runs.groupby("variant")]
        runs = runs[runs["seed"].isin(set.intersection(*seed_sets))]
        tables.append(compare_variants(runs, metric, reference))
    table = pd.concat(tables)
    table = table[~table.index.duplicated()]
    order = [v.name for v in section.variants if v.name in table.index]
    table = table.loc[order]
    by_name = {v.name: v for v in section.variants}
    return table.assign(method=[by_name[n].method for n in table.index], x=[by_name[n].x for n in table.index])


def section_references(section: Section, table: pd.DataFrame) -> dict[str, str]:
    """Each row's reference: the reference method at the row's x on a numeric axis (else its first variant)."""
    refs = {}
    for name, row in table.iterrows():
        x = row["x"] if section.axis and pd.notna(row["x"]) else None
        same_x = [v.name for v in section.variants if v.method == section.reference and v.x == x]
        refs[str(name)] = same_x[0] if same_x else next(v.name for v in section.variants
                                                        if v.method == section.reference)
    return refs


def section_claims(section: Section, table: pd.DataFrame, metric: str) -> list[str]:
    """One sentence per variant that is not its own reference, read off its paired interval (`PairedClaim`), and
    checked against the table (`check_consistent`) so a printed claim never outruns its interval."""
    refs = section_references(section, table)
    sentences = [PairedClaim(str(name), refs[str(name)], metric, int(row["n"]), float(row["diff"]),
                             float(row["diff_low"]), float(row["diff_high"])).sentence
                 for name, row in table.iterrows() if refs[str(name)] != name]
    return check_consistent(sentences, table, refs)


def schedule_table(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Section 7: for each variant, the test metric at the best-validation epoch and at the last step, and the
    paired difference last − best over seeds (paired t 95% interval)."""
    done = results[results["status"] == "done"]
    long = pd.concat([done.assign(variant=done["variant"] + " | best-val", value=done[f"test_{metric}"]),
                      done.assign(variant=done["variant"] + " | last step", value=done[f"last_test_{metric}"])])
    rows = []
    for variant in dict.fromkeys(done["variant"]):
        pair = long[long["variant"].isin([f"{variant} | best-val", f"{variant} | last step"])]
        t = compare_variants(pair, "value", f"{variant} | best-val")
        rows.append({"variant": variant, "best_val": t.loc[f"{variant} | best-val", "mean"],
                     "last_step": t.loc[f"{variant} | last step", "mean"], "diff": t.loc[f"{variant} | last step",
                                                                                         "diff"],
                     "diff_low": t.loc[f"{variant} | last step", "diff_low"],
                     "diff_high": t.loc[f"{variant} | last step", "diff_high"], "n": t.loc[f"{variant} | best-val",
                                                                                          "n"]})
    return pd.DataFrame(rows).set_index("variant")


def describe(section: Section, table: pd.DataFrame, metric: str) -> str:
    """Two sentences read off the section's comparison table: the best variant, and which variants differ from the
    reference beyond seed noise (their paired 95% t interval excludes zero) and in which direction."""
    best = table["mean"].idxmax()
    first = (f"The best {metric} is {table.loc[best, 'mean']:.3f} ± {table.loc[best, 'std']:.3f} ({best}, "
             f"{int(table.loc[best, 'n'])} seeds).")
    others = table[table["method"] != section.reference]
    worse = others[others["diff_high"] < 0].index.tolist()
    better = others[others["diff_low"] > 0].index.tolist()
    tied = [n for n in others.index if n not in worse and n not in better]
    parts = []
    if worse:
        parts.append(f"below {section.reference} beyond seed noise: {_names(worse)}")
    if better:
        parts.append(f"above {section.reference} beyond seed noise: {_names(better)}")
    if tied:
        seeds = sorted({int(n) for n in others.loc[tied, "n"]})
        parts.append(f"not distinguishable from {section.reference} at {'/'.join(map(str, seeds))} seeds (the 95% "
                     f"paired t interval includes 0, or one seed gives none): {_names(tied)}")
    return first + " Against " + section.reference + (" at the same x" if section.axis else "") + ", " + \
        "; ".join(parts) + "."


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def estimate_minutes(section: Section, base: RunConfig, seeds: Sequence[int], folder: str | Path,
                     engine: EngineConfig = EngineConfig(), zoo: AnyZoo | None = None) -> tuple[float, int]:
    """The section's cost before it runs: its reference variant at the first seed is trained (a run of the full
    sweep, so it is not redone later) and its seconds × runs / workers estimate the whole grid. Returns (minutes,
    runs). Variants differ in cost (Q, train size), so this is the order of magnitude, not a promise."""
    sweep = section_sweep(section, base, seeds, folder)
    first = next(r for r in sweep.runs if r.variant.split(" @ ")[0] == section.reference)
    local = EngineConfig(threads_per_worker=engine.threads_per_worker)  # the same thread count as the sweep's tasks
    one = run_sweep(Sweep(sweep.name, [first], sweep.folder), local, zoo=zoo, progress=False)
    seconds = float(one["train_seconds"].iloc[0]) if (one["status"] == "done").all() else float("nan")
    workers = engine.n_workers if engine.kind == "dask" else 1
    return seconds * len(sweep.runs) / workers / 60, len(sweep.runs)


@dataclass
class SectionResult:
    """A section after its sweep: every run (with `method`, `x`), the comparison table, and what it shows."""

    section: Section
    results: pd.DataFrame
    table: pd.DataFrame
    metric: str  # the column compared, e.g. "test_accuracy"
    summary: str  # the two sentences `describe` reads off the table
    claims: list[str] = field(default_factory=list)  # one sentence per variant from its paired interval

    @property
    def done(self) -> pd.DataFrame:
        return self.results[self.results["status"] == "done"]


def run_section(section: Section, base: RunConfig, seeds: Sequence[int], folder: str | Path, metric: str,
                engine: EngineConfig = EngineConfig(), zoo: AnyZoo | None = None, progress: bool = True
                ) -> SectionResult:
    """Run (or resume) the section's sweep and compare its variants; `metric` e.g. "test_accuracy"."""
    results = run_sweep(section_sweep(section, base, seeds, folder), engine,
                        zoo=zoo if engine.kind == "local" else None, progress=progress)
    results = with_variant_columns(section, results)
    table = compare_section(section, results, metric)
    return SectionResult(section, results, table, metric, describe(section, table, metric.replace("_", " ")),
                         section_claims(section, table, metric))



@dataclass
class Ablations:
    """Notebook 05's sections against one shared setup (bases per zoo kind, seeds, folder, engine, loaded zoos):
    `run(key)` is a section's one call, and every finished section stays in `done` for the summary cells."""

    grid: dict[str, Section]
    chosen: Sequence[str]  # the keys to run; `run` of any other known key returns None
    bases: dict[str, RunConfig]  # zoo kind → the run config every variant of its sections starts from
    seeds: Sequence[int]
    folder: Path
    metrics: dict[str, str]  # zoo kind → the compared column, e.g. "test_accuracy"
    engine: EngineConfig = EngineConfig()
    zoos: dict[str, AnyZoo] = field(default_factory=dict)  # zoo kind → the loaded zoo (local engine)
    done: dict[str, SectionResult] = field(default_factory=dict)

    def run(self, key: str) -> SectionResult | None:
        """Run (or resume) section `key` if it was chosen; None when it was not."""
        if key not in self.grid:
            raise ValueError(f"unknown ablation section {key!r}; known: {list(self.grid)}")
        if key not in self.chosen:
            return None
        s = self.grid[key]
        self.done[key] = run_section(s, self.bases[s.zoo], self.seeds, self.folder, self.metrics[s.zoo],
                                     self.engine, self.zoos.get(s.zoo))
        return self.done[key]
