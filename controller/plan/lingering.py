"""Sessions the service will not let go: the planner rules *ignored destroys*, *failing destroys* and
*stuck sessions*.

*Ignored destroys.* The service may answer a DELETE with 200 and keep the session running. So a
slot is never refilled in the pass that destroys a live session of it, and a session this
controller destroyed that a list still shows Pending, Running or Unknown keeps its slot, whatever
the desired count says, until the session is really gone (listed ended, Terminating, or left out
by two trusted lists in a row: one partial answer proves nothing). So a slot never has two
Running sessions because a delete was ignored, and a ``Recreate`` set counts such a session as an
outdated one still going. The destroy is sent again with the destroy back-off (5 s doubling to
10 min, jittered by the reconciler), and from the second list that still shows the session
Running or Pending the set's ``DestroyFailing`` condition says so (reason ``Ignored``, the ids).

*Failing destroys.* A destroy that fails (a 5xx, no answer, a 4xx other than 404: a 404 means the
session is already gone) backs off per session with the same destroy back-off: the reconciler
records the failure (``destroy_failed``, the retry time and the service's message in the memory),
and the planner does not plan that destroy again before its retry time. While it fails the set is
``DestroyFailing`` (reason ``Failed``, the ids and the service's message) and not ``Ready`` when
the session is live: the set runs more than it should. The memory keeps the failure while the
session is listed; an answered destroy clears the message, and the attempts count on.

*Stuck sessions.* A session Terminating or Unknown for longer than ``terminating_limit`` is
reported once, with its events (the reconciler fetches them), and the set's ``Stuck`` condition
names it while it lasts. Nothing is created beside it that the other rules would not create
anyway: a ``Recreate`` set keeps waiting for its outdated sessions, and its status says which
stuck session it waits for.

Pure like the rest of the planner: the scan (``listing``) collects such sessions, ``view`` turns
them into the run's ``LingeringView`` (``PassContext.lingering``), which the set planning, the
statuses and the next memory ask for held slots, retries, reports and messages.
"""

from __future__ import annotations

from dataclasses import replace

from controller.plan.actions import DESTROY_BACKOFF, Destroy, Stuck
from controller.plan.backoff import RandomSource
from controller.plan.listing import Listing
from controller.plan.memory import DestroyRetry, Lingering
from controller.spec import DesiredState

#: Phases a session can linger in without the service ever ending it.
LINGER_PHASES = frozenset({"Terminating", "Unknown"})
#: Phases in which a destroyed session still holds its slot.
_HOLDING = frozenset({"Pending", "Running", "Unknown"})
#: Phases that prove a destroy was ignored (``DestroyFailing``).
_IGNORED = frozenset({"Pending", "Running"})
#: The service's distinct messages a ``DestroyFailing`` message quotes, and how much of each.
_MESSAGES = 3
_MESSAGE_CHARS = 300


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS - 1] + "…"


def retry_now(lingering: Lingering) -> None:
    """Send every pending destroy retry at the next pass (SIGHUP: the user says the cause is fixed)."""
    for session_id, retry in lingering.retries.items():
        lingering.retries[session_id] = replace(retry, retry_at=0.0)


def destroy_sent(lingering: Lingering, session_id: str, at: float, rng: RandomSource | None,
                 slot_of: tuple[str, int, str] | None = None) -> None:
    """The service answered a destroy at ``at``: the next one waits for the destroy back-off.

    The attempts count on after failures: a service that fails some destroys and ignores the others
    still gets one back-off per session, doubling until the session is gone. ``rng`` is the caller's
    (the reconciler's): the planner reads no randomness; ``None``, no jitter. ``slot_of`` is the
    destroyed live session's (set, slot, template): a lossy list that leaves it out keeps that slot held.
    """
    _back_off(lingering, session_id, at, rng, "")
    retry = lingering.retries[session_id]
    if slot_of is not None and not retry.set_name:
        set_name, slot, template = slot_of
        lingering.retries[session_id] = replace(retry, set_name=set_name, slot=slot, template=template, fresh=True)


def destroy_failed(lingering: Lingering, session_id: str, at: float, rng: RandomSource | None,
                   error: str) -> None:
    """A destroy failed at ``at`` with ``error``: it is not planned again before the destroy back-off
    ends (rule *Failing destroys*)."""
    _back_off(lingering, session_id, at, rng, error)


