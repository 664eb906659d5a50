"""The command line: `python -m probegen_nb.cli demo|seeds|docs|train|build-inr-zoo|build-cnn-zoo …` (behind
`make demo`, `make seeds`, `make docs`, `make zoos` and `benchmarks/gpu_check.sh`). The top of the package: it imports
the app, the experiment and the builders; nothing imports it.

The parser is built without importing torch (about 2 s), so `--help` and argument errors answer at once: the
choices and defaults it shows are written below, and tests/project/test_cli.py checks them against the library's
own. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probegen_nb.core.engine import EngineConfig
    from probegen_nb.core.zoo import AnyZoo
    from probegen_nb.experiment.config import RunConfig

REPO = Path(__file__).resolve().parents[1]  # the checkout (app.runner.REPO)
DATASETS = ("mnist", "fmnist", "cifar10", "cifar10-gs", "cifar10-gs-luma")  # core.data.DATASETS
PROBE_SOURCES = {  # probes.registry: each source's kind → the inputs it fits
    "probegen": "coordinates", "vanilla": "coordinates", "uniform": "coordinates", "gaussian": "coordinates",
    "probegen-conv": "images", "probegen-fc": "images", "vanilla-image": "images", "dead-leaves": "images",
    "gaussian-image": "images", "real-images": "images"}
CNN_RECIPE: dict[str, Any] = {"epochs": 8.0, "batch_size": 512, "checkpoint_epochs": (), "padding": 0, "n_eval": None,
              "steps": None, "checkpoints": ()}  # zoos.cnn.CNNZooRecipe()'s defaults
N_WORKERS = 2  # core.engine.N_WORKERS
QUICKSTART = "00_quickstart"  # experiment.QUICKSTART
PAPER_BENCHMARKS = ("mnist", "fmnist", "cifar10-gs")  # app.paper.BENCHMARKS
QUICKSTART_PROTOCOL = {"n_probes": 128, "epochs": 30}  # ProbingConfig's and RunConfig's defaults


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, with its default and help."""
    parser = argparse.ArgumentParser(prog="python -m probegen_nb.cli")
    parser.add_argument("--debug", action="store_true", help="show the whole traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-inr-zoo", help="fit a SIREN INR zoo (resumable: rerun the same command to continue)")
    b.add_argument("--dataset", choices=[d for d in DATASETS if not d.startswith("cifar")], default="mnist")
    b.add_argument("--out", type=Path, help="zoo folder to write (not needed with --dry-run)")
    b.add_argument("--n-train", type=int, default=4000, help="INRs of official train images in the train split")
    b.add_argument("--n-val", type=int, default=500, help="INRs of other official train images in the val split")
    b.add_argument("--n-test", type=int, default=1000, help="INRs of official test images in the test split")
    b.add_argument("--splits-json", type=Path, help="public zoo split file (e.g. fmnist_inr_splits.json); overrides "
                                                    "--n-*: every listed image, unless --max-per-split")
    b.add_argument("--max-per-split", type=int, nargs="+", metavar="N",
                   help="with --splits-json: subsample each split to at most N INRs, class-balanced (one N for "
                        "every split, or three: train val test)")
    b.add_argument("--all-images", action="store_true",
                   help="one INR per image, as the public zoos (70,000): the --splits-json file if given, else val = "
                        "the last twelfth of the official train images (MNIST: 55,000 / 5,000 / 10,000); "
                        "overrides --n-*")
    b.add_argument("--first-images", type=int, metavar="N",
                   help="with --all-images: only the first N official images (train and test in proportion), "
                        "a preview of the full build")
    b.add_argument("--dry-run", action="store_true",
                   help="print the plan (INRs per split and class) and the build time estimated from a short "
                        "measurement on --device; fit nothing")
    b.add_argument("--recipe", choices=["public", "high-quality"], default="public")
    b.add_argument("--steps", type=int, help="Adam steps per INR instead of the recipe's (public: 1,000)")
    b.add_argument("--lr", type=float, help="Adam learning rate instead of the recipe's (public: 5e-4)")
    b.add_argument("--chunk-size", type=int, help="INRs fitted at once (default: 64 on a CPU, 16,384 on a GPU)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default="auto")
    b.add_argument("--overwrite", action="store_true")
    add_engine_arguments(b, "chunk")
    c = sub.add_parser("build-cnn-zoo", help="train a Small-CNN-Zoo-style CNN zoo (resumable)")
    c.add_argument("--dataset", choices=DATASETS, default="cifar10-gs", help="cifar10-gs, or mnist/fmnist padded")
    c.add_argument("--out", type=Path, required=True, help="zoo folder to write")
    c.add_argument("--n-runs", type=int, default=320, help="CNNs trained (each keeps one row per checkpoint)")
    c.add_argument("--epochs", type=float, default=CNN_RECIPE["epochs"],
                   help="passes over each CNN's own train subset (its step count: epochs · fraction · N / batch)")
    c.add_argument("--batch-size", type=int, default=CNN_RECIPE["batch_size"], help="images per CNN per step")
    c.add_argument("--padding", choices=["valid", "1"], default="valid" if CNN_RECIPE["padding"] == 0 else "1",
                   help="valid: the public Keras zoo's (32→15→7→3); 1: the public PyTorch rebuilds' (32→16→8→4)")
    c.add_argument("--checkpoint-epochs", type=float, nargs="+", default=list(CNN_RECIPE["checkpoint_epochs"]),
                   help="extra rows per CNN at these epochs, besides the final checkpoint")
    c.add_argument("--steps", type=int, default=CNN_RECIPE["steps"],
                   help="a fixed step count per CNN instead of --epochs (smoke runs)")
    c.add_argument("--checkpoints", type=int, nargs="+", default=list(CNN_RECIPE["checkpoints"]),
                   help="with --steps: extra rows at these steps")
    c.add_argument("--n-eval", type=int, default=CNN_RECIPE["n_eval"],
                   help="accuracy labels on a sample of this many images (default: the whole test set and subset)")
    c.add_argument("--chunk-size", type=int, default=32, help="CNNs trained at once")
    c.add_argument("--weights-dtype", choices=["float32", "float24", "float16"], default="float32",
                   help="how the file stores the weights (float24: 3/4 of the size, float16: half; loads as float32)")
    c.add_argument("--wild-park-archs", type=int, default=0,
                   help="N > 0: a CNN Wild Park-style zoo over N random architectures (use --dataset cifar10)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default="auto")
    c.add_argument("--overwrite", action="store_true")
    add_engine_arguments(c, "chunk")
    t = sub.add_parser("train", help="one probing run into a run folder (the paper's protocol unless told otherwise)")
    t.add_argument("--zoo", type=Path, required=True, help="zoo folder")
    t.add_argument("--out", type=Path, required=True, help="run folder to write")
    coordinates = ", ".join(k for k, inputs in sorted(PROBE_SOURCES.items()) if inputs == "coordinates")
    images = ", ".join(k for k, inputs in sorted(PROBE_SOURCES.items()) if inputs == "images")
    t.add_argument("--probes", choices=sorted(PROBE_SOURCES), metavar="SOURCE",
                   help=f"probe source, its default config (default: the paper's for the zoo: probegen on INR zoos, "
                        f"probegen-conv on CNN zoos). INR zoos: {coordinates}; CNN zoos: {images}")
    t.add_argument("--n-probes", type=int, help="Q (default: the paper's for the zoo: 128 on INR zoos, 64 on CNN zoos)")
    t.add_argument("--epochs", type=int,
                   help="default: the zoo's benchmark protocol (150 on CIFAR10-GS, 30 on INR zoos and Wild Park)")
    t.add_argument("--max-train-models", type=int, help="use only the first N train models")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="replay each training step as one CUDA graph (a GPU's launch overhead; default: "
                        "$PROBEGEN_CUDA_GRAPHS, else off; see docs/performance.md)")
    n = sub.add_parser("notebook", help="run one notebook headlessly with parameters (e.g. `make ablations`)")
    n.add_argument("name", help="a notebook of notebooks/, e.g. 05_ablations or 05_ablations.ipynb")
    n.add_argument("--out", type=Path, default=REPO / "runs", help="the executed notebook goes to OUT/<name>.ipynb, "
                                                                  "its figures and metrics to OUT/<name>/")
    n.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter of the notebook's parameters cell, read as the type it declares (seed=7, "
                        "epochs=3, address=None); an unknown name is an error, e.g. --set engine=dask")
    d = sub.add_parser("demo", help="run the notebook sequence headlessly")
    d.add_argument("--out", type=Path, default=REPO / "runs" / "demo")
    sub.add_parser("docs", help="regenerate docs/results/*.md from the sweep folders under runs/ (`make docs`)")
    r = sub.add_parser("seeds", help="the quickstart's methods over several seeds, as one resumable sweep: mean ± "
                                     "std per method, paired differences against probegen, its claims per seed")
    r.add_argument("notebook", nargs="?", default=QUICKSTART, choices=[QUICKSTART],
                   help="whose experiment (the quickstart's is the one written as a sweep so far)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--out", type=Path, help="sweep folder (rerun to resume); default: runs/<notebook>_seeds")
    r.add_argument("--zoo", type=Path, default=REPO / "data" / "zoos" / "mnist-inr-small", help="zoo folder")
    add_engine_arguments(r, "run")
    r.add_argument("--n-probes", type=int, default=QUICKSTART_PROTOCOL["n_probes"])
    r.add_argument("--epochs", type=int, default=QUICKSTART_PROTOCOL["epochs"])
    r.add_argument("--max-train-models", type=int, help="use only the first N train models")
    r.add_argument("--device", default="auto")
    p = sub.add_parser("paper", help="the paper's Table 1: ProbeGen, vanilla and its other control at Q = 64 and 128 "
                                     "over 3 seeds per benchmark, one resumable sweep each, into "
                                     "docs/results/paper-table.md (`make paper`)")
    p.add_argument("--parts", nargs="+", choices=PAPER_BENCHMARKS,
                   help="benchmarks to run (default: all on a GPU, which builds the public-size INR zoos first; "
                        "cifar10-gs alone on a CPU, where a public-size INR zoo takes 80-120 min to build)")
    p.add_argument("--zoo", action="append", default=[], metavar="BENCHMARK=DIR",
                   help="run a benchmark on this zoo instead of its default (e.g. mnist=data/zoos/mnist-inr-small)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "paper", help="sweep folders go to OUT/paper_<name>/")
    p.add_argument("--page", type=Path, default=REPO / "docs" / "results" / "paper-table.md")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="default: the protocol's (150 on CIFAR10-GS, 30 on the INR zoos); "
                                              "any other number is marked on the page as not the protocol")
    p.add_argument("--max-train-models", type=int, help="use only the first N train models (smoke runs)")
    p.add_argument("--no-group", action="store_true",
                   help="train each run alone (default: a variant's seeds as one program, equal results)")
    p.add_argument("--table-only", action="store_true", help="rewrite the page from the finished runs; train nothing")
    p.add_argument("--device", default="auto")
    add_engine_arguments(p, "group of runs")
    p.set_defaults(engine=None)  # paper: dask workers on a CPU (two groups at once on 2 cores), local on a GPU
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from probegen_nb.core.data import DataUnavailableError

    # what a user can fix (a bad setting, a missing or malformed file or folder): one line, not a traceback
    user_errors = (ValueError, FileNotFoundError, FileExistsError, DataUnavailableError)
    try:
        run_command(args)
    except user_errors as e:
        if args.debug:
            raise
        raise SystemExit(f"error: {e}\n(python -m probegen_nb.cli --debug {args.command} ... shows the traceback)"
                         ) from None


