"""The renew bound with real processes: ``canfar-controller run`` against ``canfar-controller simulator``.

The simulator process ends notebooks after 24 s (``--session-expiry 24``, a renew pushes the expiry to
now + 24 s) and writes every request it answers to ``--request-log``; the controller keeps its default
4-day ``--session-expiry``, passes every 0.5 s and runs with ``--renew-when-remaining 1``: a renew is
due at every pass, so only the hard bound spaces them. Counted from the simulator's log, each notebook
gets at most one renew per quarter of the platform's lifetime (6 s), where it used to get one per pass.
(The default fraction, renewing once less than a quarter remains, is
``tests/reliability/test_renew.py``'s.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from tests.controller.conftest import TOKEN, DaemonProcess, wait_until
from tests.reliability.renew_soak import NOTEBOOKS  # set nb: two notebooks

LIFE = 24.0
QUARTER = LIFE / 4
RUN = 30.0

@pytest.fixture
def simulator_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The simulator as its own process with a 24-second interactive lifetime: (its URL, its request log)."""
    log = tmp_path / "requests.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "controller", "simulator", "--port", "0", "--token", TOKEN, "--seed", "7",
         "--session-expiry", str(LIFE), "--request-log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    try:
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def live_notebooks(url: str) -> set[str]:
    sessions = httpx.get(f"{url}/session", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    return {s["id"] for s in sessions if s["name"].startswith("cc-nb-") and s["status"] == "Running"}


def renews(log: Path) -> dict[str, list[float]]:
    sent: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text().splitlines():
        request = json.loads(line)
        if request["method"] == "POST" and request["params"].get("action") == ["renew"]:
            sent[request["path"].rsplit("/", 1)[-1]].append(request["at"])
    return sent


def test_renews_per_notebook_stay_within_one_per_quarter_of_the_platform_lifetime(
        simulator_process: tuple[str, Path], tmp_path: Path) -> None:
    url, log = simulator_process
    state = tmp_path / "state"
    state.mkdir()
    (state / "nb.yaml").write_text(NOTEBOOKS)
    daemon = DaemonProcess(state=state, status_file=tmp_path / "status.json", log_file=tmp_path / "daemon.log",
                           args=["--server", url, "--interval", "0.5", "--metrics-port", "0",
                                 "--renew-when-remaining", "1"],
                           env={"CANFAR_TOKEN": TOKEN}).start()
    try:
        first = wait_until(lambda: two if len(two := live_notebooks(url)) == 2 else None,
                           what="two running notebooks")
        time.sleep(RUN)
        assert live_notebooks(url) == first, daemon.log_tail()  # kept alive past their 24 s
        status = daemon.status()
        conditions = {c["type"]: c["status"] for c in status["sets"]["nb"]["conditions"]}
        assert conditions["RenewIneffective"] == "False"
    finally:
        stopped = daemon.stop()
    assert stopped == 0, daemon.log_tail()
    sent = renews(log)
    assert set(sent) == first
    for session_id, times in sent.items():
        gaps = [later - earlier for earlier, later in pairwise(times)]
        # expiryTime is in whole seconds, so a learnt lifetime may be up to 1 s short: a quarter 0.25 s short.
        assert gaps and min(gaps) >= (LIFE - 1) / 4 - 0.05, f"{session_id}: renews {gaps} s apart"
        assert len(times) <= (RUN + 5) / QUARTER + 1, f"{session_id}: {len(times)} renews"
        # More than the default fraction would send in the run (one per 18 s): the flag reached the process.
        assert len(times) >= 3, f"{session_id}: only {len(times)} renews"
