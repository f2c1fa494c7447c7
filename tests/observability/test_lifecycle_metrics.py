"""The lifecycle metrics as a running controller exports them: the real reconciler, outcome handler and
metrics against the simulator, in process on a manual clock (``tests.reliability.rig``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.rig import IMAGE, Rig

SETTLE = 1.0

BATCH = f"""\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: batch
spec:
  replicas: 2
  restartPolicy: OnFailure
  updateStrategy:
    type: OnCompletion
  template:
    image: {IMAGE}
    cores: 1
    ram: 1
    cmd: python
    args: -c print(6*7)
"""

FAILING = f"""\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: failing
spec:
  replicas: 1
  template:
    image: {IMAGE}
    cores: 1
    ram: 1
    cmd: "false"
"""


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.close()


def sample(rig: Rig, name: str, **labels: str) -> float | None:
    return rig.metrics.registry.get_sample_value(name, labels)


def condition(rig: Rig, sessionset: str, kind: str) -> dict[str, float | None]:
    return {status: sample(rig, "canfar_controller_sessionset_condition", sessionset=sessionset, condition=kind,
                           status=status) for status in ("True", "False", "Unknown")}


def test_a_finished_batch_set_exports_complete_with_desired_2_and_running_0(rig: Rig) -> None:
    """The case the BelowDesired alert must ignore, as the metrics really show it."""
    rig.write("batch", BATCH)
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.passes(6, every=10)
    assert sample(rig, "canfar_controller_sessionset_desired_replicas", sessionset="batch") == 2.0
    assert sample(rig, "canfar_controller_sessions", sessionset="batch", status="Running") == 0.0
    assert condition(rig, "batch", "Complete") == {"True": 1.0, "False": 0.0, "Unknown": 0.0}
    assert condition(rig, "batch", "Ready")["True"] == 1.0
    assert sample(rig, "canfar_controller_sessionset_condition_reason", sessionset="batch", condition="Complete",
                  reason="AllSlotsEnded") == 1.0


def test_a_set_whose_sessions_fail_at_once_exports_crash_looping(rig: Rig) -> None:
    """Three early ends in half an hour: CrashLooping is True in the metrics, with its reason."""
    rig.write("failing", FAILING)
    rig.run_pass()
    rig.clock.advance(SETTLE)
    rig.passes(3, every=5)
    assert condition(rig, "failing", "CrashLooping")["False"] == 1.0
    rig.passes(40, every=10)  # restarts after 10, 20, 40 s of back-off...
    assert condition(rig, "failing", "CrashLooping")["True"] == 1.0
    assert sample(rig, "canfar_controller_sessionset_condition_reason", sessionset="failing",
                  condition="CrashLooping", reason="EarlyEnds") == 1.0
