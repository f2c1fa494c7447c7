"""The planner's safety rules under a misbehaving service: lossy lists, uncertain creates, refusals."""

from __future__ import annotations

import pytest

from controller.listanswer import anomalies_of, one_per_id
from controller.plan import (
    EMPTY_LIST_WINDOW,
    UNCERTAIN_WINDOW,
    CreateBackoff,
    ExpectedCreate,
    Memory,
    PlanOptions,
    plan,
    spec_key,
)
from controller.plan.memory import DestroyRetry
from tests.unit.test_plan import NOW, OPTIONS, WORKERS, desired, destroyed, name_of, running, session, session_set
from tests.unit.test_plan import slots_created as slots

ALL = [running(WORKERS, n) for n in (1, 2, 3)]


def converged_memory() -> Memory:
    """The memory after a pass that saw every slot of WORKERS running."""
    return plan(desired(WORKERS), ALL, Memory(), NOW, options=OPTIONS).memory


# -- a list that loses sessions ---------------------------------------------------------------------


def test_session_missing_from_one_list_is_not_replaced_until_a_second_list_confirms():
    """A partial answer holds the slot; the next answer without it (a real delete) refills it."""
    partial = plan(desired(WORKERS), ALL[1:], converged_memory(), NOW + 5, options=OPTIONS)
    assert partial.creates == () and partial.destroys == ()
    assert partial.left_out == ("wor1",) and partial.statuses["workers"].held == 1
    confirmed = plan(desired(WORKERS), ALL[1:], partial.memory, NOW + 10, options=OPTIONS)
    assert slots(confirmed) == [("workers", 1)]


def test_a_second_lossy_list_confirms_nothing():
    """Missing twice, but the second answer also lost another session: it is lossy, the slots stay held."""
    first = plan(desired(WORKERS), ALL[1:], converged_memory(), NOW + 5, options=OPTIONS)
    second = plan(desired(WORKERS), ALL[2:], first.memory, NOW + 10, options=OPTIONS)
    assert second.creates == () and second.statuses["workers"].held == 2
    clean = plan(desired(WORKERS), ALL[2:], second.memory, NOW + 15, options=OPTIONS)
    assert slots(clean) == [("workers", 1), ("workers", 2)]


def test_a_list_where_some_missing_sessions_are_back_confirms_nothing():
    """Two left out, then one of them is back: the answers are unreliable, the other slot stays held."""
    first = plan(desired(WORKERS), [ALL[2]], converged_memory(), NOW + 5, options=OPTIONS)
    second = plan(desired(WORKERS), ALL[1:], first.memory, NOW + 10, options=OPTIONS)
    assert second.creates == () and second.statuses["workers"].held == 1
    third = plan(desired(WORKERS), ALL[1:], second.memory, NOW + 15, options=OPTIONS)
    assert slots(third) == [("workers", 1)]


def test_session_back_in_the_next_list_is_simply_kept():
    """A session a lossy answer left out and the next one shows again causes nothing."""
    partial = plan(desired(WORKERS), ALL[1:], converged_memory(), NOW + 5, options=OPTIONS)
    back = plan(desired(WORKERS), ALL, partial.memory, NOW + 10, options=OPTIONS)
    assert (back.creates, back.destroys, back.left_out) == ((), (), ())
    assert back.memory.missing == frozenset()


def test_empty_answer_after_live_sessions_makes_the_pass_suspect():
    """An empty list while owned sessions were live: no create, no destroy, not even of orphans."""
    gone = session_set("gone")
    memory = plan(desired(WORKERS), [*ALL, running(gone, 1, "orph")], Memory(), NOW, options=OPTIONS).memory
    suspect = plan(desired(WORKERS), [session("f1", "someone-else")], memory, NOW + 5, options=OPTIONS)
    assert suspect.suspect and (suspect.creates, suspect.destroys) == ((), ())
    again = plan(desired(WORKERS), [], suspect.memory, NOW + 10, options=OPTIONS)
    assert again.suspect and again.creates == ()  # a few seconds of empty answers: still not believed
    # Empty for a minute: the account really was emptied by hand, and the sessions come back.
    believed = plan(desired(WORKERS), [], again.memory, NOW + 5 + EMPTY_LIST_WINDOW, options=OPTIONS)
    assert not believed.suspect
    assert slots(believed) == [("workers", 1), ("workers", 2), ("workers", 3)]


def test_a_partial_list_after_an_empty_one_confirms_nothing():
    """An empty answer teaches nothing: a partial one after it is still lossy, and holds its slots."""
    suspect = plan(desired(WORKERS), [], converged_memory(), NOW + 5, options=OPTIONS)
    partial = plan(desired(WORKERS), ALL[2:], suspect.memory, NOW + 10, options=OPTIONS)
    assert partial.creates == () and partial.statuses["workers"].held == 2


