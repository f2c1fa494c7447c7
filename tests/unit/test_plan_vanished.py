"""The rule *Disappearance confirmed*: the service's answer by id decides whether a left-out slot is refilled."""

from __future__ import annotations

import pytest

from controller.models import phase_of
from controller.plan import EMPTY_LIST_WINDOW, Memory, plan
from controller.plan.memory import Lookup
from controller.plan.vanished import LOOKUPS_PER_PASS, RECHECK, answer_of, due, next_check
from tests.unit.test_plan import NOW, OPTIONS, WORKERS, created, desired, running, session_set
from tests.unit.test_plan import slots_created as slots
from tests.unit.test_plan_safety import ALL, converged_memory

WINDOW = {"empty_list_window": EMPTY_LIST_WINDOW}


def asked(memory: Memory, at: float, **answers: str) -> Memory:
    """``memory`` after the reconciler asked the service for each session (``wor1="live"``...)."""
    memory = memory.copy()
    for sid, answer in answers.items():
        memory.looked_up(sid, answer, at)  # type: ignore[arg-type]
    return memory


def test_a_session_the_service_no_longer_has_is_refilled_in_the_same_pass():
    """A 404 (or Terminating) confirms the deletion at once: no second list needed."""
    result = plan(desired(WORKERS), ALL[1:], asked(converged_memory(), NOW + 5, wor1="gone"), NOW + 5, options=OPTIONS)
    assert slots(result) == [("workers", 1)] and result.left_out == ()  # nothing to warn about
    assert "wor1" not in result.memory.seen_live and result.memory.lookups == {}


def test_a_session_the_service_still_has_keeps_its_slot_however_many_lists_agree():
    """The issue's case: the same sessions left out of list after list, each still live: nothing is created."""
    memory = asked(converged_memory(), NOW + 5, wor1="live", wor2="live")
    for at in (NOW + 5, NOW + 10, NOW + 15, NOW + 20):
        result = plan(desired(WORKERS), ALL[2:], memory, at, options=OPTIONS)
        assert (result.creates, result.destroys) == ((), ())
        assert result.statuses["workers"].held == 2
        memory = result.memory
    assert set(memory.lookups) == {"wor1", "wor2"} and memory.missing == {"wor1", "wor2"}


def test_one_live_answer_makes_the_whole_answer_lossy():
    """One left-out session still live, one with a failed lookup: the two-list fallback confirms neither."""
    memory = asked(converged_memory(), NOW + 5, wor1="live", wor2="failed")
    first = plan(desired(WORKERS), ALL[2:], memory, NOW + 5, options=OPTIONS)
    second = plan(desired(WORKERS), ALL[2:], first.memory, NOW + 10, options=OPTIONS)
    assert second.creates == () and second.statuses["workers"].held == 2


def test_a_failed_lookup_falls_back_to_the_two_list_rule():
    """No usable answer: held by the first list, refilled once a second one leaves out exactly the same."""
    memory = asked(converged_memory(), NOW + 5, wor1="failed")
    first = plan(desired(WORKERS), ALL[1:], memory, NOW + 5, options=OPTIONS)
    assert first.creates == () and first.statuses["workers"].held == 1
    second = plan(desired(WORKERS), ALL[1:], first.memory, NOW + 10, options=OPTIONS)
    assert slots(second) == [("workers", 1)]


def test_a_confirmed_gone_session_beside_an_unanswered_one():
    """wor1 confirmed gone is refilled; wor2 (lookup failed) waits for the second list, then is refilled."""
    memory = asked(converged_memory(), NOW + 5, wor1="gone", wor2="failed")
    first = plan(desired(WORKERS), ALL[2:], memory, NOW + 5, options=OPTIONS)
    assert slots(first) == [("workers", 1)] and first.memory.missing == {"wor2"}
    memory = created(first.memory, first.creates[0], "new1", NOW + 5)
    second = plan(desired(WORKERS), ALL[2:], memory, NOW + 10, options=OPTIONS)
    assert slots(second) == [("workers", 2)]


def test_a_session_that_comes_and_goes_is_not_asked_about_each_time_it_vanishes():
    """Back in the list, its "live" answer is kept: vanishing again within the re-check reuses it (held)."""
    memory = asked(converged_memory(), NOW + 5, wor1="live")
    held = plan(desired(WORKERS), ALL[1:], memory, NOW + 5, options=OPTIONS)
    back = plan(desired(WORKERS), ALL, held.memory, NOW + 10, options=OPTIONS)
    assert (back.creates, back.memory.missing) == ((), frozenset()) and "wor1" in back.memory.lookups
    assert due(back.memory, {"wor2", "wor3"}, NOW + 15, **WINDOW) == []
    again = plan(desired(WORKERS), ALL[1:], back.memory, NOW + 15, options=OPTIONS)
    assert again.creates == () and again.statuses["workers"].held == 1
    assert due(again.memory, {"wor2", "wor3"}, NOW + 5 + 60, **WINDOW) == ["wor1"]  # a minute on: asked again
    listed = plan(desired(WORKERS), ALL, again.memory, NOW + 5 + 60, options=OPTIONS)
    assert listed.memory.lookups == {}  # listed a minute after the lookup: nothing left to remember


