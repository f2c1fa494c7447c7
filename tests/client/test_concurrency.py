"""AsyncSession fans out over many ids concurrently, never more than ``concurrency`` at a time."""

from __future__ import annotations

import asyncio
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
