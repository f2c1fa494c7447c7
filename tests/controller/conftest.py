"""The real daemon as a process, against the simulator over loopback HTTP.

The simulator runs in the test process on the real clock with a time scale, so sessions start
within a fraction of a second and tests can inject faults and count requests directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from controller.simulator import Simulator, SimulatorConfig, SimulatorServer

TOKEN = "daemon-test-token"
TIME_SCALE = 20.0
T = TypeVar("T")

SESSIONSET = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  restartPolicy: {policy}
  template:
    kind: headless
    image: images.canfar.net/skaha/astroml:latest
    cores: 1
    ram: 1
    cmd: "{cmd}"
{args}"""


def manifest(name: str, replicas: int, *, cmd: str = "sleep", args: str | None = "100000",
             policy: str = "Always") -> str:
    return SESSIONSET.format(name=name, replicas=replicas, policy=policy, cmd=cmd,
                             args=f"    args: \"{args}\"\n" if args else "")


def wait_until(check: Callable[[], T], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {result!r}")
        time.sleep(0.1)


@dataclass
class Service:
    """The simulated service and a plain HTTP view of it for assertions."""

    simulator: Simulator
    url: str

    def sessions(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/session", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        response.raise_for_status()
        return response.json()

    def live(self, prefix: str = "cc-") -> list[dict[str, Any]]:
        return [s for s in self.sessions() if s["name"].startswith(prefix)
                and s["status"] in ("Pending", "Running")]

    def create(self, name: str, cmd: str = "sleep", args: str = "100000") -> str:
        response = httpx.post(f"{self.url}/session", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
                              data={"name": name, "image": "images.canfar.net/skaha/astroml:latest",
                                    "cmd": cmd, "args": args})
        response.raise_for_status()
        return response.text.strip()

    def delete(self, session_id: str) -> None:
        httpx.delete(f"{self.url}/session/{session_id}", headers={"Authorization": f"Bearer {TOKEN}"},
                     timeout=10).raise_for_status()

    def requests(self, method: str | None = None, *, lists_only: bool = False) -> list[Any]:
        found = [r for r in self.simulator.requests if method is None or r.method == method]
        if lists_only:
            found = [r for r in found if r.path.rstrip("/").endswith("/session") and r.param("view") is None]
        return found


@dataclass
class DaemonProcess:
    state: Path
    status_file: Path
    log_file: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> DaemonProcess:
        command = [sys.executable, "-m", "controller", "run", "--state", str(self.state),
                   "--status-file", str(self.status_file), *self.args]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log_file.open("ab"),
                                     env={**os.environ, **self.env})
        return self

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def pass_id(self) -> int:
        return int(self.status().get("pass_id", 0))

    def wait_passes(self, count: int = 1, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until ``count`` more passes have completed, and return the last status."""
        target = self.pass_id() + count
        return wait_until(lambda: self.status() if self.pass_id() >= target else None, timeout=timeout,
                          what=f"pass {target} (log: {self.log_tail()})")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    """The simulated service; ``indirect`` parametrization passes extra SimulatorConfig fields."""
    extra = getattr(request, "param", {})
    simulator = Simulator(SimulatorConfig(token=TOKEN, time_scale=TIME_SCALE, cores=512.0, ram_gb=2048.0, **extra))
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        yield Service(simulator, server.url)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    return directory


@pytest.fixture
def daemon(service: Service, state: Path, tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start the daemon (``daemon(*extra_args)``); every process is stopped at teardown."""
    started: list[DaemonProcess] = []

    def start(*extra: str, interval: float = 0.5) -> DaemonProcess:
        process = DaemonProcess(
            state=state, status_file=tmp_path / "status.json", log_file=tmp_path / "daemon.log",
            args=["--server", service.url, "--interval", str(interval), "--metrics-port", "0",
                  "--restart-backoff", "0.5", *extra],
            env={"CANFAR_TOKEN": TOKEN},
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc is not None and process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=10)
