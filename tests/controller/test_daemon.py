"""The daemon end to end: a real process, real HTTP, the simulator on a fast clock."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from tests.controller.conftest import manifest, wait_until

pytestmark = pytest.mark.slow


def slots(sessions, set_name="workers"):
    """Slot numbers of the given sessions of one set, as a sorted list (duplicates kept)."""
    pattern = re.compile(rf"cc-{set_name}-[0-9a-f]{{6}}-(\d+)")
    return sorted(int(m[1]) for s in sessions if (m := pattern.fullmatch(s["name"])))


def running_slots(service, set_name="workers"):
    return slots([s for s in service.live() if s["status"] == "Running"], set_name)


def test_converges_from_empty_and_replaces_a_session_destroyed_from_outside(service, state, daemon):
    """Three slots appear; one deleted by hand comes back as the same slot with a new id."""
    (state / "workers.yaml").write_text(manifest("workers", 3))
    process = daemon()
    wait_until(lambda: running_slots(service) == [1, 2, 3], what="3 running workers")
    process.wait_passes(1)  # the daemon has listed its creates: they are no longer just expected
    victim = next(s for s in service.live() if s["name"].endswith("-2"))
    service.delete(victim["id"])
    wait_until(lambda: running_slots(service) == [1, 2, 3] and victim["id"] not in {s["id"] for s in service.live()},
               what="slot 2 replaced")
    replaced = next(s for s in service.live() if s["name"].endswith("-2"))
    assert replaced["id"] != victim["id"] and replaced["name"] == victim["name"]
    assert process.stop() == 0


def test_restart_policy_decides_what_runs_again(service, state, daemon):
    """Completed under Never stays done; Failed under OnFailure runs again; both are cleaned up."""
    (state / "done.yaml").write_text(manifest("done", 2, cmd="true", args=None, policy="Never"))
    (state / "flaky.yaml").write_text(manifest("flaky", 1, cmd="python", args="-c print(404);exit(1)",
                                               policy="OnFailure"))
    process = daemon()
    creates = lambda name: [r for r in service.requests("POST", ) if (r.param("name") or "").startswith(f"cc-{name}-")]  # noqa: E731
    wait_until(lambda: len(creates("flaky")) >= 3, timeout=30, what="flaky slot restarted twice")
    process.wait_passes(3)
    assert len(creates("done")) == 2  # ran once per slot, never again
    names = [s["name"] for s in service.sessions() if s["name"].startswith("cc-done-")]
    assert all(s["status"] == "Terminating" for s in service.sessions() if s["name"] in names)
    audit = [json.loads(line) for line in process.log_file.read_text().splitlines() if '"audit"' in line]
    failed = [e for e in audit if e["reason"] == "Ended" and e.get("phase") == "Failed"]
    assert failed and all(e["sessionset"] == "flaky" for e in failed)
    assert failed[0]["logs_tail"] and failed[0]["events"]  # the evidence was kept before the destroy


def test_scale_up_and_down(service, state, daemon):
    """Raising replicas adds slots; lowering them removes the highest slots only."""
    (state / "workers.yaml").write_text(manifest("workers", 2))
    daemon("--destructive-settle", "0")  # the scale-down acts at once (test_destructive_settle waits)
    wait_until(lambda: running_slots(service) == [1, 2], what="2 workers")
    keep = {s["id"] for s in service.live()}
    (state / "workers.yaml").write_text(manifest("workers", 5))
    wait_until(lambda: running_slots(service) == [1, 2, 3, 4, 5], what="5 workers")
    (state / "workers.yaml").write_text(manifest("workers", 2))
    wait_until(lambda: slots(service.live()) == [1, 2], what="back to 2 workers")
    assert {s["id"] for s in service.live()} == keep


def test_removed_manifest_is_pruned_and_invalid_manifest_is_left_alone(service, state, daemon):
    """Deleting a set's file prunes its sessions; breaking a file leaves its sessions running."""
    (state / "keep.yaml").write_text(manifest("keep", 1))
    (state / "gone.yaml").write_text(manifest("gone", 2))
    (state / "broken.yaml").write_text(manifest("broken", 2))
    process = daemon("--destructive-settle", "0")  # the removal acts at once once everything is valid
    wait_until(lambda: (running_slots(service, "gone"), running_slots(service, "broken"))
               == ([1, 2], [1, 2]), what="all sets up")
    broken_ids = {s["id"] for s in service.live("cc-broken-")}
    (state / "broken.yaml").write_text(manifest("broken", 2).replace("replicas: 2", "replicas: lots"))
    # The edit is acted on once it has settled (1 s), then reported.
    wait_until(lambda: "spec.replicas" in " ".join(process.status().get("manifest_errors", [])),
               what="the broken manifest reported")
    (state / "gone.yaml").unlink()
    process.wait_passes(1)
    wait_until(lambda: process.status().get("unsettled") == [], what="the removal settled")
    process.wait_passes(2)
    # While a manifest is invalid nothing is pruned: the broken file might be where 'gone' moved.
    assert running_slots(service, "gone") == [1, 2]
    assert {s["id"] for s in service.live("cc-broken-")} == broken_ids
    (state / "broken.yaml").write_text(manifest("broken", 2))
    wait_until(lambda: service.live("cc-gone-") == [], what="orphans pruned once all manifests are valid")
    assert {s["id"] for s in service.live("cc-broken-")} == broken_ids
    assert running_slots(service, "keep") == [1]


