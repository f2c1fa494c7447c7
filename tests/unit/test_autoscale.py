"""Autoscaled sets: the manifest, the pure recommendation (windows, clamps, activation, failures), the
slots above the count (Drain, Destroy) and the memory that keeps the windows across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.ledger import Ledger
from controller.plan import Memory, PlanOptions, plan
from controller.plan.autoscale import FAILURES_BEFORE_INACTIVE, Reading, ScaleState, decide
from controller.plan.capacity import Capacity
from controller.spec import Autoscale, SessionSet
from controller.statedir import StateLoader
from controller.units import GIB
from tests.unit.test_plan import NOW, desired, running, session

OPTIONS = PlanOptions(prefix="cc")


def autoscale(**fields: object) -> Autoscale:
    return Autoscale.model_validate({"maxReplicas": 40, "target": 5, "signals": [{"file": "/q"}], **fields})


def scaled_set(name: str = "workers", **fields: object) -> SessionSet:
    return SessionSet.model_validate({
        "apiVersion": "canfar.controller/v1alpha1", "kind": "SessionSet", "metadata": {"name": name},
        "spec": {"autoscale": {"maxReplicas": 40, "target": 5, "signals": [{"file": "/q"}], **fields},
                 "template": {"image": "images.canfar.net/skaha/astroml:latest", "cores": 2, "ram": 8}},
    })


class Clock:
    """Passes of the autoscaler on a manual clock, keeping its state as the memory would."""

    def __init__(self, spec: Autoscale, count: int | None = None) -> None:
        self.spec, self.now = spec, NOW
        self.state = ScaleState(count) if count is not None else None

    def read(self, *values: float | str, after: float = 30.0):
        self.now += after
        readings = [Reading(error=v) if isinstance(v, str) else Reading(value=v) for v in values]
        decision = decide(self.spec, readings, self.state, self.now)
        self.state = decision.state
        return decision


# -- the manifest ------------------------------------------------------------------------------------

MANIFEST = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: workers
spec:
  template:
    image: images.canfar.net/skaha/terminal:1.1.2
  autoscale:
    minReplicas: 0
    maxReplicas: 40
    target: 5
    signals:
      - file: /var/lib/queue/depth
      - http: {url: "https://queue.example.org/stats", field: queue.pending, tokenFile: /run/secrets/q}
      - prometheus: {url: "http://prometheus:9090", query: 'sum(pending_jobs{queue="lsst"})'}
      - platform: {reserveCores: 32, reserveRAM: 128}
    scaleUp: {stabilizationSeconds: 0, maxStep: 10}
    scaleDown: {stabilizationSeconds: 300, policy: Drain}
    onSignalFailure: Hold
"""


def load(tmp_path: Path, text: str):
    (tmp_path / "a.yaml").write_text(text)
    return StateLoader(tmp_path, prefix="cc").load()


def test_the_issue_manifest_loads(tmp_path):
    state = load(tmp_path, MANIFEST)
    assert not state.errors
    spec = state.sets["workers"].spec
    assert spec.replicas is None and spec.autoscale is not None
    assert [s.kind for s in spec.autoscale.signals] == ["file", "http", "prometheus", "platform"]
    assert spec.autoscale.scale_down.max_step == 10 and spec.autoscale.on_signal_failure == "Hold"


