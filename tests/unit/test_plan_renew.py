"""The rule *Renewal* with plain data: the lifetime is learnt from the platform, and renews are bounded.

A notebook here lives 30 s on the platform while ``--session-expiry`` says 4 days (the issue's case):
the planner must renew it as often as the 30 s need, never once per pass.
"""

from __future__ import annotations

from itertools import pairwise

from controller.plan import Memory, Plan, PlanOptions, plan
from controller.plan.actions import MIN_LIFETIME, RENEW_INEFFECTIVE_RETRY
from controller.plan.memory import RenewMark
from tests.unit.test_plan import NOW, OPTIONS, desired, name_of
from tests.unit.test_plan_lifecycle import conditions, notebook_session, observed_session

LIFE = 30.0


def renewed(result: Plan) -> list[str]:
    return [r.session_id for r in result.renews]


def after_renew(result: Plan, sid: str, at: float, before: float) -> Memory:
    """The memory once the reconciler has had the renew accepted (what ``Reconciler._renew`` records)."""
    memory = result.memory.copy()
    memory.renewed(sid, at, before)
    return memory


def test_the_lifetime_is_learnt_from_start_to_expiry_before_any_renew():
    """30 s from start to expiry: renewed once less than a quarter of 30 s remains, whatever --session-expiry says."""
    s, early = notebook_session(NOW + 8, lifetime=LIFE)
    assert renewed(plan(desired(s), [early], Memory(), NOW, options=OPTIONS)) == []
    s, due = notebook_session(NOW + 7, lifetime=LIFE)
    assert renewed(plan(desired(s), [due], Memory(), NOW, options=OPTIONS)) == ["nb1"]


def test_without_a_start_time_the_flag_is_the_lifetime():
    """Nothing to learn from: --session-expiry is the fallback."""
    s, listed = notebook_session(NOW + 3600)
    unstarted = observed_session("nb1", listed.name, "Running", started=None, kind="notebook", expires=NOW + 3600)
    assert renewed(plan(desired(s), [unstarted], Memory(), NOW, options=OPTIONS)) == ["nb1"]  # 1 h < 1 d
    long_flag = PlanOptions(prefix="cc", session_expiry=4 * 3600)
    assert renewed(plan(desired(s), [unstarted], Memory(), NOW, options=long_flag)) == []  # 1 h = 0.25 x 4 h


def test_what_a_renew_did_to_the_expiry_is_the_lifetime_from_then_on():
    """The expiry a renew produced minus when it was accepted: 30 s, though start to expiry is 10 min now."""
    s, listed = notebook_session(NOW + 7, lifetime=600)  # renewed often since its start
    memory = Memory(renews={"nb1": RenewMark(NOW - 23, NOW - 17)})  # the renew moved the expiry from -17 to +7
    result = plan(desired(s), [listed], memory, NOW, options=OPTIONS)
    assert result.memory.renews["nb1"].lifetime == LIFE and result.memory.renews["nb1"].outcome == "moved"
    assert renewed(result) == ["nb1"]  # 7 s < 7.5 s, and 23 s since the last renew >= 7.5 s
    assert conditions(result, "notes")["RenewIneffective"] == ("False", "RenewsTakeEffect")
    s, fresher = notebook_session(NOW + 8, lifetime=600)
    assert renewed(plan(desired(s), [fresher], result.memory, NOW, options=OPTIONS)) == []


def test_never_more_than_one_renew_per_quarter_lifetime():
    """Even with renew_when_remaining 1 (always due), a renew 7.5 s (a quarter of 30 s) after the last at most."""
    always = PlanOptions(prefix="cc", renew_when_remaining=1.0)
    memory = Memory(renews={"nb1": RenewMark(NOW - 1, NOW + 20, LIFE, "moved")})
    sent = []
    for step in range(0, 31):  # one pass per second for 30 s, the expiry always moving
        now = NOW + step
        s, listed = notebook_session(now + 29, lifetime=LIFE)
        result = plan(desired(s), [listed], memory, now, options=always)
        memory = result.memory
        if renewed(result):
            sent.append(step)
            memory = after_renew(result, "nb1", now, now + 29)
    assert sent == [7, 15, 23]  # 7.5 s after NOW - 1, then every 8 passes


