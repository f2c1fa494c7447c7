"""The one back-off policy, and durations rendered from the constants and options that set them."""

from __future__ import annotations

import random

import pytest

from controller.plan import RESTART_BACKOFF_BASE, RESTART_BACKOFF_CAP, restart_delay
from controller.plan.backoff import Backoff
from controller.plan.conditions import SetFacts, evaluate
from controller.plan.durations import duration


def test_the_wait_doubles_per_attempt_up_to_its_cap() -> None:
    policy = Backoff(base=5.0, cap=900.0)
    assert [policy.delay(n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 640, 900]
    assert restart_delay(1) == RESTART_BACKOFF_BASE and restart_delay(50) == RESTART_BACKOFF_CAP


def test_jitter_comes_from_the_injected_source_and_stays_within_its_fraction() -> None:
    policy = Backoff(base=100.0, cap=100.0, jitter=0.1)
    waits = [policy.delay(1, random.Random(seed)) for seed in range(200)]
    assert all(90.0 <= wait <= 110.0 for wait in waits) and len(set(waits)) > 100
    assert policy.delay(1, random.Random(7)) == policy.delay(1, random.Random(7))  # reproducible
    assert policy.delay(1) == 100.0  # no source, no jitter (the planner reads no randomness)


@pytest.mark.parametrize(("seconds", "text"), [(45, "45 s"), (90, "1.5 min"), (600, "10 min"), (1800, "30 min"),
                                               (4 * 3600, "4 h"), (345_600, "4 days")])
def test_durations_read_as_people_write_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_a_stalled_rollout_says_the_deadline_it_was_given() -> None:
    """``--progress-deadline`` (an option) changes the message too: it is not written beside the constant."""
    facts = SetFacts(replicas=2, wanted=2, ready=1, complete=False, suspended=False, invalid=None,
                     strategy="RollingUpdate", outdated=1, progressing=True, stalled=True, crash_loop=None,
                     create_failing=None, capacity=None, stall_after=120.0)
    status, reason, message = evaluate(facts)["Progressing"]
    assert (status, reason) == ("False", "ProgressDeadlineExceeded") and message.startswith("no progress for 2 min")
