"""glibc's heap figures (mallinfo2) in MB, for the memory probes of the soak (tools/soak_probe*/, tools/teach_memory.py).

`arena`: heap bytes from brk; `hblks`/`hblkhd`: blocks and bytes glibc mmapped on its own; `uordblks`: in use;
`fordblks`: free but kept. Linux with glibc 2.33 or later only (mallinfo2)."""

import ctypes

FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = MallInfo2


def mallinfo_mb(fields: tuple[str, ...] = ("arena", "hblkhd", "uordblks", "fordblks"), digits: int = 1) -> dict:
    """The named mallinfo2 fields of this process, in MB (`hblks` is a count, reported as is)."""
    info = _libc.mallinfo2()
    return {f: getattr(info, f) if f == "hblks" else round(getattr(info, f) / 2**20, digits) for f in fields}
