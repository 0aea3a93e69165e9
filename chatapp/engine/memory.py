"""Giving a dropped model's memory back to the operating system.

Dropping the last reference to a model frees its tensors, but glibc's allocator keeps
freed blocks in its arenas (the big ones are mmapped and unmapped at once; the many
small and medium ones are not), so the worker's resident size stays up after a switch
and grows with each one. `release_memory` collects reference cycles (a model, its
modules and hooks hold some) and then asks glibc to return free arena memory with
`malloc_trim(0)`. Elsewhere (macOS, musl) the trim is skipped.

Imports nothing heavy: the worker calls it, and tests call `rss_bytes`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import sys


@functools.cache
def _malloc_trim() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_memory() -> bool:
    """Collect garbage and return free heap memory to the OS; True if it was trimmed."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))  # type: ignore[operator]


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of `pid` (default: this process), via psutil."""
    import psutil

    return int(psutil.Process(pid or os.getpid()).memory_info().rss)
