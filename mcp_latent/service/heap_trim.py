"""Handing the C allocator's free memory back to the operating system (glibc only; elsewhere nothing happens).

Why: glibc keeps memory a program frees (numpy temporaries of refits, request buffers, Python objects of finished
calls) inside its heaps for reuse, and it trims only the top of the main heap on its own; holes in the middle, and
the per-thread arenas of worker threads, stay resident. In a soak (docs/load-and-faults.md) that free-but-held
memory grew with the calls and counted in the server's RSS as if it were in use: one `malloc_trim(0)` gave back
6.6 MB after six minutes. `StoreMaintenance` calls `release_free_memory` on its retention clock (setting
`memory_trim`), in its own thread: the trim walks the heaps under glibc's arena locks for a few milliseconds, never
on the event loop.

`fix_mmap_threshold` (setting `memory_mmap_threshold_kb`) keeps large blocks out of the heaps: glibc serves a block
of 128 KB or more with its own mapping, given back when freed, but each time such a block is freed it raises that
threshold to the block's size (up to 32 MB), so later temporaries of a refit or a batch (numpy arrays of a few MB)
come from the heap and leave it larger and full of holes. In 5-minute soaks the heaps' free bytes grew 6.3 -> 8.8 MB
with the moving threshold and stayed at 1.8 -> 2.5 MB with it fixed at 128 KB (tools/results/soak_attribution).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def _glibc(function: str, *argtypes: type) -> ctypes._CFuncPtr | None:
    """One of glibc's allocator functions (returning int), or None (musl, macOS, Windows: their allocators return
    memory differently and have no such knob)."""
    try:
        found = getattr(ctypes.CDLL(ctypes.util.find_library("c")), function)
    except (OSError, AttributeError, TypeError):
        return None
    found.argtypes = list(argtypes)
    found.restype = ctypes.c_int
    return found


def _malloc_trim() -> ctypes._CFuncPtr | None:
    return _glibc("malloc_trim", ctypes.c_size_t)


M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h); setting it also stops the threshold from moving


def fix_mmap_threshold(size: int) -> bool:
    """Serve every block of `size` bytes or more with its own mapping, for the whole process, from now on; True
    when the allocator took it (glibc only)."""
    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    return mallopt is not None and size > 0 and bool(mallopt(M_MMAP_THRESHOLD, size))


def can_release() -> bool:
    return _malloc_trim() is not None


def release_free_memory() -> bool:
    """Give the free pages of every malloc heap back to the OS; True when some were given back."""
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))
