"""glibc's allocator, where the process runs on glibc: hand freed pages back, or keep them.

Both are tunings of what a process's resident memory and page faults cost; elsewhere (musl, macOS)
they do nothing.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

# mallopt's parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> Any:
    """glibc, opened once; None elsewhere."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc keeps freed small blocks for reuse)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def keep_freed_memory(largest_reused: int = 64 << 20) -> bool:
    """Keep freed blocks up to ``largest_reused`` bytes for reuse instead of returning them to the
    system; True when the allocator took it.

    For a process that allocates and frees the same large temporaries at every call. glibc serves a
    block past its mmap threshold with a fresh mapping and unmaps it when freed, and raises that
    threshold only as it frees such blocks; a fresh process below it faults the pages in again at
    every call (measured: 2,300 page faults and 50% longer per 32-row drift test in a spawned child
    than in the process that fitted the detectors). Fixed thresholds keep them in the heap.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, largest_reused)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, 4 * largest_reused)
    )