def test_a_gone_answer_the_list_contradicts_is_forgotten():
    """A session answered 404 but listed live again: the answer is dropped, a later disappearance is asked anew."""
    memory = asked(converged_memory(), NOW + 5, wor1="gone")
    back = plan(desired(WORKERS), ALL, memory, NOW + 10, options=OPTIONS)
    assert back.memory.lookups == {}
    assert due(back.memory, {"wor2", "wor3"}, NOW + 15, **WINDOW) == ["wor1"]


def test_lookups_of_sessions_gone_for_good_are_forgotten():
    memory = asked(converged_memory(), NOW + 5, wor1="live")
    ended = plan(desired(WORKERS), [ALL[0]._replace(phase="Completed"), *ALL[1:]], memory, NOW + 10, options=OPTIONS)
    assert ended.memory.lookups == {}


def test_an_empty_answer_is_not_believed_while_the_service_still_has_a_session():
    """After the empty-list window, empty answers are believed, unless a lookup found a session live."""
    memory = asked(converged_memory(), NOW + 5, wor1="live")
    suspect = plan(desired(WORKERS), [], memory, NOW + 5, options=OPTIONS)
    assert suspect.suspect and "wor1" in suspect.memory.lookups
    later = plan(desired(WORKERS), [], suspect.memory, NOW + 5 + EMPTY_LIST_WINDOW, options=OPTIONS)
    assert not later.suspect and later.creates == () and later.statuses["workers"].held == 3


def test_each_vanished_session_is_due_once_then_on_a_doubling_recheck():
    """Never asked: due now. Asked: due again 1 min later, then 2, 4, 8, then every 10 min."""
    memory = converged_memory()
    listed = {"wor2", "wor3"}
    assert due(memory, listed, NOW, **WINDOW) == ["wor1"]
    waits = []
    at = NOW
    for _ in range(6):
        memory.looked_up("wor1", "live", at)
        assert due(memory, listed, at + 1, **WINDOW) == []
        waits.append(next_check(memory.lookups["wor1"]) - at)
        at = next_check(memory.lookups["wor1"])
        assert due(memory, listed, at, **WINDOW) == ["wor1"]
    assert waits == [60, 120, 240, 480, 600, 600] and RECHECK.cap == 600
    assert memory.lookups["wor1"].count == 6


def test_lookups_per_pass_are_bounded_and_never_asked_first():
    memory = converged_memory()
    for n in range(LOOKUPS_PER_PASS + 5):
        memory.seen_live[f"x{n:02d}"] = memory.seen_live["wor1"]
    memory.looked_up("x00", "failed", NOW - 3600)
    wanted = due(memory, {"wor3"}, NOW, **WINDOW)
    assert len(wanted) == LOOKUPS_PER_PASS and "x00" not in wanted
    assert "wor1" in wanted  # never asked: before the one asked an hour ago


def test_an_answer_that_lost_every_session_asks_nothing_until_it_would_be_believed():
    """An empty answer is suspect for a minute anyway: no lookup then; once it would be believed, lookups
    decide (one found live keeps it from being believed, see above)."""
    memory = plan(desired(WORKERS), [], converged_memory(), NOW + 5, options=OPTIONS).memory
    assert memory.suspect_since == NOW + 5
    assert due(memory, set(), NOW + 30, **WINDOW) == []
    assert due(memory, set(), NOW + 5 + EMPTY_LIST_WINDOW, **WINDOW) == ["wor1", "wor2", "wor3"]
    assert due(converged_memory(), {"wor3"}, NOW + 5, **WINDOW) == ["wor1", "wor2"]  # not all lost: asked


def test_destroyed_sessions_are_not_looked_up():
    memory = converged_memory()
    memory.destroys["wor1"] = NOW
    assert due(memory, {"wor2", "wor3"}, NOW + 5, **WINDOW) == []


@pytest.mark.parametrize(("phase", "answer"), [
    (None, "gone"), ("Completed", "live"), ("Failed", "live"), ("Terminating", "gone"),
    ("Running", "live"), ("Pending", "live"), ("Unknown", "live")])
def test_what_an_answer_means(phase, answer):
    assert answer_of(phase) == answer


@pytest.mark.parametrize("status", ["Completed", "Failed"])
def test_a_job_that_ended_while_lists_left_it_out_is_not_run_again(status):
    """``restartPolicy: Never``: the service says the job ended; its slot is not refilled on that
    answer (a lossy list hid the end), and once a list shows the end the policy decides: no rerun."""
    job = session_set("job", replicas=2, policy="Never")
    other = running(job, 2, "job2")  # still listed: the answers are not suspect
    first = plan(desired(job), [running(job, 1, "job1"), other], Memory(), NOW, options=OPTIONS)
    memory = first.memory.copy()
    memory.looked_up("job1", answer_of(phase_of(status)), NOW + 5, status)
    hidden = plan(desired(job), [other], memory, NOW + 5, options=OPTIONS)
    again = plan(desired(job), [other], hidden.memory, NOW + 10, options=OPTIONS)
    assert (hidden.creates, again.creates, hidden.suspect) == ((), (), False)
    shown = plan(desired(job), [running(job, 1, "job1", status=status), other], again.memory, NOW + 15,
                 options=OPTIONS)
    assert shown.creates == () and [d.reason for d in shown.destroys] == ["ended"]


def test_a_lookup_keeps_its_count_across_answers():
    memory = Memory()
    memory.looked_up("a", "failed", NOW, "503")
    memory.looked_up("a", "live", NOW + 60, "Running")
    assert memory.lookups["a"] == Lookup("live", NOW + 60, 2, "Running")
