"""The journal on a full disk: a torn record is found anywhere, a failed append leaves no trace.

Faults are injected through the ledger's file layer (``controller.journalfile.FileOps``): short
writes, ``ENOSPC`` on write and on fsync, and a kill at every byte boundary of an append (the
file a kill leaves behind is a prefix of what was being written).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from controller.journalfile import frame, scan
from controller.ledger import Ledger, ledger_paths
from controller.plan import ExpectedCreate, Memory
from controller.plan.memory import Confirm, Destroyed, Expect
from tests.faultfs import FullDisk

NOW = 1_800_000_000.0


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return ledger_paths(tmp_path / "state" / "status.json")


def intent(slot: int) -> Expect:
    return Expect(("a", slot), ExpectedCreate(f"cc-a-abcdef-{slot}", NOW))


@pytest.mark.parametrize("fault", ["short", "write", "fsync"])
def test_a_failed_append_raises_and_leaves_only_complete_records(paths, fault):
    """The append raises (so the create is not sent); the journal ends at its last complete record."""
    disk = FullDisk()
    ledger = Ledger(*paths, ops=disk)
    ledger.write_ahead([intent(1)])
    good = paths[1].read_bytes()
    disk.fault, disk.room = fault, 20
    with pytest.raises(OSError) as raised:
        ledger.write_ahead([intent(2), intent(3)])
    assert raised.value.errno == errno.ENOSPC
    assert paths[1].read_bytes() == good
    assert set(Ledger(*paths).load().creates) == {("a", 1)}


def test_the_records_of_a_failed_append_go_out_with_the_next_one_once_space_returns(paths):
    """Nothing is lost and nothing is torn: the next append writes the pending records whole."""
    disk = FullDisk()
    ledger = Ledger(*paths, ops=disk)
    ledger.write_ahead([intent(1)])
    ledger.record(Destroyed("x1", NOW))
    disk.fault, disk.room = "short", 17
    with pytest.raises(OSError):
        ledger.write_ahead([intent(2)])
    disk.fault = None
    ledger.write_ahead([intent(4)])
    found = scan(paths[1].read_bytes())
    assert found.torn == []
    memory = Ledger(*paths).load()
    assert set(memory.creates) == {("a", 1), ("a", 2), ("a", 4)}
    assert memory.destroys == {"x1": NOW}


def test_a_cut_back_that_fails_is_retried_before_the_next_write(paths):
    """When even truncating fails, the next append truncates first: no record ever joins a torn one."""

    class Stubborn(FullDisk):
        truncate_fails = False

        def truncate(self, fd: int, length: int) -> None:
            if self.truncate_fails:
                raise OSError(errno.EIO, "Input/output error")
            super().truncate(fd, length)

    disk = Stubborn()
    ledger = Ledger(*paths, ops=disk)
    ledger.write_ahead([intent(1)])
    disk.fault, disk.room, disk.truncate_fails = "short", 25, True
    with pytest.raises(OSError):
        ledger.write_ahead([intent(2)])
    assert len(scan(paths[1].read_bytes()).torn) == 1  # the torn piece is still there
    with pytest.raises(OSError):  # the cut back still fails: nothing is written
        ledger.write_ahead([intent(3)])
    disk.fault, disk.truncate_fails = None, False
    ledger.write_ahead([intent(5)])
    found = scan(paths[1].read_bytes())
    assert found.torn == []
    assert [r["slot"] for r in found.records] == [1, 2, 3, 5]


def test_a_kill_at_every_byte_of_an_append_keeps_every_complete_record(paths):
    """Whatever prefix of an append reached the disk, loading keeps all before it, then appends cleanly."""
    ledger = Ledger(*paths)
    ledger.write_ahead([intent(1), intent(2)])
    before = paths[1].read_bytes()
    ledger.write_ahead([intent(3), intent(4)])
    ledger.close()
    appended = paths[1].read_bytes()[len(before):]
    boundary = appended.index(b"\n") + 1  # the end of intent 3's record
    for cut in range(len(appended) + 1):
        paths[1].write_bytes(before + appended[:cut])
        reloaded = Ledger(*paths)
        slots = {slot for _, slot in reloaded.load().creates}
        expected = {1, 2} | ({3} if cut >= boundary else set()) | ({4} if cut == len(appended) else set())
        assert slots == expected, cut
        reloaded.write_ahead([intent(9)])  # the torn tail is cut before anything is appended
        found = scan(paths[1].read_bytes())
        assert found.torn == [], cut
        assert {r["slot"] for r in found.records} == expected | {9}, cut
        reloaded.close()


def test_the_version_1_journal_with_a_record_appended_to_a_torn_one_loses_only_the_torn_one(paths):
    """The incident of issue 16: a torn intent, then the next record on the same line, then more."""
    paths[1].parent.mkdir(parents=True)
    paths[1].write_text(
        '{"seq":58,"op":"intent","set":"a","slot":32,"name":"cc-a-abcdef-32","at":5}\n'
        '{"seq":59,"op":"intent","set":"a","slot":33,"name"'
        '{"seq":60,"op":"intent","set":"a","slot":34,"name":"cc-a-abcdef-34","at":5}\n'
        + frame({"seq": 61, "op": "intent", "set": "a", "slot": 35, "name": "cc-a-abcdef-35", "at": 5}).decode())
    ledger = Ledger(*paths)
    assert {slot for _, slot in ledger.load().creates} == {32, 34, 35}
    assert len(ledger.torn) == 1 and ledger.torn[0].head.startswith('{"seq":59')
    ledger.write_ahead([intent(36)])
    assert {slot for _, slot in Ledger(*paths).load().creates} == {32, 34, 35, 36}


def test_a_flipped_byte_inside_a_framed_record_is_torn_not_believed(paths):
    """The checksum catches damage that still parses as JSON (a slot number changed)."""
    line = frame({"seq": 1, "op": "intent", "set": "a", "slot": 3, "name": "cc-a-abcdef-3", "at": 5})
    paths[1].parent.mkdir(parents=True)
    paths[1].write_bytes(line.replace(b'"slot":3', b'"slot":8'))
    ledger = Ledger(*paths)
    assert ledger.load().creates == {}
    assert len(ledger.torn) == 1


# -- canfar-controller memory check ------------------------------------------------------------------


def _check(status_file: Path, capsys) -> tuple[int, str]:
    from controller.cli import main

    code = main(["memory", "check", "--status-file", str(status_file)])
    return code, capsys.readouterr().out


def test_memory_check_says_what_is_held_and_what_a_repair_keeps_and_changes_nothing(tmp_path, capsys):
    status_file = tmp_path / "state" / "status.json"
    snapshot, journal = ledger_paths(status_file)
    ledger = Ledger(snapshot, journal)
    ledger.write_ahead([intent(1), intent(2)])
    ledger.record(Confirm(("a", 1), "cc-a-abcdef-1", "id1"))
    ledger.write_ahead([intent(3)])
    ledger.close()
    with journal.open("ab") as stream:
        stream.write(frame({"seq": 9, "op": "intent", "set": "a", "slot": 4, "name": "cc-a-abcdef-4", "at": 1})[:30])
    before = journal.read_bytes()
    code, out = _check(status_file, capsys)
    assert code == 2
    assert "4 complete records, 1 torn" in out
    assert "3 creates expected (2 not confirmed yet: cc-a-abcdef-2, cc-a-abcdef-3)" in out
    assert "inventory none yet: the next pass adopts" in out  # no pass has finished with this memory
    assert "keeps all 4 complete records and drops 1 torn (30 bytes" in out
    assert journal.read_bytes() == before and sorted(p.name for p in journal.parent.iterdir()) == [journal.name]


def test_memory_check_of_a_clean_memory_exits_0(tmp_path, capsys):
    status_file = tmp_path / "state" / "status.json"
    Ledger.beside(status_file).write_ahead([intent(1)])
    code, out = _check(status_file, capsys)
    assert code == 0 and "nothing to repair" in out


def test_memory_check_says_what_the_inventory_claims(tmp_path, capsys):
    status_file = tmp_path / "state" / "status.json"
    ledger = Ledger.beside(status_file)
    ledger.save(Memory(inventoried=True, managed_sets={"a", "b"}, owned={"id1", "id2", "id3"}), force=True)
    ledger.close()
    code, out = _check(status_file, capsys)
    assert code == 0 and "inventory 2 sets managed, 3 sessions created or adopted" in out


def test_memory_check_of_an_unreadable_snapshot_says_copy_not_move(tmp_path, capsys):
    status_file = tmp_path / "state" / "status.json"
    snapshot, journal = ledger_paths(status_file)
    Ledger(snapshot, journal).write_ahead([intent(1)])
    snapshot.write_text("{not json")
    code, out = _check(status_file, capsys)
    assert code == 1
    assert f"snapshot  {snapshot}: UNREADABLE" in out
    assert "cp, not mv" in out and "1 complete records alone" in out
