"""Device resolution and seeding: the one place where accelerator names are chosen.

CPU tuning lives beside it: intra-op threads in `core.threads`, glibc's heap in `core.allocator`."""

from __future__ import annotations

import random

import numpy as np
import torch

from probegen_nb.core.threads import fixed_threads


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` picks cuda > mps > cpu; anything else is passed to `torch.device` unchanged."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for code that wants its own stream."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def describe_device(device: torch.device, threads: int | None = None) -> str:
    """Human-readable name of a device, for metrics and READMEs (e.g. 'cpu (2 threads)'). On the CPU, the threads a
    job uses: `threads` if given (what a finished run used), else a fixed setting (`set_threads`,
    $PROBEGEN_THREADS), else torch's count (the most "auto" uses)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = threads if threads is not None else fixed_threads() or torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n != 1 else ''})"
    return device.type


def is_cuda(device: torch.device) -> bool:
    """Whether work on `device` runs on an NVIDIA GPU (its memory counters and synchronisation are CUDA's)."""
    return device.type == "cuda"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
