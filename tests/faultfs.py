"""A file layer for the ledger that fills up on demand (``controller.journalfile.FileOps``)."""

from __future__ import annotations

import errno
import json

from controller.journalfile import FileOps, scan


class FullDisk(FileOps):
    """A disk that fills up on demand: a short write, ENOSPC on write, or ENOSPC on fsync."""

    def __init__(self) -> None:
        self.fault: str | None = None
        self.room = 0  # bytes a short write still gets on disk
        #: Bytes left on the disk (``None``: plenty): a write that does not fit is cut short there.
        self.space: int | None = None
        self._unsynced: dict[int, list[bytes]] = {}
        #: What every successful fsync made durable, in order (journal appends and snapshots).
        self.durable: list[bytes] = []
        self._read = 0
        self._intents: set[str] = set()

    def write(self, fd: int, data: bytes) -> int:
        if self.space is not None and len(data) > self.space:
            written = super().write(fd, data[: self.space])
            self.space = 0
            return written
        if self.space is not None:
            self.space -= len(data)
        if self.fault is None:
            self._unsynced.setdefault(fd, []).append(data)
        if self.fault == "short":
            return super().write(fd, data[: self.room])
        if self.fault == "write":
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.fault == "fsync":
            raise OSError(errno.ENOSPC, "No space left on device")
        super().fsync(fd)
        self.durable.extend(self._unsynced.pop(fd, []))

    def durable_intents(self) -> set[str]:
        """Names of the creates whose intent record was completely written and fsynced."""
        for data in self.durable[self._read:]:
            for record in scan(data).records:
                if record.get("op") == "intent":
                    self._intents.add(record["name"])
            if data.startswith(b"{") and b'"creates"' in data:  # a snapshot
                self._intents.update(entry["name"] for entry in json.loads(data)["creates"])
        self._read = len(self.durable)
        return self._intents