def _back_off(lingering: Lingering, session_id: str, at: float, rng: RandomSource | None, error: str) -> None:
    """One more destroy of ``session_id`` at ``at``: the next waits for ``DESTROY_BACKOFF`` of the attempts."""
    previous = lingering.retries.get(session_id)
    attempts = previous.attempts + 1 if previous is not None else 1
    retry_at = at + DESTROY_BACKOFF.delay(attempts, rng)
    lingering.retries[session_id] = (DestroyRetry(attempts, retry_at, error=error) if previous is None
                                     else replace(previous, attempts=attempts, retry_at=retry_at, error=error))


def view(memory: Lingering, listing: Listing, desired: DesiredState, now: float, limit: float, *,
         lossy: bool) -> LingeringView:
    """What this list says about lingering sessions; a ``Recreate`` set also waits for the outdated ones
    the list left out but that may still be there."""
    result = LingeringView(memory, now, limit)
    for seen, destroyed in listing.lingering:
        result.observe(seen.id, seen.name, seen.phase, seen.set_name, seen.slot, seen.template_hash, destroyed)
    result.carry_missing(listing.ids, lossy)
    for retry in result.carried:
        session_set = desired.sets.get(retry.set_name)
        if session_set is not None and retry.template != session_set.spec.template.hash():
            listing.terminating_outdated[retry.set_name] += 1
    return result


