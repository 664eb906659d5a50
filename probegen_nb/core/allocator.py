"""glibc's heap, tuned for batched CPU work: freed multi-MB buffers stay in the heap instead of being unmapped.

Its own module, not part of `core.threads`: it tunes memory, not scheduling, is switched off by its own variable
(PROBEGEN_NO_MALLOC_TUNING) and is called on its own by zoo builders that leave the threads alone. Importing it loads
nothing: libc is opened by the first call.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

NO_TUNING_ENV = "PROBEGEN_NO_MALLOC_TUNING"  # "1": keep glibc's defaults


def tune_cpu_allocator() -> bool:
    """Keep freed multi-MB buffers in glibc's heap instead of unmapping them after every step.

    Batched CPU work allocates and frees the same large activations each step; with glibc's defaults every one
    of them is a fresh mmap whose pages fault in again (measured here: about 25% of INR fitting time). Linux/glibc
    only, once per process; set PROBEGEN_NO_MALLOC_TUNING=1 to opt out. Returns whether it is in effect.
    Callers skip it for GPU work: GPU memory comes from torch's CUDA caching allocator, which glibc does not touch.
    """
    if _tune_glibc.cache_info().currsize:  # tuned (or tried) before: glibc keeps the settings for the process
        return _tune_glibc()
    if os.environ.get(NO_TUNING_ENV) == "1" or sys.platform != "linux":
        return False
    return _tune_glibc()


@functools.cache
def _tune_glibc() -> bool:
    """Set glibc's thresholds, once per process (the settings last as long as the process does)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_top_pad, 256 << 20)
                and libc.mallopt(m_mmap_threshold, 32 << 20))
