"""The official ``canfar`` client (PyPI 1.5.2) works against the simulator unchanged.

This is the proof that the simulator speaks the real wire format: the client was written against
the real service and is used here exactly as its documentation shows. Its config file lives in
a temporary HOME, so the user's real ``~/.canfar`` is never read or written.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.simulator import ManualClock, Simulator, SimulatorServer

IMAGE = "images.canfar.net/skaha/astroml:latest"

canfar_sessions = pytest.importorskip("canfar.sessions")
canfar_config = pytest.importorskip("canfar.models.config")
canfar_exceptions = pytest.importorskip("canfar.exceptions.session")


@pytest.fixture(autouse=True)
def _isolated_canfar_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point canfar's HOME, config path and environment at nothing of the user's."""
    real = Path.home() / ".canfar"
    existed = real.exists()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(canfar_config, "CONFIG_PATH", tmp_path / ".canfar" / "config.yaml")
    for name in [name for name in os.environ if name.startswith("CANFAR_")]:
        monkeypatch.delenv(name)
    yield
    assert real.exists() == existed, "canfar touched the real ~/.canfar"


@pytest.fixture
def canfar(sim_server: SimulatorServer, sim_token: str) -> object:
    """A canfar ``Session`` on the simulator, raising on any failed request."""
    return canfar_sessions.Session(token=sim_token, url=sim_server.url, errors="raise")


def test_create_with_replicas(canfar, simulator: Simulator) -> None:  # type: ignore[no-untyped-def]
    """create(replicas=3) makes three sessions named <name>-1..3 with REPLICA_* env."""
    ids = canfar.create(name="sweep", image=IMAGE, cores=2, ram=4, cmd="sleep", args="60", replicas=3)
    assert len(ids) == 3 and len(set(ids)) == 3
    assert sorted(record.name for record in simulator.cluster) == ["sweep-1", "sweep-2", "sweep-3"]
    envs = {record.name: dict(record.env) for record in simulator.cluster}
    assert envs["sweep-2"] == {"REPLICA_ID": "2", "REPLICA_COUNT": "3"}


