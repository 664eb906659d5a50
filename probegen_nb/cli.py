"""Command-line entry points: `python -m probegen_nb.cli build-inr-zoo …` (used by `make zoos`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from probegen_nb.data import DATASETS, load_dataset
from probegen_nb.inr import HIGH_QUALITY_RECIPE, PUBLIC_RECIPE, build_inr_zoo, plan_from_splits_json, plan_inr_zoo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m probegen_nb.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-inr-zoo", help="fit a SIREN INR zoo (resumable: rerun the same command to continue)")
    b.add_argument("--dataset", choices=[d for d in DATASETS if not d.startswith("cifar")], default="mnist")
    b.add_argument("--out", type=Path, required=True, help="zoo folder to write")
    b.add_argument("--n-train", type=int, default=4000, help="INRs of official train images in the train split")
    b.add_argument("--n-val", type=int, default=500, help="INRs of other official train images in the val split")
    b.add_argument("--n-test", type=int, default=1000, help="INRs of official test images in the test split")
    b.add_argument("--splits-json", type=Path, help="public zoo split file (e.g. fmnist_inr_splits.json); overrides "
                                                    "--n-*: every listed image, unless --max-per-split")
    b.add_argument("--max-per-split", type=int, help="with --splits-json: subsample each split to at most this")
    b.add_argument("--recipe", choices=["public", "high-quality"], default="public")
    b.add_argument("--chunk-size", type=int, default=64, help="INRs fitted at once (64 suits a CPU, 4096+ a GPU)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default="auto")
    b.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    dataset = load_dataset(args.dataset)
    if args.splits_json:
        cap = {s: args.max_per_split for s in ("train", "val", "test")} if args.max_per_split else None
        plan = plan_from_splits_json(args.splits_json, cap, seed=args.seed)
    else:
        plan = plan_inr_zoo(dataset, args.n_train, args.n_val, args.n_test, seed=args.seed)
    recipe = HIGH_QUALITY_RECIPE if args.recipe == "high-quality" else PUBLIC_RECIPE
    zoo = build_inr_zoo(plan, dataset, args.out, recipe=recipe, chunk_size=args.chunk_size, seed=args.seed,
                        device=args.device, overwrite=args.overwrite)
    psnr = zoo.table["psnr"]
    print(f"wrote {args.out}: {len(zoo)} INRs, PSNR mean {psnr.mean():.2f} dB (min {psnr.min():.2f}, "
          f"max {psnr.max():.2f})")


if __name__ == "__main__":
    main()
