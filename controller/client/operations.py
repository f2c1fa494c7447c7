"""Every session operation, written once, with no I/O: what to send and how to read the answer.

An operation is a generator that yields a batch of calls (``{key: Call}``), receives
each key's outcome (the parsed result, or the ``APIError`` it failed with) and finally returns
the operation's result or raises. ``Session`` and ``AsyncSession`` only execute the batches
(in a loop, or concurrently), so sync and async can never drift apart::

    def info(ids):
        outcomes = yield {id: Call(Request("info", "GET", f"session/{id}"), parse_session) ...}
        return collect("info", ids, outcomes)

Sending one call (retries, error mapping) is ``controller.client.exchange``, shared the same way.
"""

from __future__ import annotations

import json
import re
import warnings
import webbrowser
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from controller import rules
from controller.client.exchange import Call, Request
from controller.errors import APIError, BatchError, InvalidRequestError
from controller.models import (
    Event,
    ObservedSession,
    PlatformContext,
    PlatformStats,
    SessionInfo,
    parse_events,
    parse_observed,
    phase_of,
)
from controller.names import MAX_REPLICAS
from controller.rules import SessionSpec

T = TypeVar("T")
R = TypeVar("R")

#: Characters that turn a ``destroy_with`` prefix into a regular expression (same set as canfar).
REGEX_METACHARACTERS = frozenset(".^$*+?{}[]()|\\")
#: The most retries of one DELETE inside the client (3 attempts): the controller retries with back-off.
DESTROY_RETRIES = 2

Ids = str | Sequence[str]

#: A batch of calls by key, and the outcome of each key: its result or its error.
Batch = Mapping[str, Call[Any]]
Outcomes = Mapping[str, Any]
#: An operation: a generator that yields batches of calls and gets back their outcomes (run by the session).
Operation = Generator[Batch, Outcomes, R]


# -- parsers ------------------------------------------------------------------------------------


def parse_session(text: str) -> SessionInfo:
    return _session(json.loads(text))


def parse_sessions(text: str) -> list[SessionInfo]:
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array of sessions, got {type(data).__name__}")
    return [_session(row) for row in data]


def _session(row: Any) -> SessionInfo:
    if not isinstance(row, dict):
        raise ValueError(f"expected a session object, got {type(row).__name__}")
    if not row.get("id"):  # view=all rows describe other users' sessions and carry no id
        row = {**row, "id": "unknown"}
    return SessionInfo.model_validate(row)


def parse_stats(text: str) -> PlatformStats:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of stats, got {type(data).__name__}")
    return PlatformStats.from_wire(data)


def parse_context(text: str) -> PlatformContext:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return PlatformContext.from_wire(data)


def parse_created_id(text: str) -> str:
    session_id = text.strip()
    if not session_id or len(session_id.split()) != 1:
        raise ValueError(f"expected a session id, got {text[:80]!r}")
    return session_id


def parse_text(text: str) -> str:
    return text


def parse_nothing(text: str) -> None:
    return None


# -- helpers shared by the plans ----------------------------------------------------------------

_ONE = "-"  # the key of a batch with a single call


def _single(call: Call[T]) -> Operation[T]:
    outcomes = yield {_ONE: call}
    outcome = outcomes[_ONE]
    if isinstance(outcome, APIError):
        raise outcome
    return outcome


def id_list(ids: Ids) -> list[str]:
    """One id or many, in order, without duplicates; an empty or blank id is refused."""
    items = [ids] if isinstance(ids, str) else list(ids)
    for item in items:
        if not isinstance(item, str) or not item.strip() or item != item.strip():
            raise InvalidRequestError(f"invalid session id {item!r}")
    return list(dict.fromkeys(items))


def session_path(session_id: str) -> str:
    return "session/" + quote(session_id, safe="")


