"""The simulator as one object: simulated clock, cluster, fault plan and the log of requests.

``Simulator.serve`` is what the HTTP server calls for each request; tests may call it directly
too. Simulated time is ``t0 + (clock() - t0) * time_scale``, so a manual ``clock`` gives fully
deterministic tests and a big ``time_scale`` makes hours of TTL pass in seconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller.simulator.config import SimulatorConfig
from controller.simulator.faults import Fault, FaultInjector
from controller.simulator.routes import handle, relative_path
from controller.simulator.state import Cluster
from controller.simulator.wire import Request, Response, text


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator saw it: tests assert on these rather than on our own classes.

    ``path`` is relative to ``/skaha/v1`` (``/session``, ``/session/abc``); ``status`` is the
    answer's status, ``None`` when the connection was dropped; ``fault`` says it was injected.
    """

    method: str
    path: str
    params: Mapping[str, tuple[str, ...]]
    status: int | None
    fault: bool = False
    at: float = 0.0

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


class Simulator:
    """An in-memory skaha session service; thread-safe, one lock around every request."""

    def __init__(self, config: SimulatorConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.RLock()
        self.cluster = Cluster(self.config, random.Random(self.config.seed))
        self._faults = FaultInjector(self.config)
        #: Recent requests, oldest first; trimmed to ``max_recorded_requests`` so a long run stays small.
        self.requests: list[RecordedRequest] = []

    def now(self) -> float:
        """Simulated time in epoch seconds."""
        return self._t0 + (self._clock() - self._t0) * self.config.time_scale

    def inject_fault(self, method: str | None = None, path: str | None = None, status: int | None = 500,
                     count: int | None = 1, *, processed: bool = False) -> None:
        """Fail the next ``count`` matching requests (``None``: all of them) with ``status``.

        ``path`` is relative to ``/skaha/v1``, matched exactly, or as a prefix when it ends in ``*``;
        ``None`` matches any path, as ``method=None`` matches any method. ``status=None`` closes the
        connection without answering. ``processed=True`` lets the request take effect first.
        """
        self._faults.add(method=method, path=path, status=status, count=count, processed=processed)

    def clear_faults(self) -> None:
        """Forget every targeted fault that has not fired yet."""
        self._faults.clear()

    def serve(self, request: Request) -> Response | None:
        """Answer ``request`` as the service would, faults included; ``None`` means drop the connection."""
        path = relative_path(request.path)
        fault = self._faults.decide(request.method, path)
        with self._lock:
            now = self.now()
            response = None
            if fault is None or fault.processed:
                self.cluster.advance(now)
                response = handle(request, cluster=self.cluster, now=now)
            if fault is not None:
                response = _fault_response(fault, path)
            self.requests.append(RecordedRequest(
                method=request.method,
                path=path,
                params={key: tuple(values) for key, values in _safe_params(request).items()},
                status=None if response is None else response.status,
                fault=fault is not None,
                at=now,
            ))
            excess = len(self.requests) - self.config.max_recorded_requests
            if excess > self.config.max_recorded_requests // 10:  # trim in batches, not on every request
                del self.requests[:excess]
            return response

    def handle(self, request: Request) -> Response:
        """Answer ``request`` without faults and without recording it (fast in-process set-up)."""
        with self._lock:
            now = self.now()
            self.cluster.advance(now)
            return handle(request, cluster=self.cluster, now=now)


def _fault_response(fault: Fault, path: str) -> Response | None:
    if fault.status is None:
        return None
    if fault.status == 503:
        return text(503, f"temporarily unavailable: {path}", headers=(("Retry-After", "1"),))
    if fault.status == 500:
        return text(500, "unexpected exception: java.lang.RuntimeException: simulated failure")
    return text(fault.status, f"simulated fault {fault.status}")


def _safe_params(request: Request) -> dict[str, list[str]]:
    try:
        return request.params()
    except Exception:  # a request too broken to parse is still recorded
        return {}
