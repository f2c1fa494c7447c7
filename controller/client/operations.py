"""Every session operation, written once, with no I/O: what to send and how to read the answer.

An operation is a *plan*: a generator that yields a batch of calls (``{key: Call}``), receives
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
from dataclasses import dataclass
from typing import Any, TypeVar, get_args
from urllib.parse import quote

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
from controller.names import MAX_REPLICAS, session_name_problem
from controller.spec import SessionKind

T = TypeVar("T")
R = TypeVar("R")

#: Session kinds ``create`` accepts (``desktop-app`` is created through another endpoint).
CREATE_KINDS: tuple[str, ...] = get_args(SessionKind)
#: Characters that turn a ``destroy_with`` prefix into a regular expression (same set as canfar).
REGEX_METACHARACTERS = frozenset(".^$*+?{}[]()|\\")
#: Env keys ``create`` sets on every headless replica, unless a single create is given its own
#: (the controller creates one session per slot and sets the slot's identity itself).
REPLICA_KEYS = ("REPLICA_ID", "REPLICA_COUNT")

Ids = str | Sequence[str]

#: A batch of calls by key, and the outcome of each key: its result or its error.
Batch = Mapping[str, Call[Any]]
Outcomes = Mapping[str, Any]
Plan = Generator[Batch, Outcomes, R]


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


def _single(call: Call[T]) -> Plan[T]:
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


def _for_each(operation: str, ids: Ids, make: Callable[[str], Call[Any]]) -> Plan[dict[str, Any]]:
    keys = id_list(ids)
    if not keys:
        return {}
    outcomes = yield {key: make(key) for key in keys}
    results = collect(operation, ids, outcomes)
    return {key: results[key] for key in keys}


# -- the operations -----------------------------------------------------------------------------


def fetch(
    kind: str | None = None, status: str | None = None, view: str | None = None
) -> Plan[list[SessionInfo]]:
    """The caller's sessions, optionally filtered by kind and status (server-side)."""
    if view == "stats":
        raise InvalidRequestError("view='stats' returns statistics, not sessions: use stats()")
    params = [(key, value) for key, value in (("type", kind), ("status", status), ("view", view)) if value]
    return (yield from _single(Call(Request("fetch", "GET", "session", tuple(params)), parse_sessions)))


def observe(kind: str | None = None) -> Plan[list[ObservedSession]]:
    """The caller's sessions as the controller reads them: only the fields of ``ObservedSession``.

    About three times cheaper than ``fetch`` for a long list. An answer that is not an array of
    sessions with ids and names raises ``APIError`` (status 200, "unexpected response"): the
    whole list counts as failed, so nothing is acted on.
    """
    params = (("type", kind),) if kind else ()
    return (yield from _single(Call(Request("list", "GET", "session", params), parse_observed)))


def stats() -> Plan[PlatformStats]:
    """Platform capacity and usage."""
    return (yield from _single(Call(Request("stats", "GET", "session", (("view", "stats"),)), parse_stats)))


def info(ids: Ids) -> Plan[list[SessionInfo]]:
    """One ``SessionInfo`` per id, in the order given."""
    results = yield from _for_each(
        "info", ids, lambda key: Call(Request("info", "GET", session_path(key)), parse_session)
    )
    return list(results.values())


def logs(ids: Ids) -> Plan[dict[str, str]]:
    """Each session's log text (empty when the service has none)."""
    return (yield from _for_each(
        "logs", ids,
        lambda key: Call(Request("logs", "GET", session_path(key), (("view", "logs"),)), parse_text),
    ))


def events(ids: Ids) -> Plan[dict[str, list[Event]]]:
    """Each session's Kubernetes events, parsed from the service's table."""
    return (yield from _for_each(
        "events", ids,
        lambda key: Call(Request("events", "GET", session_path(key), (("view", "events"),)), parse_events),
    ))


def destroy(ids: Ids) -> Plan[list[str]]:
    """Delete sessions; returns the ids the service accepted (it accepts unknown ids too).

    DELETE is idempotent (deleting twice is deleting once), so it is retried like a read.
    """
    results = yield from _for_each(
        "destroy", ids, lambda key: Call(Request("destroy", "DELETE", session_path(key)), parse_nothing)
    )
    return list(results)


def context() -> Plan[PlatformContext]:
    """The platform's session resource options and defaults (``/context``)."""
    return (yield from _single(Call(Request("context", "GET", "context"), parse_context)))


def renew(ids: Ids) -> Plan[list[str]]:
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
) -> Plan[list[str]]:
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


def connect(ids: Ids) -> Plan[list[str]]:
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


