"""INR fitting: one model at a time (plain nn.Module + torch.optim.Adam) vs the batched fitter, same recipe.

Rounds of the two alternate in one run, so both see the same machine state; the median round is reported. Both
start from the same initial weights (the batched fitter's), so the last round's fitted weights are compared:
`max_abs_diff`. Writes runs/bench/inr_fitting.json. Goals on a 2-core CPU: ratio >= 10 compiled and >= 30 % of the
fp32 matmul peak. `ratio_bound_matmuls`: the ratio if the step were nothing but its batched matmuls, timed alone in
the same run, which no fusion of the rest (sines, cosines, Adam) around the same matmul calls can beat.

    python benchmarks/bench_inr_fitting.py            # about 1 min on a 2-core CPU
    python benchmarks/bench_inr_fitting.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.core.arch.siren import SirenSpec, pixel_grid, siren_forward
from probegen_nb.core.data import load_mnist
from probegen_nb.core.device import describe_device, resolve_device, synchronize
from probegen_nb.core.memory import peak_memory
from probegen_nb.zoos.inr import PUBLIC_RECIPE, fit_inrs, init_siren_params

REPO = Path(__file__).resolve().parents[1]


def reference_fit(images: torch.Tensor, steps: int, device: torch.device,
                  init: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The plain way: one nn.Module and one optimizer per INR, fitted one after the other from `init` [B, …] (the
    batched fitter's initial weights). Returns the fitted weights [B, …] on the CPU."""
    spec, coords, r = SirenSpec(), pixel_grid(28, 28).to(device), PUBLIC_RECIPE
    fitted = []
    for i, img in enumerate(images):
        model = spec.build_module().to(device)
        model.load_state_dict({k: v[i] for k, v in init.items()})
        opt = torch.optim.Adam(model.parameters(), lr=r.lr, betas=(r.beta1, r.beta2), eps=r.eps)
        target = (img.float() / 255).reshape(-1, 1).to(device)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = ((model(coords) - target) ** 2).mean()
            loss.backward()
            opt.step()
        fitted.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return {k: torch.stack([f[k] for f in fitted]) for k in init}


def flops_per_inr_step(device: torch.device, batch: int = 8) -> float:
    """Forward + backward FLOPs of one fitting step, per INR (the Adam update is negligible)."""
    spec = SirenSpec()
    params = {k: v.to(device).requires_grad_() for k, v in init_siren_params(spec, batch, torch.Generator()).items()}
    with FlopCounterMode(display=False) as counter:
        loss = siren_forward(spec, params, pixel_grid(28, 28).to(device)).square().mean(dim=(1, 2)).sum()
        loss.backward()
    return counter.get_total_flops() / batch


def step_matmuls(device: torch.device, batch: int) -> Callable[[], None]:
    """The batched matmuls of one fitting step of `batch` INRs on the 28×28 grid, on random data. Per layer, as
    autograd issues them: the forward h·Wᵀ, the weight gradient dzᵀ·h and (past the first layer, whose input, the
    pixel grid, needs none) the input gradient dz·W."""
    spec, n_points = SirenSpec(), 28 * 28
    shapes = list(zip(spec.widths[:-1], spec.widths[1:]))  # (fan_in, fan_out) per layer
    h = [torch.randn(batch, n_points, i, device=device) for i, _ in shapes]  # each layer's input
    dz = [torch.randn(batch, n_points, o, device=device) for _, o in shapes]  # its output's gradient
    w = [torch.randn(batch, o, i, device=device) for i, o in shapes]

    def matmuls() -> None:
        for layer, (hi, gi, wi) in enumerate(zip(h, dz, w)):
            torch.bmm(hi, wi.transpose(1, 2))  # forward [B, P, out]
            torch.bmm(gi.transpose(1, 2), hi)  # weight gradient [B, out, in]
            if layer:
                torch.bmm(gi, wi)  # input gradient [B, P, in]

    return matmuls


