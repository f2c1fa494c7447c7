"""The planner's lifecycle rules: update strategies, completion, crash loops, capacity, renewals, conditions."""

from __future__ import annotations

import pytest

from controller.models import ObservedSession, phase_of
from controller.plan import (
    PENDING_LIMIT,
    PROGRESS_DEADLINE,
    SESSION_EXPIRY,
    Capacity,
    Memory,
    Plan,
    SetNotes,
    plan,
    restart_delay,
)
from tests.unit.test_plan import NOW, OPTIONS, desired, destroyed, name_of, ours, running, session_set
from tests.unit.test_plan import slots_created as slots

GIB = 2**30


def conditions(result: Plan, name: str = "workers") -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.statuses[name].conditions}


def rolling(old_cores: int = 1, new_cores: int = 2, replicas: int = 4, **strategy: object):
    old = session_set(replicas=replicas, cores=old_cores)
    new_spec = session_set(replicas=replicas, cores=new_cores)
    if strategy:
        new_spec = new_spec.model_copy(update={"spec": new_spec.spec.model_copy(update={
            "update_strategy": type(new_spec.spec.update_strategy).model_validate(strategy)})})
    return old, new_spec


# -- update strategies ---------------------------------------------------------------------------


def test_rolling_update_surges_by_max_surge():
    """25% of 4 slots, rounded up: one new session at a time beside the old ones."""
    old, new = rolling()
    result = plan(desired(new), [running(old, n) for n in range(1, 5)], Memory(), NOW, options=OPTIONS)
    assert [(c.slot, c.reason) for c in result.creates] == [(1, "rollout")]
    assert result.destroys == ()
    assert conditions(result)["Progressing"] == ("True", "RollingUpdate")


def test_rolling_update_with_max_unavailable_destroys_old_sessions_first():
    """maxSurge 0, maxUnavailable 2: two old sessions go first, no extra session is ever created."""
    old, new = rolling(maxSurge=0, maxUnavailable=2)
    result = plan(desired(new), [running(old, n, f"o{n}") for n in range(1, 5)], Memory(), NOW, options=OPTIONS)
    assert result.creates == ()
    assert destroyed(result) == {"o1": "outdated", "o2": "outdated"}
    result.memory.destroys.update({"o1": NOW, "o2": NOW})  # as the reconciler records them
    after = plan(desired(new), [running(old, n, f"o{n}") for n in (3, 4)], result.memory, NOW + 5,
                 options=OPTIONS)
    assert slots(after) == [("workers", 1), ("workers", 2)]


def test_on_completion_never_destroys_a_running_outdated_session():
    """Batch work is not killed: outdated sessions run on; their slots get the new template when they end."""
    old, new = rolling(type="OnCompletion")
    observed = [running(old, n, f"o{n}") for n in range(1, 5)]
    result = plan(desired(new), observed, Memory(), NOW, options=OPTIONS)
    assert (result.creates, result.destroys) == ((), ())
    assert conditions(result)["Progressing"] == ("True", "OnCompletion")
    observed[0] = running(old, 1, "o1", status="Completed")
    ended = plan(desired(new), observed, result.memory, NOW + 5, options=OPTIONS)
    assert destroyed(ended) == {"o1": "ended"}
    refill = plan(desired(new), observed[1:], ended.memory, NOW + 5 + restart_delay(1), options=OPTIONS)
    assert [c.name for c in refill.creates] == [name_of(new, 1)]


def test_recreate_destroys_every_outdated_session_before_creating():
    old, new = rolling(type="Recreate")
    observed = [running(old, n, f"o{n}") for n in range(1, 5)]
    first = plan(desired(new), observed, Memory(), NOW, options=OPTIONS)
    assert first.creates == () and sorted(destroyed(first)) == ["o1", "o2", "o3", "o4"]
    memory = first.memory
    memory.destroys.update({f"o{n}": NOW for n in range(1, 5)})
    terminating = plan(desired(new), observed[:2], memory, NOW + 1, options=OPTIONS)
    assert terminating.creates == ()  # two are still going
    # Seen running after their destroy, they are believed gone once two lists leave them out (rule
    # *Ignored destroys*).
    once = plan(desired(new), [], terminating.memory, NOW + 2, options=OPTIONS)
    assert once.creates == ()
    gone = plan(desired(new), [], once.memory, NOW + 3, options=OPTIONS)
    assert len(gone.creates) == 4