def test_fetch_with_filters(canfar, sim_clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """fetch() lists every session; kind/status filters reach the server and apply."""
    [headless] = canfar.create(name="h", image=IMAGE)
    [notebook] = canfar.create(name="n", image=IMAGE, kind="notebook")
    sim_clock.advance(3)
    assert {row["id"] for row in canfar.fetch()} == {headless, notebook}
    assert [row["id"] for row in canfar.fetch(kind="notebook")] == [notebook]
    assert [row["id"] for row in canfar.fetch(kind="headless", status="Running")] == [headless]
    assert canfar.fetch(status="Pending") == []


def test_info(canfar) -> None:  # type: ignore[no-untyped-def]
    """info() returns the session objects, fixed resources as the server formats them."""
    ids = canfar.create(name="i", image=IMAGE, cores=1, ram=2, replicas=2)
    infos = canfar.info(ids)
    assert [info["id"] for info in infos] == ids
    assert infos[0]["requestedCPUCores"] == "1" and infos[0]["requestedRAM"] == "2.15"


def test_info_of_reaped_session_raises(canfar) -> None:  # type: ignore[no-untyped-def]
    """info() of an unknown id fails with the 404 kept in canfar's SessionRequestError."""
    with pytest.raises(canfar_exceptions.SessionRequestError) as caught:
        canfar.info("abcdefgh")
    assert caught.value.errors["abcdefgh"].response.status_code == 404


def test_logs(canfar, sim_clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """logs() returns {id: text} with what the program printed."""
    [session_id] = canfar.create(name="l", image=IMAGE, cmd="echo", args="hello world")
    sim_clock.advance(3)
    assert canfar.logs(session_id) == {session_id: "hello world\n"}


def test_events(canfar, sim_clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """events() returns [{id: kubectl table}]."""
    [session_id] = canfar.create(name="e", image=IMAGE)
    sim_clock.advance(3)
    [events] = canfar.events(session_id)
    assert events[session_id].startswith("TYPE") and "Started container" in events[session_id]


def test_stats(canfar) -> None:  # type: ignore[no-untyped-def]
    """stats() returns the server's stats object with the keys canfar's CLI reads."""
    canfar.create(name="s", image=IMAGE, cores=4, ram=8)
    stats = canfar.stats()
    assert stats["cores"]["requestedCPUCores"] == 4.0 and stats["cores"]["cpuCoresAvailable"] == 64.0
    assert stats["ram"]["requestedRAM"] == "8.59G" and stats["ram"]["ramAvailable"] == "256G"


def test_destroy(canfar, sim_clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """destroy() reports True per id; the sessions leave the list at once, as the deleted Jobs do."""
    ids = canfar.create(name="d", image=IMAGE, replicas=2)
    sim_clock.advance(3)
    assert canfar.destroy(ids) == dict.fromkeys(ids, True)
    assert canfar.fetch() == []


def test_destroy_with_prefix_kind_and_status(canfar, sim_clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """destroy_with() removes only Completed headless sessions whose names match the prefix."""
    done = canfar.create(name="batch", image=IMAGE, cmd="true", replicas=2)
    [running] = canfar.create(name="batch-long", image=IMAGE, cmd="sleep", args="600")
    [other] = canfar.create(name="other", image=IMAGE, cmd="true")
    sim_clock.advance(5)
    assert canfar.destroy_with("batch") == dict.fromkeys(done, True)
    assert {row["id"] for row in canfar.fetch()} == {running, other}


def test_renew(canfar) -> None:  # type: ignore[no-untyped-def]
    """renew() of an active interactive session succeeds."""
    [session_id] = canfar.create(name="r", image=IMAGE, kind="notebook")
    assert canfar.renew(session_id) == {session_id: True}


def test_server_refusal_reaches_canfar(canfar) -> None:  # type: ignore[no-untyped-def]
    """A 400 from the simulator surfaces as canfar's SessionRequestError with the server text."""
    with pytest.raises(canfar_exceptions.SessionRequestError) as caught:
        canfar.create(name="bad name", image=IMAGE)
    response = caught.value.errors[1].response
    assert response.status_code == 400
    assert response.text == "name can only contain alpha-numeric chars and '-'"


def test_async_session(sim_server: SimulatorServer, sim_token: str, sim_clock: ManualClock) -> None:
    """AsyncSession creates replicas concurrently, fetches, reads info and destroys."""

    async def scenario() -> None:
        client = canfar_sessions.AsyncSession(token=sim_token, url=sim_server.url, errors="raise")
        ids = await client.create(name="async", image=IMAGE, cmd="true", replicas=4)
        assert len(set(ids)) == 4
        infos = await client.info(ids)
        assert sorted(info["name"] for info in infos) == ["async-1", "async-2", "async-3", "async-4"]
        sim_clock.advance(3)
        assert {row["status"] for row in await client.fetch(kind="headless")} == {"Completed"}
        assert set((await client.logs(ids)) or {}) == set(ids)
        assert (await client.stats())["cores"]["cpuCoresAvailable"] == 64.0
        destroyed = await client.destroy_with("async")
        assert set(destroyed) == set(ids)
        assert await client.fetch() == []

    asyncio.run(scenario())


def test_env_session_prints_its_environment(canfar, sim_clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """canfar's own lifecycle check: ``cmd="env"`` completes and its logs hold the env sent and injected."""
    [session_id] = canfar.create(name="envy", image="images.canfar.net/skaha/terminal:1.1.2", cores=1, ram=1,
                                 cmd="env", env={"TEST": "test"})
    sim_clock.advance(3)
    assert canfar.info(session_id)[0]["status"] == "Completed"
    lines = canfar.logs(session_id)[session_id].splitlines()
    for line in ("TEST=test", "REPLICA_ID=1", "REPLICA_COUNT=1", f"skaha_sessionid={session_id}",
                 "skaha_username=sim-user", "HOME=/arc/home/sim-user", "PWD=/arc/home/sim-user",
                 "OMP_NUM_THREADS=1", "HOSTNAME=envy"):
        assert line in lines
