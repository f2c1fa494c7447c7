"""The journal's bytes on disk: framed records that a crash or a full disk cannot tear unnoticed.

Each record is one line ``J <length> <crc32> <json>\\n``: the length (in bytes) and the CRC-32 of
the JSON text, so a record cut short by a crash, a short write or a full disk is recognised
wherever it lies, not only at the end. Lines that begin with ``{`` are records of the version-1
journal (plain JSON lines, before framing): they are still read, never written.

Appending keeps the file clean: the offset just after the last complete record is known, and an
append that failed (an error, a short write, a failed fsync) is cut back to it before anything
else is written, so a later record never joins a torn one. When even that cut fails the append
fails too, and nothing is written until it succeeds.

All file access goes through ``FileOps`` so tests can inject short writes, ``ENOSPC`` and failed
fsyncs at exactly the byte they choose.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"J "


class FileOps:
    """The file system calls the journal makes; a test subclass injects faults."""

    def open(self, path: Path) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def close(self, fd: int) -> None:
        os.close(fd)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()


@dataclass(frozen=True)
class Torn:
    """A stretch of the journal that is no complete record: where it starts, how long, how it begins."""

    offset: int
    length: int
    head: str


@dataclass
class Scan:
    """What a journal file holds: its complete records in order, what is torn, where the good part ends."""

    records: list[dict[str, Any]] = field(default_factory=list)
    torn: list[Torn] = field(default_factory=list)
    #: Offset just after the last complete record (where the next append goes).
    end: int = 0
    legacy: int = 0


def frame(entry: dict[str, Any]) -> bytes:
    """One record as a framed line."""
    payload = json.dumps(entry, separators=(",", ":")).encode()
    return b"%s%d %08x %s\n" % (MAGIC, len(payload), zlib.crc32(payload), payload)


def scan(data: bytes) -> Scan:
    """Every complete record of ``data`` (framed or version 1), and every torn stretch, wherever it is."""
    result = Scan()
    offset = 0
    while offset < len(data):
        newline = data.find(b"\n", offset)
        if newline < 0:  # no newline: a record whose append never finished
            result.torn.append(_torn(data, offset, len(data)))
            break
        line = data[offset:newline]
        found = _find_record(line)
        if found is None:
            if line.strip():
                result.torn.append(_torn(data, offset, newline + 1))
        else:
            start, entry = found
            if start:  # a torn record with a complete one appended to it (the version-1 journal did that)
                result.torn.append(_torn(data, offset, offset + start))
            result.records.append(entry)
            result.legacy += line[start:start + 1] == b"{"
            result.end = newline + 1
        offset = newline + 1
    return result


def _find_record(line: bytes) -> tuple[int, dict[str, Any]] | None:
    """The complete record on ``line`` and where it starts (0 normally); ``None`` when there is none."""
    entry = _record(line)
    if entry is not None:
        return 0, entry
    # A legacy record may follow a torn legacy one; a framed one may follow anything. (A legacy
    # marker inside a framed line is its payload: the checksum said no, so it is not believed.)
    markers = (MAGIC, b'{"seq":') if line.startswith(b"{") else (MAGIC,)
    for marker in markers:
        start = line.find(marker, 1)
        while start > 0:
            entry = _record(line[start:])
            if entry is not None:
                return start, entry
            start = line.find(marker, start + 1)
    return None


def _torn(data: bytes, start: int, stop: int) -> Torn:
    return Torn(start, stop - start, data[start:min(stop, start + 60)].decode(errors="replace"))


def _record(line: bytes) -> dict[str, Any] | None:
    """The record on ``line``, or ``None`` when it is not a complete one."""
    if line.startswith(MAGIC):
        parts = line.split(b" ", 3)
        if len(parts) != 4:
            return None
        _, length, crc, payload = parts
        try:
            if int(length) != len(payload) or int(crc, 16) != zlib.crc32(payload):
                return None
        except ValueError:
            return None
    elif line.startswith(b"{"):
        payload = line
    else:
        return None
    try:
        entry = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int):
        return None
    return entry


class JournalFile:
    """Appends framed records to one journal file; a failed append leaves no trace in the next one."""

    def __init__(self, path: Path, ops: FileOps | None = None) -> None:
        self.path = path
        self.ops = ops if ops is not None else FileOps()
        self._fd: int | None = None
        self._end = 0
        self._clean = True

    def read(self) -> Scan:
        """Scan the file (an empty scan when there is none). ``OSError`` when it cannot be read."""
        try:
            return scan(self.ops.read(self.path))
        except FileNotFoundError:
            return Scan()

    def append(self, data: bytes, *, sync: bool) -> None:
        """Append ``data`` (whole framed records) in one write; with ``sync``, durably.

        Raises ``OSError`` when any part failed; then the file ends at its last complete record
        again (or the next append cuts it back there before writing).
        """
        fd = self._open()
        try:
            if not self._clean:
                self.ops.truncate(fd, self._end)
                self._clean = True
            self._clean = False
            written = self.ops.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)", str(self.path))
            if sync:
                self.ops.fsync(fd)
        except OSError:
            self._cut_back(fd)
            raise
        self._end += len(data)
        self._clean = True

    def _cut_back(self, fd: int) -> None:
        try:
            self.ops.truncate(fd, self._end)
        except OSError:
            return  # the next append tries again before writing anything
        self._clean = True

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = self.ops.open(self.path)
            try:
                end = scan(self.ops.read(self.path)).end
                if self.ops.size(fd) != end:
                    self.ops.truncate(fd, end)  # a torn tail left by a crash
            except OSError:
                self.ops.close(fd)
                raise
            self._fd, self._end, self._clean = fd, end, True
        return self._fd

    @property
    def opened(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self.ops.close(fd)

    def remove(self) -> None:
        """Close and delete the file (its records are in a snapshot now)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
