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
  (the create stays expected by name until a list settles it).

Loading reads the snapshot, then replays the journal records written after it. A torn record
(a crash in the middle of an append, a short write on a full disk), wherever it lies, is skipped:
its fsync never completed, so its creates were never sent; every complete record is kept, and the
journal is first copied aside (``…journal.torn-<seq>``) so nothing is lost to the repair. An
unreadable snapshot (corrupt, an unknown ``version``) is a ``LedgerError``: the controller stops
rather than act without its memory, and ``canfar-controller memory check`` says what it holds.
The version-1 journal (plain JSON lines) is still read; records are always written framed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.errors import LedgerError
from controller.journalfile import FileOps, JournalFile, Torn, frame
from controller.plan.autoscale import ScaleState
from controller.plan.memory import (
    ConditionMark,
    CreateBackoff,
    DestroyRetry,
    ExpectedCreate,
    Lingering,
    Memory,
    SeenSession,
    SetNotes,
    SlotHistory,
    SlotKey,
)

VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateEntry(_Strict):
    set: str
    slot: int
    name: str
    at: float
    session_id: str | None = None
    prior_ids: list[str] = []
    misses: int = 0


class RestartEntry(_Strict):
    set: str
    slot: int
    count: int
    last_end: float
    last_session: str
    early_ends: list[float] = []


class ConditionEntry(_Strict):
    set: str
    type: str
    status: str
    since: float


class ProgressEntry(_Strict):
    set: str
    fingerprint: str
    since: float


class NotesEntry(_Strict):
    set: str
    last_failure: str = ""
    unschedulable: str = ""


class FinishedEntry(_Strict):
    set: str
    slot: int
    template_hash: str


class SeenEntry(_Strict):
    id: str
    set: str
    slot: int
    name: str


class BackoffEntry(_Strict):
    set: str
    failures: int
    until: float
    message: str
    spec_key: str


class AutoscaleEntry(_Strict):
    set: str
    count: int
    history: list[tuple[float, int]] = []
    failures: int = 0
    error: str = ""


class RetryEntry(_Strict):
    attempts: int
    retry_at: float
    lists: int = 0
    set: str = ""
    slot: int = 0
    template: str = ""
    misses: int = 0


class LingeringEntry(_Strict):
    """``Memory.lingering``: destroys the service ignored, sessions stuck Terminating or Unknown."""

    retries: dict[str, RetryEntry] = {}
    since: dict[str, float] = {}
    reported: list[str] = []
    evidence: dict[str, str] = {}


class MemoryDocument(_Strict):
    """The snapshot file, version 1. Field meanings are those of ``controller.plan.memory.Memory``."""

    version: Literal[1] = 1
    #: The last journal line already contained in this snapshot.
    journal_seq: int = 0
    creates: list[CreateEntry] = []
    destroys: dict[str, float] = {}
    orphans_seen: list[str] = []
    restarts: list[RestartEntry] = []
    finished: list[FinishedEntry] = []
    seen_live: list[SeenEntry] = []
    missing: list[str] = []
    suspect_since: float | None = None
    backoffs: list[BackoffEntry] = []
    creates_paused_until: float = 0.0
    ended_reported: list[str] = []
    conditions: list[ConditionEntry] = []
    progress: list[ProgressEntry] = []
    pending_since: dict[str, float] = {}
    unschedulable_reported: list[str] = []
    renew_failures: dict[str, float] = {}
    notes: list[NotesEntry] = []
    autoscale: list[AutoscaleEntry] = []
    lingering: LingeringEntry = LingeringEntry()


