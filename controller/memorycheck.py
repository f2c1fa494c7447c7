"""``canfar-controller memory check``: what the controller's memory holds, and what a repair keeps.

Read only: nothing is written, moved or copied. A torn journal record is repaired by the
controller itself at its next start (every complete record kept, the journal copied aside
first); an unreadable snapshot needs a person, and this report says what would be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import LedgerError
from controller.journalfile import JournalFile, Scan
from controller.ledger import Ledger, ledger_paths
from controller.plan import Memory

#: Exit codes: all is well; a torn or unusable record would be dropped (automatically); the snapshot is unreadable.
CLEAN, REPAIRABLE, UNREADABLE = 0, 2, 1


@dataclass
class MemoryReport:
    snapshot: Path
    journal: Path
    snapshot_error: str | None = None
    scan: Scan = field(default_factory=Scan)
    scan_error: str | None = None
    memory: Memory | None = None
    unusable: int = 0

    @property
    def exit_code(self) -> int:
        if self.snapshot_error is not None or self.scan_error is not None:
            return UNREADABLE
        return REPAIRABLE if self.scan.torn or self.unusable else CLEAN

    def lines(self) -> list[str]:
        return [self._snapshot_line(), self._journal_line(), *self._torn_lines(), self._holds_line(),
                self._inventory_line(), self._repair_line()]

    def _snapshot_line(self) -> str:
        if self.snapshot_error is not None:
            return f"snapshot  {self.snapshot}: UNREADABLE: {self.snapshot_error}"
        if not self.snapshot.exists():
            return f"snapshot  {self.snapshot}: none yet"
        return f"snapshot  {self.snapshot}: readable"

    def _journal_line(self) -> str:
        if self.scan_error is not None:
            return f"journal   {self.journal}: UNREADABLE: {self.scan_error}"
        if not self.journal.exists():
            return f"journal   {self.journal}: none (everything is in the snapshot)"
        legacy = f" ({self.scan.legacy} in the version-1 format)" if self.scan.legacy else ""
        unusable = f", {self.unusable} this version cannot use" if self.unusable else ""
        return (f"journal   {self.journal}: {len(self.scan.records)} complete records{legacy}{unusable}, "
                f"{len(self.scan.torn)} torn")

    def _torn_lines(self) -> list[str]:
        return [f"  torn    at byte {t.offset}, {t.length} bytes: {t.head!r}" for t in self.scan.torn]

    def _holds_line(self) -> str:
        memory = self.memory
        if memory is None:
            return "holds     (cannot be read as a whole)"
        uncertain = sorted(e.name for e in memory.creates.values() if e.session_id is None)
        shown = ", ".join(uncertain[:10]) + (", …" if len(uncertain) > 10 else "")
        return (f"holds     {len(memory.creates)} creates expected ({len(uncertain)} not confirmed yet"
                f"{': ' + shown if uncertain else ''}), {len(memory.seen_live)} live sessions seen, "
                f"{len(memory.destroys)} destroys remembered, {len(memory.backoffs)} sets backing off")

    def _inventory_line(self) -> str:
        """What the controller may destroy (``docs/ownership.md``)."""
        memory = self.memory
        if memory is None:
            return "inventory (cannot be read as a whole)"
        if not memory.inventoried:
            return ("inventory none yet: the next pass adopts the sessions of the sets in the manifests "
                    "(`prune` refuses to act until then)")
        return (f"inventory {len(memory.managed_sets)} sets managed, {len(memory.owned)} sessions created or "
                "adopted: only those are ever destroyed")

    def _repair_line(self) -> str:
        complete = len(self.scan.records)
        if self.snapshot_error is not None:
            return (f"repair    the snapshot cannot be used: copy it aside (cp, not mv), then remove it; the "
                    f"controller then starts from the journal's {complete} complete records alone, and "
                    "creates known only to the snapshot are looked for by no one")
        if self.scan_error is not None:
            return "repair    make the journal readable (permissions?); nothing is dropped until then"
        if not self.scan.torn and not self.unusable:
            return "repair    nothing to repair"
        dropped = sum(t.length for t in self.scan.torn)
        return (f"repair    keeps all {complete} complete records and drops {len(self.scan.torn)} torn "
                f"({dropped} bytes, cut short by a crash or a full disk); the controller does "
                f"this by itself at its next start, after copying the journal to {self.journal.name}.torn-<seq>")


def check(status_file: Path) -> MemoryReport:
    """Read the memory of the controller whose status file is ``status_file`` without changing anything."""
    snapshot, journal = ledger_paths(status_file)
    report = MemoryReport(snapshot, journal)
    try:
        report.scan = JournalFile(journal).read()
    except OSError as exc:
        report.scan_error = str(exc)
    ledger = Ledger(snapshot, journal, copy_torn=False)
    try:
        report.memory = ledger.load()
        report.unusable = len(ledger.unusable)
    except LedgerError as exc:
        if report.scan_error is None:
            report.snapshot_error = str(exc)
    return report
