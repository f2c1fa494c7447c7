"""Autoscale signals at the edge: a file, an HTTP JSON field against a local server, Prometheus answers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.plan.autoscale import Reading
from controller.signals import SignalReader, prometheus_value
from controller.spec import SessionSet

TOKEN = "s3cret-queue-token"


def scaled(*signals: dict[str, Any], name: str = "queue") -> dict[str, SessionSet]:
    return {name: SessionSet.model_validate({
        "apiVersion": "canfar.controller/v1alpha1", "kind": "SessionSet", "metadata": {"name": name},
        "spec": {"autoscale": {"maxReplicas": 10, "target": 1, "signals": list(signals)},
                 "template": {"image": "images.canfar.net/skaha/astroml:latest"}},
    })}


def read(sets: dict[str, SessionSet], **options: Any) -> dict[str, tuple[Reading, ...]]:
    async def once() -> dict[str, tuple[Reading, ...]]:
        reader = SignalReader(**options)
        try:
            reader.start(sets)
            return await reader.collect(sets)
        finally:
            await reader.aclose()

    return asyncio.run(once())


@pytest.mark.parametrize(("content", "expected"), [
    ("40\n", Reading(value=40.0)),
    (" 2.5 ", Reading(value=2.5)),
    ("lots", Reading(error="the file does not hold a number (got 'lots')")),
    ("nan", Reading(error="the file must be a finite number, 0 or more (got nan)")),
    ("-3", Reading(error="the file must be a finite number, 0 or more (got -3.0)")),
])
def test_a_file_signal(tmp_path: Path, content: str, expected: Reading) -> None:
    (tmp_path / "depth").write_text(content)
    assert read(scaled({"file": str(tmp_path / "depth")})) == {"queue": (expected,)}


def test_a_missing_file_is_a_failed_read(tmp_path: Path) -> None:
    [reading] = read(scaled({"file": str(tmp_path / "gone")}))["queue"]
    assert reading.error == f"file {tmp_path / 'gone'} does not exist"


class Queue(BaseHTTPRequestHandler):
    """A queue service: ``/stats`` answers JSON for the bearer token only; ``/slow`` takes its time."""

    answer: Any = {"queue": {"pending": 17}}
    delay = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay if self.path == "/slow" else 0)
        if self.path == "/broken":
            self._send(500, b"oops")
        elif self.path == "/text":
            self._send(200, b"<html>")
        elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, b"{}")
        else:
            self._send(200, json.dumps(Queue.answer).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def queue() -> Iterator[str]:
    Queue.delay, Queue.answer = 0.0, {"queue": {"pending": 17}}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Queue)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def test_an_http_signal_reads_a_dotted_field_with_the_bearer_token(queue: str, token: Path) -> None:
    Queue.answer = {"queue": {"pending": 17}}
    signal = {"http": {"url": f"{queue}/stats", "field": "queue.pending", "tokenFile": str(token)}}
    assert read(scaled(signal)) == {"queue": (Reading(value=17.0),)}


@pytest.mark.parametrize(("path", "field", "answer", "error"), [
    ("/stats", "queue.pending", {"queue": {}}, "the answer has no field 'queue.pending'"),
    ("/stats", "queue.pending", {"queue": {"pending": True}}, "field 'queue.pending' is not a number (got bool)"),
    ("/stats", "queue", {"queue": {"pending": 1}}, "field 'queue' is not a number (got dict)"),
    ("/broken", "queue.pending", None, "HTTP 500"),
    ("/text", "queue.pending", None, "the answer is not JSON"),
])
def test_http_signal_failures_say_why_and_never_show_the_token(queue: str, token: Path, path: str, field: str,
                                                               answer: Any, error: str) -> None:
    Queue.answer = answer
    signal = {"http": {"url": f"{queue}{path}", "field": field, "tokenFile": str(token)}}
    [reading] = read(scaled(signal))["queue"]
    assert reading.error == error and TOKEN not in reading.error


def test_without_the_token_the_service_refuses(queue: str) -> None:
    [reading] = read(scaled({"http": {"url": f"{queue}/stats", "field": "queue.pending"}}))["queue"]
    assert reading.error == "HTTP 401"


def test_a_signal_slower_than_the_timeout_is_a_failed_read(queue: str, token: Path) -> None:
    Queue.delay = 1.0
    signal = {"http": {"url": f"{queue}/slow", "field": "queue.pending", "tokenFile": str(token)}}
    [reading] = read(scaled(signal), timeout=0.2, grace=5.0)["queue"]
    assert reading.error == "no answer within 0.2 s"


def test_a_slow_signal_does_not_hold_up_the_pass_and_serves_the_next_one(queue: str, token: Path,
                                                                         tmp_path: Path) -> None:
    """The pass waits ``grace`` at most; the slow read goes on and the next pass uses its value."""
    Queue.delay, Queue.answer = 0.6, {"queue": {"pending": 5}}
    (tmp_path / "depth").write_text("3")
    sets = {**scaled({"http": {"url": f"{queue}/slow", "field": "queue.pending", "tokenFile": str(token)}},
                     name="slow"), **scaled({"file": str(tmp_path / "depth")}, name="fast")}

    async def two_passes() -> tuple[float, dict[str, tuple[Reading, ...]], dict[str, tuple[Reading, ...]]]:
        reader = SignalReader(grace=0.1)
        try:
            started = time.perf_counter()
            reader.start(sets)
            first = await reader.collect(sets)
            waited = time.perf_counter() - started
            await asyncio.sleep(0.8)
            reader.start(sets)
            return waited, first, await reader.collect(sets)
        finally:
            await reader.aclose()

    waited, first, second = asyncio.run(two_passes())
    assert waited < 0.5
    assert first["fast"] == (Reading(value=3.0),) and first["slow"][0].error.startswith("no reading yet")
    assert second["slow"] == (Reading(value=5.0),)


@pytest.mark.parametrize(("answer", "expected"), [
    ({"status": "success", "data": {"resultType": "vector", "result": []}}, 0.0),
    ({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "12"]}]}}, 12.0),
    ({"status": "success", "data": {"resultType": "scalar", "result": [1, "4.5"]}}, 4.5),
])
def test_prometheus_answers(answer: Any, expected: float) -> None:
    assert prometheus_value(answer) == expected


def test_several_prometheus_series_are_an_error() -> None:
    from controller.errors import SignalError

    series = [{"metric": {"queue": q}, "value": [1, "1"]} for q in ("a", "b")]
    with pytest.raises(SignalError, match="the query gave 2 series; it must give one"):
        prometheus_value({"status": "success", "data": {"resultType": "vector", "result": series}})