def to_document(memory: Memory, journal_seq: int) -> dict[str, Any]:
    """The snapshot of ``memory`` as plain JSON data in the shape of ``MemoryDocument``."""
    return {
        "version": VERSION,
        "journal_seq": journal_seq,
        "creates": [{"set": s, "slot": n, "name": e.name, "at": e.at, "session_id": e.session_id,
                     "prior_ids": list(e.prior_ids), "misses": e.misses}
                    for (s, n), e in sorted(memory.creates.items())],
        "destroys": dict(sorted(memory.destroys.items())),
        "orphans_seen": sorted(memory.orphans_seen),
        "restarts": [{"set": s, "slot": n, "count": r.count, "last_end": r.last_end,
                      "last_session": r.last_session, "early_ends": list(r.early_ends)}
                     for (s, n), r in sorted(memory.restarts.items())],
        "finished": [{"set": s, "slot": n, "template_hash": h} for s, n, h in sorted(memory.finished)],
        "seen_live": [{"id": sid, "set": e.set_name, "slot": e.slot, "name": e.name}
                      for sid, e in sorted(memory.seen_live.items())],
        "missing": sorted(memory.missing),
        "suspect_since": memory.suspect_since,
        "backoffs": [{"set": name, "failures": b.failures, "until": b.until, "message": b.message,
                      "spec_key": b.spec_key} for name, b in sorted(memory.backoffs.items())],
        "creates_paused_until": memory.creates_paused_until,
        "ended_reported": sorted(memory.ended_reported),
        "conditions": [{"set": name, "type": kind, "status": mark.status, "since": mark.since}
                       for name, marks in sorted(memory.conditions.items()) for kind, mark in sorted(marks.items())],
        "progress": [{"set": name, "fingerprint": fingerprint, "since": since}
                     for name, (fingerprint, since) in sorted(memory.progress.items())],
        "pending_since": dict(sorted(memory.pending_since.items())),
        "unschedulable_reported": sorted(memory.unschedulable_reported),
        "renew_failures": dict(sorted(memory.renew_failures.items())),
        "notes": [{"set": name, "last_failure": note.last_failure, "unschedulable": note.unschedulable}
                  for name, note in sorted(memory.notes.items())],
        "autoscale": [{"set": name, "count": state.count, "history": [list(entry) for entry in state.history],
                       "failures": state.failures, "error": state.error}
                      for name, state in sorted(memory.autoscale.items())],
        "lingering": _lingering_document(memory.lingering),
    }


def _lingering_document(lingering: Lingering) -> dict[str, Any]:
    return {
        "retries": {sid: {"attempts": r.attempts, "retry_at": r.retry_at, "lists": r.lists, "set": r.set_name,
                          "slot": r.slot, "template": r.template, "misses": r.misses}
                    for sid, r in sorted(lingering.retries.items())},
        "since": dict(sorted(lingering.since.items())),
        "reported": sorted(lingering.reported),
        "evidence": dict(sorted(lingering.evidence.items())),
    }


def from_document(document: MemoryDocument) -> Memory:
    return Memory(
        creates={(e.set, e.slot): ExpectedCreate(e.name, e.at, e.session_id, tuple(e.prior_ids), e.misses)
                 for e in document.creates},
        destroys=dict(document.destroys),
        orphans_seen=frozenset(document.orphans_seen),
        restarts={(r.set, r.slot): SlotHistory(r.count, r.last_end, r.last_session, tuple(r.early_ends))
                  for r in document.restarts},
        finished={(f.set, f.slot, f.template_hash) for f in document.finished},
        seen_live={e.id: SeenSession(e.set, e.slot, e.name) for e in document.seen_live},
        missing=frozenset(document.missing),
        suspect_since=document.suspect_since,
        backoffs={b.set: CreateBackoff(b.failures, b.until, b.message, b.spec_key) for b in document.backoffs},
        creates_paused_until=document.creates_paused_until,
        ended_reported=set(document.ended_reported),
        conditions=_conditions(document.conditions),
        progress={p.set: (p.fingerprint, p.since) for p in document.progress},
        pending_since=dict(document.pending_since),
        unschedulable_reported=set(document.unschedulable_reported),
        renew_failures=dict(document.renew_failures),
        notes={n.set: SetNotes(n.last_failure, n.unschedulable) for n in document.notes},
        autoscale={a.set: ScaleState(a.count, tuple(a.history), a.failures, a.error) for a in document.autoscale},
        lingering=Lingering(
            retries={sid: DestroyRetry(r.attempts, r.retry_at, r.lists, r.set, r.slot, r.template, r.misses)
                     for sid, r in document.lingering.retries.items()},
            since=dict(document.lingering.since), reported=set(document.lingering.reported),
            evidence=dict(document.lingering.evidence)),
    )


def _conditions(entries: list[ConditionEntry]) -> dict[str, dict[str, ConditionMark]]:
    conditions: dict[str, dict[str, ConditionMark]] = {}
    for entry in entries:
        conditions.setdefault(entry.set, {})[entry.type] = ConditionMark(entry.status, entry.since)
    return conditions


