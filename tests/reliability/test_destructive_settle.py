"""Destructive manifest changes wait for a stable file, in process: the real controller, the simulator, a manual clock.

The issue's case: ``replicas: 30`` rewritten as ``replicas: 3`` … a 2 s stall … ``0`` destroyed 27
running sessions, because the 1 s settle window is shorter than the stall.
"""

from __future__ import annotations

import json
from typing import Any

from structlog.testing import capture_logs

from controller.cli.statustable import table
from controller.plan import DESTRUCTIVE_SETTLE
from controller.statusfile import read_status
from tests.reliability.rig import Rig, manifest


def running(rig: Rig, name: str = "workers") -> set[str]:
    return {sid for sid, session, status in rig.truth() if session.startswith(f"cc-{name}-") and status == "Running"}


def replicas_last(name: str, replicas: int) -> str:
    """The rig's manifest with ``replicas`` as its last line (a write cut after ``replicas: 3`` is valid)."""
    text = manifest(name, replicas).replace(f"  replicas: {replicas}\n", "")
    return f"{text}  replicas: {replicas}\n"


def converge(rig: Rig, name: str, replicas: int) -> set[str]:
    rig.write(name, replicas_last(name, replicas))
    rig.passes(4, every=5.0)
    ids = running(rig, name)
    assert len(ids) == replicas
    return ids


def pending(rig: Rig) -> list[dict[str, Any]]:
    return json.loads(rig.status_file.read_text())["pending_changes"]


def test_a_write_stalled_for_2_s_mid_file_destroys_nothing(rig: Rig) -> None:
    """``replicas: 3`` … 2 s … ``0``: the half-written file settles after 1 s and reads as a scale-down
    of 27, which waits; the rest arrives, and the 30 sessions run on. Nothing created, nothing destroyed."""
    thirty = converge(rig, "workers", 30)
    posts = len(list(rig.requests("POST")))
    whole = replicas_last("workers", 30)
    rig.write("workers", whole[: whole.index("replicas: 30") + len("replicas: 3")])
    outcomes = []
    for _ in range(5):  # a pass every 0.5 s through the stall
        outcomes.append(rig.run_pass())
        rig.clock.advance(0.5)
    assert outcomes[-1].plan.statuses["workers"].desired == 3  # the torn file did settle
    assert [(p["change"], p["sessions"]) for p in pending(rig)] == [("scale-down 30→3", 27)]
    assert outcomes[-1].requeue_after is not None and outcomes[-1].requeue_after <= DESTRUCTIVE_SETTLE
    rig.write("workers", whole)  # the rest of the write
    rig.passes(20, every=5.0)
    assert list(rig.requests("DELETE")) == []
    assert len(list(rig.requests("POST"))) == posts
    assert running(rig) == thirty
    assert pending(rig) == []


def test_a_real_scale_down_acts_once_the_file_has_been_unchanged_for_the_window(rig: Rig) -> None:
    """The status shows what waits and when it acts; the scale-down happens then, not before."""
    converge(rig, "workers", 30)
    rig.write("workers", manifest("workers", 3))
    written = rig.clock()
    with capture_logs() as logs:
        rig.run_pass()
        rig.clock.advance(1.0)
        outcome = rig.run_pass()
        rig.clock.advance(1.0)
        rig.run_pass()
    said = [e for e in logs if e["event"].startswith("a manifest change would destroy live sessions")]
    assert [(e["sessionset"], e["change"], e["sessions"]) for e in said] == [("workers", "scale-down 30→3", 27)]
    [change] = pending(rig)
    assert (change["change"], change["sessions"], change["acts_at"]) == ("scale-down 30→3", 27,
                                                                         written + DESTRUCTIVE_SETTLE)
    assert outcome.requeue_after == DESTRUCTIVE_SETTLE - 1.0  # the pass wakes when it may act
    shown = table(read_status(rig.status_file), rig.status_file)
    assert "pending workers: scale-down 30→3 acts at" in shown and "manifest unchanged for 30 s" in shown
    rig.clock.advance(DESTRUCTIVE_SETTLE - 3.0)
    rig.run_pass()
    assert list(rig.requests("DELETE")) == []  # 29 s after the write
    rig.clock.advance(1.0)
    rig.run_pass()
    assert len(list(rig.requests("DELETE"))) == 27
    rig.passes(3, every=5.0)
    assert len(running(rig)) == 3 and pending(rig) == []


def test_a_deleted_manifest_prunes_its_sessions_only_once_the_absence_is_stable(rig: Rig) -> None:
    """A file deleted (and, say, about to be copied back): its sessions are orphans only after the window."""
    converge(rig, "keep", 1)
    gone = converge(rig, "gone", 3)
    (rig.state / "gone.yaml").unlink()
    deleted = rig.clock()
    while rig.clock() < deleted + DESTRUCTIVE_SETTLE - 5.0:
        rig.run_pass()
        rig.clock.advance(5.0)
    assert list(rig.requests("DELETE")) == [] and running(rig, "gone") == gone
    assert [(p["set_name"], p["change"]) for p in pending(rig)] == [("gone", "set removed")]
    rig.passes(4, every=5.0)
    assert {r.path.rsplit("/", 1)[-1] for r in rig.requests("DELETE")} == gone
