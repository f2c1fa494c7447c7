"""Autoscaled sets end to end in process: the real controller, the simulator, a file signal, a manual clock."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability.rig import IMAGE, Rig

SCALED = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: {name}
spec:
  template:
    image: {image}
    cores: 1
    ram: 1
    cmd: sleep
    args: "10000000"
  autoscale:
    minReplicas: 0
    maxReplicas: 12
    target: 5
    signals:
      - file: {signal}
    scaleUp: {{stabilizationSeconds: 0, maxStep: {up}}}
    scaleDown: {{stabilizationSeconds: {window}, policy: {policy}, maxStep: {down}}}
    onSignalFailure: Hold
"""


def scaled(rig: Rig, *, policy: str = "Drain", window: int = 60, up: int = 10, down: int = 10,
           name: str = "queue") -> Path:
    signal = rig.root / "depth"
    rig.write(name, SCALED.format(name=name, image=IMAGE, signal=signal, policy=policy, window=window, up=up,
                                  down=down))
    return signal


def slots(rig: Rig, name: str = "queue") -> list[int]:
    return sorted(slot for (_, slot), n in rig.live_by_slot(name).items() for _ in range(n))


def running_slots(rig: Rig, name: str = "queue") -> list[int]:
    return sorted(int(session_name.rsplit("-", 1)[1]) for _, session_name, status in rig.truth()
                  if session_name.startswith(f"cc-{name}-") and status == "Running")


def status_of(rig: Rig, name: str = "queue") -> dict:
    return json.loads(rig.status_file.read_text())["sets"][name]


def settle(rig: Rig, passes: int = 4) -> None:
    """Passes 10 s apart: sessions start, lists confirm."""
    rig.passes(passes, every=10.0)


def test_a_file_signal_scales_up_then_down_after_the_window(rig: Rig):
    signal = scaled(rig, window=60)
    signal.write_text("40\n")
    settle(rig)
    assert slots(rig) == list(range(1, 9))  # ceil(40 / 5)
    signal.write_text("12")
    rig.clock.advance(10)
    rig.run_pass()
    assert slots(rig) == list(range(1, 9))  # inside the scale-down window: nothing given up
    assert "scale-down window" in status_of(rig)["autoscale"]["why"]
    rig.clock.advance(61)
    settle(rig)
    # Drain: slots 4..8 are above the count; their Running sessions are never destroyed.
    assert status_of(rig)["desired"] == 3
    assert running_slots(rig) == list(range(1, 9))
    assert "Drain: waiting for 5 session(s)" in status_of(rig)["autoscale"]["why"]


def test_drain_never_refills_a_slot_above_the_count_once_its_session_ends(eager_rig: Rig):
    rig = eager_rig  # no scale-down window at all
    signal = scaled(rig, window=0)
    signal.write_text("20")
    settle(rig)
    assert slots(rig) == [1, 2, 3, 4]
    signal.write_text("5")
    settle(rig, 2)
    assert slots(rig) == [1, 2, 3, 4]  # Drain: 2..4 run on
    session_id = next(sid for sid, name, _ in rig.truth() if name.endswith("-4"))
    rig.delete_outside(session_id)  # the job in slot 4 ends
    settle(rig)
    assert slots(rig) == [1, 2, 3]
    signal.write_text("15")  # the queue grows again: slots 2 and 3 are kept, slot 4 not needed
    settle(rig)
    assert slots(rig) == [1, 2, 3]
    assert len(list(rig.requests("DELETE"))) == 0


def twelve_then_idle(rig: Rig, *, down: int = 10) -> None:
    """A Destroy set with no scale-down window runs 12 sessions; its queue empties, a pass 10 s later."""
    signal = scaled(rig, policy="Destroy", window=0, down=down)
    signal.write_text("60")
    settle(rig)
    assert slots(rig) == list(range(1, 13))
    signal.write_text("0")
    rig.clock.advance(10)
    rig.run_pass()


def test_a_scale_down_waits_at_least_the_destructive_settle_window(rig: Rig):
    """stabilizationSeconds: 0 with the default --destructive-settle 30: the scale-down waits 30 s."""
    twelve_then_idle(rig)
    rig.clock.advance(15)
    rig.run_pass()
    assert slots(rig) == list(range(1, 13))  # 25 s after the drop: nothing given up
    assert list(rig.requests("DELETE")) == []
    assert "the highest recommendation of the last 30 s is 12" in status_of(rig)["autoscale"]["why"]
    rig.clock.advance(10)
    settle(rig)
    assert slots(rig) == []


def test_destroy_gives_up_the_highest_slots_at_most_max_step_per_pass(eager_rig: Rig):
    rig = eager_rig  # no scale-down window at all
    twelve_then_idle(rig, down=2)
    assert slots(rig) == list(range(1, 11))  # two per pass, the highest first
    settle(rig, 6)
    assert slots(rig) == []


def test_the_windows_survive_a_restart(rig: Rig):
    signal = scaled(rig, window=300)
    signal.write_text("30")
    settle(rig)
    assert slots(rig) == [1, 2, 3, 4, 5, 6]
    signal.write_text("0")
    rig.restart()
    rig.clock.advance(60)
    settle(rig)
    assert status_of(rig)["desired"] == 6  # the recommendations of the last 300 s came back with the memory
    rig.clock.advance(300)
    settle(rig)
    assert status_of(rig)["desired"] == 0


