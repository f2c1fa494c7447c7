"""Replacing a file so that a reader sees the old content or the new, never half of either.

One helper for every file the controller writes whole: the status file (a report: atomic is
enough) and the ledger's snapshot (memory: also ``durable``, so that a power cut after the
rename still finds the new content). A short write (a full disk) raises ``OSError`` and leaves
the file as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import suppress
from pathlib import Path

from controller.journalfile import FileOps


def replace_file(path: Path, text: str, *, durable: bool = False, ops: FileOps | None = None) -> None:
    """Replace ``path`` with ``text`` atomically: a temporary file beside it (mode 0600), then a rename.

    With ``durable`` the temporary file is fsynced before the rename and the directory after it.
    ``ops`` is the file layer its writes go through (tests inject a disk that fills up).
    """
    ops = ops if ops is not None else FileOps()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            written = ops.write(handle, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)", str(path))
            if durable:
                ops.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
