"""AsyncSession fans out over many ids concurrently, never more than ``concurrency`` at a time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from controller.client import AsyncSession, Session
from tests.client.conftest import TOKEN

IDS = [f"id{index:06d}" for index in range(8)]


class InFlight:
    """Rebuilds each attempt's interval from the on_request hook and finds the most that overlapped."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []

    def __call__(self, operation: str, status: int | None, seconds: float) -> None:
        end = time.monotonic()
        self.intervals.append((end - seconds, end))

    @property
    def peak(self) -> int:
        edges = sorted([(start, 1) for start, _ in self.intervals] + [(end, -1) for _, end in self.intervals])
        peak = current = 0
        for _, step in edges:  # at equal times an end (-1) sorts first: touching is not overlapping
            current += step
            peak = max(peak, current)
        return peak


@pytest.mark.parametrize("concurrency", [1, 3])
def test_async_fan_out_respects_the_bound(serve: Any, concurrency: int) -> None:
    """With 8 ids and a slow server, no more than ``concurrency`` requests are ever in flight."""
    _sim, url = serve(latency=0.05)
    in_flight = InFlight()

    async def run() -> list[str]:
        options = {"url": url, "token": TOKEN, "concurrency": concurrency, "on_request": in_flight}
        async with AsyncSession(**options) as session:
            return await session.destroy(IDS)

    assert asyncio.run(run()) == IDS
    assert len(in_flight.intervals) == len(IDS)
    assert in_flight.peak == concurrency


def test_async_fan_out_is_concurrent_by_default(serve: Any) -> None:
    """The default bound (32) lets all 8 requests run at once."""
    _sim, url = serve(latency=0.2)
    in_flight = InFlight()

    async def run() -> None:
        async with AsyncSession(url=url, token=TOKEN, on_request=in_flight) as session:
            await session.destroy(IDS)

    asyncio.run(run())
    assert in_flight.peak > 1


def test_every_connection_of_a_sharded_pool_is_used_at_once(serve: Any) -> None:
    """With 12 connections (pools of 4 side by side), 12 slow requests all run at the same time."""
    _sim, url = serve(latency=0.2)
    in_flight = InFlight()
    ids = [f"id{index:06d}" for index in range(12)]

    async def run() -> None:
        async with AsyncSession(url=url, token=TOKEN, concurrency=12, on_request=in_flight) as session:
            await session.destroy(ids)

    asyncio.run(run())
    assert in_flight.peak == 12


def test_the_bound_is_shared_by_concurrent_calls(serve: Any) -> None:
    """Two calls running at once on one AsyncSession together stay within its bound."""
    _sim, url = serve(latency=0.05)
    in_flight = InFlight()

    async def run() -> None:
        async with AsyncSession(url=url, token=TOKEN, concurrency=2, on_request=in_flight) as session:
            await asyncio.gather(session.destroy(IDS[:4]), session.destroy(IDS[4:]))

    asyncio.run(run())
    assert in_flight.peak == 2


def test_sync_calls_run_one_at_a_time(serve: Any) -> None:
    """Session sends the ids of a many-id call one after another."""
    _sim, url = serve(latency=0.02)
    in_flight = InFlight()
    with Session(url=url, token=TOKEN, on_request=in_flight) as session:
        assert session.destroy(IDS[:4]) == IDS[:4]
    assert in_flight.peak == 1


class ConnectionCounter:
    """A TCP relay in front of the simulator that counts the connections clients open through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.opened = 0
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, then wait for the relays: each ends once its client has closed the connection."""
        self._server.close()
        await asyncio.gather(*self._relays)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))


def test_the_pool_keeps_every_connection_of_a_full_burst_alive(serve: Any) -> None:
    """After a burst at full concurrency, the next burst reuses all its connections instead of opening new ones."""
    _sim, url = serve(latency=0.1)
    port = int(url.split(":")[2].split("/")[0])

    async def run() -> int:
        counter = ConnectionCounter(port)
        relay = await counter.start()
        try:
            async with AsyncSession(url=f"http://127.0.0.1:{relay}/skaha/v1", token=TOKEN, concurrency=16) as session:
                ids = [f"id{index:06d}" for index in range(16)]
                await session.destroy(ids)
                assert counter.opened == 16
                await session.destroy(ids)
                return counter.opened
        finally:
            await counter.stop()

    assert asyncio.run(run()) == 16