def test_sessions_this_controller_destroyed_are_not_counted_as_lost():
    """A session we destroyed may vanish from the list at once: that is no reason for suspicion."""
    memory = converged_memory()
    memory.destroys["wor1"] = NOW + 1
    after = plan(desired(WORKERS), ALL[1:], memory, NOW + 5, options=OPTIONS)
    assert after.left_out == () and slots(after) == [("workers", 1)]


def test_ended_sessions_are_not_expected_to_stay_listed():
    """Only live sessions are tracked: an ended one may be reaped, its absence is normal."""
    ended = [running(WORKERS, 1, "wor1", status="Completed"), *ALL[1:]]
    memory = plan(desired(WORKERS), ended, Memory(), NOW, options=OPTIONS).memory
    assert "wor1" not in memory.seen_live


# -- creates whose outcome is unknown -------------------------------------------------------------


def uncertain(slot: int = 1, at: float = NOW, prior: tuple[str, ...] = ()) -> Memory:
    memory = converged_memory()
    memory.creates[("workers", slot)] = ExpectedCreate(name_of(WORKERS, slot), at, None, prior)
    return memory


def test_uncertain_create_blocks_its_slot_for_the_window_and_two_lists():
    """Not refilled before UNCERTAIN_WINDOW has passed *and* two lists did not show it."""
    memory = uncertain()
    listed = ALL[1:]
    memory.seen_live.pop("wor1")
    first = plan(desired(WORKERS), listed, memory, NOW + UNCERTAIN_WINDOW + 1, options=OPTIONS)
    assert first.creates == ()  # the window passed, but only one list missed it
    second = plan(desired(WORKERS), listed, first.memory, NOW + UNCERTAIN_WINDOW + 2, options=OPTIONS)
    assert slots(second) == [("workers", 1)]
    early = plan(desired(WORKERS), listed, first.memory, NOW + 10, options=OPTIONS)
    assert early.creates == ()  # two lists, but the window has not passed


def test_uncertain_create_that_appears_is_settled():
    """The session showing up under the slot's name settles the uncertain create."""
    memory = uncertain()
    memory.seen_live.pop("wor1")
    result = plan(desired(WORKERS), [running(WORKERS, 1, "late1"), *ALL[1:]], memory, NOW + 3, options=OPTIONS)
    assert result.memory.creates == {} and result.creates == ()


def test_a_lossy_list_does_not_count_against_an_uncertain_create():
    """A list that lost other sessions may have lost the new one too: it is no evidence either way."""
    memory = uncertain()
    memory.seen_live.pop("wor1")
    late = NOW + UNCERTAIN_WINDOW + 1
    lossy = plan(desired(WORKERS), [ALL[1]], memory, late, options=OPTIONS)  # wor3 missing too
    clean = plan(desired(WORKERS), [ALL[1]], lossy.memory, late + 1, options=OPTIONS)
    assert ("workers", 1) not in slots(clean) and clean.memory.creates[("workers", 1)].misses == 1


def test_an_old_session_of_the_same_name_does_not_settle_an_uncertain_create():
    """The slot's previous (ended, terminating) session has the same name: it is not the new one."""
    memory = uncertain(prior=("old1",))
    memory.seen_live.pop("wor1")
    memory.destroys["old1"] = NOW - 1
    listed = [running(WORKERS, 1, "old1", status="Terminating"), *ALL[1:]]
    result = plan(desired(WORKERS), listed, memory, NOW + 3, options=OPTIONS)
    assert (name_of(WORKERS, 1) in [e.name for e in result.memory.creates.values()]) and result.creates == ()


@pytest.mark.parametrize("destroyed_how", ["accepted", "ignored", "reported-ended"])
def test_a_session_we_destroyed_does_not_settle_an_uncertain_create(destroyed_how):
    """The create was planned from a list that left out the slot's old session (so it is not among the
    create's prior ids); the old one, destroyed by us, shows up again under the same name. It is not
    the new session: the slot stays blocked, no second create is sent beside the uncertain one."""
    memory = uncertain(prior=())
    memory.seen_live.pop("wor1")
    if destroyed_how == "accepted":
        memory.destroys["old1"] = NOW - 1
    elif destroyed_how == "ignored":  # destroyed more than the expectation TTL ago, still listed live
        memory.lingering.retries["old1"] = DestroyRetry(attempts=3, retry_at=NOW + 60)
    else:  # its end was reported long ago; the service still lists it ended
        memory.ended_reported.add("old1")
    listed = [running(WORKERS, 1, "old1", status="Failed", started=NOW - 900), *ALL[1:]]
    result = plan(desired(WORKERS), listed, memory, NOW + 3, options=OPTIONS)
    assert ("workers", 1) in result.memory.creates and result.creates == ()
    later = plan(desired(WORKERS), listed, result.memory, NOW + 6, options=OPTIONS)
    assert ("workers", 1) not in slots(later)


