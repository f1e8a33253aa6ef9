r"""Keep freed CPU memory in the process, so that large temporaries stop page-faulting.

glibc's ``malloc`` serves every request above its mmap threshold (at most 32 MiB on 64-bit
Linux) with a fresh ``mmap`` and returns it with ``munmap`` on free. A training step on a
large graph allocates dozens of row-sized temporaries of that size (a 210 k-node sampled
subgraph × 64 floats is 54 MB), so every one of them is mapped, zero-filled page by page on
first touch (one fault per 4 KiB) and unmapped again, every step. On the 10 M-interaction
graph of ``benchmarks/bench_scale.py`` these page faults were about a third of the step.
PyTorch has no caching allocator on the CPU, so the fix is glibc's own: serve large blocks
from the heap (``M_MMAP_MAX = 0``) and never trim it (``M_TRIM_THRESHOLD``), so that freed
blocks are reused by the next step. The cost is that the process keeps its peak heap
instead of returning it to the system — what a training process does anyway. It is
best-effort: about 1 process in 6 in the test here still page-faulted (not diagnosed; likely
the heap could not grow in place and glibc fell back to mmap).

The setting is process-wide. :class:`~pyg_cf.train.Trainer` applies it when
``TrainConfig.retain_cpu_memory`` says so (by default: on the CPU, once an embedding table
reaches the mmap threshold, where it matters); it is a no-op without glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# mallopt(3) parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4

#: glibc's largest dynamic mmap threshold on 64-bit Linux: blocks above it are always mmapped.
MMAP_THRESHOLD_MAX = 32 * 2**20


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return None
    return libc


_applied = False


def retain_freed_memory(top_pad: int = 64 * 2**20) -> bool:
    """Make glibc serve large allocations from the heap and keep freed memory for reuse.

    Args:
        top_pad: Bytes the heap grows by beyond each request (fewer ``brk`` calls).

    Returns:
        ``True`` if the allocator was tuned (now or by an earlier call), ``False`` where
        glibc's ``mallopt`` is unavailable.
    """
    global _applied
    if _applied:
        return True
    libc = _libc()
    if libc is None:
        return False
    ok = (
        libc.mallopt(_M_MMAP_MAX, 0) == 1
        and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
        and libc.mallopt(_M_TOP_PAD, int(top_pad)) == 1
    )
    _applied = ok
    return ok


def is_retaining() -> bool:
    """Whether :func:`retain_freed_memory` has tuned this process's allocator."""
    return _applied
