"""Make glibc give memory back: big transient buffers must not stay in the process.

A big upstream page or project list is read, parsed and rendered in tens of MB of
short-lived buffers. glibc's malloc raises its mmap threshold after the first such
buffer is freed (up to 32 MB), so later ones come from the heap and, once freed, stay
in it; and each of the worker threads may get a heap (arena) of its own. RSS then
grows with every big page and is never released, whatever the caches keep. A fixed
1 MiB threshold (which also fixes the trim threshold) puts every large buffer in its
own mapping, returned at once when freed, and two arenas keep the heaps few: Python
runs one thread at a time, so more arenas buy no parallelism. Measured: four 150,000-link
pages asked twice went to 1,066 MB RSS and kept growing; with this, 735 MB, flat the
second time. Does nothing where glibc is not the C library, or when the administrator
set ``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_`` (their choice wins).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 1 << 20
ARENA_MAX = 2


def tune() -> bool:
    """Apply the settings (before the server starts its threads); False if not possible."""
    if os.environ.get("MALLOC_ARENA_MAX") or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD) == 1 and ok
    return mallopt(M_ARENA_MAX, ARENA_MAX) == 1 and ok


_libc = None


def trim() -> None:
    """Give the free memory inside the heap back to the system (``malloc_trim``), after a
    burst of big transient buffers (an upstream project list read and rendered): freed
    mid-size blocks otherwise stay resident, tens of MB after a 700,000-name list.
    Costs a few milliseconds; does nothing where glibc is not the C library."""
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = lib if hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    if _libc:
        _libc.malloc_trim(0)
