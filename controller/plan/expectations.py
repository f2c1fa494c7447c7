"""The rule *Expectations*: what the controller did that no list shows yet.

A create the service confirmed counts as present until a list shows its id (or the expectation
TTL passes); a session it just destroyed counts as gone. A create whose outcome is unknown is
looked for by name: it stays *outstanding* until a list shows it, or until it is *written off*
(``uncertain_window`` passed and ``UNCERTAIN_MIN_LISTS`` lists that were not lossy did not show it).
"""

from __future__ import annotations

from dataclasses import replace

from controller.plan.actions import UNCERTAIN_MIN_LISTS, PlanOptions
from controller.plan.listing import Listing
from controller.plan.memory import ExpectedCreate, Memory, SlotKey


def outstanding_creates(memory: Memory, listing: Listing, now: float, options: PlanOptions, *,
                        lossy: bool) -> dict[SlotKey, ExpectedCreate]:
    """The creates still expected after this list (a lossy list counts as no look at all)."""
    kept = {}
    for key, expected in memory.creates.items():
        if expected.session_id is not None:
            if expected.session_id not in listing.ids and now - expected.at < options.expectation_ttl:
                kept[key] = expected
            continue
        if any(could_be_its_session(expected, sid, memory) for sid in listing.ids_named(expected.name)):
            continue  # it happened: the session is in the list
        misses = expected.misses + (0 if lossy else 1)
        if misses >= UNCERTAIN_MIN_LISTS and now - expected.at >= options.uncertain_window:
            continue  # written off: long enough and often enough not seen, it did not happen
        kept[key] = replace(expected, misses=misses)
    return kept


def could_be_its_session(expected: ExpectedCreate, session_id: str, memory: Memory) -> bool:
    """Whether the listed ``session_id`` (named like ``expected``) can be the session its create made.

    Not one the list showed under that name before the create was sent, nor one this controller
    already knew (in its inventory, or live in the last list), destroyed or reported ended: the list
    the create was planned from may have left the slot's old session out (so it is not among
    ``prior_ids``), and an old session is never taken for the new one.
    """
    return (session_id not in expected.prior_ids and session_id not in memory.owned
            and session_id not in memory.seen_live and session_id not in memory.destroys
            and session_id not in memory.lingering.retries and session_id not in memory.ended_reported)


def outstanding_destroys(memory: Memory, listing: Listing, now: float, options: PlanOptions, *,
                         lossy: bool = False) -> dict[str, float]:
    """Our destroys whose sessions this list still shows (or may have left out: a lossy list proves
    nothing), within the expectation TTL: a session we destroyed is never taken for a new one."""
    return {sid: at for sid, at in memory.destroys.items()
            if (lossy or sid in listing.ids) and now - at < options.expectation_ttl}


def by_set(creates: dict[SlotKey, ExpectedCreate]) -> dict[str, dict[int, ExpectedCreate]]:
    """Per-set views of the expected creates, so planning a set never scans the others."""
    view: dict[str, dict[int, ExpectedCreate]] = {}
    for (set_name, slot), expected in creates.items():
        view.setdefault(set_name, {})[slot] = expected
    return view
