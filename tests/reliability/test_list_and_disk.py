"""Nothing in one answer and nothing on a full disk destroys or duplicates (issue 16).

The in-process tier: the simulator answers lists with repeated rows and the ledger's file layer
(``tests.faultfs.FullDisk``) fills up in the middle of a scale-up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from controller.ledger import Ledger, ledger_paths
from tests.faultfs import FullDisk
from tests.reliability.rig import LIVE, Rig, manifest


def _live_ids(rig: Rig) -> set[str]:
    return {sid for sid, name, status in rig.truth() if status in LIVE and name.startswith("cc-")}


def _converge(rig: Rig, name: str, replicas: int) -> None:
    rig.write(name, manifest(name, replicas))
    rig.passes(8, every=5.0)
    assert rig.live_by_slot(name) and set(rig.live_by_slot(name).values()) == {1}
    assert sum(rig.live_by_slot(name).values()) == replicas


@pytest.mark.parametrize("keep", [0.05, 1.0], ids=["one-row-repeated", "every-row-repeated"])
def test_repeated_rows_destroy_nothing(rig: Rig, keep: float) -> None:
    """Every list repeats owned rows for 20 s: not one session is destroyed or added (it was 19 and 80)."""
    _converge(rig, "a", 20)
    before = _live_ids(rig)
    mark = max((r.seq for r in rig.simulator.requests), default=0)
    rig.simulator.inject_list_fault("repeated", count=None, keep=keep)
    outcome = rig.passes(20, every=1.0)
    assert list(rig.requests("DELETE", mark)) == [] and list(rig.requests("POST", mark)) == []
    assert _live_ids(rig) == before
    assert "breaks one id, one session" in " ".join(outcome.errors)
    repeated = rig.metrics.registry.get_sample_value("canfar_controller_list_anomalies_total",
                                                     {"kind": "duplicate_id"})
    assert repeated is not None and repeated >= 20
    rig.simulator.clear_faults()
    rig.passes(3, every=5.0)
    assert _live_ids(rig) == before


def _memory_events(logs: list[dict]) -> list[str]:
    return [entry["event"] for entry in logs if entry.get("condition") == "MemoryUnwritable"]


def test_a_full_disk_mid_scale_up_sends_no_create_without_a_durable_record_and_resumes_unaided(
        tmp_path: Path) -> None:
    """3 -> 40 while the memory's disk fills: no create leaves without its fsynced record; space returns,
    the controller goes on by itself, and every slot ends with exactly one session."""
    disk = FullDisk()
    rig = Rig(tmp_path, file_ops=disk)
    try:
        _converge(rig, "a", 3)
        # Two creates whose answer is lost (they happen): the controller must remember them by name.
        rig.simulator.inject_fault("POST", "/session", status=500, count=2, processed=True, name="cc-a-*-1?")
        disk.space = 1500  # room for a few journal records, then short writes
        rig.write("a", manifest("a", 40))
        with capture_logs() as logs:
            for _ in range(12):
                rig.clock.advance(2.0)
                outcome = rig.run_pass()
                sent = {r.param("name") for r in rig.requests("POST")}
                assert sent <= disk.durable_intents(), "a create left without its complete, fsynced record"
            assert rig.reconciler.unwritable is not None and rig.reconciler.unwritable.reason == "NoSpace"
            status = json.loads(rig.status_file.read_text())
            assert status["memory_unwritable"]["reason"] == "NoSpace"
            assert "MemoryUnwritable (NoSpace)" in rig.health.liveness()[1]
            assert rig.metrics.registry.get_sample_value("canfar_controller_memory_unwritable") == 1.0
            stuck = len(list(rig.requests("POST")))
            rig.passes(5, every=2.0)
            assert len(list(rig.requests("POST"))) == stuck  # no create while it lasts
            assert stuck < 40
            # What a process killed now would read: every create that went out, uncertain ones included.
            on_disk = Ledger(*ledger_paths(rig.status_file)).load()
            remembered = {e.name for e in on_disk.creates.values()} | {e.name for e in on_disk.seen_live.values()}
            assert {r.param("name") for r in rig.requests("POST")} <= remembered
            assert sum(1 for e in on_disk.creates.values() if e.session_id is None) >= 1  # an uncertain one

            disk.space = None  # space comes back: no manual step
            rig.passes(12, every=5.0)
        assert rig.reconciler.unwritable is None
        assert rig.metrics.registry.get_sample_value("canfar_controller_memory_unwritable") == 0.0
        assert json.loads(rig.status_file.read_text())["memory_unwritable"] is None
        assert _memory_events(logs) == [  # one warning when it starts, one when it ends, no traceback
            "the controller's memory cannot be written: no create is sent until it can",
            "the controller's memory can be written again: creates resume"]
        assert not [entry for entry in logs if "exc_info" in entry or entry.get("log_level") == "error"]
        rig.restart()  # a new process knows every create that went out, the uncertain ones above all
        remembered = {e.name for e in rig.reconciler.memory.creates.values()}
        remembered |= {e.name for e in rig.reconciler.memory.seen_live.values()}
        assert {r.param("name") for r in rig.requests("POST")} <= remembered
        rig.passes(3, every=5.0)
        slots = rig.live_by_slot("a")
        assert sum(slots.values()) == 40 and set(slots.values()) == {1}, outcome.errors
    finally:
        rig.close()


def test_a_read_only_memory_is_the_same_condition(tmp_path: Path) -> None:
    """EROFS on every write: reason ReadOnly, no create, destroys still happen."""
    import errno

    class ReadOnly(FullDisk):
        def write(self, fd: int, data: bytes) -> int:
            if self.fault == "ro":
                raise OSError(errno.EROFS, "Read-only file system")
            return super().write(fd, data)

    disk = ReadOnly()
    rig = Rig(tmp_path, file_ops=disk, options={"destructive_settle": 0})  # the scale-down acts at once
    try:
        _converge(rig, "a", 4)
        disk.fault = "ro"
        rig.write("a", manifest("a", 2))  # scale down: destroys need no write-ahead
        rig.passes(3, every=5.0)
        assert rig.reconciler.unwritable is not None and rig.reconciler.unwritable.reason == "ReadOnly"
        assert sum(rig.live_by_slot("a").values()) == 2
        victim = next(sid for sid, name, status in rig.truth() if status in LIVE and name.endswith("-1"))
        rig.delete_outside(victim)
        mark = len(list(rig.requests("POST")))
        rig.passes(3, every=5.0)
        assert len(list(rig.requests("POST"))) == mark  # the slot waits for a writable memory
        disk.fault = None
        rig.passes(3, every=5.0)
        assert sum(rig.live_by_slot("a").values()) == 2
    finally:
        rig.close()
