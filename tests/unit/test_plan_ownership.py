"""The rules *Inventory* and *Second writer*: only what this controller created or adopted is destroyed."""

from __future__ import annotations

from controller.plan import ConditionMark, ExpectedCreate, Memory, SeenSession, plan
from controller.plan.ownership import INVENTORY_KEEP
from tests.unit.test_plan import (
    NOW,
    OPTIONS,
    WORKERS,
    created,
    desired,
    destroyed,
    name_of,
    running,
    session_set,
)
from tests.unit.test_plan import slots_created as slots
from tests.unit.test_plan_safety import _answer

ALL = [running(WORKERS, n) for n in (1, 2, 3)]
BETA = session_set("beta", replicas=2)


def conflict(result, name="workers"):
    condition = result.statuses[name].condition("Conflict")
    assert condition is not None
    return condition.status, condition.reason, condition.message


def first_pass(observed, *sets) -> Memory:
    return plan(desired(*(sets or (WORKERS,))), observed, Memory(), NOW, options=OPTIONS).memory


def test_a_fresh_memory_adopts_the_sessions_of_its_sets_and_only_those():
    """The first pass takes over the owned-name sessions of its manifests' sets, even ended or surplus ones."""
    surplus = running(WORKERS, 4, "wor4")
    ended = running(WORKERS, 2, "old2", status="Failed")
    result = plan(desired(WORKERS), [*ALL, surplus, ended, *(running(BETA, n) for n in (1, 2))], Memory(), NOW,
                  options=OPTIONS)
    assert destroyed(result) == {"wor4": "scaled-down", "old2": "ended"}
    assert set(result.adopted) == {"wor1", "wor2", "wor3", "wor4", "old2"}
    assert result.unmanaged == {"beta": 2} and result.conflicts == {}
    assert result.memory.inventoried and result.memory.managed_sets == {"workers"}


def test_sessions_of_a_set_never_managed_are_reported_and_never_destroyed():
    """Another controller's set with our prefix is not an orphan: seen any number of times, it stays."""
    others = [running(BETA, n) for n in (1, 2)]
    memory = first_pass([*ALL, *others])
    for t in (NOW + 5, NOW + 10, NOW + 3600):
        result = plan(desired(WORKERS), [*ALL, *others], memory, t, options=OPTIONS)
        assert (result.creates, result.destroys) == ((), ())
        assert result.unmanaged == {"beta": 2} and "beta" not in result.statuses
        memory = result.memory


def test_a_removed_set_stays_managed_while_it_has_sessions_and_its_sessions_are_pruned():
    """The existing orphan rule goes on for a set this controller managed: seen twice, destroyed."""
    memory = first_pass([*ALL, *(running(BETA, n) for n in (1, 2))], WORKERS, BETA)
    once = plan(desired(WORKERS), [*ALL, *(running(BETA, n) for n in (1, 2))], memory, NOW + 5, options=OPTIONS)
    assert once.destroys == () and once.memory.managed_sets == {"workers", "beta"}
    twice = plan(desired(WORKERS), [*ALL, *(running(BETA, n) for n in (1, 2))], once.memory, NOW + 10,
                 options=OPTIONS)
    assert destroyed(twice) == {"bet1": "orphaned", "bet2": "orphaned"} and twice.unmanaged == {}
    gone = plan(desired(WORKERS), ALL, twice.memory, NOW + 15, options=OPTIONS)
    assert gone.memory.managed_sets == {"workers"}


def test_a_live_session_nobody_here_created_is_a_second_writer():
    """After the first pass a stranger in a managed set stops its creates and destroys; other sets go on."""
    memory = first_pass([*ALL[:2], running(BETA, 1)], WORKERS, BETA)
    memory.owned.add("wor3")  # our create of slot 3 was answered with wor3
    stranger = running(WORKERS, 3, "xx3", started=NOW - 1)
    surplus = running(WORKERS, 4, "wor4-theirs")
    listed = [*ALL, stranger, surplus, running(BETA, 1)]
    result = plan(desired(WORKERS, BETA), listed, memory, NOW + 5, options=OPTIONS)
    status, reason, message = conflict(result)
    assert (status, reason) == ("True", "SecondWriter") and "xx3" in message and "wor4-theirs" in message
    assert result.destroys == () and slots(result) == [("beta", 2)]  # beta is not affected
    assert result.conflicts == {"workers": ("wor4-theirs", "xx3")}
    assert conflict(result, "beta")[0] == "False"
    stable = plan(desired(WORKERS, BETA), listed, result.memory, NOW + 60, options=OPTIONS)
    assert stable.destroys == () and conflict(stable)[0] == "True"
    assert "xx3" not in stable.memory.owned  # never adopted, however long it stays
    resumed = plan(desired(WORKERS, BETA), [*ALL[:2], running(BETA, 1)], stable.memory, NOW + 65, options=OPTIONS)
    assert conflict(resumed)[0] == "False" and ("workers", 3) not in slots(resumed)  # wor3 held: left out once