def test_a_failing_signal_never_scales_down_and_stops_scaling_after_three_reads(rig: Rig):
    signal = scaled(rig, window=0)
    signal.write_text("25")
    settle(rig)
    assert slots(rig) == [1, 2, 3, 4, 5]
    signal.write_text("lots")
    settle(rig, 2)
    assert slots(rig) == [1, 2, 3, 4, 5]
    condition = next(c for c in status_of(rig)["conditions"] if c["type"] == "ScalingActive")
    assert condition["status"] == "True"
    signal.unlink()
    settle(rig, 2)
    assert slots(rig) == [1, 2, 3, 4, 5]
    condition = next(c for c in status_of(rig)["conditions"] if c["type"] == "ScalingActive")
    assert condition["status"] == "False" and condition["reason"] == "FailedGetSignal"
    assert "does not exist" in condition["message"]
    assert rig.metrics.registry.get_sample_value("canfar_controller_autoscale_signal_failures_total", {
        "sessionset": "queue", "signal": f"file {signal}"}) == 4
    signal.write_text("0")
    settle(rig)
    assert slots(rig) == [1, 2, 3, 4, 5]  # Drain keeps the running ones
    assert status_of(rig)["desired"] == 0


def test_metrics_show_the_signal_the_recommendation_and_the_count_in_force(rig: Rig):
    signal = scaled(rig, window=60, up=3)
    signal.write_text("40")
    rig.run_pass()  # the new file settles first
    rig.clock.advance(10)
    rig.run_pass()
    registry = rig.metrics.registry
    labels = {"sessionset": "queue"}
    assert registry.get_sample_value("canfar_controller_autoscale_signal_value",
                                     {**labels, "signal": f"file {signal}"}) == 40
    assert registry.get_sample_value("canfar_controller_autoscale_recommended_replicas", labels) == 8
    assert registry.get_sample_value("canfar_controller_sessionset_desired_replicas", labels) == 3  # step limit
    assert "step limit" in status_of(rig)["autoscale"]["why"]


def test_a_signal_that_jumps_fails_and_tears_never_destroys_a_running_session(tmp_path: Path):
    """Seeded soak: the file jumps, vanishes, holds garbage or half a number; with Drain no Running session
    is ever destroyed (Pending ones above the count are), no slot has two live sessions, and the count stays
    within [0, 12]. Sessions take 60 s to start, so scale-downs meet Pending sessions too."""
    import random

    rig = Rig(tmp_path, service={"pending_seconds": 60.0})
    try:
        soak(rig, random.Random(17))
    finally:
        rig.close()


def soak(rig: Rig, chance) -> None:

    signal = scaled(rig, window=0, up=4, down=3)
    signal.write_text("20")
    settle(rig)
    since = max(r.seq for r in rig.simulator.requests)
    drained = destroyed = failed = 0
    for _ in range(120):
        roll = chance.random()
        if roll < 0.1:
            signal.unlink(missing_ok=True)
        elif roll < 0.2:
            signal.write_text(chance.choice(["", "x", "NaN", "-4", "4"]))  # garbage, or a torn "40"
        elif roll < 0.5:
            signal.write_text(str(chance.randint(0, 80)))
        rig.clock.advance(chance.choice([1.0, 5.0, 10.0, 30.0]))
        before = {sid: status for sid, _, status in rig.truth()}
        rig.run_pass()
        deleted = [r.path.rsplit("/", 1)[-1] for r in rig.requests("DELETE", since)]
        since = max([since, *(r.seq for r in rig.simulator.requests)])
        assert all(before.get(sid) != "Running" for sid in deleted), "Drain destroyed a running session"
        assert all(n == 1 for n in rig.live_by_slot("queue").values())
        assert 0 <= status_of(rig)["desired"] <= 12
        drained += status_of(rig)["autoscale"]["draining"] > 0
        destroyed += len(deleted)
        failed += status_of(rig)["autoscale"]["error"] is not None
    assert drained and destroyed and failed, (drained, destroyed, failed)  # the soak went through all of it


PLATFORM = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: soak
spec:
  template: {{image: {image}, cores: 2, ram: 1, cmd: sleep, args: "10000000"}}
  autoscale:
    maxReplicas: 40
    target: 1
    signals:
      - platform: {{reserveCores: 8}}
    scaleDown: {{stabilizationSeconds: 0, policy: Destroy}}
"""


def test_the_platform_signal_soaks_up_free_capacity_and_gives_it_back(tmp_path: Path):
    """40 cores, 8 kept free for others, 2 per session: 16 sessions; when others take 12 cores, 6 go."""
    rig = Rig(tmp_path, service={"cores": 40, "ram_gb": 1000})
    try:
        rig.write("soak", PLATFORM.format(image=IMAGE))
        for _ in range(6):
            rig.clock.advance(60)  # the stats job's interval: each pass plans against fresh statistics
            rig.run_pass()
        assert len(slots(rig, "soak")) == 16 and status_of(rig, "soak")["desired"] == 16
        for index in range(12):  # another user's sessions: 12 flexible ones, 1 core each
            rig.add_foreign(f"other-{index}", args="10000000")
        for _ in range(4):
            rig.clock.advance(60)
            rig.run_pass()
        assert status_of(rig, "soak")["desired"] == 10
        assert slots(rig, "soak") == list(range(1, 11))  # the highest slots were given back
    finally:
        rig.close()
