"""The rule *Disappearance confirmed*: the service itself says whether a session a list left out is gone.

A list can leave out the same live sessions answer after answer (a gateway or cache losing the
same rows), and two such answers look exactly like a real deletion. So before the slot of a live
owned session that a list left out is refilled, the service is asked for that session by id
(``GET /session/{id}``): a 404 or ``Terminating`` confirms it is gone, and the slot may be refilled
in that same pass; a session it still returns proves the list lossy: the slot stays held
(``controller.plan.trust``). That includes an ended one (``Completed``, ``Failed``): its end is for
a list to show, so that ``restartPolicy`` and the restart back-off decide whether the slot runs
again (a ``Never`` job that completed while lists left it out is not run a second time).

Who asks, and when: the reconciler, after the list call and before planning, for the sessions
``due`` names (at most ``LOOKUPS_PER_PASS``, concurrently, each within a short timeout; none for an
answer that left out every live session while *List trust* does not believe it anyway), and
records each answer in the memory (``Memory.looked_up``), where the planner reads it. Asking in
the same pass keeps a really deleted session's slot refilled at once, and costs a pass nothing
when no session vanished; asking only in the next pass would leave every decision a pass late.

A session is asked about once when it vanishes, never once per pass. While it stays left out the
answer is kept, and it is asked again only after ``RECHECK`` (1 min, doubling per lookup to
10 min): a lossy list that keeps one session out for an hour costs about ten lookups of it. When
lists show it again the answer is still kept, for a minute after it was given (``kept``), so a
session that lossy lists keep dropping and showing is asked about at most once a minute, and a
session really deleted after such flickering waits at most that minute. A "gone" answer is dropped
as soon as a list shows the session live (it was wrong, or out of date), so it never confirms a
later disappearance by itself. A lookup without a usable answer (timeout, 5xx, a refused
credential) is ``failed``: that session falls back to the two-list rule of *List trust*, as does
one beyond this pass's bound.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from controller.plan.backoff import Backoff
from controller.plan.memory import Lookup, LookupAnswer, Memory

#: At most this many lookups per pass; the rest are asked in the next passes.
LOOKUPS_PER_PASS = 20
#: When a session still left out is asked about again: 1 min after the first lookup, doubling to 10 min.
RECHECK = Backoff(60.0, 600.0)
#: Statuses that say the session is going away without an end to report: its slot may be refilled.
#: An ended session (``Completed``, ``Failed``) is not among them: the list must show its end, which
#: ``restartPolicy`` and the restart back-off then act on.
GONE_PHASES = frozenset({"Terminating"})


def left_out(memory: Memory, listed: Collection[str]) -> frozenset[str]:
    """Owned live sessions of the last list that are not in ``listed`` (and that we did not destroy)."""
    return frozenset(sid for sid in memory.seen_live if sid not in listed and sid not in memory.destroys)


def kept(lookups: Mapping[str, Lookup], held: Collection[str], listed_live: Collection[str],
         now: float) -> dict[str, Lookup]:
    """The lookups the next pass remembers: of sessions still held; and of sessions listed live again,
    for a minute after the lookup, with their back-off reset (a new disappearance is asked about a
    minute after the last lookup at most), except "gone" answers, which the list just contradicted."""
    kept = {sid: lookup for sid, lookup in lookups.items() if sid in held}
    kept.update((sid, replace(lookup, count=0)) for sid, lookup in lookups.items()
                if sid not in held and sid in listed_live and lookup.answer != "gone"
                and now < lookup.at + RECHECK.base)
    return kept


def next_check(lookup: Lookup) -> float:
    """When a session still left out after ``lookup`` is asked about again."""
    return lookup.at + RECHECK.delay(lookup.count)


def due(memory: Memory, listed: Collection[str], now: float, *, empty_list_window: float,
        limit: int = LOOKUPS_PER_PASS) -> list[str]:
    """The sessions to ask the service about now: left out, and never asked or due a re-check.

    Never-asked sessions first, then the longest waiting; at most ``limit``. None while an answer
    that left out every live session is not believed anyway (*List trust*: for ``empty_list_window``).
    """
    gone = left_out(memory, listed)
    everything = len(gone) == sum(1 for sid in memory.seen_live if sid not in memory.destroys)
    if gone and everything and (memory.suspect_since is None or now - memory.suspect_since < empty_list_window):
        return []
    lookups = memory.lookups
    wanted = [sid for sid in gone if sid not in lookups or now >= next_check(lookups[sid])]
    wanted.sort(key=lambda sid: (sid in lookups, lookups[sid].at if sid in lookups else 0.0, sid))
    return wanted[:limit]


def answer_of(phase: str | None) -> LookupAnswer:
    """What a lookup's answer means: ``None`` is a 404 (gone), ``Terminating`` is gone; any other status
    means the service still has the session (``live``, an ended one included)."""
    return "gone" if phase is None or phase in GONE_PHASES else "live"
