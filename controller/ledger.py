"""The ledger: the controller's memory on disk, written ahead of every create.

Two files next to each other:

- the **snapshot** (``…memory.json``): the whole ``Memory`` as a typed, versioned JSON document
  (``MemoryDocument``, ``version: 1``), replaced atomically (temporary file, fsync, rename, fsync of
  the directory) at the end of a pass that changed it;
- the **journal** (``…memory.journal``): one framed record per event since that snapshot
  (``controller.journalfile``: length and checksum on every line). Before any
  create is sent, the names of the creates about to go out are appended and fsynced in one write
  (``write_ahead``), so a process killed at any instant afterwards restarts knowing that those
  creates may have happened: it looks for them by name and never makes a second session for their
  slots. What happens next (an id came back, the service refused, the create was never sent) is
  kept in memory and appended with the next write: losing such a line only errs on the safe side
  (the create stays expected by name until a list shows it or the uncertain window ends).

Times are the writer's process time (``controller.clock``); the snapshot also holds how far the
wall clock was ahead of it (``clock_offset``, after a step of the wall clock), so that the next
process can move them onto its own clock (``controller.rebase``).

Loading reads the snapshot, then replays the journal records written after it. A torn record
(a crash in the middle of an append, a short write on a full disk), wherever it lies, is skipped:
its fsync never completed, so its creates were never sent; every complete record is kept, and the
journal is first copied aside (``…journal.torn-<seq>``) so nothing is lost to the repair. An
unreadable snapshot (corrupt, an unknown ``version``) is a ``LedgerError``: the controller stops
rather than act without its memory, and ``canfar-controller memory check`` says what it holds.
The version-1 journal (plain JSON lines) is still read; records are always written framed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controller.atomicfile import replace_file
from controller.errors import LedgerError
from controller.journalfile import FileOps, JournalFile, Torn, frame
from controller.memorydoc import VERSION, MemoryDocument, from_document, to_document
from controller.plan.memory import Confirm, Destroyed, Expect, ExpectedCreate, Memory, Transition, Withdraw

_SEE_CHECK = ("`canfar-controller memory check` says what it holds and what a repair keeps; to start without it, "
              "copy it aside (cp, not mv) and remove it (creates in flight are then no longer known)")


def ledger_paths(status_file: Path) -> tuple[Path, Path]:
    """Where the ledger of a controller whose status file is ``status_file`` lives (snapshot, journal)."""
    stem = status_file.name.removesuffix(".json")
    return status_file.with_name(f"{stem}.memory.json"), status_file.with_name(f"{stem}.memory.journal")


class Ledger:
    """Reads and writes one controller's memory: snapshot plus write-ahead journal."""

    def __init__(self, snapshot: Path, journal: Path, ops: FileOps | None = None, *, copy_torn: bool = True) -> None:
        self.snapshot = snapshot
        self.copy_torn = copy_torn  # False: reading changes nothing on disk (``memory check``)
        self.journal = journal
        self._seq = 0
        self._saved: Memory | None = None
        #: The writer's clock offset (``controller.clock``) the last snapshot read or written holds.
        self.clock_offset = 0.0
        self._file = JournalFile(journal, ops)
        self._pending: list[bytes] = []  # framed records not written yet
        #: What the last ``load`` found torn in the journal, and where it copied the journal first.
        self.torn: list[Torn] = []
        self.torn_copy: Path | None = None
        #: Complete records of the last ``load`` that mean nothing to this version (skipped).
        self.unusable: list[dict[str, Any]] = []

    @classmethod
    def beside(cls, status_file: Path) -> Ledger:
        return cls(*ledger_paths(status_file))

    # -- reading ----------------------------------------------------------------------------------

    def load(self) -> Memory:
        """The memory as the last process left it (empty when there is none); ``LedgerError`` if unreadable."""
        memory, self._seq, self.clock_offset = self._read_snapshot()
        self.unusable = []
        for entry in self._read_journal():
            if entry["seq"] > self._seq:
                try:
                    _replay(memory, entry)
                except (KeyError, TypeError, ValueError):  # complete, but not a record this version writes
                    self.unusable.append(entry)
                self._seq = entry["seq"]
        self._saved = None  # the replayed memory is not on disk as a snapshot yet
        return memory

    def _read_snapshot(self) -> tuple[Memory, int, float]:
        try:
            text = self.snapshot.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Memory(), 0, 0.0
        except (OSError, UnicodeDecodeError) as exc:
            raise LedgerError(f"cannot read the controller's memory {self.snapshot}: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise LedgerError(f"the controller's memory {self.snapshot} is not valid JSON ({exc}); "
                              f"{_SEE_CHECK}") from None
        version = data.get("version") if isinstance(data, dict) else None
        if version != VERSION:
            raise LedgerError(
                f"the controller's memory {self.snapshot} has version {version!r}, and this controller reads "
                f"version {VERSION} only: run the controller version that wrote it, or {_SEE_CHECK}")
        try:
            document = MemoryDocument.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
            raise LedgerError(f"the controller's memory {self.snapshot} is damaged: {problems}; {_SEE_CHECK}") from None
        return from_document(document), document.journal_seq, document.clock_offset

    def _read_journal(self) -> Iterator[dict[str, Any]]:
        try:
            found = self._file.read()
        except OSError as exc:
            raise LedgerError(f"cannot read the controller's journal {self.journal}: {exc}") from None
        self.torn, self.torn_copy = found.torn, None
        if found.torn and self.copy_torn:
            self.torn_copy = self.journal.with_name(f"{self.journal.name}.torn-{self._seq}")
            try:
                shutil.copyfile(self.journal, self.torn_copy)
            except OSError:
                self.torn_copy = None  # a full disk: the complete records are kept all the same
        yield from found.records

    # -- writing ----------------------------------------------------------------------------------

    def write_ahead(self, creates: Iterable[Expect]) -> None:
        """Durably record creates that are about to be sent: one write and one fsync for all of them."""
        self._append([_record(intent) for intent in creates])
        self._flush(sync=True)

    def record(self, transition: Transition) -> None:
        """Record what happened to a create or a destroy; it is written with the next write."""
        self._append([_record(transition)])

    def save(self, memory: Memory, *, force: bool = False, clock_offset: float = 0.0) -> None:
        """Replace the snapshot with ``memory`` (if it or ``clock_offset`` changed, or ``force``) and start an
        empty journal. ``clock_offset`` is how far the wall clock is ahead of the times in ``memory``."""
        if (memory == self._saved and clock_offset == self.clock_offset and not force and not self._file.opened
                and not self._pending):
            return
        text = json.dumps(to_document(memory, self._seq, clock_offset), separators=(",", ":"))
        replace_file(self.snapshot, text + "\n", durable=True, ops=self._file.ops)
        self._saved = memory.copy()
        self.clock_offset = clock_offset
        self._pending.clear()  # the snapshot holds what they said
        self._file.remove()

    def close(self) -> None:
        with suppress(OSError):  # what is lost only errs on the safe side (see the module docstring)
            self._flush(sync=False)
        self._file.close()

    def _append(self, entries: list[dict[str, Any]]) -> None:
        """Number the entries and keep their lines until the next write."""
        for entry in entries:
            self._seq += 1
            self._pending.append(frame({"seq": self._seq, **entry}))

    def _flush(self, *, sync: bool) -> None:
        """Append every pending record in one write; with ``sync``, make them durable before returning.

        On ``OSError`` nothing of this write counts (the file is cut back to its last complete
        record) and the records stay pending for the next write.
        """
        if not self._pending:
            return
        self._file.append(b"".join(self._pending), sync=sync)
        self._pending.clear()


