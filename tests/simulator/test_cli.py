"""``canfar-controller simulator`` serves until SIGINT/SIGTERM and exits 0."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


def wait_for_status(url: str, session_id: str, wanted: str, auth: dict[str, str]) -> dict[str, object]:
    """Poll one session until it has ``wanted`` status (the served simulator runs on a fast clock)."""
    deadline = time.monotonic() + 10
    while True:
        data = httpx.get(f"{url}/session/{session_id}", headers=auth).json()
        if data["status"] == wanted or time.monotonic() > deadline:
            assert data["status"] == wanted, data
            return data  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_images_file_replaces_and_image_adds(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--images FILE (GET /image's shape) replaces the catalogue; --image adds to it; both are public."""
    catalogue = tmp_path / "images.json"
    catalogue.write_text(json.dumps([{"id": "images.canfar.net/lab/tool:2", "types": ["headless"],
                                      "digest": "sha256:0"}]))
    _, url = launch("--images", str(catalogue), "--image", "images.canfar.net/lab/nb:1=notebook,headless",
                    "--time-scale", "1000")
    auth = {"Authorization": "Bearer x"}
    images = {image["id"]: image["types"] for image in httpx.get(url + "/image", headers=auth).json()}
    assert images == {"images.canfar.net/lab/tool:2": ["headless"],
                      "images.canfar.net/lab/nb:1": ["notebook", "headless"]}
    created = httpx.post(url + "/session", headers=auth, params={
        "name": "t", "image": "images.canfar.net/lab/tool:2", "cmd": "echo", "args": "from my image"})
    session_id = created.text.strip()
    wait_for_status(url, session_id, "Completed", auth)
    logs = httpx.get(f"{url}/session/{session_id}", params={"view": "logs"}, headers=auth).text
    assert logs == "from my image\n"


@pytest.mark.parametrize(("flag", "runs"), [([], False), (["--registry-auth"], True)])
def test_registry_auth_mode_runs_any_harbor_image(launch, flag: list[str], runs: bool) -> None:  # type: ignore[no-untyped-def]
    """With --registry-auth a private image runs given the header; without, it never pulls."""
    _, url = launch("--time-scale", "1000", *flag)
    auth = {"Authorization": "Bearer x", "x-skaha-registry-auth": base64.b64encode(b"me:secret").decode()}
    params = {"name": "p", "image": "images.canfar.net/me/private:1", "cmd": "true"}
    assert httpx.post(url + "/session", params=params, headers={"Authorization": "Bearer x"}).status_code == 400
    session_id = httpx.post(url + "/session", params=params, headers=auth).text.strip()
    if runs:
        wait_for_status(url, session_id, "Completed", auth)
    else:  # the pull fails from the start and is retried forever: no need to wait for anything
        events = httpx.get(f"{url}/session/{session_id}", params={"view": "events"}, headers=auth).text
        assert "Failed to pull image" in events and "Started container" not in events
        assert httpx.get(f"{url}/session/{session_id}", headers=auth).json()["status"] == "Pending"


def test_session_expiry_ends_interactive_sessions(launch) -> None:  # type: ignore[no-untyped-def]
    """--session-expiry sets the interactive lifetime: a notebook fails at it unless renewed."""
    _, url = launch("--session-expiry", "20", "--time-scale", "200")
    auth = {"Authorization": "Bearer x"}
    params = {"name": "nb", "image": "images.canfar.net/skaha/base-notebook:latest", "type": "notebook"}
    session_id = httpx.post(url + "/session", params=params, headers=auth).text.strip()
    data = wait_for_status(url, session_id, "Failed", auth)
    events = httpx.get(f"{url}/session/{session_id}", params={"view": "events"}, headers=auth).text
    assert "DeadlineExceeded" in events and data["expiryTime"] > data["startTime"]  # type: ignore[operator]