def test_failing_list_destroys_nothing(service, state, daemon):
    """While the list call fails, no session is created or destroyed, orphans included."""
    (state / "keep.yaml").write_text(manifest("keep", 1))
    (state / "gone.yaml").write_text(manifest("gone", 1))
    process = daemon("--destructive-settle", "0")  # what holds the prune is the failing list alone
    wait_until(lambda: running_slots(service, "gone") == [1] and running_slots(service, "keep") == [1],
               what="both sets up")
    service.simulator.inject_fault(method="GET", path="/session", status=500, count=10_000)
    (state / "gone.yaml").unlink()
    before = len(service.requests())
    wait_until(lambda: process.status().get("result") == "error", what="a pass whose list failed")
    process.wait_passes(1)  # and another one, retries and all
    during = service.requests()[before:]
    assert [r for r in during if r.method in ("POST", "DELETE")] == []
    assert any(r.fault for r in during)
    assert process.status()["result"] == "error"
    service.simulator.clear_faults()
    wait_until(lambda: service.live("cc-gone-") == [], what="pruned after the list recovers")


def test_foreign_sessions_are_never_touched(service, state, daemon):
    """Sessions without the prefix survive, even ended ones and look-alikes."""
    foreign = [service.create("analysis"), service.create("cc", cmd="false", args="x"),
               service.create("ccx-workers-abcdef-1")]
    (state / "workers.yaml").write_text(manifest("workers", 1))
    process = daemon()
    wait_until(lambda: running_slots(service) == [1], what="one worker")
    process.wait_passes(4)
    touched = {r.path.rsplit("/", 1)[-1] for r in service.requests("DELETE")}
    assert touched.isdisjoint(foreign)
    assert {s["id"] for s in service.sessions()} >= set(foreign)


def test_converged_pass_makes_one_list_call_and_nothing_else(service, state, daemon):
    """After convergence a pass lists once for all sets, and creates and destroys nothing."""
    for name in ("alpha", "beta", "gamma"):
        (state / f"{name}.yaml").write_text(manifest(name, 2))
    process = daemon("--stats-interval", "3600")
    wait_until(lambda: all(running_slots(service, n) == [1, 2] for n in ("alpha", "beta", "gamma")),
               what="three sets converged")
    process.wait_passes(2)
    start = process.pass_id()
    mark = len(service.requests())
    process.wait_passes(3)
    passes = process.pass_id() - start
    window = service.requests()[mark:]
    lists = [r for r in window if r.method == "GET" and r.path == "/session" and r.param("view") is None]
    assert [r for r in window if r.method != "GET"] == []
    assert passes - 1 <= len(lists) <= passes + 1  # one per pass (the window's edges may cut one)
    assert len(window) == len(lists)


def test_sigterm_stops_and_destroys_nothing(service, state, daemon):
    """SIGTERM ends the daemon, exit 0, without destroying any session."""
    (state / "workers.yaml").write_text(manifest("workers", 2))
    process = daemon()
    wait_until(lambda: running_slots(service) == [1, 2], what="2 workers")
    assert process.stop(signal.SIGTERM) == 0
    assert service.requests("DELETE") == []
    assert running_slots(service) == [1, 2]


def test_second_controller_on_the_same_state_dir_refuses(service, state, daemon):
    """Only one controller may act on a state directory; the second exits 1 naming the lock file and its holder."""
    (state / "workers.yaml").write_text(manifest("workers", 1))
    first = daemon()
    first.wait_passes(1)
    second = daemon()
    assert second.proc.wait(timeout=15) == 1
    assert (f"another canfar-controller is already managing {state} (process {first.proc.pid} holds the lock "
            f"file {state}, an flock on the state directory itself)") in second.log_file.read_text()


def test_dry_run_acts_on_nothing(service, state, daemon):
    """--dry-run plans and logs, but sends no create or destroy."""
    (state / "workers.yaml").write_text(manifest("workers", 3))
    process = daemon("--dry-run")
    process.wait_passes(3)
    assert [r for r in service.requests() if r.method in ("POST", "DELETE")] == []
    assert "would act" in process.log_file.read_text()


def test_manifest_change_takes_effect_within_about_a_second(service, state, daemon):
    """With a 30 s interval, an edited manifest still acts at once: the directory is watched."""
    (state / "workers.yaml").write_text(manifest("workers", 1))
    daemon(interval=30)
    wait_until(lambda: slots(service.live()) == [1], what="first worker")
    (state / "workers.yaml").write_text(manifest("workers", 3))
    changed = time.monotonic()
    wait_until(lambda: slots(service.live()) == [1, 2, 3], timeout=10, what="scale-up from the edit")
    assert time.monotonic() - changed < 3


def test_sighup_starts_a_pass_at_once(service, state, daemon):
    """SIGHUP re-reads everything and runs a pass without waiting for the interval."""
    (state / "workers.yaml").write_text(manifest("workers", 1))
    process = daemon(interval=30)
    wait_until(lambda: process.pass_id() >= 1, what="first pass")
    before = process.pass_id()
    process.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: process.pass_id() > before, timeout=5, what="a pass after SIGHUP")


def test_capped_work_continues_at_once_not_after_the_interval(service, state, daemon):
    """With 2 creates allowed per pass and a 30 s interval, 6 slots still fill within seconds."""
    (state / "workers.yaml").write_text(manifest("workers", 6))
    process = daemon("--max-creates-per-pass", "2", interval=30)
    wait_until(lambda: slots(service.live()) == [1, 2, 3, 4, 5, 6], timeout=10, what="6 slots via 3 passes")
    wait_until(lambda: process.pass_id() >= 3, timeout=5, what="the third pass recorded")
    posts = service.requests("POST")
    assert len(posts) == 6  # and no duplicates on the way
