"""Fixtures of the client tests: a simulator over real loopback HTTP, and one client per flavour.

Every behaviour test runs twice, through ``Session`` and through ``AsyncSession``: the ``client``
fixture wraps the async one so that a test calls both the same way and is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.client import AsyncSession, Session
from controller.simulator import ManualClock, Simulator, SimulatorConfig, SimulatorServer

#: The one token the default simulator accepts; tests assert that it is never shown.
TOKEN = "tok-9f8e7d6c5b4a-secret"
IMAGE = "images.canfar.net/skaha/terminal:1.1.2"
NOTEBOOK_IMAGE = "images.canfar.net/skaha/astroml:latest"


class AsyncAdapter:
    """Calls an ``AsyncSession`` synchronously on its own event loop, so tests serve both flavours."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.session, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attribute(*args, **kwargs))

        return call

    def close(self) -> None:
        self._loop.run_until_complete(self.session.aclose())
        self._loop.close()


@pytest.fixture(autouse=True)
def _no_canfar_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's CANFAR_* variables out of the tests."""
    for key in list(os.environ):
        if key.startswith("CANFAR_"):
            monkeypatch.delenv(key)


@pytest.fixture
def clock() -> ManualClock:
    """Simulated time moves only when a test advances it, so lifecycles are deterministic."""
    return ManualClock()


@pytest.fixture
def serve(clock: ManualClock) -> Iterator[Callable[..., tuple[Simulator, str]]]:
    """Start a simulator with the given config over loopback HTTP; returns it and its base URL."""
    with contextlib.ExitStack() as stack:

        def start(**config: Any) -> tuple[Simulator, str]:
            config.setdefault("token", TOKEN)
            simulator = Simulator(SimulatorConfig(**config), clock=clock)
            server = stack.enter_context(SimulatorServer(simulator, host="127.0.0.1", port=0))
            return simulator, server.url

        yield start


@pytest.fixture
def served(serve: Callable[..., tuple[Simulator, str]]) -> tuple[Simulator, str]:
    return serve()


@pytest.fixture
def sim(served: tuple[Simulator, str]) -> Simulator:
    return served[0]


@pytest.fixture
def url(served: tuple[Simulator, str]) -> str:
    return served[1]


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_client(flavour: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """A ``Session`` or an adapted ``AsyncSession``; defaults: the default simulator, its token, no waits."""
    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        if "url" not in overrides:  # only start the default simulator when the test uses it
            overrides["url"] = request.getfixturevalue("url")
        options: dict[str, Any] = {"token": TOKEN, "backoff": 0.001, **overrides}
        client = Session(**options) if flavour == "sync" else AsyncAdapter(AsyncSession(**options))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()
