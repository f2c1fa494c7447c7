"""Deciding which requests go wrong and how: targeted faults for tests, seeded random faults for soak runs.

A ``Fault`` says three things about one request, each independent of the others:

- **the answer** the client gets: an error status (optionally with ``Retry-After``), a dropped
  connection, the service's own answer mangled (a list with rows missing, empty, or not JSON),
  or the service's own answer unchanged (a merely slow request);
- **when the request takes effect** (``Effect``): never (the usual failure, decided before the
  request is handled), on arrival (``processed=True``: the answer is lost but the create is
  made), when the answer is sent (a slow service acting at the end), or ``apply_after``
  simulated seconds later (a gateway timeout in front of a create that still goes through);
- **how long the answer takes**: ``delay`` real seconds.

An ``ignored`` fault answers ``200`` and does nothing: a DELETE the service acknowledges while the
session keeps running. ``message`` replaces an error answer's text (a DELETE failing with the
service's own words).

Targeted rules are tried first, in the order added; each matches on method, path (exact, or a
prefix ending in ``*``), optionally the glob of the request's ``name`` parameter and its ``view``
(``stats``: the statistics call only), and fires
``count`` times. Random faults use one ``random.Random(seed)``, so the same seed and the same
request sequence fail the same requests and drop the same rows.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import math
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from controller.simulator.config import SimulatorConfig
from controller.simulator.wire import JSON, Response, json_response, text

#: Statuses the random error rate picks from: the server's unexpected exception and its transient one.
RANDOM_STATUSES = (500, 503)
#: What the service says when a DELETE fails (``Simulator.fail_deletes``).
DELETE_FAILURE = "failed to delete session: the Kubernetes API did not answer in time (simulated)"

#: When a request takes effect: ``none`` (not at all), ``arrival``, ``answer`` (just before its
#: answer is sent, after ``delay``), or ``later`` (``apply_after`` simulated seconds after arrival).
Effect = Literal["none", "arrival", "answer", "later"]

#: How a list answer is spoiled: ``partial`` keeps ``floor(n * keep)`` rows (seeded choice, order
#: kept), ``empty`` is ``[]``, ``garbage`` is a JSON object instead of an array, ``truncated`` is
#: the real answer cut in half, ``repeated`` lists ``floor(n * keep)`` rows (seeded) a second time,
#: ``consistent`` keeps about ``n * keep`` rows, each chosen by its id and the rule's own seed, so
#: every list it spoils leaves out the same sessions (a cache losing the same rows).
ListMode = Literal["partial", "empty", "garbage", "truncated", "repeated", "consistent"]
LIST_MODES: tuple[ListMode, ...] = ("partial", "empty", "garbage", "truncated", "repeated", "consistent")


@dataclass(frozen=True, slots=True)
class Fault:
    """What happens to one request instead of the normal course."""

    status: int | None = None
    """Error status answered instead of the service's answer; ``None``: the service's own (or a drop)."""
    drop: bool = False
    """Close the connection without a byte of answer."""
    effect: Effect = "none"
    apply_after: float = 0.0
    """For ``effect="later"``: simulated seconds after arrival."""
    delay: float = 0.0
    """Real seconds between arrival and answer."""
    retry_after: float | None = None
    list_mode: ListMode | None = None
    keep: float = 1.0
    seed: int = 0
    """Seed for a ``partial`` list's choice of rows, drawn from the injector's dice when the fault fires."""
    stats_body: bytes | None = None
    """A ``view=stats`` answer (200, JSON) instead of the service's: statistics as a broken service sends them."""
    ignored: bool = False
    """Answer ``200`` with an empty body and do nothing (a DELETE the service acknowledges and ignores)."""
    message: str | None = None
    """The error answer's text (``text/plain``) instead of the default one for ``status``."""

    def respond(self, path: str, served: Response | None) -> Response | None:
        """The answer the client gets, given what the service answered (``None`` if it did not handle it)."""
        if self.drop:
            return None
        if self.ignored:
            return text(200, "")
        if self.status is not None:
            if self.message is not None:
                headers = () if self.retry_after is None else (("Retry-After", _seconds(self.retry_after)),)
                return text(self.status, self.message, headers=headers)
            return _error(self.status, path, self.retry_after)
        if served is None:  # not reachable for faults built by the injector: they all handle the request
            raise RuntimeError("a fault without an error status needs the service's answer")
        if self.stats_body is not None:
            return Response(200, self.stats_body, JSON)
        if self.list_mode is not None and served.status == 200:
            return _spoil_list(served, self.list_mode, self.keep, self.seed)
        return served


