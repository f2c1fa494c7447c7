"""The planner, with plain data in and plain data out."""

from __future__ import annotations

import pytest

from controller.models import ObservedSession, phase_of
from controller.plan import (
    EXPECTATION_TTL,
    RESTART_RESET_AFTER,
    Create,
    ExpectedCreate,
    Memory,
    PlanOptions,
    plan,
    restart_delay,
)
from controller.spec import DesiredState, SessionSet

NOW = 1_800_000_000.0
OPTIONS = PlanOptions(prefix="cc")


def session_set(name: str = "workers", replicas: int = 3, *, policy: str = "Always", suspend: bool = False,
                image: str = "images.canfar.net/skaha/astroml:latest", **template: object) -> SessionSet:
    return SessionSet.model_validate({
        "apiVersion": "canfar.controller/v1alpha1", "kind": "SessionSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "restartPolicy": policy, "suspend": suspend,
                 "template": {"image": image, **template}},
    })


def desired(*sets: SessionSet, invalid: dict[str, str] | None = None, errors: int = 0) -> DesiredState:
    from controller.errors import ManifestError

    return DesiredState(sets={s.name: s for s in sets}, invalid=invalid or {},
                        errors=tuple(ManifestError("f.yaml", "bad") for _ in range(errors)))


def name_of(s: SessionSet, slot: int, template_hash: str | None = None) -> str:
    return f"cc-{s.name}-{template_hash or s.spec.template.hash()}-{slot}"


def session(sid: str, name: str, status: str = "Running", started: float | None = NOW - 60) -> ObservedSession:
    return ObservedSession(sid, name, phase_of(status), "headless", started, None, None, None)


def running(s: SessionSet, slot: int, sid: str | None = None, *, status: str = "Running",
            started: float = NOW - 60, template_hash: str | None = None) -> ObservedSession:
    return session(sid or f"{s.name[:3]}{slot}", name_of(s, slot, template_hash), status, started)


def created(memory: Memory, create: Create, session_id: str | None, at: float) -> Memory:
    """The memory after ``create`` was sent at ``at``: ``session_id`` None when its outcome is unknown."""
    memory = memory.copy()
    key = (create.set_name, create.slot)
    memory.expect(key, ExpectedCreate(create.name, at, None, create.prior_ids))  # written ahead, as the reconciler does
    if session_id is not None:
        memory.confirm(key, create.name, session_id)
    return memory


def ours(memory: Memory, *session_ids: str) -> Memory:
    """The memory after creates the planner asked for were answered with these ids (the reconciler's
    ``Confirm``): the sessions a test lists next are this controller's, not another writer's."""
    memory.owned.update(session_ids)
    return memory


def slots_created(result) -> list[tuple[str, int]]:
    return [(c.set_name, c.slot) for c in result.creates]


def destroyed(result) -> dict[str, str]:
    return {d.session_id: d.reason for d in result.destroys}


WORKERS = session_set()


def test_empty_cluster_creates_every_slot():
    """From nothing, every slot 1..replicas gets a create with its deterministic name."""
    result = plan(desired(WORKERS), [], Memory(), NOW, options=OPTIONS)
    assert slots_created(result) == [("workers", 1), ("workers", 2), ("workers", 3)]
    assert [c.name for c in result.creates] == [name_of(WORKERS, n) for n in (1, 2, 3)]
    assert result.changes


def test_converged_state_plans_nothing():
    """When every slot runs the current template, the plan is empty."""
    observed = [running(WORKERS, n) for n in (1, 2, 3)]
    result = plan(desired(WORKERS), observed, Memory(), NOW, options=OPTIONS)
    assert (result.creates, result.destroys, result.changes) == ((), (), False)
    assert (result.statuses["workers"].running, result.statuses["workers"].outdated) == (3, 0)


def test_failed_list_plans_nothing_at_all():
    """A failed list (observed None) neither creates nor destroys, whatever the state says."""
    result = plan(desired(WORKERS), None, Memory(orphans_seen=frozenset({"x"})), NOW, options=OPTIONS)
    assert (result.creates, result.destroys, result.blind) == ((), (), True)


def test_foreign_sessions_are_never_touched():
    """Sessions without our prefix are ignored, even ones that look like ours under another prefix."""
    foreign = [session("f1", "my-notebook", "Failed"),
               session("f2", f"other-workers-{WORKERS.spec.template.hash()}-1"),
               session("f3", "cc", "Completed")]
    observed = [running(WORKERS, n) for n in (1, 2, 3)] + foreign
    memory = Memory(orphans_seen=frozenset({"f1", "f2", "f3"}))
    result = plan(desired(WORKERS), observed, memory, NOW, options=OPTIONS)
    assert result.destroys == ()


