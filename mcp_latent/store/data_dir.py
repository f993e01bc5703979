"""Whether a data dir can hold a store: checked before a server starts, and worded the same when opening fails.

A server on an unusable data dir (unwritable, or a file where the folder should be) used to start and answer every
call with "could not open the latent store ...; retry the call", which no retry fixes. `serve` now refuses to start
with the path and the fix (`check_data_dir`), and the store's own open error says the same (`unusable`)."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from mcp_latent.errors import StoreError


def unusable(path: Path, exc: BaseException) -> StoreError:
    """The error for a data dir that cannot be used: the path, what the system said, and what to do."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make it writable for this user (e.g. `chmod u+rwx {path}`) or pick another with --data-dir"
    elif isinstance(exc, (NotADirectoryError, FileExistsError)) or getattr(exc, "errno", None) == errno.ENOTDIR:
        fix = "a file is in the way of that folder: move the file, or pick another folder with --data-dir"
    else:
        fix = "pick a folder this user can write with --data-dir (MCP_LATENT_DATA_DIR)"
    return StoreError(f"the data dir {path} cannot be used ({reason}); {fix} (MCP_LATENT_DATA_DIR).")


def check_data_dir(path: Path) -> None:
    """Create the data dir if needed and prove a file can be written in it; StoreError naming path and fix if not."""
    path = Path(path)
    probe = path / f".write-check-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        probe.write_bytes(b"")
    except OSError as exc:
        raise unusable(path, exc) from exc
    finally:
        if path.is_dir():
            probe.unlink(missing_ok=True)