@pytest.mark.parametrize(("replace", "by", "expected"), [
    ("spec:\n", "spec:\n  replicas: 3\n", "a.yaml:9: spec.autoscale: give either replicas or autoscale, not both"),
    ("    maxReplicas: 40\n", "    maxReplicas: 600\n", "a.yaml:10: spec.autoscale.maxReplicas: Input should be less"),
    ("    minReplicas: 0\n", "    minReplicas: 50\n", "a.yaml:8: spec.autoscale: minReplicas (50) must not exceed"),
    ("    target: 5\n", "    target: 0\n", "a.yaml:11: spec.autoscale.target: Input should be greater than 0"),
    ("Hold", "Sometimes", "a.yaml:19: spec.autoscale.onSignalFailure"),
    ("Hold", "41", "a.yaml:8: spec.autoscale: onSignalFailure must be Hold or a number of replicas between"),
    ("policy: Drain", "policy: Kill", "a.yaml:18: spec.autoscale.scaleDown.policy: Input should be 'Drain'"),
    ("maxStep: 10}", "maxStep: 0}", "a.yaml:17: spec.autoscale.scaleUp.maxStep: Input should be greater"),
    ("      - file: /var/lib/queue/depth\n", "      - {file: /q, platform: {}}\n",
     "a.yaml:13: spec.autoscale.signals.0: a signal is exactly one of file, http, prometheus or platform (got "
     "file, platform)"),
    ("file: /var/lib/queue/depth", "file: queue/depth", "a.yaml:13: spec.autoscale.signals.0: file must be an "
     "absolute path"),
    ('"https://queue.example.org/stats"', '"https://user:pw@queue.example.org/stats"',
     "a.yaml:14: spec.autoscale.signals.1.http.url: must be an http:// or https:// URL without credentials"),
    ("reserveCores: 32", "reserveCores: -1", "a.yaml:16: spec.autoscale.signals.3.platform.reserveCores"),
    ("    signals:\n", "    stabilization: 3\n    signals:\n", "a.yaml:12: spec.autoscale.stabilization: unknown"),
])
def test_bad_autoscale_names_file_line_and_field(tmp_path, replace, by, expected):
    text = MANIFEST.replace(replace, by, 1)
    assert text != MANIFEST
    errors = [str(error).replace(str(tmp_path) + "/", "") for error in load(tmp_path, text).errors]
    assert any(error.startswith(expected) for error in errors), errors
    assert all("pw" not in error for error in errors)


def test_neither_replicas_nor_autoscale_is_an_error(tmp_path):
    text = MANIFEST.split("  autoscale:")[0]
    [error] = load(tmp_path, text).errors
    assert "replicas (a fixed count) or autoscale (a count from signals) is required" in str(error)


# -- the recommendation --------------------------------------------------------------------------------


def test_recommendation_is_the_ceiling_of_value_over_target_and_the_largest_wins():
    spec = autoscale(signals=[{"file": "/a"}, {"file": "/b"}], scaleUp={"maxStep": 100})
    decision = Clock(spec).read(11, 26)
    assert decision.recommendation == 6 and decision.count == 6  # ceil(26 / 5)
    assert decision.values == (("file /a", 11), ("file /b", 26))


def test_clamped_to_min_and_max_with_scaling_limited():
    clock = Clock(autoscale(minReplicas=2, maxReplicas=8, scaleUp={"maxStep": 100},
                            scaleDown={"stabilizationSeconds": 0}))
    high = clock.read(400)
    assert high.count == 8 and high.limited[:2] == ("True", "TooManyReplicas")
    low = clock.read(1)
    assert low.count == 2 and low.limited[:2] == ("True", "TooFewReplicas")
    within = clock.read(20)
    assert within.count == 4 and within.limited[:2] == ("False", "DesiredWithinRange")


def test_activation_means_idle_before_clamping():
    clock = Clock(autoscale(activation=3, minReplicas=1, scaleDown={"stabilizationSeconds": 0}), count=5)
    assert clock.read(3).recommendation == 1  # ceil(3/5) would be 1 as well, but via 0 and the clamp
    assert clock.read(3).limited[1] == "TooFewReplicas"
    assert clock.read(4).recommendation == 1 and clock.read(4).limited[1] == "DesiredWithinRange"


def test_scale_up_takes_the_lowest_of_its_window():
    clock = Clock(autoscale(scaleUp={"stabilizationSeconds": 60, "maxStep": 100}), count=0)
    assert clock.read(50).count == 10
    assert clock.read(10).count == 10  # a dip does not go down (scale-down window of 300 s)
    assert clock.read(100).count == 10  # 20 is wanted, but 2 was seen within the last 60 s
    decision = clock.read(100)
    assert decision.count == 10 and decision.why.startswith("scale-up window")
    assert clock.read(100, after=61).count == 20


def test_scale_down_takes_the_highest_of_its_window_so_a_dip_destroys_nothing():
    clock = Clock(autoscale(scaleUp={"maxStep": 100}), count=0)
    assert clock.read(200).count == 40
    dip = clock.read(0, after=10)
    assert dip.count == 40 and dip.recommendation == 0
    assert dip.why == "scale-down window: the highest recommendation of the last 300 s is 40"
    assert clock.read(0, after=280).count == 40
    assert clock.read(0, after=20).count == 30  # the window has passed; at most -10 per pass
    assert clock.read(0).why == "step limit: at most -10 per pass"


