"""Autoscale signals, read at the edge: a file, an HTTP JSON field, a Prometheus instant query.

Each pass starts one read of every signal of every autoscaled set, all at once and beside the list
call, each bounded by ``SIGNAL_TIMEOUT`` (5 s). After the list call the pass waits at most
``SIGNAL_GRACE`` for them: a signal slower than that never holds the pass up, its read goes on in
the background and the next pass uses its result (this pass uses its last one). What the planner
gets is a ``Reading`` per signal, in manifest order: a value, or why there is none; the
``platform`` signal is the planner's own (from the statistics the controller already fetches).

A value must be a finite number, 0 or more. A bearer token is read from ``tokenFile`` at every read
and sent only in the request's header: it never appears in an error, a log line or a metric.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from controller.errors import SignalError
from controller.plan.autoscale import Reading
from controller.spec import HttpSignal, PrometheusSignal, SessionSet, Signal

SIGNAL_TIMEOUT = 5.0
#: How long a pass waits for signals once its list call is done.
SIGNAL_GRACE = 0.5

_Key = tuple[str, int, Signal]


class SignalReader:
    """Reads every autoscaled set's signals, concurrently, once per pass."""

    def __init__(self, *, timeout: float = SIGNAL_TIMEOUT, grace: float = SIGNAL_GRACE,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.timeout = timeout
        self.grace = grace
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)
        self._reads: dict[_Key, asyncio.Future[Reading]] = {}
        self._last: dict[_Key, Reading] = {}
        self._batches: set[asyncio.Task[None]] = set()

    def start(self, sets: Mapping[str, SessionSet]) -> None:
        """Start a read of every signal that has none in flight (and forget signals that are gone)."""
        wanted = set(_keys(sets))
        for key in [key for key in self._reads if key not in wanted]:
            self._reads.pop(key).cancel()
        for key in [key for key in self._last if key not in wanted]:
            del self._last[key]
        files: list[tuple[str, asyncio.Future[Reading]]] = []
        for key in wanted:
            if key in self._reads:
                continue
            if key[2].file is not None:  # all files in one trip to a worker thread
                future = self._reads[key] = asyncio.get_running_loop().create_future()
                files.append((key[2].file, future))
            else:
                self._reads[key] = asyncio.ensure_future(self._read(key[2]))
        if files:
            self._batches.add(batch := asyncio.ensure_future(self._read_files(files)))
            batch.add_done_callback(self._batches.discard)

    async def collect(self, sets: Mapping[str, SessionSet]) -> dict[str, tuple[Reading, ...]]:
        """Each autoscaled set's readings, waiting at most ``grace`` for reads still in flight."""
        pending = [task for task in self._reads.values() if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.grace)
        for key, task in list(self._reads.items()):
            if task.done():
                del self._reads[key]
                self._last[key] = task.result()
        readings: dict[str, list[Reading]] = {}
        for key in _keys(sets, with_platform=True):
            if key[2].platform is not None:
                reading = Reading()  # the planner's own, from the platform statistics
            else:
                reading = self._last.get(key) or Reading(
                    error=f"no reading yet (slower than {self.grace:g} s; it goes on in the background)")
            readings.setdefault(key[0], []).append(reading)
        return {name: tuple(values) for name, values in readings.items()}

    async def aclose(self) -> None:
        for batch in self._batches:
            batch.cancel()
        for read in self._reads.values():
            read.cancel()
        self._reads.clear()
        await self._http.aclose()

    async def _read(self, signal: Signal) -> Reading:
        try:
            value = await asyncio.wait_for(self._value(signal), self.timeout)
        except TimeoutError:
            return Reading(error=f"no answer within {self.timeout:g} s")
        except SignalError as exc:
            return Reading(error=str(exc))
        return Reading(value=value)

    async def _read_files(self, files: list[tuple[str, asyncio.Future[Reading]]]) -> None:
        """Read every file signal in one worker thread (a hung mount never blocks the event loop)."""
        try:
            readings = await asyncio.wait_for(asyncio.to_thread(_read_files, [path for path, _ in files]),
                                              self.timeout)
        except TimeoutError:
            readings = [Reading(error=f"no answer within {self.timeout:g} s")] * len(files)
        for (_, future), reading in zip(files, readings, strict=True):
            if not future.done():
                future.set_result(reading)

    async def _value(self, signal: Signal) -> float:
        if signal.http is not None:
            return await self._http_value(signal.http)
        assert signal.prometheus is not None
        return await self._prometheus_value(signal.prometheus)

    async def _http_value(self, signal: HttpSignal) -> float:
        headers = {"Accept": "application/json"}
        if signal.token_file is not None:
            token = await asyncio.to_thread(_read_file, Path(signal.token_file), "token file")
            headers["Authorization"] = f"Bearer {token.strip()}"
        answer = await self._get(signal.url, headers=headers)
        return number(field_of(answer, signal.field), f"field {signal.field!r}")

    async def _prometheus_value(self, signal: PrometheusSignal) -> float:
        answer = await self._get(signal.url.rstrip("/") + "/api/v1/query", params={"query": signal.query})
        return prometheus_value(answer)

    async def _get(self, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.get(url, **kwargs)
        except httpx.HTTPError as exc:
            raise SignalError(f"GET failed: {type(exc).__name__}") from None
        if not response.is_success:
            raise SignalError(f"HTTP {response.status_code}{_said(response)}")
        try:
            return response.json()
        except ValueError:
            raise SignalError("the answer is not JSON") from None


def _said(response: httpx.Response) -> str:
    """``: <error>`` when the answer is JSON with an ``error`` text (Prometheus says what is wrong so)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {error[:200]}" if isinstance(error, str) and error else ""


def _keys(sets: Mapping[str, SessionSet], *, with_platform: bool = False) -> list[_Key]:
    keys = []
    for name in sorted(sets):
        autoscale = sets[name].spec.autoscale
        if autoscale is None:
            continue
        keys += [(name, index, signal) for index, signal in enumerate(autoscale.signals)
                 if with_platform or signal.platform is None]
    return keys


def _read_files(paths: list[str]) -> list[Reading]:
    readings = []
    for path in paths:
        try:
            readings.append(Reading(value=number(_read_file(Path(path)), "the file")))
        except SignalError as exc:
            readings.append(Reading(error=str(exc)))
    return readings


def _read_file(path: Path, what: str = "file") -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SignalError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SignalError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None


def number(value: Any, what: str) -> float:
    """``value`` as a signal value: a finite number, 0 or more (text is parsed: files hold text)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            raise SignalError(f"{what} does not hold a number (got {text[:40]!r})") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalError(f"{what} is not a number (got {type(value).__name__})")
    if not math.isfinite(value) or value < 0:
        raise SignalError(f"{what} must be a finite number, 0 or more (got {value})")
    return float(value)


def field_of(answer: Any, dotted: str) -> Any:
    """The value at ``dotted`` (``queue.pending``) in a JSON answer."""
    value = answer
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SignalError(f"the answer has no field {dotted!r}")
        value = value[part]
    return value


def prometheus_value(answer: Any) -> float:
    """The one number of an instant query: an empty vector reads as 0, several series are an error."""
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else None
        raise SignalError(f"the query failed: {error or 'not a Prometheus answer'}")
    data = answer.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return number(result[1], "the query's value")
    if kind != "vector" or not isinstance(result, list):
        raise SignalError(f"the query must give an instant vector or a scalar (got {kind})")
    if not result:
        return 0.0
    if len(result) > 1:
        raise SignalError(f"the query gave {len(result)} series; it must give one (sum it, for example)")
    return number(result[0].get("value", [None, None])[1], "the query's value")

