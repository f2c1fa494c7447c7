"""The ledger: the memory survives a restart, and a kill at any instant loses no create that was sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.errors import LedgerError
from controller.ledger import Ledger, MemoryDocument, ledger_paths
from controller.plan import ConditionMark, CreateBackoff, ExpectedCreate, Memory, SeenSession, SetNotes, SlotHistory
from controller.plan.memory import Confirm, Destroyed, DestroyRetry, Expect, Lingering, Lookup, RenewMark, Withdraw

NOW = 1_800_000_000.0


def full_memory() -> Memory:
    """A memory with something in every field."""
    return Memory(
        creates={("w", 1): ExpectedCreate("cc-w-abcdef-1", NOW, "id1"),
                 ("w", 2): ExpectedCreate("cc-w-abcdef-2", NOW, None, ("old2",), misses=1)},
        destroys={"gone": NOW - 3},
        orphans_seen=frozenset({"orph"}),
        restarts={("w", 3): SlotHistory(2, NOW - 10, "id3", (NOW - 100, NOW - 10))},
        finished={("batch", 1, "abcdef")},
        seen_live={"id4": SeenSession("w", 4, "cc-w-abcdef-4")},
        missing=frozenset({"id4"}),
        suspect_since=NOW - 7,
        lookups={"id4": Lookup("live", NOW - 6, 2, "Running")},
        backoffs={"w": CreateBackoff(3, NOW + 20, "image refused", "abcdef/4")},
        creates_paused_until=NOW + 5,
        ended_reported={"id9"},
        conditions={"w": {"Ready": ConditionMark("False", NOW - 60), "Complete": ConditionMark("True", NOW)}},
        progress={"w": ("2/4", NOW - 30)},
        pending_since={"id4": NOW - 700},
        unschedulable_reported={"id4"},
        renew_failures={"nb1": NOW - 5},
        notes={"w": SetNotes(last_failure="logs: boom", unschedulable="FailedScheduling: 0/3 nodes")},
        lingering=Lingering(retries={"gone": DestroyRetry(2, NOW + 10, lists=3)}, since={"id5": NOW - 900},
                            reported={"id5"}, evidence={"w": "session id5, events: Killing: stopping"}),
        renews={"nb1": RenewMark(NOW - 30, NOW + 10, 30.0, "unchanged", reported=True),
                "nb2": RenewMark(NOW - 3, NOW + 20)},
    )


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return ledger_paths(tmp_path / "state" / "status.json")


def test_a_saved_memory_reads_back_identically(paths):
    """Every field survives a snapshot, and the snapshot is a version 1 document."""
    memory = full_memory()
    Ledger(*paths).save(memory)
    assert Ledger(*paths).load() == memory
    assert MemoryDocument.model_validate_json(paths[0].read_text()).version == 1


def test_no_files_is_an_empty_memory(paths):
    assert Ledger(*paths).load() == Memory()


def test_intents_written_ahead_survive_a_kill(paths):
    """Creates recorded before sending are known to the next process although no snapshot followed."""
    ledger = Ledger(*paths)
    ledger.save(Memory())
    ledger.write_ahead([Expect(("w", 1), ExpectedCreate("cc-w-abcdef-1", NOW, None, ("old",))),
                        Expect(("w", 2), ExpectedCreate("cc-w-abcdef-2", NOW))])
    ledger.record(Confirm(("w", 2), "cc-w-abcdef-2", "newid"))
    # kill -9: no save, no close. The id that came back was not written yet: the create stays
    # expected by name (the safe side), and the intents are there.
    memory = Ledger(*paths).load()
    assert memory.creates == {("w", 1): ExpectedCreate("cc-w-abcdef-1", NOW, None, ("old",)),
                              ("w", 2): ExpectedCreate("cc-w-abcdef-2", NOW)}


def test_what_happened_to_a_create_is_written_with_the_next_write(paths):
    """An id, a refusal or a destroy rides along with the next write-ahead, or a clean close."""
    ledger = Ledger(*paths)
    ledger.write_ahead([Expect(("w", 1), ExpectedCreate("cc-w-abcdef-1", NOW)),
                        Expect(("w", 2), ExpectedCreate("cc-w-abcdef-2", NOW))])
    ledger.record(Confirm(("w", 1), "cc-w-abcdef-1", "id1"))
    ledger.record(Withdraw(("w", 2), "cc-w-abcdef-2"))
    ledger.write_ahead([Expect(("w", 3), ExpectedCreate("cc-w-abcdef-3", NOW))])
    ledger.record(Destroyed("x", NOW))
    ledger.close()
    memory = Ledger(*paths).load()
    assert memory.creates == {("w", 1): ExpectedCreate("cc-w-abcdef-1", NOW, "id1"),
                              ("w", 3): ExpectedCreate("cc-w-abcdef-3", NOW)}
    assert memory.destroys == {"x": NOW}


def test_a_line_torn_by_a_crash_is_ignored(paths):
    """A crash in the middle of an append leaves half a line: its fsync never completed, so it is skipped."""
    ledger = Ledger(*paths)
    ledger.write_ahead([Expect(("w", 1), ExpectedCreate("cc-w-abcdef-1", NOW))])
    with paths[1].open("a") as journal:
        journal.write('{"seq": 2, "op": "intent", "set": "w", "sl')
    assert set(Ledger(*paths).load().creates) == {("w", 1)}


def test_journal_lines_already_in_the_snapshot_are_not_replayed(paths):
    """A kill between writing the snapshot and removing the journal replays nothing twice."""
    ledger = Ledger(*paths)
    ledger.write_ahead([Expect(("w", 1), ExpectedCreate("cc-w-abcdef-1", NOW))])
    journal = paths[1].read_bytes()
    memory = ledger.load()
    del memory.creates[("w", 1)]  # seen in a list in the meantime
    ledger.save(memory)
    paths[1].write_bytes(journal)  # as if the process died before removing it
    assert Ledger(*paths).load().creates == {}


def test_an_unknown_version_is_refused_with_a_clear_error(paths):
    """Memory written by another version is not guessed at: nothing is acted on."""
    paths[0].parent.mkdir(parents=True)
    paths[0].write_text(json.dumps({"version": 7, "creates": []}))
    with pytest.raises(LedgerError, match=r"version 7.*reads version 1"):
        Ledger(*paths).load()


@pytest.mark.parametrize("content", ["{not json", '{"version": 1, "creates": [{"set": "w"}]}'])
def test_a_damaged_snapshot_is_an_error_that_names_the_file(paths, content):
    paths[0].parent.mkdir(parents=True)
    paths[0].write_text(content)
    with pytest.raises(LedgerError, match=str(paths[0])):
        Ledger(*paths).load()


def test_a_damaged_journal_line_is_skipped_and_every_complete_record_kept(paths):
    """A damaged line in the middle of a version-1 journal costs that line only; the file is copied first."""
    paths[1].parent.mkdir(parents=True)
    original = ('{"seq": 1, "op": "destroyed", "id": "a", "at": 1}\ngarbage\n{"seq": 3}\n'
                '{"seq": 4, "op": "intent", "set": "w", "slot": 1, "name": "cc-w-abcdef-1", "at": 5}\n')
    paths[1].write_text(original)
    ledger = Ledger(*paths)
    memory = ledger.load()
    assert memory.destroys == {"a": 1.0}
    assert set(memory.creates) == {("w", 1)}
    assert [t.head for t in ledger.torn] == ["garbage\n"]
    assert ledger.torn_copy is not None and ledger.torn_copy.read_text() == original
    assert paths[1].read_text() == original  # copied, not moved


def test_an_unchanged_memory_is_not_rewritten(paths):
    """A steady-state pass costs no disk write; a changed one does."""
    ledger = Ledger(*paths)
    memory = full_memory()
    ledger.save(memory)
    paths[0].unlink()
    ledger.save(memory.copy())
    assert not paths[0].exists()
    memory.destroys["another"] = NOW
    ledger.save(memory)
    assert paths[0].exists()


def test_replay_gives_the_memory_the_live_operations_gave(paths):
    """The journal records memory operations; replaying them applies the same transitions again."""
    live = full_memory()
    ledger = Ledger(*paths)
    ledger.save(live)
    operations = [Expect(("w", 5), ExpectedCreate("cc-w-abcdef-5", NOW)), Confirm(("w", 5), "cc-w-abcdef-5", "id5"),
                  Expect(("w", 6), ExpectedCreate("cc-w-abcdef-6", NOW)), Withdraw(("w", 6), "cc-w-abcdef-6"),
                  Withdraw(("w", 2), "cc-w-abcdef-2"), Destroyed("id1", NOW + 1)]
    for operation in operations:
        if operation.apply(live):
            ledger.record(operation)
    ledger.close()
    assert Ledger(*paths).load() == live
