"""Write-then-rename, so a reader never sees half a file: not after a crash, and not while another process
sharing the data dir writes the same file (each writer gets its own temporary name)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; when the block succeeds, it atomically becomes `path`.

    The name ends in `.tmp`, so globs for the real files (`*.npz`, `*.toml`, ...) never pick it up."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