@dataclass(frozen=True, slots=True)
class CreateSpec:
    """A validated create request; ``calls()`` yields one POST per replica."""

    name: str
    image: str
    cores: float | None = None
    ram: float | None = None
    kind: str = "headless"
    gpu: int | None = None
    cmd: str | None = None
    args: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    replicas: int = 1

    def replica_names(self) -> list[str]:
        if self.replicas == 1:
            return [self.name]
        return [f"{self.name}-{index}" for index in range(1, self.replicas + 1)]

    def calls(self) -> dict[str, Call[str]]:
        common: list[tuple[str, str]] = [("image", self.image)]
        if self.cores is not None:
            common.append(("cores", _number(self.cores)))
        if self.ram is not None:
            common.append(("ram", _number(self.ram)))
        common.append(("type", self.kind))
        if self.gpu:
            common.append(("gpus", str(self.gpu)))
        if self.cmd is not None:
            common.append(("cmd", self.cmd))
        if self.args is not None:
            common.append(("args", self.args))
        common += [("env", f"{key}={value}") for key, value in self.env]
        given = {key for key, _ in self.env}
        calls = {}
        for index, name in enumerate(self.replica_names(), start=1):
            params = [("name", name), *common]
            if self.kind == "headless":  # only headless sessions get an environment at all
                replica = {"REPLICA_ID": str(index), "REPLICA_COUNT": str(self.replicas)}
                params += [("env", f"{key}={value}") for key, value in replica.items() if key not in given]
            calls[name] = Call(Request("create", "POST", "session", tuple(params), idempotent=False),
                               parse_created_id)
        return calls


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def create_spec(
    name: str,
    image: str,
    *,
    cores: float | None = None,
    ram: float | None = None,
    kind: str = "headless",
    gpu: int | None = None,
    cmd: str | None = None,
    args: str | Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    replicas: int = 1,
) -> CreateSpec:
    """Check a create request client-side, before anything is sent, with a message that says why."""
    if kind not in CREATE_KINDS:
        raise InvalidRequestError(f"invalid session kind {kind!r}: expected one of {', '.join(CREATE_KINDS)}")
    if not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidRequestError(f"replicas must be between 1 and {MAX_REPLICAS}, got {replicas!r}")
    spec_name = name if replicas == 1 else f"{name}-{replicas}"  # the longest replica name
    problem = session_name_problem(name) or session_name_problem(spec_name)
    if problem:
        raise InvalidRequestError(f"invalid session name {spec_name!r}: {problem}")
    if not image or image != image.strip() or " " in image:
        raise InvalidRequestError(
            f"invalid image {image!r}: expected e.g. images.canfar.net/project/name:tag"
        )
    for label, value in (("cores", cores), ("ram", ram)):
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise InvalidRequestError(f"{label} must be a positive number, got {value!r}")
    if gpu is not None and (isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0):
        raise InvalidRequestError(f"gpu must be a non-negative integer, got {gpu!r}")
    if kind != "headless" and (cmd is not None or args is not None or env):
        raise InvalidRequestError(f"cmd, args and env apply only to headless sessions, not {kind}")
    if cmd is not None and not cmd.strip():
        raise InvalidRequestError("cmd must not be empty")
    if replicas > 1 and env and any(key in env for key in REPLICA_KEYS):
        raise InvalidRequestError("REPLICA_ID and REPLICA_COUNT are set per replica when replicas > 1")
    return CreateSpec(name=name, image=image, cores=cores, ram=ram, kind=kind, gpu=gpu or None, cmd=cmd,
                      args=_args_text(args), env=_env_pairs(env or {}), replicas=replicas)


def _args_text(args: str | Sequence[str] | None) -> str | None:
    if args is None or isinstance(args, str):
        return args
    # The service splits args on single spaces and knows no quoting: refuse what it would mangle.
    for arg in args:
        if not arg or any(char.isspace() for char in arg):
            raise InvalidRequestError(f"argument {arg!r} cannot be sent: the service splits args on spaces")
    return " ".join(args)


def _env_pairs(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for key, value in env.items():
        if not key or "=" in key or any(char.isspace() for char in key):
            raise InvalidRequestError(f"invalid environment variable name {key!r}")
        if "=" in str(value):
            # The service splits each KEY=VALUE on '=' and silently drops entries with more parts.
            raise InvalidRequestError(f"the value of {key} contains '=', which the service would drop")
        pairs.append((key, str(value)))
    return tuple(pairs)


def create(name: str, image: str, **options: Any) -> Plan[list[str]]:
    """Create ``replicas`` sessions (one request each); returns the new ids in replica order.

    If some replicas fail, the ``BatchError`` holds the ids of those that were created under
    their replica names, so a caller can always clean them up.
    """
    spec = create_spec(name, image, **options)
    outcomes = yield spec.calls()
    results = collect("create", name if spec.replicas == 1 else spec.replica_names(), outcomes)
    return [results[replica] for replica in spec.replica_names()]
