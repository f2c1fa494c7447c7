"""`run --simulator`, the README's demo: what it prints works as printed, in a new terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from controller.cli import main
from tests.controller.conftest import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


class Demo:
    """`canfar-controller run --simulator` as a process, its stderr collected line by line."""

    def __init__(self, state: Path, env: dict[str, str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller", "run", "--simulator", "--state", str(state),
             "--metrics-port", "0", "--interval", "0.5"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
        )
        assert self.process.stderr is not None
        threading.Thread(target=lambda: self.lines.extend(iter(self.process.stderr.readline, "")),  # type: ignore[union-attr]
                         daemon=True).start()

    def watch_commands(self) -> list[str]:
        """The indented command lines after "watch it from another terminal:"."""
        wait_until(lambda: any(" sessions ps" in line for line in self.lines), what="the demo banner")
        start = next(i for i, line in enumerate(self.lines) if "watch it from another terminal" in line)
        return [line.strip() for line in self.lines[start + 1:start + 4]]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


def in_a_new_terminal(tmp_path: Path, export: str, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` after ``export`` in bash, elsewhere, as a login shell would run it: the same user's
    state directory, but no venv on PATH and no CANFAR_* variables."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "xdg"),
           "LANG": "C.UTF-8"}
    return subprocess.run([shutil.which("bash") or "/bin/bash", "-c", f"{export}\n{command}"], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def watch_a_demo(tmp_path: Path) -> None:
    """Start a demo from the repository root, and run its banner's commands in a new terminal."""
    daemon_env = {**{k: v for k, v in os.environ.items() if not k.startswith("CANFAR_")},
                  "XDG_STATE_HOME": str(tmp_path / "xdg")}
    demo = Demo(EXAMPLES.relative_to(EXAMPLES.parents[1]), daemon_env, cwd=EXAMPLES.parents[1])
    try:
        export, status, ps = demo.watch_commands()
        assert export.startswith("export CANFAR_URL=http://127.0.0.1:") and " CANFAR_TOKEN=" in export
        assert status.split()[0] == ps.split()[0] and Path(status.split()[0]).is_absolute()
        shown = wait_until(lambda: (done := in_a_new_terminal(tmp_path, export, status)).returncode == 0
                           and "last pass" in done.stdout and done, what="status from a new terminal")
        assert {"workers", "batch", "reduce", "notebook"} <= {line.split()[0] for line in shown.stdout.splitlines()}
        listed = wait_until(lambda: "cc-workers-" in (done := in_a_new_terminal(tmp_path, export, ps)).stdout
                            and done, what="sessions ps from a new terminal")
        assert listed.returncode == 0
    finally:
        demo.stop()


def test_the_printed_watch_commands_run_verbatim_in_a_new_terminal(tmp_path):
    """Copied into a new shell elsewhere (no venv on PATH), the banner's commands show the demo's sets and
    sessions; a second demo of the same directory keeps the one status directory."""
    watch_a_demo(tmp_path)
    watch_a_demo(tmp_path)
    assert len(list((tmp_path / "xdg" / "canfar-controller").iterdir())) == 1


def test_a_server_with_the_simulator_is_refused(tmp_path, capsys):
    """`run --simulator --server URL` would ignore the URL: it is refused, naming the flag."""
    state = tmp_path / "state"
    state.mkdir()
    assert main(["run", "--simulator", "--state", str(state), "--server", "https://ws-uv.canfar.net/skaha/v1"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("canfar-controller: error: --simulator manages sessions on its own built-in service, "
                           "so --server cannot apply")


@pytest.mark.parametrize("command", ["status", "restart"])
def test_a_demo_status_needs_no_server(tmp_path, monkeypatch, capsys, command):
    """`status --simulator` and `restart SET --simulator` find a demo's files without its (random) URL."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    for key in ("CANFAR_URL", "CANFAR_CONTROLLER_STATUS_FILE"):
        monkeypatch.delenv(key, raising=False)
    args = ["status"] if command == "status" else ["restart", "batch"]
    assert main([*args, "--state", str(EXAMPLES)]) == 1
    assert "cannot find the status file" in capsys.readouterr().err
    assert main([*args, "--simulator", "--state", str(EXAMPLES)]) == (1 if command == "status" else 0)
    assert "cannot find the status file" not in capsys.readouterr().err


def test_status_without_simulator_points_at_a_demo(tmp_path, monkeypatch, capsys):
    """The README's old habit (`status --state DIR` with the demo's URL exported) is told to add --simulator."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CANFAR_URL", "http://127.0.0.1:41873/skaha/v1")
    monkeypatch.delenv("CANFAR_CONTROLLER_STATUS_FILE", raising=False)
    assert main(["restart", "batch", "--simulator", "--state", str(EXAMPLES)]) == 0  # leaves the demo's directory
    demo_status = next((tmp_path / "xdg" / "canfar-controller").iterdir()) / "status.json"
    demo_status.write_text("{}")
    capsys.readouterr()
    assert main(["status", "--state", str(EXAMPLES)]) == 1
    assert capsys.readouterr().err == (
        f"canfar-controller: error: no daemon of {EXAMPLES} has written a status file for this server, "
        "but a `run --simulator` demo of it has: add --simulator to look at the demo\n")