# -- completion --------------------------------------------------------------------------------------


def test_a_finished_batch_set_is_complete_and_ready():
    """OnFailure after success on every slot: Complete, Ready, nothing progressing, nothing created."""
    batch = session_set(replicas=2, policy="OnFailure")
    ended = [running(batch, 1, "a", status="Completed"), running(batch, 2, "b", status="Completed")]
    first = plan(desired(batch), ended, Memory(), NOW, options=OPTIONS)
    later = plan(desired(batch), [], first.memory, NOW + 3600, options=OPTIONS)
    status = later.statuses["workers"]
    assert status.complete and later.creates == ()
    assert conditions(later)["Complete"] == ("True", "AllSlotsEnded")
    assert conditions(later)["Ready"] == ("True", "Complete")
    assert conditions(later)["Progressing"][0] == "False"


def test_a_template_change_starts_a_complete_set_afresh():
    done = session_set(replicas=1, policy="Never", cores=1)
    memory = plan(desired(done), [running(done, 1, "a", status="Completed")], Memory(), NOW, options=OPTIONS).memory
    changed = session_set(replicas=1, policy="Never", cores=2)
    assert len(plan(desired(changed), [], memory, NOW + 60, options=OPTIONS).creates) == 1


def test_restart_runs_a_complete_set_again():
    """``canfar-controller restart SET``: the finished marks go, the slots run again."""
    done = session_set(replicas=1, policy="Never")
    memory = plan(desired(done), [running(done, 1, "a", status="Completed")], Memory(), NOW, options=OPTIONS).memory
    assert plan(desired(done), [], memory, NOW + 60, options=OPTIONS).creates == ()
    memory.forget_set("workers")
    assert len(plan(desired(done), [], memory, NOW + 60, options=OPTIONS).creates) == 1


# -- crash loops -------------------------------------------------------------------------------------


def test_three_early_ends_in_half_an_hour_are_a_crash_loop_with_the_evidence():
    s = session_set(replicas=1)
    memory, t = Memory(), NOW
    for n in range(1, 4):
        failed = running(s, 1, f"run{n}", status="Failed", started=t - 30)
        result = plan(desired(s), [failed], ours(memory, f"run{n}"), t, options=OPTIONS)
        memory = result.memory
        t += restart_delay(n) + 1
    assert conditions(result)["CrashLooping"] == ("True", "EarlyEnds")
    memory.notes["workers"] = SetNotes(last_failure="logs: ImportError: no module named astro")
    again = plan(desired(s), [], memory, t, options=OPTIONS)
    crash = again.statuses["workers"].condition("CrashLooping")
    assert crash is not None and "ImportError" in crash.message and "slot 1" in crash.message
    assert len(again.creates) == 1  # the back-off goes on; it never gives up


def test_sessions_that_ran_long_are_not_a_crash_loop():
    s = session_set(replicas=1)
    memory, t = Memory(), NOW
    for n in range(1, 4):
        ended = running(s, 1, f"run{n}", status="Completed", started=t - 3600)
        memory = plan(desired(s), [ended], ours(memory, f"run{n}"), t, options=OPTIONS).memory
        t += restart_delay(n) + 1
    assert conditions(plan(desired(s), [], memory, t, options=OPTIONS))["CrashLooping"][0] == "False"


# -- capacity -------------------------------------------------------------------------------------


def observed_session(sid: str, name: str, status: str = "Pending", started: float | None = None,
                     cores: float | None = None, ram: float | None = None, kind: str = "headless",
                     expires: float | None = None) -> ObservedSession:
    return ObservedSession(sid, name, phase_of(status), kind, started, expires, cores, ram)


def test_creates_that_do_not_fit_wait_for_capacity():
    """4 slots of 2 cores, 5 cores free: two are created, the set waits with a message saying what is missing."""
    s = session_set(replicas=4, cores=2, ram=4)
    capacity = Capacity(cores_free=5, ram_free=100 * GIB)
    result = plan(desired(s), [], Memory(), NOW, options=OPTIONS, capacity=capacity)
    assert len(result.creates) == 2 and result.deferred == 0
    status, reason = conditions(result)["WaitingForCapacity"]
    assert (status, reason) == ("True", "InsufficientCapacity")
    message = result.statuses["workers"].condition("WaitingForCapacity").message
    assert "needs 2 cores and 4 GiB" in message and "1 core and 92 GiB free" in message  # ram: 4 is 4 GiB


