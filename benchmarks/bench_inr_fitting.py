"""INR fitting: one model at a time (plain nn.Module + torch.optim.Adam) vs the batched fitter, same recipe.

Rounds of the two alternate in one run, so both see the same machine state; the median round is reported.
Writes runs/bench/inr_fitting.json. Goal: ratio >= 20 on a 2-core CPU.

    python benchmarks/bench_inr_fitting.py            # about 1 min on a 2-core CPU
    python benchmarks/bench_inr_fitting.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.core.arch.siren import SirenSpec, pixel_grid, siren_forward
from probegen_nb.core.device import describe_device, resolve_device, synchronize
from probegen_nb.zoos.data import load_mnist
from probegen_nb.zoos.inr import PUBLIC_RECIPE, fit_inrs, init_siren_params

REPO = Path(__file__).resolve().parents[1]


def reference_fit(images: torch.Tensor, steps: int, device: torch.device) -> None:
    """The plain way: one nn.Module and one optimizer per INR, fitted one after the other."""
    spec, coords = SirenSpec(), pixel_grid(28, 28).to(device)
    for img in images:
        model = spec.build_module().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=PUBLIC_RECIPE.lr)
        target = (img.float() / 255).reshape(-1, 1).to(device)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = ((model(coords) - target) ** 2).mean()
            loss.backward()
            opt.step()


def flops_per_inr_step(device: torch.device, batch: int = 8) -> float:
    """Forward + backward FLOPs of one fitting step, per INR (the Adam update is negligible)."""
    spec = SirenSpec()
    params = {k: v.to(device).requires_grad_() for k, v in init_siren_params(spec, batch, torch.Generator()).items()}
    with FlopCounterMode(display=False) as counter:
        loss = siren_forward(spec, params, pixel_grid(28, 28).to(device)).square().mean(dim=(1, 2)).sum()
        loss.backward()
    return counter.get_total_flops() / batch


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=None, help="INRs fitted at once (default 64 on CPU, 4096 on GPU)")
    p.add_argument("--ref-models", type=int, default=2, help="INRs fitted one at a time per reference round")
    p.add_argument("--steps", type=int, default=100, help="Adam steps per INR in each round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "inr_fitting.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.batch, args.ref_models, args.steps, args.rounds = args.batch or 8, 1, 5, 1
    dev = resolve_device(args.device)
    batch = args.batch or (4096 if dev.type == "cuda" else 64)
    images = torch.as_tensor(load_mnist().train_images[: max(batch, args.ref_models)])
    recipe = replace(PUBLIC_RECIPE, steps=args.steps, target_psnr=float("inf"))  # no early stop: equal work

    fit_inrs(images[:batch], recipe=replace(recipe, steps=2), device=dev)  # warm-up both paths
    reference_fit(images[:1], 2, dev)
    ref_rates, batched_rates = [], []
    for _ in range(args.rounds):
        synchronize(dev)
        t0 = time.perf_counter()
        reference_fit(images[: args.ref_models], args.steps, dev)
        synchronize(dev)
        ref_rates.append(args.ref_models * args.steps / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        fit_inrs(images[:batch], recipe=recipe, device=dev)
        synchronize(dev)
        batched_rates.append(batch * args.steps / (time.perf_counter() - t0))

    ref, batched = statistics.median(ref_rates), statistics.median(batched_rates)
    flops = flops_per_inr_step(dev)
    result = {
        "reference_inr_steps_per_s": ref,
        "batched_inr_steps_per_s": batched,
        "ratio": batched / ref,
        "batch": batch,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "flops_per_inr_step": flops,
        "reference_gflop_per_s": ref * flops / 1e9,
        "batched_gflop_per_s": batched * flops / 1e9,
        "full_mnist_zoo_minutes_estimate": 70_000 * PUBLIC_RECIPE.steps / batched / 60,
        "device": describe_device(dev),
        "torch": torch.__version__,
        "smoke": args.smoke,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':24}{'INR-steps/s':>14}{'GFLOP/s':>10}")
    print(f"{'one at a time':24}{ref:>14,.0f}{result['reference_gflop_per_s']:>10.2f}")
    print(f"{f'batched ({batch} at once)':24}{batched:>14,.0f}{result['batched_gflop_per_s']:>10.2f}")
    print(f"ratio {result['ratio']:.1f}x on {result['device']}; 70k-INR zoo ≈ "
          f"{result['full_mnist_zoo_minutes_estimate']:.0f} min; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
