"""A real daemon and a real file write that stalls 2 s mid-file: the half-written scale-down waits, then vanishes."""

from __future__ import annotations

import time

import pytest

from controller.cli import main
from tests.controller.conftest import manifest, wait_until
from tests.controller.test_cli import env  # noqa: F401 (the fixture)
from tests.controller.test_daemon import running_slots

pytestmark = pytest.mark.slow

#: Longer than the stall (and the 1 s settle window), short enough for a quick test.
WINDOW = 10.0


def replicas_last(name: str, replicas: int) -> str:
    """The manifest with ``replicas`` as its last line: cut after ``replicas: 1`` it is still valid."""
    text = manifest(name, replicas).replace(f"  replicas: {replicas}\n", "")
    return f"{text}  replicas: {replicas}\n"


def test_a_write_that_stalls_2_s_mid_file_destroys_nothing(service, state, daemon):
    """``replicas: 12`` written as ``replicas: 1`` … 2 s … ``2``: the daemon reads the torn file (it settles
    after 1 s) and shows a scale-down 12→1 waiting; the write completes and the 12 sessions run on."""
    path = state / "workers.yaml"
    path.write_text(replicas_last("workers", 12))
    process = daemon("--destructive-settle", str(WINDOW))
    wait_until(lambda: running_slots(service) == list(range(1, 13)), what="12 running workers")
    ids = {s["id"] for s in service.live()}
    whole = replicas_last("workers", 12)
    cut = whole.index("replicas: 12") + len("replicas: 1")
    with path.open("w") as stream:
        stream.write(whole[:cut])
        stream.flush()
        seen = wait_until(lambda: process.status().get("pending_changes"), timeout=4.0,
                          what="the torn write shown as a pending scale-down")
        time.sleep(max(0.0, 2.0 - 0.1))  # the rest of a 2 s stall
        stream.write(whole[cut:])
    assert [(p["change"], p["sessions"]) for p in seen] == [("scale-down 12→1", 11)]
    wait_until(lambda: process.status().get("pending_changes") == [], what="the pending change gone")
    process.wait_passes(int(WINDOW / 0.5) + 4)  # well past the window
    assert service.requests("DELETE") == []
    assert {s["id"] for s in service.live()} == ids
    assert process.stop() == 0


def test_a_finished_scale_down_acts_once_the_file_has_been_unchanged_for_the_window(service, state, daemon):
    path = state / "workers.yaml"
    path.write_text(manifest("workers", 4))
    process = daemon("--destructive-settle", str(WINDOW))
    wait_until(lambda: running_slots(service) == [1, 2, 3, 4], what="4 running workers")
    path.write_text(manifest("workers", 2))
    written = time.monotonic()
    wait_until(lambda: service.requests("DELETE"), timeout=WINDOW + 10, what="the scale-down")
    assert time.monotonic() - written >= WINDOW - 0.5  # not before the window (mtime has 1 s granularity at worst)
    wait_until(lambda: running_slots(service) == [1, 2], what="2 workers left")
    assert process.stop() == 0


@pytest.mark.usefixtures("env")
def test_plan_and_status_show_a_held_scale_down_and_run_once_holds_it(service, state, capsys):
    """A file written just now: `plan` and `run --once` hold its scale-down and say when it acts;
    `--destructive-settle 0` acts at once."""
    (state / "w.yaml").write_text(manifest("workers", 3))
    assert main(["run", "--state", str(state), "--once"]) == 0
    (state / "w.yaml").write_text(manifest("workers", 1))
    capsys.readouterr()
    assert main(["plan", "--state", str(state)]) == 0  # nothing would change now
    assert "pending workers: scale-down 3→1 acts at" in capsys.readouterr().out
    assert main(["run", "--state", str(state), "--once"]) == 0
    assert service.requests("DELETE") == []
    capsys.readouterr()
    assert main(["status", "--state", str(state)]) == 0
    assert "pending workers: scale-down 3→1 acts at" in capsys.readouterr().out
    assert main(["run", "--state", str(state), "--once", "--destructive-settle", "0"]) == 0
    assert len(service.requests("DELETE")) == 2