def run_command(args: argparse.Namespace) -> None:
    """The parsed command, run."""
    if args.command == "demo":
        from probegen_nb.app.runner import run_demo

        out_root = args.out.resolve()
        run_demo(out_root)
        print(f"\nExecuted notebooks and their figures/metrics.json are in {out_root}/.\n"
              f"Open them with `make lab` (JupyterLab on the checkout) in the file browser's runs/demo/,\n"
              f"or look at the PNG/HTML figures in each {out_root}/<name>/ folder.\n"
              f"All figures and metrics on one page (offline): {out_root / 'index.html'}")
        return
    if args.command == "docs":
        from probegen_nb.app.docs import write_pages

        for path in write_pages():
            print(f"wrote {path}")
        return
    if args.command == "notebook":
        from probegen_nb.app.runner import notebook_stem, parse_parameters, run_notebook

        stem = notebook_stem(args.name)
        print(f"wrote {run_notebook(stem, args.out.resolve(), parse_parameters(stem, args.set))}")
        return
    if args.command == "train":
        from probegen_nb.core.zoo_io import load_zoo
        from probegen_nb.experiment.train import train

        zoo = load_zoo(args.zoo)
        m = train(train_config(args, zoo), zoo, out_dir=args.out, cuda_graphs=args.cuda_graphs).metrics
        name = m["metric"]
        print(f"wrote {args.out}: test {name} {m[f'test_{name}']:.4f} at the best-validation epoch {m['best_epoch']} "
              f"(last step {m[f'last_test_{name}']:.4f}), {m['train_seconds']:.1f} s on {m['device']}"
              f"{' (steps replayed as a CUDA graph)' if m['cuda_graphs'] else ''}")
        return
    if args.command == "seeds":
        seeds_command(args)
        return
    if args.command == "paper":
        paper_command(args)
        return
    if args.command == "build-cnn-zoo":
        from probegen_nb.core.data import images_to_inputs, load_dataset
        from probegen_nb.zoos.cnn import CNNZooRecipe, build_cnn_zoo, sample_wild_park_specs

        recipe = CNNZooRecipe(epochs=args.epochs, batch_size=args.batch_size,
                              checkpoint_epochs=tuple(args.checkpoint_epochs),
                              padding=0 if args.padding == "valid" else 1, n_eval=args.n_eval, steps=args.steps,
                              checkpoints=tuple(args.checkpoints))
        archs = None
        if args.wild_park_archs:
            in_channels = images_to_inputs(load_dataset(args.dataset).train_images[:1]).shape[1]
            archs = sample_wild_park_specs(args.wild_park_archs, args.seed, in_channels)
        # by name: dask workers load the data set themselves
        cnn_zoo = build_cnn_zoo(args.dataset, args.out, args.n_runs, recipe, chunk_size=args.chunk_size,
                                seed=args.seed, device=args.device, overwrite=args.overwrite, architectures=archs,
                                engine=build_engine(args), weights_dtype=args.weights_dtype)
        acc = cnn_zoo.table["test_acc"]
        print(f"wrote {args.out}: {len(cnn_zoo)} checkpoints of {args.n_runs} CNNs, test accuracy median "
              f"{acc.median():.3f}, IQR {acc.quantile(0.75) - acc.quantile(0.25):.3f}, max {acc.max():.3f}")
        return

    build_inr_zoo_command(args)


