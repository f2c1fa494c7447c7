"""What the daemon and `restart` tell an operator: a restart request, a daemon that is not running."""

from __future__ import annotations

import json
import os
import time

from controller.cli import main
from tests.controller.conftest import manifest, wait_until


def test_a_restart_request_is_logged_as_a_restart_of_the_set(service, state, daemon, capsys):
    (state / "batch.yaml").write_text(manifest("batch", 1))
    process = daemon("--interval", "60")
    # Settled and acted on: the next pass is a minute away, so only the request can start one now.
    wait_until(lambda: service.live() and "batch" in process.status().get("sets", {}), what="the settled pass")
    assert main(["restart", "batch", "--state", str(state), "--status-file", str(process.status_file)]) == 0
    assert "warning" not in capsys.readouterr().err  # the daemon wrote its status file just now

    def requested() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in process.log_file.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line["event"] == "pass requested"]

    [request] = wait_until(requested, what=f"the restart to be noticed (log: {process.log_tail()})")
    assert request["cause"] == "restart of batch"
    requests = process.status_file.with_name("status.requests")
    wait_until(lambda: not any(requests.iterdir()), what="the request to be consumed")
    time.sleep(1.5)  # three watch periods: a consumed request asks for no pass of its own
    assert len(requested()) == 1


def test_restart_without_a_daemon_says_the_request_waits(state, tmp_path, capsys):
    """No status file, or one not written for a while: the request is left, and `restart` says it waits."""
    (state / "batch.yaml").write_text(manifest("batch", 1))
    status_file = tmp_path / "status.json"
    assert main(["restart", "batch", "--state", str(state), "--status-file", str(status_file)]) == 0
    captured = capsys.readouterr()
    assert "restart of batch requested" in captured.out
    assert captured.err == (f"canfar-controller: warning: no daemon has written the status file {status_file} yet, "
                            "so the request waits for the next start\n")
    status_file.write_text("{}")
    twelve_minutes_ago = time.time() - 12 * 60
    os.utime(status_file, (twelve_minutes_ago, twelve_minutes_ago))
    assert main(["restart", "batch", "--state", str(state), "--status-file", str(status_file)]) == 0
    assert capsys.readouterr().err == (f"canfar-controller: warning: no daemon has written the status file "
                                       f"{status_file} for 12 minutes, so the request waits for the next start\n")
