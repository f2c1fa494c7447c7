"""Real HTTP for the simulator: a threaded stdlib server with keep-alive, latency and dropped connections.

Each connection gets a thread (``ThreadingHTTPServer``) and speaks HTTP/1.1, so clients reuse
connections like they do against the real service. A dropped request closes the socket without
writing a byte, which clients see as a transport error (``RemoteProtocolError`` in httpx). A
slow answer (``Simulator.inject_delay``) sleeps in the connection's thread; a client that hangs
up meanwhile does not stop the request, and the failed write is ignored.
``stop()`` also closes idle keep-alive connections, so nothing lingers after a test.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from controller.simulator.routes import BASE
from controller.simulator.simulator import Simulator
from controller.simulator.wire import Request, Response, text

log = logging.getLogger(__name__)

#: Idle keep-alive connections are closed after this many seconds, as a reverse proxy would.
IDLE_TIMEOUT = 60.0


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The stdlib default backlog of 5 drops the SYNs of a burst of new connections (a client
    # fanning out 32 creates), which then wait a whole second for TCP to retransmit.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "skaha-simulator"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid a 40 ms delayed-ACK stall
    server: _HTTPServer

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError as error:
            # The client went away before its answer was written (killed, or timed out during a slow
            # answer). The request has taken effect; a real server logs nothing for this either.
            log.debug("client %s went away: %s", self.client_address[0], error)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(text(411, "chunked request bodies are not supported; send Content-Length"), close=True)
            return
        try:
            length = int(length_header) if length_header is not None else 0
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self._send(text(400, f"invalid Content-Length: {length_header}"), close=True)
            return
        if length > self.server.simulator.config.max_body_bytes:
            self._send(text(413, f"request body too large: {length} bytes"), close=True)
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        simulator = self.server.simulator
        if simulator.config.latency:
            time.sleep(simulator.config.latency)
        response = simulator.serve(request)
        if response is None:
            self.close_connection = True  # drop: close without a byte of answer
            return
        self._send(response)

    def _send(self, response: Response, *, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class SimulatorServer:
    """Serves a ``Simulator`` over HTTP in a background thread; ``url`` is the ``/skaha/v1`` base."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        server_class = _HTTPServer6 if ":" in host else _HTTPServer
        self._server = server_class((host, port), simulator)
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{BASE}"

    def start(self) -> SimulatorServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=f"skaha-simulator-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and release the port; safe to call twice."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_connections()
        self._server.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
