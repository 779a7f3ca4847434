"""Memory tuning for large notebooks: the C allocator told to give big freed buffers back (glibc).

A write builds the whole file's bytes and frees the previous ones; without this the server's memory
grows by the file's size a few times over (issue 14). On other C libraries every call does nothing.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

__all__ = ["MMAP_THRESHOLD", "release_free_memory", "tune_memory"]

#: Allocations from this size up get their own memory map, given back to the system when freed.
MMAP_THRESHOLD = 1 << 20

_libc: Any = None


def _glibc() -> Any:
    """The C library when it is glibc (Linux), else False."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(AttributeError, OSError):
                libc = ctypes.CDLL(None)
                if libc.gnu_get_libc_version and libc.malloc_trim and libc.mallopt:
                    _libc = libc
    return _libc


def tune_memory() -> None:
    """Have the C allocator give large freed buffers back to the system at once (glibc; else nothing).

    A write builds the whole file's bytes (15 MB for 10,000 cells) and frees the previous ones. glibc
    raises its map threshold to the size of each freed map, after which such buffers come from the
    heap and stay in the process when freed: the server's memory grew by the file's size a few times
    over (issue 14). A fixed threshold keeps them maps. Call it once, early, in a server process.
    """
    libc = _glibc()
    if libc:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc; else nothing)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)


_M_MMAP_THRESHOLD = -3  # mallopt(3)