def collect(operation: str, ids: Ids, outcomes: Outcomes) -> dict[str, Any]:
    """Every key's result, or raise: one id's own error, or a ``BatchError`` that loses none."""
    errors = {key: value for key, value in outcomes.items() if isinstance(value, APIError)}
    results = {key: value for key, value in outcomes.items() if not isinstance(value, APIError)}
    if errors:
        if isinstance(ids, str) and len(outcomes) == 1:
            raise next(iter(errors.values()))
        raise BatchError(operation, results, errors)
    return results


def _for_each(operation: str, ids: Ids, make: Callable[[str], Call[Any]]) -> Operation[dict[str, Any]]:
    keys = id_list(ids)
    if not keys:
        return {}
    outcomes = yield {key: make(key) for key in keys}
    results = collect(operation, ids, outcomes)
    return {key: results[key] for key in keys}


# -- the operations -----------------------------------------------------------------------------


def fetch(
    kind: str | None = None, status: str | None = None, view: str | None = None
) -> Operation[list[SessionInfo]]:
    """The caller's sessions, optionally filtered by kind and status (server-side)."""
    if view == "stats":
        raise InvalidRequestError("view='stats' returns statistics, not sessions: use stats()")
    params = [(key, value) for key, value in (("type", kind), ("status", status), ("view", view)) if value]
    return (yield from _single(Call(Request("fetch", "GET", "session", tuple(params)), parse_sessions)))


def observe(kind: str | None = None) -> Operation[list[ObservedSession]]:
    """The caller's sessions as the controller reads them: only the fields of ``ObservedSession``.

    About three times cheaper than ``fetch`` for a long list. An answer that is not an array of
    sessions with ids and names raises ``APIError`` (status 200, "unexpected response"): the
    whole list counts as failed, so nothing is acted on.
    """
    params = (("type", kind),) if kind else ()
    return (yield from _single(Call(Request("list", "GET", "session", params), parse_observed, raw=True)))


def stats() -> Operation[PlatformStats]:
    """Platform capacity and usage."""
    return (yield from _single(Call(Request("stats", "GET", "session", (("view", "stats"),)), parse_stats)))


def info(ids: Ids) -> Operation[list[SessionInfo]]:
    """One ``SessionInfo`` per id, in the order given."""
    results = yield from _for_each(
        "info", ids, lambda key: Call(Request("info", "GET", session_path(key)), parse_session)
    )
    return list(results.values())


def logs(ids: Ids) -> Operation[dict[str, str]]:
    """Each session's log text (empty when the service has none)."""
    return (yield from _for_each(
        "logs", ids,
        lambda key: Call(Request("logs", "GET", session_path(key), (("view", "logs"),)), parse_text),
    ))


def events(ids: Ids) -> Operation[dict[str, list[Event]]]:
    """Each session's Kubernetes events, parsed from the service's table."""
    return (yield from _for_each(
        "events", ids,
        lambda key: Call(Request("events", "GET", session_path(key), (("view", "events"),)), parse_events),
    ))


def destroy(ids: Ids) -> Operation[list[str]]:
    """Delete sessions; returns the ids the service accepted (it accepts unknown ids too).

    DELETE is idempotent (deleting twice is deleting once), so it is retried like a read, but at most
    ``DESTROY_RETRIES`` times whatever the settings: the controller retries a failed destroy itself,
    with a back-off per session, and a service that fails every DELETE must not get a burst each time.
    """
    results = yield from _for_each(
        "destroy", ids,
        lambda key: Call(Request("destroy", "DELETE", session_path(key), retries=DESTROY_RETRIES), parse_nothing),
    )
    return list(results)


def context() -> Operation[PlatformContext]:
    """The platform's session resource options and defaults (``/context``)."""
    return (yield from _single(Call(Request("context", "GET", "context"), parse_context)))


def renew(ids: Ids) -> Operation[list[str]]:
    """Extend each session's lifetime; returns the renewed ids.

    A POST, but idempotent (the deadline becomes "now + expiry" however often it is sent), so it
    is retried like a read.
    """
    results = yield from _for_each(
        "renew", ids,
        lambda key: Call(Request("renew", "POST", session_path(key), (("action", "renew"),)), parse_nothing),
    )
    return list(results)