def test_a_conflicted_set_does_not_create_into_its_empty_slots():
    memory = first_pass(ALL[:2])
    result = plan(desired(WORKERS), [*ALL[:2], running(WORKERS, 5, "theirs")], memory, NOW + 5, options=OPTIONS)
    assert result.creates == () and result.destroys == ()
    assert result.statuses["workers"].running == 2  # the stranger is not counted as ours


def test_an_uncertain_create_found_by_name_is_ours():
    """The create's answer was lost (or the process died after writing it ahead): the name proves it."""
    memory = first_pass(ALL[:2])
    create = plan(desired(WORKERS), ALL[:2], memory, NOW + 1, options=OPTIONS).creates[0]
    memory = created(memory, create, None, NOW + 1)
    result = plan(desired(WORKERS), [*ALL[:2], running(WORKERS, 3, "late3")], memory, NOW + 5, options=OPTIONS)
    assert result.conflicts == {} and result.adopted == ("late3",) and "late3" in result.memory.owned


def test_a_confirmed_create_is_ours_when_the_list_shows_it_later():
    memory = first_pass(ALL[:2])
    create = plan(desired(WORKERS), ALL[:2], memory, NOW + 1, options=OPTIONS).creates[0]
    memory = created(memory, create, "id3", NOW + 1)
    lagging = plan(desired(WORKERS), ALL[:2], memory, NOW + 5, options=OPTIONS)
    shown = plan(desired(WORKERS), [*ALL[:2], running(WORKERS, 3, "id3")], lagging.memory, NOW + 10,
                 options=OPTIONS)
    assert shown.conflicts == {} and shown.adopted == ()


def test_a_repeated_id_is_not_a_stranger():
    observed, anomalies = _answer([*ALL, ALL[2], ALL[2]])
    result = plan(desired(WORKERS), observed, first_pass(ALL), NOW + 5, options=OPTIONS, anomalies=anomalies)
    assert result.conflicts == {}


def test_an_owned_session_left_out_for_a_while_is_still_ours_when_it_comes_back():
    """A consistently partial list confirms a session gone; it is not a second writer's when it returns."""
    memory = first_pass(ALL)
    for t in (NOW + 5, NOW + 10):
        memory = plan(desired(WORKERS), ALL[:2], memory, t, options=OPTIONS).memory
    back = plan(desired(WORKERS), ALL, memory, NOW + INVENTORY_KEEP - 60, options=OPTIONS)
    assert back.conflicts == {}
    memory = plan(desired(WORKERS), ALL[:2], back.memory, NOW + INVENTORY_KEEP, options=OPTIONS).memory
    forgotten = plan(desired(WORKERS), ALL[:2], memory, NOW + 2 * INVENTORY_KEEP + 1, options=OPTIONS).memory
    assert "wor3" not in forgotten.owned and "wor1" in forgotten.owned


def test_a_memory_without_inventory_counts_what_it_knows_as_managed():
    """A version-1 memory: its sets and ids stay destroyable, nothing new becomes so, and it adopts once."""
    gone = session_set("gone")
    memory = Memory(seen_live={"gon1": SeenSession("gone", 1, name_of(gone, 1))},
                    conditions={"old": {"Ready": ConditionMark("True", NOW - 100)}},
                    creates={("workers", 3): ExpectedCreate(name_of(WORKERS, 3), NOW - 10, "wor3")})
    old = session_set("old", replicas=1)
    listed = [*ALL, running(gone, 1, "gon1"), running(gone, 2, "gon2"), running(old, 1, "old1"),
              running(BETA, 1)]
    result = plan(desired(WORKERS), listed, memory, NOW, options=OPTIONS)
    assert {"wor1", "wor2", "wor3", "gon1", "old1"} <= set(result.memory.owned)
    assert result.unmanaged == {"beta": 1, "gone": 1}  # gon2 was not known: not adopted
    assert result.memory.managed_sets >= {"workers", "old"}
    again = plan(desired(WORKERS), listed, result.memory, NOW + 5, options=OPTIONS)
    assert destroyed(again) == {"gon1": "orphaned", "old1": "orphaned"}


def test_the_first_pass_adopts_until_the_desired_state_is_complete():
    """A manifest still settling (or invalid) must not turn its set's sessions into strangers later."""
    unsettled = plan(desired(WORKERS, errors=1), [*ALL, running(BETA, 1)], Memory(), NOW, options=OPTIONS)
    assert not unsettled.memory.inventoried
    settled = plan(desired(WORKERS, BETA), [*ALL, running(BETA, 1)], unsettled.memory, NOW + 5, options=OPTIONS)
    assert settled.conflicts == {} and "bet1" in settled.memory.owned and settled.memory.inventoried


def test_a_controller_started_before_its_manifests_adopts_once_they_are_there():
    """An empty state directory at the first pass (a ConfigMap not mounted yet) closes nothing."""
    empty = plan(desired(), ALL, Memory(), NOW, options=OPTIONS)
    assert not empty.memory.inventoried and empty.destroys == ()
    later = plan(desired(WORKERS), ALL, empty.memory, NOW + 5, options=OPTIONS)
    assert later.conflicts == {} and set(later.adopted) == {"wor1", "wor2", "wor3"}