class LingeringView:
    """What one pass learns about lingering sessions."""

    def __init__(self, memory: Lingering, now: float, limit: float) -> None:
        self.memory = memory
        self.now = now
        self.limit = limit
        self.retries: dict[str, DestroyRetry] = {}
        self.since: dict[str, float] = {}
        self.destroys: list[Destroy] = []
        self.reports: list[Stuck] = []
        #: Per set, the slots held by a destroyed session still listed live (slot -> its id).
        self.blocked: dict[str, dict[int, str]] = {}
        #: Per set, the destroyed sessions shown Running or Pending by two lists or more.
        self.ignored: dict[str, list[str]] = {}
        #: Per set, the sessions whose last destroy failed: id -> the service's message (*Failing destroys*).
        self.failed: dict[str, dict[str, str]] = {}
        #: Per set, live sessions it wants gone that the service does not destroy (failed or ignored).
        self.stranded: dict[str, set[str]] = {}
        #: Lingering sessions this list left out (still held).
        self.carried: list[DestroyRetry] = []
        #: Per set, the stuck sessions: (id, phase, since).
        self.stuck: dict[str, list[tuple[str, str, float]]] = {}

    def observe(self, session_id: str, name: str, phase: str, set_name: str, slot: int, template: str,
                destroyed: bool) -> None:
        """One owned session that is Terminating or Unknown, or that this controller destroyed."""
        if phase in LINGER_PHASES:
            since = self.since[session_id] = self.memory.since.get(session_id, self.now)
            if self.now - since >= self.limit:
                self.stuck.setdefault(set_name, []).append((session_id, phase, since))
                if session_id not in self.memory.reported:
                    self.reports.append(Stuck(set_name, session_id, name, phase, since))
        if not destroyed or phase not in _HOLDING:
            return
        # Destroyed by an older controller, or the record was lost: retry at once.
        retry = self.memory.retries.get(session_id) or DestroyRetry(0, self.now)
        retry = replace(retry, set_name=set_name, slot=slot, template=template, misses=0, fresh=False)
        if phase in _IGNORED:
            retry = replace(retry, lists=retry.lists + 1)
            if retry.lists >= 2:
                self.ignored.setdefault(set_name, []).append(session_id)
                self.stranded.setdefault(set_name, set()).add(session_id)
        if retry.error:  # its retry failed too
            self._failed(set_name, session_id, retry.error, live=True)
        self.retries[session_id] = retry
        self.blocked.setdefault(set_name, {})[slot] = session_id
        if self.now >= retry.retry_at:
            self.destroys.append(Destroy(set_name, session_id, name, "retry", phase))

    def carry_missing(self, listed: set[str], lossy: bool) -> None:
        """A lingering session this list left out keeps its slot until a second trusted list confirms it
        is gone: a partial answer must not let its slot be refilled beside it. A failing destroy keeps its
        back-off while its session is listed, and through one list without it (its slot is not held: the
        session was not destroyed), whatever this pass decides about it: a pass that does not want it gone
        (a manifest not settled yet) must not start its back-off afresh."""
        for session_id, retry in self.memory.retries.items():
            if session_id in listed:
                if retry.error and session_id not in self.retries:
                    self.retries[session_id] = replace(retry, misses=0) if retry.misses else retry
                continue  # else seen in the scan
            if not (retry.set_name or retry.error) or (retry.fresh and not lossy and not retry.error):
                continue  # never listed live after its destroy, and a trusted list leaves it out: gone at once
            misses = retry.misses + (0 if lossy else 1)
            if misses >= 2:
                continue
            self.retries[session_id] = replace(retry, misses=misses)
            if retry.set_name:
                self.carried.append(self.retries[session_id])
                self.blocked.setdefault(retry.set_name, {})[retry.slot] = session_id

    def failing(self, set_name: str, session_id: str, *, live: bool) -> bool:
        """A session the planner wants destroyed: True when its last destroy failed and its retry is not
        due yet (rule *Failing destroys*); the set's ``DestroyFailing`` counts it either way."""
        retry = self.memory.retries.get(session_id)
        if retry is None or not retry.error:
            return False
        self._failed(set_name, session_id, retry.error, live=live)
        return self.now < retry.retry_at

    def _failed(self, set_name: str, session_id: str, error: str, *, live: bool) -> None:
        self.failed.setdefault(set_name, {})[session_id] = error
        if live:
            self.stranded.setdefault(set_name, set()).add(session_id)

    def after(self) -> Lingering:
        """The memory to keep: only what concerns sessions this list still showed."""
        return Lingering(
            retries=self.retries,
            since=self.since,
            reported={sid for sid in self.memory.reported if sid in self.since},
            evidence={name: text for name, text in self.memory.evidence.items() if name in self.stuck},
        )

    # -- what the set's status says ----------------------------------------------------------------

    @staticmethod
    def waiting(slot: int, session_id: str) -> str:
        return f"slot {slot}: destroyed session {session_id} is still listed live; waiting for it to go"

    def destroy_failing(self, set_name: str) -> tuple[str, str] | None:
        """``DestroyFailing``'s (reason, message): a failure (with the service's words) before an ignored one."""
        failed = self.failed.get(set_name)
        if failed:
            errors = sorted(set(failed.values()))
            said = "; ".join(_clip(error) for error in errors[:_MESSAGES])
            more = f" (and {len(errors) - _MESSAGES} other errors)" if len(errors) > _MESSAGES else ""
            policy = f"{DESTROY_BACKOFF.base:g} s doubling to {DESTROY_BACKOFF.cap / 60:g} min"
            return "Failed", (f"the destroy of {', '.join(sorted(failed))} failed: {said}{more}; it is retried "
                              f"with back-off ({policy})")
        ids = self.ignored.get(set_name)
        if not ids:
            return None
        return "Ignored", (f"the service answered the destroy of {', '.join(sorted(ids))} but still lists "
                           f"{'it' if len(ids) == 1 else 'them'} Running or Pending; the destroy is retried with "
                           "back-off and the slot is not refilled until the session is gone")

    def stranded_count(self, set_name: str) -> int:
        """Live sessions the set wants gone whose destroy fails or is ignored (the set is not ``Ready``)."""
        return len(self.stranded.get(set_name, ()))

    def failing_count(self, set_name: str) -> int:
        """Sessions of the set whose destroy fails or is ignored (the metric)."""
        return len(set(self.failed.get(set_name, ())) | set(self.ignored.get(set_name, ())))

    def stuck_count(self, set_name: str) -> int:
        return len(self.stuck.get(set_name, ()))

    def stuck_message(self, set_name: str) -> str | None:
        entries = self.stuck.get(set_name)
        if not entries:
            return None
        listed = ", ".join(f"{sid} ({phase} for {(self.now - since) / 60:.0f} min)"
                           for sid, phase, since in sorted(entries))
        message = (f"{len(entries)} session(s) Terminating or Unknown for more than {self.limit / 60:g} min "
                   f"(--terminating-limit): {listed}")
        evidence = self.memory.evidence.get(set_name)
        return f"{message}; {evidence}" if evidence else message

    def recreate_waiting(self, set_name: str) -> str:
        """What a ``Recreate`` set waits for, naming its stuck sessions if it has any."""
        text = "waiting for outdated sessions to go (Recreate)"
        entries = self.stuck.get(set_name)
        if entries:
            stuck = ", ".join(f"{sid} ({phase})" for sid, phase, _ in sorted(entries))
            text += f"; stuck: {stuck}"
        return text
