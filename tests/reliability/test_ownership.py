"""Inventory, second writers and ``prune`` (in-process, manual clock): never destroy what is not ours.

Two controllers share one simulated service here (``Rig(service_of=...)``): the same account and
token, the same prefix ``cc``, each with its own state directory and memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.errors import ConfigError
from controller.ledger import Ledger
from controller.outcome import run_one_pass
from controller.plan import DESTRUCTIVE_SETTLE
from controller.prune import PruneResult, prune
from controller.statedir import StateLoader
from tests.reliability.rig import LIVE, Rig, manifest, owned

SETTLE = 1.0


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Rig, Rig]]:
    """Two controllers against one service; each request takes a millisecond, so passes can overlap."""
    first = Rig(tmp_path / "a", service={"latency": 0.001})
    second = Rig(tmp_path / "b", service_of=first)
    yield first, second
    second.close()
    first.close()


def deletes(rig: Rig) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in rig.requests("DELETE")]


def status(rig: Rig) -> dict:
    return json.loads(rig.status_file.read_text())


def condition(rig: Rig, set_name: str, kind: str) -> dict:
    return next(c for c in status(rig)["sets"][set_name]["conditions"] if c["type"] == kind)


def metric(rig: Rig, name: str, **labels: str) -> float | None:
    return rig.metrics.registry.get_sample_value(name, labels)


def alternate(first: Rig, second: Rig, passes: int, every: float = 5.0) -> None:
    for _ in range(passes):
        first.clock.advance(every)
        first.run_pass()
        second.run_pass()


def together(first: Rig, second: Rig) -> None:
    """One pass of each at the same time: both list before either creates (as two daemons started together)."""
    async def both() -> None:
        await asyncio.gather(run_one_pass(first.reconciler, first.handler),
                             run_one_pass(second.reconciler, second.handler))

    first.loop.run_until_complete(both())


def test_two_controllers_with_one_prefix_and_different_sets_destroy_nothing_of_each_other(pair) -> None:
    """The bug report: A manages alpha, B (started later, its own memory) beta. Nothing is destroyed; both
    say which sessions carry their prefix without being theirs."""
    a, b = pair
    a.write("alpha", manifest("alpha", 3))
    a.passes(2, every=SETTLE)
    a.passes(3)
    b.write("beta", manifest("beta", 2))
    b.run_pass()
    alternate(a, b, 20)
    assert deletes(a) == []
    assert a.live_by_slot("alpha").total() == 3 and a.live_by_slot("beta").total() == 2
    assert len([r for r in a.requests("POST")]) == 5  # one create per slot, ever
    assert status(a)["unmanaged"] == {"beta": 2} and status(b)["unmanaged"] == {"alpha": 3}
    assert metric(a, "canfar_controller_unmanaged_sessions", set="beta") == 2
    assert metric(b, "canfar_controller_unmanaged_sessions", set="alpha") == 3
    assert condition(a, "alpha", "Conflict")["status"] == "False"


def test_two_controllers_with_the_same_set_both_report_a_conflict_and_destroy_nothing(pair) -> None:
    """Both started together with the same set: each sees the other's three sessions, says so, and stops."""
    a, b = pair
    for rig in pair:
        rig.write("alpha", manifest("alpha", 3))
        rig.run_pass()  # the manifest has not settled yet: nothing is adopted or created
    a.clock.advance(SETTLE)
    together(a, b)
    assert len(list(a.requests("POST"))) == 6  # each created its three (the same names)
    alternate(a, b, 20)
    assert deletes(a) == [] and len(list(a.requests("POST"))) == 6
    assert a.live_by_slot("alpha").total() == 6
    ours = {rig.status_file: set(rig.reconciler.memory.owned) for rig in pair}
    for rig, other in ((a, b), (b, a)):
        conflict = condition(rig, "alpha", "Conflict")
        assert (conflict["status"], conflict["reason"]) == ("True", "SecondWriter")
        assert all(sid in conflict["message"] for sid in ours[other.status_file])
        assert status(rig)["conflicts"] == {"alpha": sorted(ours[other.status_file])}
        assert metric(rig, "canfar_controller_second_writer_sessions", sessionset="alpha") == 3
    # B goes away with its sessions: A manages the set again, with its own three.
    b_ids = ours[b.status_file]
    for sid in b_ids:
        a.delete_outside(sid)
    a.passes(4)
    assert condition(a, "alpha", "Conflict")["status"] == "False"
    assert a.live_by_slot("alpha").total() == 3 and deletes(a) == [] and len(list(a.requests("POST"))) == 6