def test_expected_create_counts_as_present_until_listed():
    """A create the list does not show yet is not repeated (no duplicate from a lagging list)."""
    first = plan(desired(WORKERS), [], Memory(), NOW, options=OPTIONS)
    memory = first.memory
    for create in first.creates:
        memory = created(memory, create, f"id{create.slot}", NOW)
    second = plan(desired(WORKERS), [], memory, NOW + 5, options=OPTIONS)
    assert second.creates == ()
    assert second.statuses["workers"].in_flight == 3


def test_expectation_expires_after_ttl():
    """An expected create never seen within the TTL is forgotten, and the slot is created again."""
    create = plan(desired(WORKERS), [], Memory(), NOW, options=OPTIONS).creates[0]
    memory = created(Memory(), create, "lost", NOW)
    later = plan(desired(WORKERS), [running(WORKERS, 2), running(WORKERS, 3)], memory,
                 NOW + EXPECTATION_TTL + 1, options=OPTIONS)
    assert slots_created(later) == [("workers", 1)]
    assert later.memory.creates == {}


def test_expectation_is_settled_once_listed():
    """Once the list shows the created session, the expectation is dropped."""
    create = plan(desired(WORKERS), [], Memory(), NOW, options=OPTIONS).creates[0]
    memory = created(Memory(), create, "wor1", NOW)
    result = plan(desired(WORKERS), [running(WORKERS, n) for n in (1, 2, 3)], memory, NOW + 1, options=OPTIONS)
    assert result.memory.creates == {}


def test_lost_create_answer_is_matched_by_name():
    """A create whose answer was lost (no id) is settled when a session with its name appears."""
    create = plan(desired(WORKERS), [], Memory(), NOW, options=OPTIONS).creates[0]
    memory = created(Memory(), create, None, NOW)
    pending = plan(desired(WORKERS), [running(WORKERS, 2), running(WORKERS, 3)], memory, NOW + 1, options=OPTIONS)
    assert pending.creates == ()
    settled = plan(desired(WORKERS), [running(WORKERS, n) for n in (1, 2, 3)], memory, NOW + 2, options=OPTIONS)
    assert settled.memory.creates == {}


def test_expected_destroy_counts_as_gone():
    """A session we asked to destroy but still listed is not destroyed again, and its slot is refilled."""
    ended = running(WORKERS, 1, "old1", status="Completed")
    memory = Memory(destroys={"old1": NOW})
    observed = [ended, running(WORKERS, 2), running(WORKERS, 3)]
    result = plan(desired(WORKERS), observed, memory, NOW + 1, options=OPTIONS)
    assert result.destroys == ()
    assert result.statuses["workers"].terminating == 1


@pytest.mark.parametrize(
    ("policy", "status", "destroyed_reason", "recreated"),
    [
        ("Always", "Completed", "ended", True),
        ("Always", "Failed", "ended", True),
        ("OnFailure", "Failed", "ended", True),
        ("OnFailure", "Completed", "ended", False),
        ("Never", "Failed", "ended", False),
        ("Never", "Completed", "ended", False),
        ("Always", "Succeeded", "ended", True),  # old servers' word for Completed
        ("Always", "Failed (DeadlineExceeded)", "ended", True),  # servers 1.0.0-1.0.3
    ],
)
def test_ended_sessions_follow_restart_policy(policy, status, destroyed_reason, recreated):
    """An ended session is destroyed; the slot runs again only as restartPolicy says (after back-off)."""
    s = session_set(policy=policy)
    observed = [running(s, 1, "end1", status=status), running(s, 2), running(s, 3)]
    first = plan(desired(s), observed, Memory(), NOW, options=OPTIONS)
    assert destroyed(first) == {"end1": destroyed_reason}
    assert first.creates == ()  # the first restart waits for its back-off
    later = plan(desired(s), [running(s, 2), running(s, 3)], first.memory, NOW + restart_delay(1),
                 options=OPTIONS)
    assert slots_created(later) == ([("workers", 1)] if recreated else [])


def test_failed_session_evidence_is_collected_before_destroy():
    """Destroying a Failed session asks for its logs and events first; a Completed one does not."""
    observed = [running(WORKERS, 1, "bad", status="Failed"), running(WORKERS, 2, "ok", status="Completed")]
    result = plan(desired(WORKERS), observed, Memory(), NOW, options=OPTIONS)
    assert {d.session_id: d.collect_evidence for d in result.destroys} == {"bad": True, "ok": False}