def test_queued_and_in_flight_sessions_count_against_capacity():
    """Our own sessions the cluster has not admitted yet are not free capacity."""
    s = session_set(replicas=3, cores=2)
    queued = observed_session("q1", name_of(s, 1), cores=2)
    capacity = Capacity(cores_free=4, ram_free=100 * GIB)
    result = plan(desired(s), [queued], Memory(), NOW, options=OPTIONS, capacity=capacity)
    assert len(result.creates) == 1  # 4 free - 2 queued = room for one


def test_flexible_sessions_count_with_the_platform_defaults():
    s = session_set(replicas=3)  # no cores, no ram
    capacity = Capacity(cores_free=2.5, ram_free=100 * GIB, default_cores=1, default_ram=4 * GIB)
    assert len(plan(desired(s), [], Memory(), NOW, options=OPTIONS, capacity=capacity).creates) == 2


def test_a_session_larger_than_the_platform_allows_never_starts():
    s = session_set(replicas=1, cores=32)
    capacity = Capacity(cores_free=1000, ram_free=1000 * GIB, max_cores=16, max_ram=64 * GIB)
    result = plan(desired(s), [], Memory(), NOW, options=OPTIONS, capacity=capacity)
    assert result.creates == ()
    assert "largest session the platform allows" in result.statuses["workers"].condition("WaitingForCapacity").message


def test_without_statistics_creates_go_ahead_and_the_plan_says_so():
    s = session_set(replicas=2, cores=64)
    result = plan(desired(s), [], Memory(), NOW, options=OPTIONS, capacity=None)
    assert len(result.creates) == 2 and result.capacity_unknown
    assert conditions(result)["WaitingForCapacity"] == ("Unknown", "StatsUnavailable")


def test_sessions_pending_too_long_are_reported_once():
    s = session_set(replicas=1)
    stuck = observed_session("p1", name_of(s, 1))
    first = plan(desired(s), [stuck], Memory(), NOW, options=OPTIONS)
    assert first.unschedulable == ()
    late = plan(desired(s), [stuck], first.memory, NOW + PENDING_LIMIT, options=OPTIONS)
    assert [u.session_id for u in late.unschedulable] == ["p1"]
    assert conditions(late)["WaitingForCapacity"] == ("True", "Unschedulable")
    late.memory.unschedulable_reported.add("p1")
    again = plan(desired(s), [stuck], late.memory, NOW + PENDING_LIMIT + 30, options=OPTIONS)
    assert again.unschedulable == () and again.statuses["workers"].unschedulable == 1


# -- renewals ---------------------------------------------------------------------------------------


def notebook_session(expires: float, sid: str = "nb1", status: str = "Running", lifetime: float = SESSION_EXPIRY):
    """A notebook as the platform lists it: started ``lifetime`` before its expiry (never renewed)."""
    s = session_set("notes", replicas=1, kind="notebook")
    return s, observed_session(sid, name_of(s, 1), status, started=expires - lifetime, kind="notebook",
                               expires=expires)


def test_an_interactive_session_is_renewed_once_less_than_a_quarter_of_its_lifetime_remains():
    """With 4-day sessions, a renew once less than one day remains; not with two days left."""
    s, fresh = notebook_session(NOW + SESSION_EXPIRY - 3600)
    assert plan(desired(s), [fresh], Memory(), NOW, options=OPTIONS).renews == ()
    s, halfway = notebook_session(NOW + SESSION_EXPIRY / 2)
    assert plan(desired(s), [halfway], Memory(), NOW, options=OPTIONS).renews == ()
    s, aging = notebook_session(NOW + 0.25 * SESSION_EXPIRY - 60)
    [renew] = plan(desired(s), [aging], Memory(), NOW, options=OPTIONS).renews
    assert renew.session_id == "nb1"


def test_a_refused_renew_waits_before_retrying_and_never_destroys():
    s, aging = notebook_session(NOW + 3600)
    memory = Memory(renew_failures={"nb1": NOW - 60})
    result = plan(desired(s), [aging], memory, NOW, options=OPTIONS)
    assert (result.renews, result.destroys) == ((), ())
    assert len(plan(desired(s), [aging], memory, NOW + 600, options=OPTIONS).renews) == 1


