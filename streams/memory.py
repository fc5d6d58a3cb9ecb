"""Returning freed heap memory to the operating system (glibc).

A worker chewing through a backlog allocates and frees tens of MiB per batch (fetch
responses, parsed payloads, encoded outputs). glibc keeps freed chunks inside its heaps
for reuse, so the resident set ratchets up to the worst moment and stays there even though
Python's live data is small (measured in ``bench/soak.py``: ~50 MiB of a worker's RSS was
free heap). Two remedies, both applied by the long-running commands only:

* :func:`tune_allocator` (at start-up): large blocks (fetch responses, record batches) are
  always ``mmap``-ed, so freeing one returns it at once instead of leaving a hole in the
  heap (glibc otherwise raises its mmap threshold after the first free, up to 32 MiB), and
  at most two malloc arenas (RocksDB's threads would each get their own);
* :func:`trim_heap` (on the worker's housekeeping tick, never inside record processing):
  ``malloc_trim(0)`` hands free heap pages back.

Elsewhere (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return libc


_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


def tune_allocator(mmap_threshold: int = 128 * 1024, arenas: int = 2) -> bool:
    """Fixed mmap threshold and arena cap (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_ARENA_MAX``
    in the environment win: they are read by glibc before this runs)."""
    import os

    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and ok
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok = bool(libc.mallopt(_M_ARENA_MAX, arenas)) and ok
    return ok


def trim_heap() -> bool:
    """Release free heap pages to the OS; ``True`` when something was released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
