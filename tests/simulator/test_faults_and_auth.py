"""Faults happen only on demand and reproducibly; credentials are required and checked."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from controller.simulator import ManualClock, Simulator, SimulatorConfig, SimulatorServer
from tests.simulator.support import IMAGE, create


@pytest.fixture
def serve(sim_clock: ManualClock) -> Iterator[object]:
    """Start simulators with a given config; all are stopped at the end of the test."""
    servers: list[SimulatorServer] = []

    def start(**config: object) -> tuple[Simulator, httpx.Client]:
        simulator = Simulator(SimulatorConfig(**config), clock=sim_clock)  # type: ignore[arg-type]
        server = SimulatorServer(simulator).start()
        servers.append(server)
        client = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer any"}, timeout=5)
        clients.append(client)
        return simulator, client

    clients: list[httpx.Client] = []
    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def _outcomes(client: httpx.Client, count: int) -> list[int | None]:
    results: list[int | None] = []
    for _ in range(count):
        try:
            results.append(client.get("/session").status_code)
        except httpx.TransportError:
            results.append(None)
    return results


def test_no_faults_by_default(http: httpx.Client) -> None:
    """With the default config every request succeeds."""
    assert set(_outcomes(http, 50)) == {200}


def test_seeded_error_rate_is_reproducible(serve) -> None:  # type: ignore[no-untyped-def]
    """The same seed fails the same requests with the same 5xx statuses; another seed differs."""
    _, first = serve(error_rate=0.3, seed=7)
    _, second = serve(error_rate=0.3, seed=7)
    _, other = serve(error_rate=0.3, seed=8)
    one, two, three = _outcomes(first, 60), _outcomes(second, 60), _outcomes(other, 60)
    assert one == two
    assert one != three
    assert {status for status in one if status != 200} <= {500, 503}
    assert 5 < one.count(200) < 55


def test_error_rate_failures_have_no_effect(serve) -> None:  # type: ignore[no-untyped-def]
    """A request failed by the error rate is not handled: no session is created."""
    simulator, client = serve(error_rate=1.0)
    assert client.post("/session", params={"name": "x", "image": IMAGE}).status_code in (500, 503)
    assert len(simulator.cluster) == 0


def test_drop_rate_closes_connections_without_answer(serve) -> None:  # type: ignore[no-untyped-def]
    """With drop_rate 1 the client sees a transport error, never an HTTP answer."""
    _, client = serve(drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        client.get("/session")


def test_seeded_drop_rate_is_reproducible(serve) -> None:  # type: ignore[no-untyped-def]
    """Dropped requests follow the seed too, and the server keeps serving after a drop."""
    _, first = serve(drop_rate=0.3, seed=3)
    _, second = serve(drop_rate=0.3, seed=3)
    one, two = _outcomes(first, 30), _outcomes(second, 30)
    assert one == two and None in one and 200 in one


def test_latency_delays_answers(serve) -> None:  # type: ignore[no-untyped-def]
    """Configured latency is added to every answer."""
    _, client = serve(latency=0.2)
    started = time.monotonic()
    client.get("/session")
    assert time.monotonic() - started >= 0.2


def test_injected_fault_fires_count_times(simulator: Simulator, http: httpx.Client) -> None:
    """inject_fault fails exactly ``count`` matching requests, then the service is normal again."""
    simulator.inject_fault(method="GET", path="/session", status=503, count=2)
    responses = [http.get("/session") for _ in range(3)]
    assert [response.status_code for response in responses] == [503, 503, 200]
    assert responses[0].text == "temporarily unavailable: /session"
    assert responses[0].headers["retry-after"] == "1"


def test_injected_fault_matches_method_and_path(simulator: Simulator, http: httpx.Client) -> None:
    """A fault for POST /session leaves GET /session and GET /session/<id> alone."""
    simulator.inject_fault(method="POST", path="/session", status=500)
    assert http.get("/session").status_code == 200
    assert http.get("/session/abcdefgh").status_code == 404
    response = http.post("/session", params={"name": "x", "image": IMAGE})
    assert response.status_code == 500 and response.text.startswith("unexpected exception:")


def test_injected_fault_path_prefix(simulator: Simulator, http: httpx.Client) -> None:
    """A path ending in ``*`` matches by prefix (every single-session request)."""
    simulator.inject_fault(path="/session/*", status=502, count=None)
    assert http.get("/session/abcdefgh").status_code == 502
    assert http.delete("/session/abcdefgh").status_code == 502
    assert http.get("/session").status_code == 200


def test_injected_drop_is_a_transport_error(simulator: Simulator, http: httpx.Client) -> None:
    """``status=None`` closes the connection; the next request works on a new one."""
    simulator.inject_fault(method="GET", path="/session", status=None)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/session")
    assert http.get("/session").status_code == 200


def test_processed_fault_takes_effect_but_loses_the_answer(simulator: Simulator, http: httpx.Client) -> None:
    """``processed=True`` creates the session even though the client never hears back."""
    simulator.inject_fault(method="POST", path="/session", status=None, processed=True)
    with pytest.raises(httpx.TransportError):
        http.post("/session", params={"name": "lost", "image": IMAGE})
    assert [row["name"] for row in http.get("/session").json()] == ["lost"]


def test_requests_are_recorded(simulator: Simulator, http: httpx.Client) -> None:
    """Every request is recorded with method, relative path, parameters and answer status."""
    session_id = create(http, name="rec", env=["A=1", "B=2"])
    http.get("/session", params={"view": "stats"})
    simulator.inject_fault(method="GET", path="/session", status=None)
    with pytest.raises(httpx.TransportError):
        http.get("/session")
    first, second, third = simulator.requests
    assert (first.method, first.path, first.status) == ("POST", "/session", 200)
    assert first.params["env"] == ("A=1", "B=2") and first.param("name") == "rec"
    assert (second.path, second.param("view")) == ("/session", "stats")
    assert (third.status, third.fault) == (None, True)
    assert session_id


def test_list_calls_can_be_counted(simulator: Simulator, http: httpx.Client) -> None:
    """Tests can count list calls from the record, separately from single-session calls."""
    for _ in range(3):
        http.get("/session")
    http.get("/session/abcdefgh")
    assert sum(1 for r in simulator.requests if (r.method, r.path) == ("GET", "/session")) == 3


def test_inject_fault_rejects_nonsense(simulator: Simulator) -> None:
    """A fault status must be an HTTP error and a count positive."""
    with pytest.raises(ValueError):
        simulator.inject_fault(status=200)
    with pytest.raises(ValueError):
        simulator.inject_fault(count=0)


@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}, {"Authorization": "Bearer"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}])
def test_missing_credentials_are_401(sim_server: SimulatorServer, headers: dict[str, str]) -> None:
    """Without a bearer token every /skaha/v1 endpoint answers 401."""
    for path in ("/session", "/session/abcdefgh", "/image", "/context", "/repository"):
        response = httpx.get(sim_server.url + path, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/plain")


def test_wrong_token_is_401_and_not_echoed(sim_server: SimulatorServer) -> None:
    """A token other than the configured one is 401, and the answer does not repeat it."""
    response = httpx.post(sim_server.url + "/session", params={"name": "x", "image": IMAGE},
                          headers={"Authorization": "Bearer wrong-secret"})
    assert response.status_code == 401
    assert "wrong-secret" not in response.text


def test_unauthorized_create_creates_nothing(simulator: Simulator, sim_server: SimulatorServer) -> None:
    """A refused create has no effect."""
    httpx.post(sim_server.url + "/session", params={"name": "x", "image": IMAGE})
    assert len(simulator.cluster) == 0


def test_any_bearer_token_works_when_none_is_configured(serve) -> None:  # type: ignore[no-untyped-def]
    """With token=None any bearer token is accepted."""
    _, client = serve()
    assert client.get("/session").status_code == 200


def test_availability_needs_no_credentials(sim_server: SimulatorServer) -> None:
    """The VOSI availability endpoint answers without auth."""
    response = httpx.get(sim_server.url.removesuffix("/v1") + "/availability")
    assert response.status_code == 200 and "<vosi:available>true</vosi:available>" in response.text


def test_capabilities_point_at_the_v1_endpoints(sim_server: SimulatorServer) -> None:
    """VOSI capabilities answer without auth and advertise the session endpoint under /skaha/v1."""
    response = httpx.get(sim_server.url.removesuffix("/v1") + "/capabilities")
    assert response.status_code == 200
    assert f"{sim_server.url}/session</accessURL>" in response.text
    assert "platform#session-1" in response.text