@pytest.mark.parametrize("renew", [False])
def test_renew_can_be_turned_off_per_set(renew):
    s, aging = notebook_session(NOW + 3600)
    off = s.model_copy(update={"spec": s.spec.model_copy(update={"renew": renew})})
    assert plan(desired(off), [aging], Memory(), NOW, options=OPTIONS).renews == ()


def test_headless_sessions_are_not_renewed_but_report_their_deadline():
    s = session_set(replicas=1)
    ending = observed_session("h1", name_of(s, 1), "Running", started=NOW - 60, expires=NOW + 3600)
    result = plan(desired(s), [ending], Memory(), NOW, options=OPTIONS)
    assert result.renews == () and result.statuses["workers"].next_expiry == NOW + 3600


# -- conditions --------------------------------------------------------------------------------------


def test_conditions_keep_their_transition_time_until_their_status_changes():
    s = session_set(replicas=1)
    first = plan(desired(s), [], Memory(), NOW, options=OPTIONS)
    ready = first.statuses["workers"].condition("Ready")
    assert ready is not None and (ready.status, ready.last_transition) == ("False", NOW)
    still = plan(desired(s), [], first.memory, NOW + 10, options=OPTIONS).statuses["workers"].condition("Ready")
    assert still is not None and still.last_transition == NOW
    up = plan(desired(s), [running(s, 1)], ours(first.memory, "wor1"), NOW + 20, options=OPTIONS)
    assert (up.statuses["workers"].condition("Ready").status,
            up.statuses["workers"].condition("Ready").last_transition) == ("True", NOW + 20)


def test_a_rollout_without_progress_for_ten_minutes_says_so():
    old, new = rolling()
    observed = [running(old, n) for n in range(1, 5)]
    memory = plan(desired(new), observed, Memory(), NOW, options=OPTIONS).memory
    memory.creates.clear()
    stuck = plan(desired(new), observed, memory, NOW + PROGRESS_DEADLINE, options=OPTIONS)
    assert conditions(stuck)["Progressing"] == ("False", "ProgressDeadlineExceeded")


def test_every_condition_is_reported_for_every_set():
    result = plan(desired(session_set(suspend=True)), [], Memory(), NOW, options=OPTIONS)
    assert set(conditions(result)) == {"Ready", "Progressing", "Complete", "CrashLooping", "CreateFailing",
                                       "DestroyFailing", "WaitingForCapacity", "Stuck", "Invalid", "Suspended",
                                       "RenewIneffective", "Conflict"}
    assert conditions(result)["Suspended"] == ("True", "Suspended")


def test_create_failing_stays_true_while_the_back_off_retries():
    """The back-off has expired and the retry is due: the set is still failing until a create succeeds."""
    from controller.plan import CreateBackoff, spec_key

    s = session_set(replicas=1)
    key = spec_key(s.spec.template.hash(), 1)
    memory = Memory(backoffs={"workers": CreateBackoff(2, NOW - 1, "image refused", key)})
    result = plan(desired(s), [], memory, NOW, options=OPTIONS)
    assert len(result.creates) == 1  # the retry goes out
    assert conditions(result)["CreateFailing"] == ("True", "CreateRefused")


def test_on_completion_waiting_for_jobs_is_not_a_stalled_rollout():
    old, new = rolling(type="OnCompletion")
    observed = [running(old, n) for n in range(1, 5)]
    memory = plan(desired(new), observed, Memory(), NOW, options=OPTIONS).memory
    later = plan(desired(new), observed, memory, NOW + PROGRESS_DEADLINE + 1, options=OPTIONS)
    assert conditions(later)["Progressing"] == ("True", "OnCompletion")


def test_a_suspended_set_is_not_progressing():
    s = session_set(replicas=3, suspend=True)
    result = plan(desired(s), [], Memory(), NOW, options=OPTIONS)
    assert conditions(result)["Progressing"][0] == "False"
    later = plan(desired(s), [], result.memory, NOW + PROGRESS_DEADLINE + 1, options=OPTIONS)
    assert conditions(later)["Progressing"][1] != "ProgressDeadlineExceeded"


def test_without_capacity_checks_the_condition_does_not_claim_a_fit():
    from controller.plan import PlanOptions

    result = plan(desired(session_set(replicas=1)), [], Memory(), NOW, options=PlanOptions(check_capacity=False))
    assert conditions(result)["WaitingForCapacity"] == ("Unknown", "NotChecked")
