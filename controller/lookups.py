"""Asking the service by id for the live sessions a list left out (the rule *Disappearance confirmed*).

The reconciler calls ``look_up`` after the list call and before planning; which sessions to ask
about, and what an answer means, are the pure rule's (``controller.plan.vanished``). The answers
go into the memory, where the planner reads them. Each lookup has its own short timeout
(``LOOKUP_TIMEOUT``) and they run concurrently, so a pass in which sessions vanished waits a few
seconds at most, and one in which none did makes no call at all.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection

import structlog

from controller.errors import ControllerError, NotFoundError
from controller.models import phase_of
from controller.plan import Memory, vanished
from controller.plan.memory import LookupAnswer
from controller.sessionapi import SessionAPI

#: The most one lookup may take (retries included): without an answer by then it has ``failed``.
LOOKUP_TIMEOUT = 3.0


async def look_up(client: SessionAPI, memory: Memory, listed: Collection[str], now: float, *,
                  bound: asyncio.Semaphore, empty_list_window: float,
                  timeout: float = LOOKUP_TIMEOUT) -> Counter[LookupAnswer]:
    """Ask for the sessions due a lookup, record each answer in ``memory``; the answers by kind."""
    ids = vanished.due(memory, listed, now, empty_list_window=empty_list_window)
    if not ids:
        return Counter()
    answers = await asyncio.gather(*(_one(client, sid, bound, timeout) for sid in ids))
    log = structlog.get_logger("canfar_controller")
    for sid, (answer, detail) in zip(ids, answers, strict=True):
        memory.looked_up(sid, answer, now, detail)
        seen = memory.seen_live.get(sid)
        where = {"sessionset": seen.set_name, "session": seen.name} if seen is not None else {}
        if answer == "live":
            log.warning("the list left out a session the service still has: its slot stays held",
                        session_id=sid, status=detail, **where)
        elif answer == "failed":
            log.warning("cannot ask the service for a session the list left out: a second list decides",
                        session_id=sid, error=detail, **where)
        else:
            log.info("the service confirms a session the list left out is gone: its slot is refilled",
                     session_id=sid, status=detail, **where)
    return Counter(answer for answer, _ in answers)


async def _one(client: SessionAPI, session_id: str, bound: asyncio.Semaphore,
               timeout: float) -> tuple[LookupAnswer, str]:
    """What the service says about one session: (answer, its status or the error)."""
    try:
        async with bound, asyncio.timeout(timeout):
            found = await client.info(session_id)
    except TimeoutError:
        return "failed", f"no answer within {timeout:g} s"
    except NotFoundError:
        return "gone", "not found"
    except ControllerError as exc:
        return "failed", str(exc)
    status = found[0].status if found else "Unknown"
    return vanished.answer_of(phase_of(status)), status
