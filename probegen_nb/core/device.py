"""Device resolution and seeding: the one place where accelerator names are written."""

from __future__ import annotations

import ctypes
import os
import random
import sys

import numpy as np
import torch


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


def describe_device(device: torch.device) -> str:
    """Human-readable name of a device, for metrics and READMEs (e.g. 'cpu (2 threads)')."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed multi-MB buffers in glibc's heap instead of unmapping them after every step.

    Batched CPU work allocates and frees the same large activations each step; with glibc's defaults every one
    of them is a fresh mmap whose pages fault in again (measured here: about 25% of INR fitting time). Linux/glibc
    only, once per process; set PROBEGEN_NO_MALLOC_TUNING=1 to opt out. Returns whether it is in effect.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("PROBEGEN_NO_MALLOC_TUNING") == "1" or sys.platform != "linux":
        return _ALLOCATOR_TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    _ALLOCATOR_TUNED = bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_top_pad, 256 << 20)
                            and libc.mallopt(m_mmap_threshold, 32 << 20))
    return _ALLOCATOR_TUNED