def test_ignored_renews_and_the_request_log(launch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--ignore-renews answers a renew 200 without moving the expiry; --request-log records every answer."""
    log = tmp_path / "requests.jsonl"
    _, url = launch("--ignore-renews", "--request-log", str(log), "--time-scale", "100")
    auth = {"Authorization": "Bearer x"}
    params = {"name": "nb", "image": "images.canfar.net/skaha/base-notebook:latest", "type": "notebook"}
    session_id = httpx.post(url + "/session", params=params, headers=auth).text.strip()
    before = wait_for_status(url, session_id, "Running", auth)
    time.sleep(0.1)  # 10 simulated seconds: a renew that worked would move the expiry
    assert httpx.post(f"{url}/session/{session_id}", params={"action": "renew"}, headers=auth).status_code == 200
    after = httpx.get(f"{url}/session/{session_id}", headers=auth).json()
    assert after["expiryTime"] == before["expiryTime"]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    renew = [r for r in lines if r["params"].get("action") == ["renew"]]
    assert [(r["method"], r["path"], r["status"]) for r in renew] == [("POST", f"/session/{session_id}", 200)]


@pytest.mark.parametrize(("args", "message"), [
    (["--image", "images.canfar.net/x:1"], "--image 'images.canfar.net/x:1': expected ID=TYPE[,TYPE]"),
    (["--image", "images.canfar.net/x:1=vm"], "types must be some of"),
    (["--image", "docker.io/x:1=headless"], "must come from one of the harbor hosts"),
    (["--images", "/nonexistent/images.json"], "--images /nonexistent/images.json: cannot read"),
    (["--session-expiry", "0"], "session_expiry must be positive"),
])
def test_bad_image_settings_exit_one(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong --image, --images or --session-expiry is named on stderr, exit 1, nothing served."""
    assert main(["simulator", "--port", "0", *args]) == 1
    assert message in capsys.readouterr().err


def test_images_file_of_the_wrong_shape_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --images file that is not GET /image's shape says which entry is wrong."""
    catalogue = tmp_path / "images.json"
    catalogue.write_text(json.dumps([{"id": "images.canfar.net/a:1", "types": "headless"}]))
    assert main(["simulator", "--port", "0", "--images", str(catalogue)]) == 1
    assert 'entry 0 (images.canfar.net/a:1): expected "types" to be a list' in capsys.readouterr().err


def test_help_explains_the_workload_model(capsys: pytest.CaptureFixture[str]) -> None:
    """``simulator --help`` says which commands end, how args are split, and what env prints."""
    with pytest.raises(SystemExit) as exited:
        main(["simulator", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("splits args on single spaces", "sh -c echo${IFS}hi;exit${IFS}3", "skaha_sessionid",
                     "runs until destroyed", "--registry-auth", "ID=TYPE[,TYPE]"):
        assert fragment in text


def first_session_id(url: str) -> str:
    response = httpx.post(url + "/session", headers={"Authorization": "Bearer x"},
                          data={"name": "job", "image": IMAGE, "cmd": "sleep", "args": "60"})
    response.raise_for_status()
    return response.text.strip()


def test_two_simulators_hand_out_different_ids_unless_seeded(launch) -> None:  # type: ignore[no-untyped-def]
    """Ids are random per simulator, so two demos never show the same ones; --seed replays a run."""
    ids = [first_session_id(launch()[1]) for _ in range(2)]
    assert ids[0] != ids[1]
    seeded = [first_session_id(launch("--seed", "7")[1]) for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_help_says_scaled_time_runs_ahead_of_the_wall_clock(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulator", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "timestamps (startTime, expiryTime, events) run ahead of the wall clock" in help_text


@pytest.mark.parametrize("command", ["simulator", "run"])
def test_a_busy_port_gets_one_message_from_both_commands(command: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`simulator --port` and `run --simulator-port` on a taken port say the same thing, naming their flag."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if command == "simulator":
            flag = "--port"
            assert main(["simulator", "--port", str(port)]) == 1
        else:
            flag = "--simulator-port"
            assert main(["run", "--simulator", "--state", str(tmp_path), "--simulator-port", str(port),
                         "--metrics-port", "0"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == (f"canfar-controller: error: cannot serve the simulator on 127.0.0.1:{port}: "
                    f"Address already in use; choose another {flag}")