@pytest.mark.parametrize("status", ["Terminating", "Running", "Failed"])
def test_a_session_known_before_the_create_does_not_settle_it(status):
    """The slot's old session, already in the inventory, was deleted by someone else (Terminating) and
    left out of the list the create was planned from, so it is not among the create's prior ids. When a
    list shows it again under the slot's name it is not the new session: no second create beside the
    uncertain one (found by the soak with a wall-clock step: both creates landed)."""
    memory = uncertain(prior=())
    memory.seen_live.pop("wor1")
    memory.owned.add("old1")
    listed = [running(WORKERS, 1, "old1", status=status, started=NOW - 900), *ALL[1:]]
    result = plan(desired(WORKERS), listed, memory, NOW + 3, options=OPTIONS)
    assert ("workers", 1) in result.memory.creates and result.creates == ()


def test_a_session_we_destroyed_stays_destroyed_through_a_lossy_list_and_never_settles_an_uncertain_create():
    """A partial answer leaves out the old session we destroyed (and live ones): it proves nothing, so the
    memory keeps the destroy; when the old session shows up again under the slot's name it is not taken for
    the uncertain create (found by the soak: a second create was sent beside the first, both landed)."""
    memory = uncertain(prior=())
    memory.seen_live.pop("wor1")
    memory.destroys["old1"] = NOW - 1
    lossy = plan(desired(WORKERS), ALL[2:], memory, NOW + 3, options=OPTIONS)  # wor2 and old1 left out
    assert "old1" in lossy.memory.destroys
    listed = [running(WORKERS, 1, "old1", status="Failed", started=NOW - 900), *ALL[1:]]
    result = plan(desired(WORKERS), listed, lossy.memory, NOW + 6, options=OPTIONS)
    assert ("workers", 1) in result.memory.creates and result.creates == ()
    later = plan(desired(WORKERS), listed, result.memory, NOW + 9, options=OPTIONS)
    assert ("workers", 1) not in slots(later)


def test_a_create_applied_after_the_window_is_destroyed_as_the_newer_duplicate():
    """Two live sessions in one slot after a very late create: the newer one goes."""
    listed = [*ALL, running(WORKERS, 1, "late", started=NOW - 2)]
    memory = converged_memory()
    memory.written_off[name_of(WORKERS, 1)] = NOW - 200  # its uncertain create, written off after the window
    result = plan(desired(WORKERS), listed, memory, NOW, options=OPTIONS)
    assert destroyed(result) == {"late": "duplicate"}
    assert result.adopted == ("late",) and result.conflicts == {}


# -- refusals and throttling ------------------------------------------------------------------------


def test_a_set_in_back_off_creates_nothing_while_others_carry_on():
    """A set the service refused waits for its back-off; another set is created as usual."""
    other = session_set("other", replicas=1)
    key = spec_key(WORKERS.spec.template.hash(), WORKERS.spec.replicas)
    memory = Memory(backoffs={"workers": CreateBackoff(2, NOW + 10, "image refused", key)})
    during = plan(desired(WORKERS, other), [], memory, NOW, options=OPTIONS)
    assert slots(during) == [("other", 1)]
    assert during.statuses["workers"].backoff_until == NOW + 10
    assert during.statuses["workers"].backoff_message == "image refused"
    after = plan(desired(WORKERS), [], memory, NOW + 11, options=OPTIONS)
    assert len(after.creates) == 3


@pytest.mark.parametrize("change", [{"replicas": 4}, {"cores": 2}])
def test_a_change_to_template_or_replicas_ends_the_back_off(change):
    """The user fixed something: the set is tried again at once."""
    key = spec_key(WORKERS.spec.template.hash(), WORKERS.spec.replicas)
    memory = Memory(backoffs={"workers": CreateBackoff(5, NOW + 600, "refused", key)})
    changed = session_set(**change)
    result = plan(desired(changed), [], memory, NOW, options=OPTIONS)
    assert result.creates and "workers" not in result.memory.backoffs


def test_paused_creates_wait_for_retry_after():
    """A 429 or 503 with Retry-After pauses every create until then, and only creates."""
    memory = Memory(creates_paused_until=NOW + 30)
    listed = [running(WORKERS, 1, "done", status="Completed")]
    paused = plan(desired(WORKERS), listed, memory, NOW, options=OPTIONS)
    assert paused.creates == () and destroyed(paused) == {"done": "ended"}
    assert "paused" in (paused.statuses["workers"].waiting or "")
    resumed = plan(desired(WORKERS), [], memory, NOW + 31, options=OPTIONS)
    assert len(resumed.creates) == 3


# -- once per session --------------------------------------------------------------------------------