def test_scale_up_moves_at_most_max_step_per_pass():
    clock = Clock(autoscale(), count=0)
    counts = [clock.read(200).count for _ in range(5)]
    assert counts == [10, 20, 30, 40, 40]


@pytest.mark.parametrize("error", ["timeout after 5 s", "HTTP 500", "not a number: 'NaN'"])
def test_a_failed_read_never_scales_down_and_three_in_a_row_stop_scaling(error):
    clock = Clock(autoscale(scaleDown={"stabilizationSeconds": 0}), count=8)
    for failures in range(1, FAILURES_BEFORE_INACTIVE):
        decision = clock.read(error)
        assert decision.count == 8 and decision.active[0] == "True" and f"{failures} of 3" in decision.active[2]
    decision = clock.read(error)
    assert decision.count == 8 and decision.recommendation is None
    assert decision.active[:2] == ("False", "FailedGetSignal") and error in decision.active[2]
    assert "holding the count" in decision.why
    recovered = clock.read(0)
    assert recovered.active[0] == "True" and recovered.state.failures == 0 and recovered.count == 0


def test_a_failed_signal_beside_a_readable_one_allows_scale_up_only():
    clock = Clock(autoscale(signals=[{"file": "/a"}, {"file": "/b"}], scaleDown={"stabilizationSeconds": 0}),
                  count=8)
    assert clock.read(0, "missing file").count == 8
    assert clock.read(60, "missing file").count == 12


def test_failures_enter_no_window():
    clock = Clock(autoscale(scaleUp={"stabilizationSeconds": 120, "maxStep": 100}), count=0)
    clock.read("torn")
    assert clock.state.history == ()
    assert clock.read(50).count == 10


def test_on_signal_failure_number_sets_the_count():
    clock = Clock(autoscale(onSignalFailure=3), count=8)
    decision = clock.read("HTTP 503")
    assert decision.count == 3 and "onSignalFailure sets 3" in decision.why


def test_the_history_keeps_only_the_longest_window():
    clock = Clock(autoscale(scaleDown={"stabilizationSeconds": 100}), count=0)
    for value in [5, 10] * 10:
        clock.read(value)
    assert [r for _, r in clock.state.history] == [2, 1, 2, 1, 2]  # 30 s apart: runs reaching into 100 s


def test_a_steady_signal_leaves_the_memory_unchanged():
    """Only a change of the recommendation is remembered, so a steady pass writes nothing to disk."""
    clock = Clock(autoscale(), count=0)
    clock.read(20)
    first = clock.state
    for _ in range(5):
        clock.read(20)
    assert clock.state == first


# -- the planner --------------------------------------------------------------------------------------


def scaled(set_: SessionSet, memory: Memory, observed, readings, now: float, capacity=None):
    return plan(desired(set_), observed, memory, now, options=OPTIONS, capacity=capacity,
                signals={set_.name: readings})


def test_a_new_autoscaled_set_creates_slots_one_to_the_count():
    s = scaled_set()
    result = scaled(s, Memory(), [], [Reading(value=17)], NOW)
    assert sorted(c.slot for c in result.creates) == [1, 2, 3, 4]
    assert {c.replicas for c in result.creates} == {4}
    status = result.statuses["workers"]
    assert status.desired == 4 and status.scaling.recommendation == 4
    assert status.condition("ScalingActive").status == "True"
    assert result.memory.autoscale["workers"].count == 4


def four_running(s: SessionSet, pending: tuple[int, ...] = ()):
    return [running(s, slot, status="Pending" if slot in pending else "Running") for slot in range(1, 5)]


def test_drain_never_destroys_a_running_session_above_the_count_and_destroys_a_pending_one():
    s = scaled_set(scaleDown={"stabilizationSeconds": 0})
    memory = Memory(autoscale={"workers": ScaleState(4)})
    result = scaled(s, memory, four_running(s, pending=(4,)), [Reading(value=5)], NOW)
    assert [(d.name.rsplit("-", 1)[1], d.reason) for d in result.destroys] == [("4", "scaled-down")]
    assert result.creates == ()
    status = result.statuses["workers"]
    assert status.desired == 1 and status.draining == 2
    assert status.scaling_why() == "Drain: waiting for 2 session(s) above the count to end"