def build_inr_zoo_command(args: argparse.Namespace) -> None:
    """`build-inr-zoo`: plan (class-balanced counts, a public split file, or one INR per image), then fit, or with
    --dry-run print the plan and the estimated time."""
    if args.first_images is not None and not args.all_images:
        raise SystemExit("--first-images N needs --all-images (it previews the one-INR-per-image build)")
    from dataclasses import replace

    from probegen_nb.core.data import load_dataset
    from probegen_nb.core.device import describe_device, resolve_device
    from probegen_nb.zoos.inr import (
        HIGH_QUALITY_RECIPE,
        PUBLIC_RECIPE,
        build_inr_zoo,
        default_chunk_size,
        describe_plan,
        estimate_build_seconds,
        plan_from_splits_json,
        plan_inr_zoo,
        plan_one_per_image,
    )

    recipe = HIGH_QUALITY_RECIPE if args.recipe == "high-quality" else PUBLIC_RECIPE
    recipe = replace(recipe, **{k: v for k, v in (("steps", args.steps), ("lr", args.lr)) if v is not None})
    dataset = load_dataset(args.dataset)
    if args.all_images:
        if args.max_per_split:
            raise SystemExit("--all-images builds every image of the split file; drop --max-per-split")
        plan, rule = plan_one_per_image(dataset, args.splits_json, args.first_images)
    elif args.splits_json:
        caps = args.max_per_split or []
        if len(caps) not in (0, 1, 3):
            raise SystemExit(f"--max-per-split takes one count or three (train val test), got {caps}")
        cap = dict(zip(("train", "val", "test"), caps * 3 if len(caps) == 1 else caps)) if caps else None
        plan = plan_from_splits_json(args.splits_json, cap, seed=args.seed)
        rule = f"the public split file {args.splits_json.name}" + (f", at most {caps} a split" if caps else "")
    else:
        plan = plan_inr_zoo(dataset, args.n_train, args.n_val, args.n_test, seed=args.seed)
        rule = "class-balanced, distinct images (--n-train/--n-val/--n-test)"
    chunk_size = args.chunk_size or default_chunk_size(args.device)
    if args.dry_run:
        est = estimate_build_seconds(len(plan), args.device, chunk_size, recipe)
        print(f"{dataset.name} INR zoo, {len(plan):,} INRs ({rule}):")
        print(describe_plan(plan, dataset.classes).to_string())
        bound = " at most (the build compiles its step: about 2x faster)" if est["upper_bound"] else ""
        print(f"estimated fitting time on {describe_device(resolve_device(args.device))}: "
              f"{format_seconds(est['seconds'])}{bound} ({len(plan):,} INRs x {recipe.steps} steps at "
              f"{est['inr_steps_per_s']:,.0f} INR-steps/s, measured at {est['measured_batch']:,} at once); "
              f"chunks of {chunk_size:,}; nothing was fitted (drop --dry-run to build)")
        return
    if args.out is None:
        raise SystemExit("build-inr-zoo: --out DIR is required (the zoo folder to write), unless --dry-run")
    zoo = build_inr_zoo(plan, dataset, args.out, recipe=recipe, chunk_size=chunk_size, seed=args.seed,
                        device=args.device, overwrite=args.overwrite, engine=build_engine(args))
    psnr = zoo.table["psnr"]
    print(f"wrote {args.out}: {len(zoo)} INRs, PSNR mean {psnr.mean():.2f} dB (min {psnr.min():.2f}, "
          f"max {psnr.max():.2f})")
    if (zoo.table["split"] == "train").sum() >= 2:  # a std across models needs two
        from probegen_nb.zoos.weightstats import PUBLIC_INR_WEIGHT_STD, compare_weight_std

        ratios = compare_weight_std(zoo, PUBLIC_INR_WEIGHT_STD[args.dataset])["ratio"]
        print(f"per-layer weight std / the public {args.dataset.upper()} INR zoo's: "
              + " / ".join(f"{r:.2f}" for r in ratios) + " (docs/zoos.md: what matches it)")


