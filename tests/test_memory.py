"""Allocator tuning and fetch bounds: what keeps a worker's resident memory flat."""

from __future__ import annotations

import ctypes.util
import platform
from pathlib import Path

import pytest

from streams.memory import trim_heap, tune_allocator
from streams.topics import fetch_limits

GLIBC = bool(platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and ctypes.util.find_library("c"))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_fetch_limits_bound_the_whole_response_and_each_partition() -> None:
    assert fetch_limits(262_144) == {"fetch_max_bytes": 262_144, "max_partition_fetch_bytes": 262_144}
    assert fetch_limits(8_388_608) == {"fetch_max_bytes": 8_388_608, "max_partition_fetch_bytes": 1_048_576}


@pytest.mark.skipif(not GLIBC, reason="malloc_trim/mallopt are glibc functions; elsewhere these are no-ops")
def test_trim_returns_freed_heap_memory_to_the_os() -> None:
    tune_allocator()
    blocks = [bytearray(2000) for _ in range(40_000)]  # ~80 MB of heap (not pymalloc, not mmap)
    keep = blocks[-1]  # a live block at the top of the heap: plain heap shrinking cannot release
    del blocks
    before = rss_kib()
    assert trim_heap() is True
    assert rss_kib() < before - 40_000, "less than 40 MB of the freed 80 MB went back"
    assert len(keep) == 2000


@pytest.mark.skipif(GLIBC, reason="checks the non-glibc fallback")
def test_without_glibc_both_are_harmless_no_ops() -> None:  # pragma: no cover - not run on Linux CI
    assert tune_allocator() in (True, False)
    assert trim_heap() in (True, False)
