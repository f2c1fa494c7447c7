"""The in-process transports: the simulator without sockets, indistinguishable from it over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from controller.client import AsyncSession, Session
from controller.errors import NotFoundError, ServiceUnavailableError, TransportError
from controller.rules import SessionSpec
from controller.simulator import ManualClock, Simulator, SimulatorServer
from tests.simulator.conftest import IN_PROCESS_URL
from tests.simulator.support import IMAGE, create, names


@pytest.fixture
def inproc(simulator: Simulator, sim_token: str) -> Iterator[httpx.Client]:
    """Plain httpx through ``simulator.transport()``."""
    with httpx.Client(base_url=IN_PROCESS_URL, transport=simulator.transport(),
                      headers={"Authorization": f"Bearer {sim_token}"}) as client:
        yield client


def test_our_client_works_unchanged_in_process(simulator: Simulator, sim_clock: ManualClock, sim_token: str) -> None:
    """``Session`` creates, lists, reads and deletes through the transport as it does over HTTP."""
    with Session(url=IN_PROCESS_URL, token=sim_token, transport=simulator.transport()) as session:
        [session_id] = session.create(SessionSpec("inproc", IMAGE, cmd="sleep", args="60"))
        sim_clock.advance(3)
        [info] = session.info(session_id)
        assert (info.name, info.status) == ("inproc", "Running")
        assert [s.id for s in session.fetch()] == [session_id]
        assert session.destroy(session_id) == [session_id]
        with pytest.raises(NotFoundError, match="session abcdefgh not found"):
            session.info("abcdefgh")
    assert [r.param("name") for r in simulator.requests if r.method == "POST"] == ["inproc"]


def test_our_async_client_works_unchanged_in_process(simulator: Simulator, sim_token: str) -> None:
    """``AsyncSession`` runs concurrent creates through the async transport."""

    async def run() -> tuple[list[str], list[str]]:
        async with AsyncSession(url=IN_PROCESS_URL, token=sim_token,
                                transport=simulator.async_transport()) as session:
            ids = await session.create(SessionSpec("many", IMAGE), replicas=4)
            return ids, [s.id for s in await session.fetch()]

    ids, listed = asyncio.run(run())
    assert len(set(ids)) == 4 and sorted(ids) == sorted(listed)
    assert sorted(c.name for c in simulator.created) == ["many-1", "many-2", "many-3", "many-4"]


def test_query_and_form_parameters_both_arrive(simulator: Simulator, inproc: httpx.Client) -> None:
    """Parameters in the query string and in a form body are both read, repeated ones included."""
    by_query = inproc.post("/session", params=[("name", "q"), ("image", IMAGE), ("env", "A=1"), ("env", "B=2")])
    by_form = inproc.post("/session", data={"name": "f", "image": IMAGE, "env": ["C=3", "D=4"]})
    assert (by_query.status_code, by_form.status_code) == (200, 200)
    envs = {r.param("name"): r.params["env"] for r in simulator.requests}
    assert envs == {"q": ("A=1", "B=2"), "f": ("C=3", "D=4")}
    assert sorted(names(inproc)) == ["f", "q"]


@pytest.mark.parametrize("path", [
    "/session", "/session?view=stats", "/session?view=all&type=headless", "/session/abcdefgh",
    "/session/abcdefgh?view=events", "/session/a%20b", "/session/x/y/z/w", "/image", "/context", "/nothing",
])
def test_same_answers_as_over_http(simulator: Simulator, sim_server: SimulatorServer, sim_token: str,
                                   inproc: httpx.Client, path: str) -> None:
    """Status, content type and body are the same in-process as over loopback HTTP."""
    create(inproc, name="one")
    with httpx.Client(base_url=sim_server.url, headers={"Authorization": f"Bearer {sim_token}"}) as http:
        over_http, in_process = http.get(path), inproc.get(path)
    assert in_process.status_code == over_http.status_code
    assert in_process.headers["content-type"] == over_http.headers["content-type"]
    assert in_process.content == over_http.content


def test_extra_headers_pass_through(simulator: Simulator, inproc: httpx.Client) -> None:
    """A 429's Retry-After reaches the client, with the text/plain body."""
    simulator.inject_fault(method="GET", path="/session", status=429, retry_after=12)
    response = inproc.get("/session")
    assert (response.status_code, response.headers["retry-after"], response.text) == (429, "12", "Too Many Requests")