_SEE_CHECK = ("`canfar-controller memory check` says what it holds and what a repair keeps; to start without it, "
              "copy it aside (cp, not mv) and remove it (creates in flight are then no longer known)")


def ledger_paths(status_file: Path) -> tuple[Path, Path]:
    """Where the ledger of a controller whose status file is ``status_file`` lives (snapshot, journal)."""
    stem = status_file.name.removesuffix(".json")
    return status_file.with_name(f"{stem}.memory.json"), status_file.with_name(f"{stem}.memory.journal")


def requests_dir(status_file: Path) -> Path:
    """Where ``canfar-controller restart`` leaves requests for the controller of ``status_file``."""
    return status_file.with_name(f"{status_file.name.removesuffix('.json')}.requests")


def request_restart(status_file: Path, set_name: str) -> Path:
    """Ask the controller of ``status_file`` to run ``set_name`` afresh at its next pass."""
    directory = requests_dir(status_file)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"restart.{set_name}"
    path.write_text(f"{set_name}\n")
    return path


class Ledger:
    """Reads and writes one controller's memory: snapshot plus write-ahead journal."""

    def __init__(self, snapshot: Path, journal: Path, ops: FileOps | None = None, *, copy_torn: bool = True) -> None:
        self.snapshot = snapshot
        self.copy_torn = copy_torn  # False: reading changes nothing on disk (``memory check``)
        self.journal = journal
        self._seq = 0
        self._saved: Memory | None = None
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
        memory, self._seq = self._read_snapshot()
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

    def _read_snapshot(self) -> tuple[Memory, int]:
        try:
            text = self.snapshot.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Memory(), 0
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
        return from_document(document), document.journal_seq

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

    def write_ahead(self, creates: Iterable[tuple[SlotKey, ExpectedCreate]]) -> None:
        """Durably record creates that are about to be sent: one write and one fsync for all of them."""
        self._append([{"op": "intent", "set": s, "slot": n, "name": e.name, "at": e.at,
                       "prior_ids": list(e.prior_ids)} for (s, n), e in creates])
        self._flush(sync=True)

    def note_created(self, key: SlotKey, name: str, session_id: str) -> None:
        self._append([{"op": "created", "set": key[0], "slot": key[1], "name": name, "id": session_id}])

    def note_settled(self, key: SlotKey, name: str) -> None:
        """A create that surely did not happen (refused, or never sent): its slot is free again."""
        self._append([{"op": "settled", "set": key[0], "slot": key[1], "name": name}])

    def note_destroyed(self, session_id: str, at: float) -> None:
        self._append([{"op": "destroyed", "id": session_id, "at": at}])

    def save(self, memory: Memory, *, force: bool = False) -> None:
        """Replace the snapshot with ``memory`` (if it changed, or ``force``) and start an empty journal."""
        if memory == self._saved and not force and not self._file.opened and not self._pending:
            return
        text = json.dumps(to_document(memory, self._seq), separators=(",", ":"))
        write_durably(self.snapshot, text + "\n", self._file.ops)
        self._saved = memory.copy()
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


def _replay(memory: Memory, entry: dict[str, Any]) -> None:
    op = entry.get("op")
    if op == "destroyed":
        memory.destroys[str(entry["id"])] = float(entry["at"])
        return
    key = (str(entry["set"]), int(entry["slot"]))
    name = str(entry["name"])
    existing = memory.creates.get(key)
    if op == "intent":
        memory.creates[key] = ExpectedCreate(name, float(entry["at"]), None, tuple(entry.get("prior_ids", ())))
    elif op == "created" and existing is not None and existing.name == name:
        memory.creates[key] = replace(existing, session_id=str(entry["id"]))
    elif op == "settled" and existing is not None and existing.name == name:
        del memory.creates[key]


def write_durably(path: Path, text: str, ops: FileOps | None = None) -> None:
    """Replace ``path`` with ``text`` atomically and durably: temporary file, fsync, rename, fsync dir.

    A short write (a full disk) raises ``OSError`` and leaves ``path`` as it was.
    """
    ops = ops if ops is not None else FileOps()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = text.encode()
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written = ops.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)", str(path))
            ops.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            temporary.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
