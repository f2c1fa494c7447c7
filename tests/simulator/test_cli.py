"""``canfar-controller simulator`` serves until SIGINT/SIGTERM and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from controller.cli import main

IMAGE = "images.canfar.net/skaha/astroml:latest"


@pytest.fixture
def launch() -> Iterator[object]:
    """Start the simulator command in a subprocess; kill it if a test leaves it running."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "controller", "simulator", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout is not None
        return process, process.stdout.readline().strip()

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_signalled_then_exits_zero(launch, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    """The command prints its /skaha/v1 base URL, serves it, and exits 0 on the signal."""
    process, url = launch()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/skaha/v1")
    assert httpx.get(url + "/session", headers={"Authorization": "Bearer x"}).json() == []
    process.send_signal(sig)
    assert process.wait(timeout=10) == 0


def test_options_reach_the_simulator(launch) -> None:  # type: ignore[no-untyped-def]
    """--token, --cores and --max-interactive configure the served simulator."""
    process, url = launch("--token", "s3cret", "--cores", "3", "--max-interactive", "1")
    assert httpx.get(url + "/session").status_code == 401
    assert httpx.get(url + "/session", headers={"Authorization": "Bearer other"}).status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    stats = httpx.get(url + "/session", params={"view": "stats"}, headers=auth).json()
    assert stats["cores"]["cpuCoresAvailable"] == 3.0
    assert httpx.get(url + "/context", headers=auth).json()["maxInteractiveSessions"] == "1"
    process.terminate()
    assert process.wait(timeout=10) == 0


@pytest.mark.parametrize("args", [["--error-rate", "2"], ["--cores", "0"], ["--time-scale", "-1"]])
def test_bad_settings_exit_one(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Impossible settings are reported on stderr with exit code 1, before serving anything."""
    assert main(["simulator", "--port", "0", *args]) == 1
    assert capsys.readouterr().err.startswith("canfar-controller: error: simulator: ")
