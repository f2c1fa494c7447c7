"""The controller's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.

Liveness and readiness answer different questions. ``/healthz`` says whether the loop still turns:
it fails once the last completed pass (successful or not) is older than ``stale_after`` intervals,
so a hung API call or a deadlocked scheduler gets the process restarted, while an unreachable
service does not. ``/readyz`` says whether the controller has ever managed to do its job: the
manifests were loaded and one list call succeeded. Neither endpoint, nor ``/metrics``, does any I/O
beyond reading state held in memory.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from controller.errors import ConfigError

__all__ = ["HealthState", "MetricsServer", "serve"]

#: How many intervals without a completed pass make ``/healthz`` fail.
STALE_AFTER_INTERVALS = 3


class HealthState:
    """Heartbeat and readiness flags shared by the loop (writer) and the HTTP server (reader).

    ``clock`` is monotonic seconds and injectable so tests can move time. Before the first pass
    completes, the loop counts as alive for the same grace (``stale_after`` intervals from start).
    """

    def __init__(
        self,
        interval: float,
        *,
        stale_after: float = STALE_AFTER_INTERVALS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self.stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()
        self._last_pass = clock()  # the start counts as a pass: the grace before the first one
        self._passes = 0
        self._manifests_loaded = False
        self._listed = False
        self._last_result = ""
        self._credential = ""
        self._memory = ""

    def pass_completed(self, result: str = "success", problem: str = "") -> None:
        """Record that a pass finished, whatever its result: the loop is alive.

        ``result`` and ``problem`` (one line, e.g. an unreadable token file) are shown by the probes,
        so ``curl /healthz`` tells why passes fail without changing whether the loop counts as alive.
        """
        with self._lock:
            self._last_pass = self._clock()
            self._passes += 1
            self._last_result = result if not problem else f"{result}: {problem}"

    def credential(self, line: str) -> None:
        """Record the credential's state in one line (``oidc login ... usable until ...``) for ``/healthz``.

        Shown, not judged: a credential that stopped working stops creates, not the loop.
        """
        with self._lock:
            self._credential = line

    def memory_condition(self, line: str) -> None:
        """Show ``MemoryUnwritable`` (one line; empty: none) in ``/healthz``: a condition, not a death.

        A restart does not free a disk, so the probe stays successful while it lasts.
        """
        with self._lock:
            self._memory = line

    def manifests_loaded(self) -> None:
        """Record that the manifests were loaded (readiness needs it once)."""
        with self._lock:
            self._manifests_loaded = True

    def list_succeeded(self) -> None:
        """Record that a list call to the service succeeded (readiness needs it once)."""
        with self._lock:
            self._listed = True

    def liveness(self) -> tuple[bool, str]:
        """Whether the loop is alive, and why, in a line fit for a probe's output."""
        with self._lock:
            age = self._clock() - self._last_pass
            passes = self._passes
            result = self._last_result
            credential = self._credential
            memory = self._memory
        limit = self.stale_after * self.interval
        what = "last pass" if passes else "no pass yet, started"
        detail = f" ({result})" if result else ""
        detail += f"; credential: {credential}" if credential else ""
        detail += f"; {memory}" if memory else ""
        if age > limit:
            return False, f"stuck: {what} {age:.1f}s ago (limit {limit:.0f}s){detail}"
        return True, f"ok: {what} {age:.1f}s ago{detail}"

    def readiness(self) -> tuple[bool, str]:
        """Whether the controller is ready, and what it still waits for."""
        with self._lock:
            missing = [
                what for what, done in (("manifests not loaded", self._manifests_loaded),
                                        ("no successful list call", self._listed)) if not done
            ]
        if missing:
            return False, "not ready: " + ", ".join(missing)
        return True, "ready"


class MetricsServer:
    """A running HTTP server in a daemon thread; ``shutdown()`` stops it (also as a context manager)."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        # A short poll keeps shutdown() quick; ten wake-ups a second cost nothing measurable.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


_TEXT = "text/plain; charset=utf-8"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    health: HealthState


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "canfar-controller"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(HTTPStatus.OK, encoder(self.server.registry), content_type)
        elif path in ("/healthz", "/livez"):
            self._probe(*self.server.health.liveness())
        elif path == "/readyz":
            self._probe(*self.server.health.readiness())
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found: try /metrics, /healthz or /readyz\n")

    def _probe(self, ok: bool, reason: str) -> None:
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        self._reply(status, f"{reason}\n".encode())

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str = _TEXT) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a scrape every few seconds is not news, and stderr belongs to the JSON logs."""


def serve(host: str, port: int, registry: CollectorRegistry, health: HealthState) -> MetricsServer:
    """Start serving ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (``port=0``: any free)."""
    server_class = _IPv6Server if ":" in host else _Server
    try:
        server = server_class((host, port), _Handler)
    except OSError as error:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from error
    server.registry = registry
    server.health = health
    return MetricsServer(server)