def test_a_fresh_memory_adopts_the_sessions_of_its_sets_and_acts_on_them(rig: Rig) -> None:
    """The memory volume is lost: the new memory's first pass adopts what runs, creates nothing beside it,
    and a scale-down still removes the adopted sessions above the count."""
    rig.write("workers", manifest("workers", 3))
    rig.passes(2, every=SETTLE)
    rig.passes(3)
    posts = len(list(rig.requests("POST")))
    ledger = Ledger.beside(rig.status_file)
    ledger.snapshot.unlink()
    ledger.journal.unlink(missing_ok=True)
    rig.write("workers", manifest("workers", 2))
    rig.restart()
    rig.clock.advance(SETTLE)
    rig.run_pass()
    rig.clock.advance(DESTRUCTIVE_SETTLE)  # a scale-down waits for the file to stay unchanged
    rig.passes(4)
    assert rig.live_by_slot("workers").total() == 2 and len(list(rig.requests("POST"))) == posts
    assert len(deletes(rig)) == 1 and status(rig)["conflicts"] == {} and status(rig)["unmanaged"] == {}


def test_sessions_whose_answers_died_with_the_process_are_ours_by_name(rig: Rig) -> None:
    """A scale-up's creates are written ahead and sent, then kill -9 before their answers: the restarted
    controller (its inventory long established) finds them by name, not as another writer's."""
    rig.write("workers", manifest("workers", 2))
    rig.passes(2, every=SETTLE)
    rig.passes(2)
    rig.write("workers", manifest("workers", 5))
    rig.clock.advance(SETTLE)
    rig.run_pass()  # the change is seen; it acts once settled
    rig.clock.advance(SETTLE)
    rig.simulator.inject_delay("POST", "/session", seconds=0.05, count=3, apply="after")
    assert rig.crash_mid_pass(in_flight=1)
    rig.passes(6)
    live = {sid for sid, name, state in rig.truth() if state in LIVE and owned(name)}
    assert len(live) == 5 and live <= rig.reconciler.memory.owned and deletes(rig) == []
    assert status(rig)["conflicts"] == {} and condition(rig, "workers", "Conflict")["status"] == "False"


def _prune(rig: Rig, *, act: bool) -> PruneResult:
    """What `canfar-controller prune` does, with the memory as the daemon left it on disk."""
    ledger = Ledger.beside(rig.status_file)
    memory = Ledger(ledger.snapshot, ledger.journal, copy_torn=False).load()
    desired = StateLoader(rig.state, prefix="cc").load()
    assert rig.client is not None
    return rig.loop.run_until_complete(prune(rig.client, memory, desired, prefix="cc",
                                             where=str(ledger.snapshot), act=act))


def test_after_the_memory_is_lost_leftovers_stay_until_pruned_on_purpose(rig: Rig) -> None:
    """A set removed while the memory volume was lost is not the new memory's: reported, never destroyed;
    `prune` lists it (dry run), then removes exactly it."""
    rig.write("alpha", manifest("alpha", 2))
    rig.write("beta", manifest("beta", 2))
    rig.passes(2, every=SETTLE)
    rig.passes(3)
    ledger = Ledger.beside(rig.status_file)
    ledger.snapshot.unlink()
    ledger.journal.unlink(missing_ok=True)
    (rig.state / "beta.yaml").unlink()
    rig.restart()
    with pytest.raises(ConfigError, match="no inventory"):
        _prune(rig, act=False)  # nothing on disk claims anything yet: pruning now would remove everything
    rig.passes(30)
    assert deletes(rig) == [] and rig.live_by_slot("beta").total() == 2
    assert status(rig)["unmanaged"] == {"beta": 2}
    dry = _prune(rig, act=False)
    beta = {sid for sid, name, state in rig.truth() if state in LIVE and name.startswith("cc-beta-")}
    assert {s.id for s in dry.found.prunable} == beta and dry.destroyed == [] and deletes(rig) == []
    done = _prune(rig, act=True)
    assert set(done.destroyed) == beta and set(deletes(rig)) == beta and done.failed == {}
    rig.passes(2)
    assert status(rig)["unmanaged"] == {} and rig.live_by_slot("alpha").total() == 2
