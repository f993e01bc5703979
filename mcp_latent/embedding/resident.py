"""Making the model's memory-mapped weights resident at load, so the server's memory starts at its bound.

Why: ONNX Runtime maps the exported weights file (`model.onnx.data`) and copies most of it into its own packed
buffers, but the word-embedding table (30,522 tokens x 384 floats, 45 MB) is read straight from the mapping, one row
per token. Without this, each token id seen for the first time pages its rows in, so the server's RSS grows for
hours as new words arrive (13.8 MB in the 30-minute soak of docs/load-and-faults.md) until the whole table is
resident. Reading it once at load reaches that bound at the start. The pages are the file's clean page cache: shared
with every process that maps the same model, and the kernel may still drop them under memory pressure (they are read
back from the file when used again).

Linux only (`/proc/self/maps`); elsewhere nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

MADV_POPULATE_READ = 22  # Linux 5.14+: fault the pages of a range in, read-only, without copying anything


def mapped_ranges(directory: Path) -> list[tuple[int, int, str]]:
    """(start, end, path) of every file mapping of this process whose file lies in `directory`."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    prefix = str(Path(directory).resolve()) + os.sep
    out = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith(prefix) and "r" in parts[1]:
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.append((start, end, parts[5]))
    return out


def make_resident(directory: Path) -> int:
    """Fault in every page of this process's mappings of files in `directory`; the bytes covered (0: none found)."""
    ranges = mapped_ranges(directory)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    page = os.sysconf("SC_PAGE_SIZE")
    for start, end, path in ranges:
        if madvise(start, end - start, MADV_POPULATE_READ) == 0:
            continue
        if ctypes.get_errno() != errno.EINVAL:  # EINVAL: a kernel before 5.14; anything else: leave the range be
            log.info("could not make %s resident: %s", path, os.strerror(ctypes.get_errno()))
            continue
        for address in range(start, end, page):  # the slow way: read one byte of each page
            ctypes.c_char.from_address(address).value  # noqa: B018 (the read is the point)
    return sum(end - start for start, end, _ in ranges)