def _error(status: int, path: str, retry_after: float | None) -> Response:
    headers = () if retry_after is None else (("Retry-After", _seconds(retry_after)),)
    if status == 503:
        return text(503, f"temporarily unavailable: {path}", headers=headers or (("Retry-After", "1"),))
    if status == 500:
        return text(500, "unexpected exception: java.lang.RuntimeException: simulated failure", headers=headers)
    if status == 429:
        return text(429, "Too Many Requests", headers=headers)
    return text(status, f"simulated fault {status}", headers=headers)


def _seconds(value: float) -> str:
    """A Retry-After value: whole seconds as an integer, as the header's grammar wants; else a plain decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0").rstrip(".")


def _spoil_list(served: Response, mode: ListMode, keep: float, seed: int) -> Response:
    if mode == "empty":
        return json_response([])
    if mode == "garbage":
        return Response(200, b'{"error": "simulated: not a list of sessions"}', JSON)
    if mode == "truncated":
        return Response(200, served.body[: len(served.body) // 2], JSON)
    rows = json.loads(served.body)
    if mode == "consistent":
        return json_response(_same_rows(rows, keep, seed))
    chosen = sorted(random.Random(seed).sample(range(len(rows)), math.floor(len(rows) * keep)))
    if mode == "repeated":
        return json_response([*rows, *(rows[index] for index in chosen)])
    return json_response([rows[index] for index in chosen])


def _same_rows(rows: list[Any], keep: float, seed: int) -> list[Any]:
    """About ``keep`` of ``rows`` (order kept), each kept or left out by its id and ``seed`` alone.

    So a session left out of one answer is left out of every answer, whatever else changes.
    """
    def kept(index: int) -> bool:
        row = rows[index]
        key = str(row.get("id", "")) if isinstance(row, dict) else str(index)
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < keep

    return [row for index, row in enumerate(rows) if kept(index)]


@dataclass(slots=True)
class _Rule:
    method: str | None
    path: str | None
    name: str | None
    fault: Fault
    remaining: int | None
    view: str | None = None

    def matches(self, method: str, path: str, params: Mapping[str, Sequence[str]]) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if self.fault.list_mode is not None and (path != "/session" or _first(params, "view") == "stats"):
            return False
        if self.fault.stats_body is not None and (path != "/session" or _first(params, "view") != "stats"):
            return False
        if self.view is not None and _first(params, "view") != self.view:
            return False
        if self.name is not None:
            name = _first(params, "name")
            if name is None or not fnmatch.fnmatchcase(name, self.name):
                return False
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


def _first(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = params.get(key)
    return values[0] if values else None


class FaultInjector:
    """Thread-safe fault decisions: targeted rules first (in order added), then the random rates."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._error_rate = config.error_rate
        self._drop_rate = config.drop_rate
        self._rng = random.Random(config.seed)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault, *, method: str | None, path: str | None, name: str | None = None,
            count: int | None, view: str | None = None) -> None:
        """Add a rule; checks the fault's values so a mistake fails where the test sets it up."""
        if name is not None and not name:
            raise ValueError("a name glob must not be empty (None matches every request)")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1 (or None for always), got {count}")
        if fault.status is not None and not 400 <= fault.status <= 599:
            raise ValueError(f"a fault status must be an HTTP error (400-599), got {fault.status}")
        for label, value in (("delay", fault.delay), ("apply_after", fault.apply_after)):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a finite number of seconds >= 0, got {value}")
        if fault.retry_after is not None:
            if fault.status is None:
                raise ValueError("retry_after needs an error status to carry it (status=None drops the connection)")
            if not (fault.retry_after >= 0 and math.isfinite(fault.retry_after)):
                raise ValueError(f"retry_after must be a finite number of seconds >= 0, got {fault.retry_after}")
        if fault.list_mode is not None and fault.list_mode not in LIST_MODES:
            raise ValueError(f"list fault mode must be one of {', '.join(LIST_MODES)}, got {fault.list_mode!r}")
        if not 0.0 <= fault.keep <= 1.0:
            raise ValueError(f"keep must be a fraction between 0 and 1, got {fault.keep}")
        with self._lock:
            self._rules.append(_Rule(method, path, name, fault, count, view))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def decide(self, method: str, path: str, params: Mapping[str, Sequence[str]]) -> Fault | None:
        """The fault for this request, if any; consumes one use of a matching targeted rule."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(method, path, params):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            del self._rules[index]
                    fault = rule.fault
                    if fault.list_mode in ("partial", "repeated"):
                        fault = dataclasses.replace(fault, seed=self._rng.getrandbits(32))
                    return fault
            if self._drop_rate and self._rng.random() < self._drop_rate:
                return Fault(drop=True)
            if self._error_rate and self._rng.random() < self._error_rate:
                return Fault(status=self._rng.choice(RANDOM_STATUSES))
        return None

