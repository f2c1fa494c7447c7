"""``MemoryUnwritable``: the controller's memory cannot be written (a full or read-only directory).

It is a condition, not a crash: while it lasts no create is sent (a create needs its durable
write-ahead record first), destroys and renews go on, and each pass tries the write again, so the
controller goes on by itself once space returns. Only its start and its end are logged.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

#: The condition's reason by errno; anything else is ``WriteFailed``.
_REASONS = {
    errno.ENOSPC: "NoSpace",
    errno.EDQUOT: "QuotaExceeded",
    errno.EROFS: "ReadOnly",
    errno.EACCES: "PermissionDenied",
    errno.EPERM: "PermissionDenied",
    errno.EIO: "IOError",
}


@dataclass(frozen=True)
class MemoryUnwritable:
    """Why the memory cannot be written, where, and since when (epoch seconds)."""

    reason: str
    path: str
    message: str
    since: float

    def line(self) -> str:
        return f"MemoryUnwritable ({self.reason}): {self.path}: {self.message}"


def unwritable(error: OSError, path: str, now: float) -> MemoryUnwritable:
    """The condition for ``error`` raised while writing the memory at ``path``."""
    reason = _REASONS.get(error.errno or 0, "WriteFailed")
    where = str(error.filename) if error.filename else path
    return MemoryUnwritable(reason, where, error.strerror or str(error), now)
