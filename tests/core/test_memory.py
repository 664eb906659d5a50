"""Peak memory of a block: sees a large temporary that is freed before the block ends, and not a small one."""

import torch

from probegen_nb.core.memory import peak_memory


def test_cpu_peak_sees_a_freed_temporary() -> None:
    with peak_memory(torch.device("cpu")) as peak:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        x.add_(1)
        del x
    assert peak.exact and "VmHWM" in peak.how
    assert 60 * 2**20 <= peak.bytes <= 200 * 2**20, peak.bytes
    assert peak.per(64) == peak.bytes / 64


def test_cpu_peak_of_a_small_block_is_small() -> None:
    """Negative control: right after a large block, a small one does not inherit its peak (the peak is reset)."""
    with peak_memory(torch.device("cpu")):
        big = torch.ones(64 * 2**20 // 4)
        del big
    with peak_memory(torch.device("cpu")) as peak:
        small = torch.ones(1000)
        del small
    assert peak.bytes < 16 * 2**20, peak.bytes