def test_an_ended_session_is_reported_once_however_many_passes_its_destroy_takes():
    """The first plan asks for the end report and the evidence; later ones only retry the destroy."""
    listed = [running(WORKERS, 1, "bad", status="Failed"), *ALL[1:]]
    first = plan(desired(WORKERS), listed, Memory(), NOW, options=OPTIONS)
    [action] = first.destroys
    assert action.report_end and action.collect_evidence
    memory = first.memory
    memory.ended_reported.add("bad")  # what the reconciler does once it reported the end
    again = plan(desired(WORKERS), listed, memory, NOW + 5, options=OPTIONS)
    [retry] = again.destroys
    assert (retry.session_id, retry.report_end, retry.collect_evidence) == ("bad", False, False)


def test_the_default_cap_is_replicasets_burst():
    """500 creates per pass by default, like ReplicaSet's burstReplicas."""
    big = session_set(replicas=512)
    result = plan(desired(big), [], Memory(), NOW, options=PlanOptions())
    assert (len(result.creates), result.deferred) == (500, 12)


def test_a_create_of_an_earlier_template_in_flight_blocks_the_slot():
    """Two template changes in a row while the first rollout create is uncertain: the slot waits."""
    old = session_set(replicas=1, cores=1)
    middle = session_set(replicas=1, cores=2)
    new = session_set(replicas=1, cores=3)
    memory = Memory(creates={("workers", 1): ExpectedCreate(name_of(middle, 1), NOW)})
    result = plan(desired(new), [running(old, 1, "o1")], memory, NOW + 5, options=OPTIONS)
    assert result.creates == ()  # not a third session for slot 1


# -- one id, one session (rule 13) ------------------------------------------------------------------


def _answer(rows, idless_names=()):
    """The rows as the list parser hands them over (one row per id, the anomalies found)."""
    observed = one_per_id(list(rows), idless_names)
    return observed, anomalies_of(observed)


@pytest.mark.parametrize("repeats", [[0], [0, 1, 2]])
def test_a_repeated_row_destroys_nothing_and_creates_nothing(repeats):
    """The same session twice is one session, not "two in one slot": the old bug destroyed it."""
    observed, anomalies = _answer([*ALL, *(ALL[i] for i in repeats)])
    result = plan(desired(WORKERS), observed, converged_memory(), NOW + 5, options=OPTIONS, anomalies=anomalies)
    assert (result.creates, result.destroys) == ((), ())
    assert anomalies.counts["duplicate_id"] == len(repeats)


def test_a_suspect_answer_destroys_nothing_even_what_ended():
    """Nothing at all is destroyed from an answer with a repeated id; the next clean one does it."""
    ended = running(WORKERS, 2, status="Failed")
    rows = [ALL[0], ended, ALL[2]]
    observed, anomalies = _answer([*rows, ALL[0]])
    suspect = plan(desired(WORKERS), observed, converged_memory(), NOW + 5, options=OPTIONS, anomalies=anomalies)
    assert suspect.destroys == ()
    clean = plan(desired(WORKERS), rows, suspect.memory, NOW + 10, options=OPTIONS)
    assert destroyed(clean) == {"wor2": "ended"}
    assert clean.memory.restarts[("workers", 2)].count == 1  # one end, counted once


def test_two_different_ids_in_one_slot_are_still_a_duplicate():
    """What a duplicate really is, untouched by rule 13: the newer of two ids in a slot goes."""
    newer = running(WORKERS, 1, "new1", started=NOW - 5)
    memory = converged_memory()
    memory.owned.add("new1")  # a create of ours answered with that id
    result = plan(desired(WORKERS), [*ALL, newer], memory, NOW + 5, options=OPTIONS)
    assert destroyed(result) == {"new1": "duplicate"}


def test_the_slot_of_a_row_without_an_id_is_not_refilled():
    """Slot 2's row came without an id: neither destroyed nor replaced."""
    observed, anomalies = _answer([ALL[0], ALL[2]], idless_names=[name_of(WORKERS, 2)])
    result = plan(desired(WORKERS), observed, Memory(), NOW, options=OPTIONS, anomalies=anomalies)
    assert (result.creates, result.destroys) == ((), ())
    assert result.statuses["workers"].held == 1


def test_an_id_under_two_names_refills_neither_slot():
    """One id listed as slot 1 and as slot 2: neither slot is refilled, nothing destroyed."""
    twisted = session(ALL[0].id, name_of(WORKERS, 2))
    observed, anomalies = _answer([ALL[0], twisted, ALL[2]])
    result = plan(desired(WORKERS), observed, converged_memory(), NOW + 5, options=OPTIONS, anomalies=anomalies)
    assert (result.creates, result.destroys) == ((), ())
    assert result.statuses["workers"].held == 2