def test_a_learnt_lifetime_shorter_than_the_floor_counts_as_the_floor():
    """A renew that claims a 1-second lifetime: still no more than one renew per quarter of MIN_LIFETIME."""
    s, listed = notebook_session(NOW + 0.5, lifetime=1.0)
    memory = Memory(renews={"nb1": RenewMark(NOW - 0.5, NOW - 0.7)})  # moved to 1 s after the renew
    result = plan(desired(s), [listed], memory, NOW, options=OPTIONS)
    assert renewed(result) == []
    assert renewed(plan(desired(s), [listed], result.memory, NOW - 0.5 + MIN_LIFETIME / 4, options=OPTIONS)) == ["nb1"]


def test_a_renew_that_did_not_move_the_expiry_is_reported_once_and_not_repeated():
    """Same expiry after the renew: RenewIneffective once, no renew until the expiry changes or an hour passes."""
    s, listed = notebook_session(NOW + 5, lifetime=LIFE)
    memory = Memory(renews={"nb1": RenewMark(NOW - 10, NOW + 5, LIFE, "moved")})
    memory.renewed("nb1", NOW - 8, NOW + 5)  # the last renew, 8 s ago, when the expiry was already +5
    first = plan(desired(s), [listed], memory, NOW, options=OPTIONS)
    assert renewed(first) == []
    assert [(r.session_id, r.renewed_at) for r in first.renew_ineffective] == [("nb1", NOW - 8)]
    status, reason = conditions(first, "notes")["RenewIneffective"]
    assert (status, reason) == ("True", "ExpiryUnchanged")
    assert "nb1" in first.statuses["notes"].condition("RenewIneffective").message

    later = plan(desired(s), [listed], first.memory, NOW + 60, options=OPTIONS)
    assert renewed(later) == [] and later.renew_ineffective == ()  # reported once
    assert conditions(later, "notes")["RenewIneffective"][0] == "True"

    hour = plan(desired(s), [listed], later.memory, NOW - 8 + RENEW_INEFFECTIVE_RETRY, options=OPTIONS)
    assert renewed(hour) == ["nb1"]  # an hour after it: tried again


def test_once_the_expiry_changes_renews_resume_and_the_condition_clears():
    memory = Memory(renews={"nb1": RenewMark(NOW - 6, NOW + 1, LIFE, "unchanged", reported=True)})
    s, moved = notebook_session(NOW + 2, lifetime=LIFE)  # someone (or a late list) moved it by 1 s
    result = plan(desired(s), [moved], memory, NOW, options=OPTIONS)
    assert renewed(result) == ["nb1"]  # 2 s left, 6 s after the last renew: more than a quarter of the 20-s floor
    assert result.memory.renews["nb1"].outcome == "moved" and not result.memory.renews["nb1"].reported
    assert conditions(result, "notes")["RenewIneffective"][0] == "False"


def test_a_renew_mark_is_forgotten_with_its_session():
    s, listed = notebook_session(NOW + 20, lifetime=LIFE)
    memory = Memory(renews={"nb1": RenewMark(NOW - 10, NOW + 5, LIFE, "moved"),
                            "gone": RenewMark(NOW - 10, NOW + 5, LIFE, "moved")})
    result = plan(desired(s), [listed], memory, NOW, options=OPTIONS)
    assert set(result.memory.renews) == {"nb1"}


def test_a_one_day_platform_gets_a_renew_every_eighteen_hours_not_every_pass():
    """The issue's site with a 1-day lifetime and the 4-day default: a pass every 30 s for two days."""
    day = 86_400.0
    started, expires, memory, sent = NOW, NOW + day, Memory(), []
    s, _ = notebook_session(expires, lifetime=day)
    for step in range(int(2 * day / 30)):
        now = NOW + 30 * step
        listed = observed_session("nb1", name_of(s, 1), "Running", started=started, kind="notebook", expires=expires)
        result = plan(desired(s), [listed], memory, now, options=OPTIONS)
        memory = result.memory
        if renewed(result):
            sent.append(now - NOW)
            memory = after_renew(result, "nb1", now, expires)
            expires = now + day  # what skaha does: now + its lifetime
    assert len(sent) == 2  # once less than 6 h of the day remain; not 5,760: one per pass
    assert all(18 * 3600 <= later - earlier <= 18 * 3600 + 30 for earlier, later in pairwise([0.0, *sent]))