def test_drain_does_not_refill_a_slot_above_the_count_when_its_session_ends():
    s = scaled_set(scaleDown={"stabilizationSeconds": 0})
    memory = Memory(autoscale={"workers": ScaleState(1)})
    observed = [running(s, 1), running(s, 2, status="Succeeded"), running(s, 3)]
    result = scaled(s, memory, observed, [Reading(value=5)], NOW)
    assert [(d.name.rsplit("-", 1)[1], d.reason) for d in result.destroys] == [("2", "ended")]
    assert result.creates == ()


def test_a_drained_slot_is_kept_when_the_signal_rises_again():
    s = scaled_set(scaleDown={"stabilizationSeconds": 0})
    memory = Memory(autoscale={"workers": ScaleState(1)})
    result = scaled(s, memory, four_running(s), [Reading(value=20)], NOW)
    assert result.destroys == () and result.creates == ()
    assert result.statuses["workers"].desired == 4 and result.statuses["workers"].draining == 0


def test_destroy_removes_pending_first_then_the_highest_slots_at_most_max_step():
    s = scaled_set(scaleDown={"stabilizationSeconds": 0, "policy": "Destroy", "maxStep": 2})
    memory = Memory(autoscale={"workers": ScaleState(0)})  # e.g. switched from Drain with four still running
    result = scaled(s, memory, four_running(s, pending=(2,)), [Reading(value=0)], NOW)
    assert sorted(d.name.rsplit("-", 1)[1] for d in result.destroys) == ["2", "4"]
    assert result.statuses["workers"].draining == 2


def test_a_failed_signal_keeps_every_session():
    s = scaled_set(scaleDown={"stabilizationSeconds": 0, "policy": "Destroy"})
    memory = Memory(autoscale={"workers": ScaleState(4)})
    for _ in range(3):
        result = scaled(s, memory, four_running(s), [Reading(error="HTTP 500")], NOW)
        memory = result.memory
    assert result.destroys == () and result.statuses["workers"].desired == 4
    condition = result.statuses["workers"].condition("ScalingActive")
    assert condition.status == "False" and condition.reason == "FailedGetSignal"


def test_the_platform_signal_follows_free_capacity_minus_the_reserve():
    s = scaled_set(signals=[{"platform": {"reserveCores": 8, "reserveRAM": 32}}], scaleUp={"maxStep": 100},
                   scaleDown={"stabilizationSeconds": 0, "maxStep": 100})
    roomy = Capacity(cores_free=40, ram_free=1000 * GIB)
    result = scaled(s, Memory(), [], [], NOW, capacity=roomy)
    assert result.statuses["workers"].desired == 16  # (40 - 8) / 2 cores
    memory = Memory(autoscale={"workers": ScaleState(16)})
    busy = Capacity(cores_free=4, ram_free=1000 * GIB)  # others took the room: give 2 sessions' worth back
    assert scaled(s, memory, [], [], NOW, capacity=busy).statuses["workers"].desired == 14
    blind = scaled(s, memory, [], [], NOW, capacity=None)
    assert blind.statuses["workers"].desired == 16 and "platform statistics unavailable" in blind.statuses[
        "workers"].scaling.why


def test_the_windows_survive_a_restart(tmp_path):
    s = scaled_set()
    ledger = Ledger(tmp_path / "m.json", tmp_path / "m.journal")
    up = scaled(s, Memory(), [], [Reading(value=50)], NOW)
    ledger.save(up.memory)
    restored = Ledger(tmp_path / "m.json", tmp_path / "m.journal").load()
    assert restored.autoscale == up.memory.autoscale
    observed = [running(s, slot) for slot in range(1, 11)]
    after = scaled(s, restored, observed, [Reading(value=0)], NOW + 60)
    assert after.destroys == () and after.statuses["workers"].desired == 10
    assert after.statuses["workers"].scaling.why.startswith("scale-down window")


def test_a_blind_pass_reports_the_count_in_force():
    s = scaled_set()
    result = plan(desired(s), None, Memory(autoscale={"workers": ScaleState(7)}), NOW, options=OPTIONS)
    assert result.statuses["workers"].desired == 7


def test_sessions_of_a_fixed_set_are_unaffected():
    from tests.unit.test_plan import session_set

    s = session_set(replicas=1)
    result = plan(desired(s), [running(s, 1), running(s, 2)], Memory(), NOW, options=OPTIONS)
    assert [d.reason for d in result.destroys] == ["scaled-down"]
    assert result.statuses["workers"].scaling is None
    assert session  # the shared helpers stay importable
