"""Renewals bounded by what the platform does, in-process: the issue's 30-second platform, passes every second.

``--session-expiry`` stays at its 4 days while the simulated platform ends interactive sessions after
30 s (and a renew pushes the expiry to now + 30 s, as skaha does). The controller must learn the 30 s
and, by default, renew each notebook once less than a quarter of it remains (every 22.5 s), never
once per pass. The hard bound (one renew per quarter lifetime) is proven with
``--renew-when-remaining 1``, where a renew is due at every pass and only the bound holds it back;
so is the rule that a renew the platform ignores is not repeated. Renews are counted from the
simulator's request log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.reliability.rig import LIVE, Rig
from tests.reliability.test_lifecycle import condition, sessionset, start

LIFE = 30.0
QUARTER = LIFE / 4
DURATION = 80
#: ``--renew-when-remaining 1``: a renew is due at every pass, so only the bound can space them.
ALWAYS_DUE = {"renew_when_remaining": 1.0}


@pytest.fixture
def default(tmp_path: Path) -> Iterator[Rig]:
    """A platform whose interactive sessions last 30 s; the controller keeps its defaults (4 days, a quarter)."""
    rig = Rig(tmp_path, interval=1.0, service={"session_expiry": LIFE})
    yield rig
    rig.close()


@pytest.fixture
def short(tmp_path: Path) -> Iterator[Rig]:
    """The same platform, with every renew due at every pass: what bounds them is the per-quarter rule."""
    rig = Rig(tmp_path, interval=1.0, service={"session_expiry": LIFE}, options=ALWAYS_DUE)
    yield rig
    rig.close()


def renews_by_session(rig: Rig) -> dict[str, list[float]]:
    """When each session was sent a renew, as the service saw it."""
    sent: dict[str, list[float]] = defaultdict(list)
    for request in rig.requests("POST"):
        if request.param("action") == "renew":
            sent[request.path.rsplit("/", 1)[-1]].append(request.at)
    return sent


def live_notebooks(rig: Rig) -> set[str]:
    return {sid for sid, name, status in rig.truth() if name.startswith("cc-nb-") and status in LIVE}


def start_notebooks(rig: Rig, replicas: int) -> None:
    """The set of 30-s notebooks, created and Running."""
    start(rig, "nb", sessionset("nb", replicas, kind="notebook", cores=None, ram=None))
    rig.passes(4, every=1)  # Pending, then Running


def renews_over_the_duration(rig: Rig) -> dict[str, list[float]]:
    """Two notebooks run for ``DURATION``, a pass a second: the renews each got (the same two outlive
    their 30 s, however many times over)."""
    start_notebooks(rig, 2)
    first = live_notebooks(rig)
    assert len(first) == 2
    rig.passes(DURATION, every=1)
    assert live_notebooks(rig) == first
    sent = renews_by_session(rig)
    assert set(sent) == first
    return sent


def test_by_default_a_notebook_is_renewed_once_less_than_a_quarter_of_its_lifetime_remains(default: Rig) -> None:
    """The issue's words: 78 renews in 80 s was the bug; one per 22.5 s (about 3) keeps the notebooks alive."""
    sent = renews_over_the_duration(default)
    for session_id, times in sent.items():
        gaps = [later - earlier for earlier, later in pairwise(times)]
        # expiryTime is in whole seconds, so a learnt lifetime (and the time left) may be up to 1 s short.
        assert gaps and all(LIFE - QUARTER - 2 <= gap <= LIFE - QUARTER + 2 for gap in gaps), f"{session_id}: {gaps}"
        assert DURATION / LIFE <= len(times) <= DURATION / (LIFE - QUARTER - 2) + 1, f"{session_id}: {len(times)}"


def test_a_platform_lifetime_shorter_than_the_flag_gets_one_renew_per_quarter_lifetime(short: Rig) -> None:
    """Even with a renew due at every pass: a renew per 7.5 s (about 10 in 80 s), never one per pass."""
    sent = renews_over_the_duration(short)
    for session_id, times in sent.items():
        gaps = [later - earlier for earlier, later in pairwise(times)]
        assert min(gaps) >= QUARTER - 1e-6, f"{session_id}: two renews {min(gaps)} s apart"
        assert len(times) <= DURATION / QUARTER + 1, f"{session_id}: {len(times)} renews in {DURATION} s"
        assert len(times) >= DURATION / QUARTER - 2, f"{session_id}: only {len(times)} renews: not the bound's pace"


def test_the_learnt_lifetime_survives_a_restart(short: Rig) -> None:
    """After a restart the memory still knows each renew: the bound holds across it."""
    start(short, "nb", sessionset("nb", 1, kind="notebook", cores=None, ram=None))
    short.passes(20, every=1)
    short.restart()
    short.passes(40, every=1)
    [times] = renews_by_session(short).values()
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert len(times) >= 4 and min(gaps) >= QUARTER - 1e-6


def test_a_renew_that_does_not_move_the_expiry_is_sent_once_and_reported_once(short: Rig) -> None:
    """The platform answers 200 but the expiry stays: no second renew for that session, one RenewIneffective.

    A renew is due at every pass here and the bound would allow one per 7.5 s: only the rule holds them back.
    """
    short.simulator.ignore_renews(None)
    with capture_logs() as logs:
        start_notebooks(short, 1)  # Running, and renewed at once (due at every pass)
        [session_id] = live_notebooks(short)
        short.passes(22, every=1)  # most of its 30 s: renews due all along, the bound allowing two more
    sent = renews_by_session(short)
    assert sent[session_id] and len(sent[session_id]) == 1
    reported = [e for e in logs if e.get("reason") == "RenewIneffective"]
    assert [e["session_id"] for e in reported] == [session_id]
    assert condition(short, "nb", "RenewIneffective")["status"] == "True"
    assert session_id in condition(short, "nb", "RenewIneffective")["message"]
    with capture_logs() as logs:
        short.passes(DURATION, every=1)
    assert all(len(times) == 1 for times in renews_by_session(short).values())  # each replacement: once
    assert session_id not in live_notebooks(short)
