"""Peak memory of a block of work on one device: where the memory figures of docs/performance.md come from.

- CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` (the caching allocator's own count).
- CPU (Linux): the growth of the process's peak resident set (VmHWM in /proc/self/status) over the block, after
  returning freed heap memory to the OS (malloc_trim) and resetting that peak to the current RSS through
  /proc/self/clear_refs; where the reset is refused, the growth of
  `ru_maxrss`, which only sees a block that sets a new peak for the process (then say so: `exact` is False).
Written by hand because neither psutil nor tracemalloc reports the peak of torch's CPU allocations over a block
without sampling.
"""

from __future__ import annotations

import ctypes
import re
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from probegen_nb.core.device import is_cuda


@dataclass
class PeakMemory:
    """Filled in when the `peak_memory` block ends."""

    bytes: int = 0  # peak bytes above what was in use when the block started
    exact: bool = True  # False: a CPU fallback that only sees new process-wide peaks
    how: str = ""  # what was measured, for the benchmark's JSON

    def per(self, n: int) -> float:
        """Bytes per item (e.g. per model of a batch)."""
        return self.bytes / max(n, 1)


def _status_kib(*fields: str) -> tuple[int, ...]:
    """The named fields of /proc/self/status in KiB, read from one snapshot."""
    status = Path("/proc/self/status").read_text()
    values = []
    for name in fields:
        match = re.search(rf"{name}:\s+(\d+) kB", status)
        if match is None:
            raise OSError(f"/proc/self/status has no {name}")
        values.append(int(match.group(1)))
    return tuple(values)


def _reset_cpu_peak() -> bool:
    """Hand freed heap memory back to the OS first (glibc keeps it, more so under `tune_cpu_allocator`), so that the
    resident set is what is live and a block that reuses freed memory still shows its peak; then reset the peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the reset below still works, retained memory may hide growth
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS (Linux ≥ 4.0)
        peak, rss = _status_kib("VmHWM", "VmRSS")
        return peak <= rss + 1024  # reset (other threads may have freed a little since): within 1 MiB
    except OSError:
        return False


@contextmanager
def peak_memory(device: torch.device) -> Iterator[PeakMemory]:
    """`with peak_memory(dev) as peak: …` — afterwards `peak.bytes` is the block's peak above its start."""
    result = PeakMemory()
    if is_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result.bytes, result.how = torch.cuda.max_memory_allocated(device) - start, "cuda max_memory_allocated"
        return
    if sys.platform == "linux" and _reset_cpu_peak():
        (start,) = _status_kib("VmRSS")
        yield result
        (peak,) = _status_kib("VmHWM")
        result.bytes, result.how = max(peak - start, 0) * 1024, "peak RSS growth (VmHWM)"
        return
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    yield result
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start
    result.bytes, result.exact, result.how = grown * 1024, False, "ru_maxrss growth (new peaks only)"