def test_dropped_connection_is_a_remote_protocol_error(simulator: Simulator, inproc: httpx.Client) -> None:
    """A drop raises what a real socket close raises in httpx, and the next request is served."""
    simulator.inject_fault(method="GET", path="/session", status=None)
    with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected without sending a response"):
        inproc.get("/session")
    assert inproc.get("/session").status_code == 200


def test_dropped_connection_is_our_transport_error(simulator: Simulator, sim_token: str) -> None:
    """Through our async client a drop is ``TransportError``, caused by httpx's ``RemoteProtocolError``."""
    simulator.inject_fault(method="GET", path="/session", status=None, count=None)

    async def run() -> None:
        async with AsyncSession(url=IN_PROCESS_URL, token=sim_token, retries=0,
                                transport=simulator.async_transport()) as session:
            await session.fetch()

    with pytest.raises(TransportError) as caught:
        asyncio.run(run())
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


def test_our_client_retries_a_503_in_process(simulator: Simulator, sim_token: str) -> None:
    """A 503 is retried by reads; with no retries left, it surfaces as the service-unavailable error."""
    simulator.inject_fault(method="GET", path="/session", status=503, retry_after=0, count=1)
    with Session(url=IN_PROCESS_URL, token=sim_token, backoff=0, transport=simulator.transport()) as session:
        assert session.fetch() == []
    simulator.inject_fault(method="GET", path="/session", status=503, count=None)
    with Session(url=IN_PROCESS_URL, token=sim_token, retries=0, transport=simulator.transport()) as session, \
            pytest.raises(ServiceUnavailableError):
        session.fetch()
    assert [r.status for r in simulator.requests] == [503, 200, 503]


# -- cancelling an in-process request mid-flight ---------------------------------------------------


async def _cancel_create_in_flight(simulator: Simulator, client: httpx.AsyncClient, name: str) -> None:
    """Send a create, cancel its task while the answer is delayed, as a crash would."""
    task = asyncio.create_task(client.post("/session", params={"name": name, "image": IMAGE}))
    while simulator.in_flight() == 0:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("apply", ["before", "after"])
def test_cancelled_create_still_takes_effect(simulator: Simulator, sim_clock: ManualClock, sim_token: str,
                                             apply: str) -> None:
    """A create cancelled while waiting was sent: with ``apply="before"`` it exists at once; with
    ``"after"`` it lands when simulated time reaches arrival + delay, as a slow server finishing it would."""
    simulator.inject_delay(method="POST", path="/session", seconds=5.0, apply=apply)  # type: ignore[arg-type]

    async def run() -> None:
        async with httpx.AsyncClient(base_url=IN_PROCESS_URL, transport=simulator.async_transport(),
                                     headers={"Authorization": f"Bearer {sim_token}"}) as client:
            await _cancel_create_in_flight(simulator, client, "crashed")

    asyncio.run(run())
    [record] = simulator.requests
    assert (record.status, simulator.in_flight()) == (None, 0)
    simulator.catch_up()
    assert len(simulator.cluster) == (1 if apply == "before" else 0)
    sim_clock.advance(5.0)
    simulator.catch_up()
    assert [r.name for r in simulator.cluster] == ["crashed"]
    [creation] = simulator.created
    assert simulator.requests[0].session_id == creation.session_id
    assert creation.at == record.at + (0.0 if apply == "before" else 5.0)


def test_sync_transport_waits_out_a_delay(simulator: Simulator, inproc: httpx.Client) -> None:
    """The sync transport sleeps through an injected delay and then answers normally."""
    simulator.inject_delay(method="POST", path="/session", seconds=0.05)
    session_id = create(inproc, name="patient")
    assert [(c.session_id, c.name) for c in simulator.created] == [(session_id, "patient")]
