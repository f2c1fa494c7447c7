"""The real daemon under libfaketime: its wall clock steps ±2 h mid-run, and nothing it does changes.

The simulator runs in the test process on the real clock; only the controller's process sees the
faked time. ``FAKETIME_TIMESTAMP_FILE`` with ``FAKETIME_NO_CACHE`` is read at every time call, so
rewriting it steps the controller's wall clock at once; ``FAKETIME_DONT_FAKE_MONOTONIC`` leaves the
monotonic clocks (and ``CLOCK_BOOTTIME``) alone, as NTP or a resumed VM would.
"""

from __future__ import annotations

import collections
import json
import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.controller.conftest import TOKEN, DaemonProcess, manifest, wait_until
from tests.tools import missing

pytestmark = pytest.mark.slow

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
STEP = "the wall clock stepped"
_SLOT = re.compile(r"cc-workers-[0-9a-f]{6}-(\d+)")


def _slot(name: str | None) -> int | None:
    match = _SLOT.fullmatch(name or "")
    return int(match[1]) if match else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _steps(process: DaemonProcess) -> list[float]:
    lines = [json.loads(line) for line in process.log_file.read_text().splitlines() if STEP in line]
    return [line["step_seconds"] for line in lines]


def test_a_wall_clock_step_either_way_changes_nothing_the_controller_does(service, state, tmp_path):
    """+2 h with an uncertain create pending: no duplicate; then -2 h: passes go on, /healthz stays ok; each
    step is logged once."""
    if not LIBFAKETIME.exists():
        missing(f"libfaketime ({LIBFAKETIME}, Debian package faketime)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    port = free_port()
    process = DaemonProcess(
        state=state, status_file=tmp_path / "status.json", log_file=tmp_path / "daemon.log",
        args=["--server", service.url, "--interval", "0.5", "--metrics-host", "127.0.0.1",
              "--metrics-port", str(port), "--restart-backoff", "0.5"],
        env={"CANFAR_TOKEN": TOKEN, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset),
             "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    (state / "workers.yaml").write_text(manifest("workers", 2))
    process.start()
    try:
        live = lambda: collections.Counter(_slot(s["name"]) for s in service.live())  # noqa: E731
        posts = lambda slot: [r for r in service.requests("POST") if _slot(r.param("name")) == slot]  # noqa: E731
        lists = lambda: len(service.requests("GET", lists_only=True))  # noqa: E731
        wait_until(lambda: live() == {1: 1, 2: 1}, timeout=30, what="2 workers")
        process.wait_passes(2)

        # The gateway times out; the session appears 8 s later. Meanwhile the wall clock jumps 2 h ahead.
        service.simulator.inject_fault("POST", "/session", status=504, apply_after=8.0 * 20, count=1)
        (state / "workers.yaml").write_text(manifest("workers", 3))
        wait_until(lambda: posts(3), what="the create of slot 3 on the wire")
        offset.write_text("+2h\n")
        wait_until(lambda: live().get(3), timeout=30, what="the slow create of slot 3 landing")
        process.wait_passes(4)
        assert len(posts(3)) == 1, "the +2 h step ended the uncertain create's window: slot 3 was created twice"
        assert max(live().values()) == 1

        # Back by 2 h: the next pass is not 2 h away; the loop goes on.
        offset.write_text("+0\n")
        before = lists()
        wait_until(lambda: lists() - before >= 5, timeout=15, what="lists after the step back")
        assert live() == {1: 1, 2: 1, 3: 1}
        time.sleep(2.0)  # more than /healthz's limit of 3 intervals, on any clock
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200 and health.text.startswith("ok"), health.text

        steps = _steps(process)
        assert [round(s / 3600) for s in steps] == [2, -2], steps  # each step once, with its size
    finally:
        process.stop()
    assert process.proc is not None and process.proc.returncode == 0
