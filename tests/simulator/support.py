"""Small request helpers shared by the simulator tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from controller.simulator import Simulator
from controller.simulator.wire import Request

IMAGE = "images.canfar.net/skaha/astroml:latest"


def create(http: httpx.Client, name: str = "job", **params: object) -> str:
    """Create a session (headless, public image unless overridden) and return its id."""
    response = http.post("/session", params={"name": name, "image": IMAGE, **params})
    assert response.status_code == 200, response.text
    return response.text.strip()


def status_of(http: httpx.Client, session_id: str) -> str:
    """The status the service reports for one session."""
    response = http.get(f"/session/{session_id}")
    assert response.status_code == 200, response.text
    return response.json()["status"]


def fill(simulator: Simulator, count: int, *, token: str) -> None:
    """Create ``count`` headless sessions in-process, through the same routes as HTTP requests."""
    for index in range(count):
        response = simulator.handle(Request(
            "POST", "/skaha/v1/session",
            query=f"name=job-{index}&image={IMAGE}&cores=1&ram=1",
            headers={"authorization": f"Bearer {token}"},
        ))
        assert response.status == 200, response.body


def names(http: httpx.Client) -> list[str]:
    """The names in the session list, in the order listed."""
    response = http.get("/session")
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()]


def wait_until(check: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``check`` until it holds: waiting for an event another thread causes, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)