def train_config(args: argparse.Namespace, zoo: AnyZoo) -> RunConfig:
    """`train`'s run config: the paper's protocol for the zoo's benchmark (its epochs: `protocol_epochs`) unless the
    options say otherwise."""
    from probegen_nb.experiment.config import ProbingConfig, RunConfig
    from probegen_nb.experiment.protocol import protocol_epochs, protocol_probes
    from probegen_nb.probes.registry import PROBE_CONFIGS, check_fits

    epochs = args.epochs if args.epochs is not None else protocol_epochs(zoo)
    kind, n_probes = protocol_probes(zoo)
    probes = PROBE_CONFIGS[args.probes or kind]()
    check_fits(probes, zoo.specs[0].input_shape)
    n_probes = n_probes if args.n_probes is None else args.n_probes
    return RunConfig(zoo_dir=str(args.zoo), method=ProbingConfig(probes, n_probes), epochs=epochs,
                     max_train_models=args.max_train_models, seed=args.seed, device=args.device)


def format_seconds(seconds: float) -> str:
    """1 h 02 min, 3 min 05 s, 42 s: a duration as a person reads it."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{seconds:.0f} s"


def add_engine_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """--engine, --workers, --address: where each `unit` (a chunk of a build, a run of a sweep) runs."""
    parser.add_argument("--engine", choices=["local", "dask"], default="local",
                        help=f"local: one {unit} after another here; dask: each {unit} a single-threaded task on "
                             f"Dask distributed")
    parser.add_argument("--workers", type=int, default=N_WORKERS,
                        help="dask: LocalCluster worker processes")
    parser.add_argument("--address", help="dask: an existing scheduler (e.g. tcp://host:8786) instead of a "
                                          "LocalCluster")


def build_engine(args: argparse.Namespace) -> EngineConfig | None:
    """A zoo build's engine: local is the build here at this process's threads (for INRs as many as the machine's
    load allows), equal to a dask build bit for bit at the same thread count; dask runs single-threaded chunks."""
    if args.engine == "local":
        return None
    from probegen_nb.core.engine import EngineConfig

    return EngineConfig(kind="dask", address=args.address, n_workers=args.workers)


def seeds_command(args: argparse.Namespace) -> None:
    """The quickstart over seeds through `experiment.quickstart.run_seeds`; exits non-zero when a claim fails."""
    from probegen_nb.core.engine import EngineConfig
    from probegen_nb.core.zoo_io import load_zoo
    from probegen_nb.experiment import quickstart
    from probegen_nb.experiment.stats import format_comparison

    out = args.out or REPO / "runs" / f"{args.notebook}_seeds"
    base = quickstart.quickstart_config(str(args.zoo), n_probes=args.n_probes, epochs=args.epochs,
                                        max_train_models=args.max_train_models, device=args.device)
    engine = EngineConfig(kind=args.engine, address=args.address, n_workers=args.workers)
    zoo = load_zoo(args.zoo) if engine.kind == "local" else None  # dask workers load it themselves
    report = quickstart.run_seeds(base, args.seeds, out, engine, zoo=zoo)
    for row in report.results[report.results["status"] != "done"].itertuples():
        print(f"FAILED run {row.run_id} ({row.variant}, seed {row.seed}): {row.error}")
    for metric, table in report.comparisons.items():
        print(f"\n{metric} over seeds {args.seeds} (diff: paired, against {quickstart.REFERENCE}):")
        print(format_comparison(table).to_string())
    print()
    for line in report.claims:
        print(line)
    print(f"wrote {out / 'summary.json'} and {out / 'results.csv'}")
    if report.failures:
        raise SystemExit(report.failures)


def paper_command(args: argparse.Namespace) -> None:
    """`paper`: run (or resume) the chosen benchmarks' sweeps, then write the page from every benchmark whose sweep
    folder exists (so running one benchmark later keeps the others' sections)."""
    import time

    from probegen_nb.app import paper
    from probegen_nb.core.engine import EngineConfig

    zoos = dict(parse_assignment(z, "--zoo") for z in args.zoo)
    unknown = sorted(set(zoos) - set(PAPER_BENCHMARKS))
    if unknown:
        raise ValueError(f"--zoo names unknown benchmarks {unknown}; known: {list(PAPER_BENCHMARKS)}")
    parts = tuple(args.parts) if args.parts else paper.default_parts(args.device)
    engine = EngineConfig(kind=args.engine or paper.default_engine(args.device), address=args.address,
                          n_workers=args.workers)
    t0 = time.perf_counter()
    ran = [] if args.table_only else paper.run_paper(parts, args.out, args.seeds, args.device, zoos, args.epochs,
                                                     args.max_train_models, engine, group=not args.no_group)
    by_key = {p.benchmark.key: p for p in ran}
    for key in PAPER_BENCHMARKS:
        if key not in by_key:
            found = paper.read_part(key, args.out, zoos.get(key))
            if found is not None:
                by_key[key] = found
    if not by_key:
        raise ValueError(f"no paper sweep under {args.out} yet: run without --table-only")
    command = f"python -m probegen_nb.cli paper --parts {' '.join(parts)}" if args.parts else "make paper"
    page = paper.write_page([by_key[k] for k in PAPER_BENCHMARKS if k in by_key], args.out, command, args.page)
    failed = [p for p in ran if (p.results["status"] == "failed").any()]
    print(page.read_text())
    print(f"wrote {page} ({time.perf_counter() - t0:.0f} s)")
    if failed:
        raise SystemExit(f"failed runs in {[p.benchmark.key for p in failed]}: see results.csv in {args.out}")


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    """NAME=VALUE of an option given several times (e.g. --zoo mnist=DIR): one clear error when malformed."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise ValueError(f"{option} takes NAME=VALUE, got {text!r}")
    return name, value


if __name__ == "__main__":
    main()