def matmuls_only_inr_steps_per_s(device: torch.device, batch: int, reps: int = 20) -> float:
    """The bound the step's own batched matmuls set: INR-steps/s if a fitting step were nothing but them (median of
    `reps` timings)."""
    matmuls = step_matmuls(device, batch)
    matmuls()  # warm-up
    times = []
    for _ in range(reps):
        synchronize(device)
        t0 = time.perf_counter()
        matmuls()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def matmul_peak_gflop_per_s(device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """This machine's fp32 matmul peak, measured in the same process: the best of `reps` n×n @ n×n products
    (2n³ FLOPs each). The yardstick for how much of the hardware the fitting uses."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b  # warm-up
    best = math.inf
    for _ in range(reps):
        synchronize(device)
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


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
    n_ref = min(args.ref_models, batch)  # the reference fits the batch's first INRs, from the same initial weights
    images = torch.as_tensor(load_mnist().train_images[:batch])
    recipe = replace(PUBLIC_RECIPE, steps=args.steps, target_psnr=float("inf"))  # no early stop: equal work
    init = {k: v[:n_ref] for k, v in init_siren_params(SirenSpec(), batch, torch.Generator().manual_seed(0)).items()}

    with peak_memory(dev) as peak:  # warm-up both paths; the batched one's peak memory
        fit_inrs(images[:batch], recipe=replace(recipe, steps=2), device=dev)
    reference_fit(images[:1], 2, dev, init)
    t0 = time.perf_counter()  # the compiled step (what long builds use): its compile, timed once
    fit_inrs(images[:batch], recipe=replace(recipe, steps=2), device=dev, compile=True)
    compile_seconds = time.perf_counter() - t0
    ref_rates, batched_rates, compiled_rates = [], [], []
    for _ in range(args.rounds):
        synchronize(dev)
        t0 = time.perf_counter()
        ref_fitted = reference_fit(images[:n_ref], args.steps, dev, init)
        synchronize(dev)
        ref_rates.append(n_ref * args.steps / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        fitted = fit_inrs(images[:batch], recipe=recipe, device=dev, generator=torch.Generator().manual_seed(0))
        synchronize(dev)
        batched_rates.append(batch * args.steps / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        compiled = fit_inrs(images[:batch], recipe=recipe, device=dev, generator=torch.Generator().manual_seed(0),
                            compile=True)
        synchronize(dev)
        compiled_rates.append(batch * args.steps / (time.perf_counter() - t0))
    # the agreement check: the same INRs after the same steps, one at a time vs batched (last round's weights)
    max_abs_diff = max(float((ref_fitted[k] - fitted.params[k][:n_ref]).abs().max()) for k in init)

    ref, batched, comp = (statistics.median(r) for r in (ref_rates, batched_rates, compiled_rates))
    flops = flops_per_inr_step(dev)
    peak_gflops = matmul_peak_gflop_per_s(dev, n=256 if args.smoke else 2048)
    matmuls_only = matmuls_only_inr_steps_per_s(dev, batch, reps=3 if args.smoke else 20)
    result = {
        "reference_inr_steps_per_s": ref,
        "batched_inr_steps_per_s": batched,
        "ratio": batched / ref,
        "batch": batch,
        "max_abs_diff": max_abs_diff,
        "agreement_models": n_ref,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "flops_per_inr_step": flops,
        "reference_gflop_per_s": ref * flops / 1e9,
        "batched_gflop_per_s": batched * flops / 1e9,
        "matmul_peak_gflop_per_s": peak_gflops,  # fp32 n×n matmul, best of 5, same process
        "share_of_matmul_peak": batched * flops / 1e9 / peak_gflops,
        # long builds (>= COMPILE_MIN_INR_STEPS) fit through torch.compile:
        "compiled_inr_steps_per_s": comp,
        "ratio_compiled": comp / ref,
        "compiled_gflop_per_s": comp * flops / 1e9,
        "compiled_share_of_matmul_peak": comp * flops / 1e9 / peak_gflops,
        "compiled_max_abs_diff_vs_eager": max(float((compiled.params[k] - fitted.params[k]).abs().max())
                                              for k in fitted.params),
        "compiled_fallback": not compiled.compiled,
        # the step's batched matmuls alone (forward, weight and input gradients): no fusion of the rest beats this
        "matmuls_only_inr_steps_per_s": matmuls_only,
        "ratio_bound_matmuls": matmuls_only / ref,
        "compile_seconds": compile_seconds,
        "full_mnist_zoo_minutes_estimate": 70_000 * PUBLIC_RECIPE.steps / comp / 60,
        "peak_bytes_per_model": peak.per(batch),  # memory of fitting `batch` INRs at once, per INR
        "peak_memory_measured": peak.how,
        "device": describe_device(dev),
        "torch": torch.__version__,
        "smoke": args.smoke,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':24}{'INR-steps/s':>14}{'GFLOP/s':>10}")
    print(f"{'one at a time':24}{ref:>14,.0f}{result['reference_gflop_per_s']:>10.2f}")
    print(f"{f'batched ({batch} at once)':24}{batched:>14,.0f}{result['batched_gflop_per_s']:>10.2f}")
    print(f"{'compiled (long builds)':24}{comp:>14,.0f}{result['compiled_gflop_per_s']:>10.2f}"
          f"   compile {compile_seconds:.1f} s, max |Δ| vs eager {result['compiled_max_abs_diff_vs_eager']:.1e}")
    print(f"fp32 matmul peak {peak_gflops:,.0f} GFLOP/s: the batched fitting uses "
          f"{100 * result['share_of_matmul_peak']:.0f} % of it eager, "
          f"{100 * result['compiled_share_of_matmul_peak']:.0f} % compiled")
    print(f"the step's batched matmuls alone: {matmuls_only:,.0f} INR-steps/s, so no fitting of {batch} at once "
          f"beats {result['ratio_bound_matmuls']:.1f}x the one-at-a-time reference here")
    print(f"fitted weights, one at a time vs batched: max |Δ| {max_abs_diff:.1e} ({n_ref} INRs, {args.steps} steps)")
    print(f"peak memory {peak.per(batch) / 2**10:,.1f} KiB per INR ({peak.how})")
    print(f"ratio {result['ratio']:.1f}x eager, {result['ratio_compiled']:.1f}x compiled on {result['device']}; "
          f"70k-INR zoo ≈ "
          f"{result['full_mnist_zoo_minutes_estimate']:.0f} min; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
