"""httpx transports that serve a ``Simulator`` in-process: the same requests and answers, no sockets.

``httpx.Client(transport=SimulatorTransport(sim))`` (or ``sim.transport()``; ``AsyncClient`` with
``AsyncSimulatorTransport``) talks to the simulator as over loopback HTTP, at any base URL such as
``http://simulator.invalid/skaha/v1``: query string and form body, headers, status, body,
Content-Type and extra headers such as ``Retry-After`` all pass through. A dropped connection
raises ``httpx.RemoteProtocolError`` with the message a real socket close gives, so a client
sees exactly what it sees over HTTP.

Waits (the configured ``latency``, an injected ``delay``) are ``time.sleep`` in the sync
transport and ``await asyncio.sleep`` in the async one, so a test can cancel a task while its
request is in flight: the request has then reached the service, which carries on (see
``InFlight.abandon``), the way a server does when its client is killed. What in-process
requests skip is HTTP framing only: no Content-Length, chunking or body-size checks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import httpx

from controller.simulator.config import SimulatorConfig
from controller.simulator.wire import Request, Response


class Flight(Protocol):
    """A request the service has received and not yet answered (``simulator.InFlight``)."""

    @property
    def delay(self) -> float: ...
    def answer(self) -> Response | None: ...
    def abandon(self) -> None: ...


class Service(Protocol):
    """What a transport needs of the service it serves (``Simulator`` has it; the simulator module
    builds transports, so the transport does not import it)."""

    config: SimulatorConfig

    def serve(self, request: Request) -> Response | None: ...
    def receive(self, request: Request) -> Flight: ...


#: What httpx (through httpcore) says when a server closes the connection without answering.
DISCONNECTED = "Server disconnected without sending a response."


class SimulatorTransport(httpx.BaseTransport):
    """Serves an ``httpx.Client`` from a ``Simulator`` in the calling thread."""

    def __init__(self, simulator: Service) -> None:
        self.simulator = simulator

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        wire = _to_wire(request, request.read())
        if self.simulator.config.latency:
            time.sleep(self.simulator.config.latency)
        return _to_httpx(request, self.simulator.serve(wire))


class AsyncSimulatorTransport(httpx.AsyncBaseTransport):
    """Serves an ``httpx.AsyncClient`` from a ``Simulator``; waits are awaited, so they can be cancelled.

    A task cancelled during an injected delay has still *sent* its request: whatever took effect
    on arrival stays, and a request set to take effect when answered (``inject_delay(...,
    apply="after")``) takes effect at simulated arrival + delay, applied by the next request or
    ``Simulator.catch_up()`` once the clock gets there. Cancelled during ``latency`` (before
    arrival), the request was never sent.
    """

    def __init__(self, simulator: Service) -> None:
        self.simulator = simulator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        wire = _to_wire(request, await request.aread())
        if self.simulator.config.latency:
            await asyncio.sleep(self.simulator.config.latency)
        flight = self.simulator.receive(wire)
        if flight.delay:
            try:
                await asyncio.sleep(flight.delay)
            except BaseException:  # cancelled (a crash between sending and recording): the service carries on
                flight.abandon()
                raise
        return _to_httpx(request, flight.answer())


def _to_wire(request: httpx.Request, body: bytes) -> Request:
    """The request as the HTTP server would parse it: raw (still percent-encoded) path and query."""
    path, _, query = request.url.raw_path.decode("ascii").partition("?")
    return Request(
        method=request.method,
        path=path,
        query=query,
        headers={key.lower(): value for key, value in request.headers.items()},
        body=body,
    )


def _to_httpx(request: httpx.Request, response: Response | None) -> httpx.Response:
    if response is None:
        raise httpx.RemoteProtocolError(DISCONNECTED, request=request)
    body = b"" if request.method == "HEAD" else response.body
    headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
               *response.headers]
    return httpx.Response(response.status, headers=headers, content=body, request=request)