def name_pattern(prefix: str) -> re.Pattern[str]:
    """An anchored literal prefix, or a regex searched in the name if it has metacharacters."""
    if not prefix:
        raise InvalidRequestError("the name prefix must not be empty (it would select every session)")
    if not REGEX_METACHARACTERS.intersection(prefix):
        return re.compile("^" + re.escape(prefix))
    try:
        return re.compile(prefix)
    except re.error as exc:
        raise InvalidRequestError(f"invalid regular expression {prefix!r}: {exc}") from exc


def destroy_with(
    prefix: str, kind: str | None = "headless", status: str | None = "Completed"
) -> Operation[list[str]]:
    """Delete the sessions of ``kind`` whose name matches ``prefix`` and whose status is ``status``.

    The status is compared by phase, so ``Completed`` also matches the ``Succeeded`` of old
    servers and ``Failed`` matches ``Failed (DeadlineExceeded)``; ``None`` matches any status.
    """
    pattern = name_pattern(prefix)
    sessions = yield from fetch(kind=kind)
    wanted = None if status is None else phase_of(status)
    ids = [
        session.id for session in sessions
        if pattern.search(session.name) and (wanted is None or session.phase == wanted)
    ]
    return (yield from destroy(ids))


def connect(ids: Ids) -> Operation[list[str]]:
    """Open each running session's ``connectURL`` in a browser; warn about and skip the others."""
    sessions = yield from info(ids)
    opened = []
    for session in sessions:
        if session.phase != "Running":
            warnings.warn(f"session {session.id} is {session.status}, not Running: not opened",
                          stacklevel=2)
        elif not session.connect_url:
            warnings.warn(f"session {session.id} ({session.kind}) has no URL to open", stacklevel=2)
        elif webbrowser.open(session.connect_url):
            opened.append(session.id)
        else:
            warnings.warn(f"no browser could open session {session.id}: {session.connect_url}", stacklevel=2)
    return opened


def replica_names(name: str, replicas: int) -> list[str]:
    """The canfar client's naming: ``name`` alone, or ``name-1`` .. ``name-N``."""
    return [name] if replicas == 1 else [f"{name}-{index}" for index in range(1, replicas + 1)]


def create_calls(spec: SessionSpec, replicas: int = 1) -> dict[str, Call[str]]:
    """One POST per replica, keyed by replica name, each with its REPLICA_ID and REPLICA_COUNT.

    Only headless sessions get an environment at all, so only they get the replica keys; a
    single create that brings its own (the controller creating slot 4 of 5) keeps them.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidRequestError(f"replicas must be between 1 and {MAX_REPLICAS}, got {replicas!r}")
    names = replica_names(spec.name, replicas)
    if replicas > 1:
        problem = rules.name_problem(names[-1])  # the longest replica name
        if problem is not None:
            raise InvalidRequestError(f"name: with {replicas} replicas, {names[-1]!r} {problem}")
        if spec.env_keys & rules.RESERVED_ENV:
            raise InvalidRequestError("env: REPLICA_ID and REPLICA_COUNT are set per replica when replicas > 1")
    common = spec.params()[1:]  # everything but the name
    headless, given = spec.kind == "headless", spec.env_keys
    calls = {}
    for index, name in enumerate(names, start=1):
        params = [("name", name), *common]
        if headless:
            replica = (("REPLICA_ID", str(index)), ("REPLICA_COUNT", str(replicas)))
            params += [("env", f"{key}={value}") for key, value in replica if key not in given]
        calls[name] = Call(Request("create", "POST", "session", tuple(params), idempotent=False), parse_created_id)
    return calls


def create(spec: SessionSpec, replicas: int = 1) -> Operation[list[str]]:
    """Create ``replicas`` sessions of ``spec`` (one request each); returns the new ids in replica order.

    If some replicas fail, the ``BatchError`` holds the ids of those that were created under
    their replica names, so a caller can always clean them up.
    """
    calls = create_calls(spec, replicas)
    outcomes = yield calls
    results = collect("create", spec.name if replicas == 1 else list(calls), outcomes)
    return [results[name] for name in calls]