def apply(transition: Transition, memory: Memory, ledger: Ledger | None) -> None:
    """Change ``memory`` and record the change in ``ledger``'s journal (written with its next write)."""
    if transition.apply(memory) and ledger is not None:
        ledger.record(transition)


def _record(transition: Transition) -> dict[str, Any]:
    """A journal record (version 1) of a memory transition."""
    match transition:
        case Expect(key=(set_name, slot), expected=expected):
            return {"op": "intent", "set": set_name, "slot": slot, "name": expected.name, "at": expected.at,
                    "prior_ids": list(expected.prior_ids)}
        case Confirm(key=(set_name, slot), name=name, session_id=session_id):
            return {"op": "created", "set": set_name, "slot": slot, "name": name, "id": session_id}
        case Withdraw(key=(set_name, slot), name=name):  # "settled": the version-1 name of a withdrawal
            return {"op": "settled", "set": set_name, "slot": slot, "name": name}
        case Destroyed(session_id=session_id, at=at):
            return {"op": "destroyed", "id": session_id, "at": at}
    raise TypeError(f"not a journal transition: {transition!r}")


def _transition(entry: dict[str, Any]) -> Transition | None:
    """The memory transition a journal record (version 1) holds; ``None`` for an unknown one."""
    op = entry.get("op")
    if op == "destroyed":
        return Destroyed(str(entry["id"]), float(entry["at"]))
    key = (str(entry["set"]), int(entry["slot"]))
    name = str(entry["name"])
    if op == "intent":
        return Expect(key, ExpectedCreate(name, float(entry["at"]), None, tuple(entry.get("prior_ids", ()))))
    if op == "created":
        return Confirm(key, name, str(entry["id"]))
    if op == "settled":
        return Withdraw(key, name)
    return None


def _replay(memory: Memory, entry: dict[str, Any]) -> None:
    """Apply a journal record to ``memory`` through the very method that changed it live."""
    transition = _transition(entry)
    if transition is not None:
        transition.apply(memory)
