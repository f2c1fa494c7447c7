"""The HTTP front end: keep-alive, clean stop, and the in-process Simulator API around it."""

from __future__ import annotations

import socket

import httpx
import pytest

from controller.simulator import ManualClock, Simulator, SimulatorConfig, SimulatorServer
from tests.simulator.support import create

REQUEST = (b"GET /skaha/v1/session HTTP/1.1\r\nHost: localhost\r\n"
           b"Authorization: Bearer sim-test-token\r\n\r\n")


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_connection_is_kept_alive(sim_server: SimulatorServer) -> None:
    """Two requests on one connection both get answers (HTTP/1.1 keep-alive)."""
    with socket.create_connection(("127.0.0.1", sim_server.port), timeout=5) as sock:
        sock.sendall(REQUEST)
        first = _read_response(sock)
        sock.sendall(REQUEST)
        second = _read_response(sock)
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")


def test_url_is_the_v1_base_on_the_bound_port(sim_server: SimulatorServer) -> None:
    """``url`` names the actually bound port and ends in /skaha/v1."""
    assert sim_server.port > 0
    assert sim_server.url == f"http://127.0.0.1:{sim_server.port}/skaha/v1"


def test_stop_closes_idle_connections_and_the_port(simulator: Simulator) -> None:
    """After stop() an idle keep-alive connection is closed and new connections are refused."""
    server = SimulatorServer(simulator).start()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(REQUEST)
    _read_response(sock)
    server.stop()
    assert sock.recv(1) == b""
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    server.stop()  # a second stop is harmless


def test_server_handles_concurrent_clients(http: httpx.Client, sim_server: SimulatorServer,
                                           sim_token: str) -> None:
    """Parallel creates from several threads all succeed with distinct ids."""
    from concurrent.futures import ThreadPoolExecutor

    def one(index: int) -> str:
        headers = {"Authorization": f"Bearer {sim_token}"}
        with httpx.Client(base_url=sim_server.url, headers=headers) as client:
            return create(client, name=f"p{index}")

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(40)))
    assert len(set(ids)) == 40
    assert len(http.get("/session").json()) == 40


def test_recorded_requests_are_bounded(sim_clock: ManualClock) -> None:
    """The request log keeps only the most recent requests, newest last."""
    simulator = Simulator(SimulatorConfig(max_recorded_requests=10), clock=sim_clock)
    with SimulatorServer(simulator) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": "Bearer x"}) as http:
        for index in range(30):
            http.get(f"/session/id{index}")
    assert len(simulator.requests) <= 11
    assert simulator.requests[-1].path == "/session/id29"


def test_delete_of_queued_session_removes_it_at_once(sim_clock: ManualClock) -> None:
    """A session still waiting for room has no pod: DELETE removes it without Terminating."""
    simulator = Simulator(SimulatorConfig(cores=1), clock=sim_clock)
    with SimulatorServer(simulator) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": "Bearer x"}) as http:
        create(http, name="holder", cores="1")
        queued = create(http, name="queued", cores="1")
        http.delete(f"/session/{queued}")
        assert http.get(f"/session/{queued}").status_code == 404


def test_same_seed_gives_same_ids(sim_clock: ManualClock) -> None:
    """Session ids come from the seeded generator, so runs with one seed are reproducible."""
    def ids(seed: int) -> list[str]:
        simulator = Simulator(SimulatorConfig(seed=seed), clock=sim_clock)
        with SimulatorServer(simulator) as server, httpx.Client(
                base_url=server.url, headers={"Authorization": "Bearer x"}) as http:
            return [create(http, name=f"s{index}") for index in range(3)]

    assert ids(1) == ids(1) != ids(2)