def test_crash_loop_backs_off_exponentially_and_caps():
    """Each consecutive end of a slot doubles the wait before the next create, up to 5 minutes."""
    assert [restart_delay(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [10, 20, 40, 80, 160, 300, 300]
    memory = Memory()
    s = session_set(replicas=1)
    t = NOW
    for n in range(1, 5):
        result = plan(desired(s), [running(s, 1, f"run{n}", status="Failed")], ours(memory, f"run{n}"), t,
                      options=OPTIONS)
        memory = result.memory
        assert memory.restarts[("workers", 1)].count == n
        too_early = plan(desired(s), [], memory, t + restart_delay(n) - 1, options=OPTIONS)
        assert too_early.creates == () and too_early.statuses["workers"].waiting
        on_time = plan(desired(s), [], memory, t + restart_delay(n), options=OPTIONS)
        assert slots_created(on_time) == [("workers", 1)]
        t += restart_delay(n)


def test_back_off_resets_after_a_long_healthy_run():
    """A slot whose session has run 10 minutes forgets its earlier failures."""
    s = session_set(replicas=1)
    memory = plan(desired(s), [running(s, 1, "a", status="Failed")], Memory(), NOW, options=OPTIONS).memory
    healthy = running(s, 1, "b", started=NOW + 20)
    result = plan(desired(s), [healthy], ours(memory, "b"), NOW + 20 + RESTART_RESET_AFTER, options=OPTIONS)
    assert result.memory.restarts == {}


def test_scale_down_destroys_slots_above_replicas():
    """Scaling 5 -> 2 destroys slots 3, 4 and 5, whatever their state."""
    five = session_set(replicas=5)
    observed = [running(five, n) for n in range(1, 6)]
    observed[3] = running(five, 4, status="Pending")
    two = session_set(replicas=2)
    result = plan(desired(two), observed, Memory(), NOW, options=OPTIONS)
    assert destroyed(result) == {"wor3": "scaled-down", "wor4": "scaled-down", "wor5": "scaled-down"}
    assert result.creates == ()


def test_scale_up_creates_only_new_slots():
    """Scaling 2 -> 4 creates slots 3 and 4 and leaves 1 and 2 alone."""
    four = session_set(replicas=4)
    result = plan(desired(four), [running(four, 1), running(four, 2)], Memory(), NOW, options=OPTIONS)
    assert slots_created(result) == [("workers", 3), ("workers", 4)]
    assert result.destroys == ()


def test_duplicate_in_a_slot_keeps_the_running_oldest():
    """Two live sessions of the same slot and template: the Running, older one stays."""
    s = session_set(replicas=1)
    observed = [running(s, 1, "young", started=NOW - 10), running(s, 1, "old", started=NOW - 100),
                running(s, 1, "pend", status="Pending", started=NOW - 500)]
    result = plan(desired(s), observed, Memory(), NOW, options=OPTIONS)
    assert destroyed(result) == {"young": "duplicate", "pend": "duplicate"}


@pytest.mark.parametrize(
    ("complete", "sets_left", "allow_empty", "seen_before", "pruned"),
    [
        (True, True, False, True, True),
        (True, True, False, False, False),  # first sighting: wait one pass
        (False, True, False, True, False),  # some manifest is invalid
        (True, False, False, True, False),  # empty desired state
        (True, False, True, True, True),  # ... unless allowed
    ],
)
def test_orphans_are_pruned_only_when_safe(complete, sets_left, allow_empty, seen_before, pruned):
    """Orphans go only with clean manifests, non-empty desired state (or allow_empty), seen twice."""
    gone = session_set("gone")
    orphan = running(gone, 1, "orph")
    sets = (WORKERS,) if sets_left else ()
    observed = [orphan] + ([running(WORKERS, n) for n in (1, 2, 3)] if sets_left else [])
    # The controller created orph while "gone" was in its manifests.
    memory = Memory(orphans_seen=frozenset({"orph"} if seen_before else set()), owned={"orph"})
    result = plan(desired(*sets, errors=0 if complete else 1), observed, memory, NOW,
                  options=PlanOptions(prefix="cc", allow_empty=allow_empty))
    assert destroyed(result) == ({"orph": "orphaned"} if pruned else {})
    assert result.memory.orphans_seen == {"orph"}


def test_invalid_set_without_good_spec_is_left_untouched():
    """Sessions of a set whose manifest never validated are neither pruned nor replaced."""
    broken = session_set("broken")
    observed = [running(broken, 1, "b1", status="Failed"), *[running(WORKERS, n) for n in (1, 2, 3)]]
    memory = Memory(orphans_seen=frozenset({"b1"}))
    result = plan(desired(WORKERS, invalid={"broken": "f.yaml:3: bad"}, errors=1), observed, memory, NOW,
                  options=OPTIONS)
    assert result.destroys == () and result.creates == ()
    assert result.statuses["broken"].invalid == "f.yaml:3: bad"


def test_suspended_set_observes_but_changes_nothing():
    """A suspended set reports its sessions and acts on none of them."""
    s = session_set(suspend=True)
    observed = [running(s, 1, "x", status="Failed"), running(s, 7, "y")]
    result = plan(desired(s), observed, Memory(), NOW, options=OPTIONS)
    assert (result.creates, result.destroys) == ((), ())
    assert result.statuses["workers"].suspended
    assert result.statuses["workers"].ended == 1


def test_template_change_rolls_one_slot_at_a_time():
    """A new template creates the new session first, and destroys the old one once the new runs."""
    old = session_set(replicas=2, cores=2)
    new = session_set(replicas=2, cores=4)
    observed = [running(old, 1, "o1"), running(old, 2, "o2")]
    step1 = plan(desired(new), observed, Memory(), NOW, options=OPTIONS)
    assert [(c.slot, c.reason) for c in step1.creates] == [(1, "rollout")]  # 25% of 2, at least one
    assert step1.destroys == ()
    assert step1.statuses["workers"].outdated == 2
    observed.append(running(new, 1, "n1", status="Pending"))
    step2 = plan(desired(new), observed, Memory(), NOW, options=OPTIONS)
    assert (step2.creates, step2.destroys) == ((), ())  # the surge is still pending
    observed[-1] = running(new, 1, "n1")
    step3 = plan(desired(new), observed, Memory(), NOW, options=OPTIONS)
    assert destroyed(step3) == {"o1": "outdated"}
    assert [(c.slot, c.reason) for c in step3.creates] == [(2, "rollout")]  # slot 1 is done: next slot


def test_creates_are_capped_and_interleaved_across_sets():
    """The per-pass cap takes slots round-robin across sets and reports the rest as deferred."""
    a, b = session_set("alpha", replicas=5), session_set("beta", replicas=2)
    result = plan(desired(a, b), [], Memory(), NOW, options=PlanOptions(prefix="cc", max_creates=4))
    assert slots_created(result) == [("alpha", 1), ("beta", 1), ("alpha", 2), ("beta", 2)]
    assert result.deferred == 3


def test_headless_env_carries_the_slot_identity():
    """Each headless create sends REPLICA_ID (the slot) and REPLICA_COUNT, plus the template env."""
    s = session_set(replicas=2, cmd="python", args="w.py", env={"QUEUE": "q"})
    result = plan(desired(s), [running(s, 1)], Memory(), NOW, options=OPTIONS)
    assert result.creates[0].env() == {"QUEUE": "q", "REPLICA_ID": "2", "REPLICA_COUNT": "2"}


def test_interactive_kinds_get_no_env():
    """Non-headless kinds ignore env server-side, so none is sent."""
    s = session_set(replicas=1, kind="notebook")
    assert plan(desired(s), [], Memory(), NOW, options=OPTIONS).creates[0].env() == {}


def test_finished_slot_stays_finished_after_the_session_is_reaped():
    """Under Never, a completed slot is not run again once its session disappears from the list."""
    s = session_set(replicas=1, policy="Never")
    first = plan(desired(s), [running(s, 1, "done", status="Completed")], Memory(), NOW, options=OPTIONS)
    later = plan(desired(s), [], first.memory, NOW + 3600, options=OPTIONS)
    assert later.creates == ()


def test_planning_is_deterministic():
    """The same inputs give the same plan, in the same order."""
    sets = [session_set(f"s{i}", replicas=3) for i in range(5)]
    observed = [running(sets[0], 1, "a", status="Failed"), running(sets[1], 9, "b")]
    one = plan(desired(*sets), observed, Memory(), NOW, options=OPTIONS)
    two = plan(desired(*reversed(sets)), list(reversed(observed)), Memory(), NOW, options=OPTIONS)
    assert (one.creates, one.destroys) == (two.creates, two.destroys)


@pytest.mark.parametrize(
    ("name", "owned"),
    [
        ("cc-workers-8dbc34-3", ("workers", "8dbc34", 3)),
        ("cc-my-set-8dbc34-512", ("my-set", "8dbc34", 512)),
        ("cc-a-000000-1", ("a", "000000", 1)),
        ("cc-workers-8dbc34-0", None),  # slots start at 1
        ("cc-workers-8dbc34-03", None),
        ("cc-workers-8dbc34-1000", None),
        ("cc-workers-8DBC34-3", None),
        ("cc-workers-8dbc3-3", None),
        ("cc-workers-8dbc34-", None),
        ("cc--8dbc34-3", None),
        ("cc-workers--8dbc34-3", None),
        ("cc-workers-8dbc34-٣", None),  # a non-ASCII digit
        ("ccx-workers-8dbc34-3", None),
        ("other-workers-8dbc34-3", None),
        ("cc-8dbc34-3", None),
        ("workers", None),
    ],
)
def test_owned_names_parse_strictly(name, owned):
    """Only names of exactly the owned shape under our prefix are ours."""
    from controller.names import NameParser

    parsed = NameParser("cc").parse(name)
    assert (tuple(parsed) if parsed else None) == owned
