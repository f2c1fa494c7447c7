"""Figures for the client's request path (reported with ``--benchmark-enable``).

The simulator runs in its own process, so the client's CPU per request (``extra_info``:
``client_cpu_us_per_call``) is the benchmark process's CPU alone. With the default
``--benchmark-disable`` each benchmark runs once as a plain test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest

from controller.client import AsyncSession
from controller.observability.metrics import ControllerMetrics
from controller.rules import SessionSpec
from tests.benchmarks.support import TOKEN, simulator_process

CALLS = 500
IMAGE = "images.canfar.net/skaha/astroml:latest"


@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    """A simulator in a child process with room for every session the rounds create."""
    with simulator_process("--cores", "1000000", "--ram", "10000000") as url:
        yield url


def _rounds(benchmark: Any, url: str, call: Any, concurrency: int) -> None:
    """Run ``CALLS`` calls per round through one AsyncSession (with the metrics hook), recording client CPU."""
    cpu: list[float] = []
    names = count()

    async def round_() -> None:
        async with AsyncSession(url=url, token=TOKEN, concurrency=concurrency,
                                on_request=ControllerMetrics().observe_api) as session:
            await call(session, next(names))  # connect outside the measurement
            started = time.process_time()
            await asyncio.gather(*(call(session, next(names)) for _ in range(CALLS)))
            cpu.append(time.process_time() - started)

    benchmark.pedantic(lambda: asyncio.run(round_()), rounds=3, iterations=1)
    benchmark.extra_info["client_cpu_us_per_call"] = round(min(cpu) / CALLS * 1e6)


@pytest.mark.benchmark(group="client")
@pytest.mark.parametrize("concurrency", [8, 32])
def test_creates(benchmark, simulator_url: str, concurrency: int) -> None:  # type: ignore[no-untyped-def]
    """500 headless creates (cmd, args, replica env) at the given concurrency."""

    async def create(session: AsyncSession, index: int) -> None:
        [session_id] = await session.create(SessionSpec(f"cc-bench-abcdef-{index}", IMAGE, cmd="sleep", args="1000",
                                            env=(("REPLICA_ID", "1"), ("REPLICA_COUNT", "1"))))
        assert session_id

    _rounds(benchmark, simulator_url, create, concurrency)


@pytest.mark.benchmark(group="client")
def test_deletes(benchmark, simulator_url: str) -> None:  # type: ignore[no-untyped-def]
    """500 deletes (of unknown ids: the server answers 200 all the same) at concurrency 32."""

    async def delete(session: AsyncSession, index: int) -> None:
        assert await session.destroy(f"x{index:07d}") == [f"x{index:07d}"]

    _rounds(benchmark, simulator_url, delete, 32)
