"""The shipped Dockerfile, built with buildah and run with podman: read-only, non-root, the demo answers.

Slow: the first run builds a Debian stand-in for python:3.11-slim with debootstrap (about a minute);
later runs reuse it from the cache and only rebuild the project image.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deploy import containers
from tests.deploy.generated import EXAMPLES, ROOT
from tests.tools import missing, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # builds images (the first test waits for them)

TAG = "localhost/canfar-controller:test"
STATE = "/etc/canfar-controller/sessionsets"
STATUS_DIR = "/var/lib/canfar-controller"


@pytest.fixture(scope="module")
def podman() -> str:
    if os.geteuid() != 0:
        missing("root (podman/buildah/debootstrap as used here need it)")
    return require_tool("podman")


@pytest.fixture(scope="module")
def image(podman: str) -> str:
    """The project image, built from the repository with the Dockerfile unchanged."""
    buildah = require_tool("buildah")
    require_tool("runc")
    base = containers.ensure_standin_base(
        podman_bin=podman, buildah_bin=buildah, debootstrap_bin=require_tool("debootstrap")
    )
    containers.build(buildah, ROOT, TAG, file=ROOT / "Dockerfile", build_args={"BASE_IMAGE": base})
    return TAG


def podman_run(podman: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return containers.podman(podman, "run", "--rm", *containers.RUN_FLAGS, *args, timeout=timeout)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_image_prints_its_version(podman: str, image: str) -> None:
    """The entrypoint is the console script: `--version` needs no subcommand, network or writable disk."""
    proc = podman_run(podman, "--network=none", "--read-only", image, "--version")
    assert proc.stdout.strip() == "canfar-controller 0.1.0"


def test_image_runs_as_a_non_root_user(podman: str, image: str) -> None:
    """The image's default user is not root."""
    proc = containers.podman(podman, "image", "inspect", "--format", "{{.Config.User}}", image)
    user = proc.stdout.strip()
    assert user and user.split(":")[0] not in ("", "0", "root")


def test_final_image_holds_no_build_tools(podman: str, image: str) -> None:
    """Multi-stage: no source tree, and the venv carries no pip or setuptools."""
    proc = podman_run(
        podman,
        "--network=none",
        "--read-only",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "ls /src 2>&1; ls /opt/canfar-controller/bin",
    )
    assert "No such file" in proc.stdout
    assert "canfar-controller" in proc.stdout.split()
    assert not {"pip", "pip3"} & set(proc.stdout.split())


@contextlib.contextmanager
def daemon(podman: str, image: str, status_dir: Path, port: int) -> Iterator[str]:
    """`run --simulator` with the example SessionSets, read-only root, on the host's loopback."""
    name = f"canfar-controller-test-{uuid.uuid4().hex[:8]}"
    containers.podman(
        podman,
        "run",
        "--detach",
        "--name",
        name,
        *containers.RUN_FLAGS,
        "--network=host",
        "--read-only",
        "-v",
        f"{EXAMPLES}:{STATE}:ro",
        "-v",
        f"{status_dir}:{STATUS_DIR}",
        "-e",
        "CANFAR_CONTROLLER_METRICS_HOST=127.0.0.1",
        # No --state or --status-file: the image's defaults must point at the two mounts.
        image,
        "run",
        "--simulator",
        "--interval",
        "2",
        "--metrics-port",
        str(port),
    )
    try:
        yield name
    finally:
        logs = subprocess.run(
            [podman, *containers.storage_flags(), "logs", name], capture_output=True, text=True, timeout=60
        )
        subprocess.run(
            [podman, *containers.storage_flags(), "rm", "--force", "--time", "5", name],
            capture_output=True,
            timeout=120,
        )
        print(f"--- container logs ---\n{logs.stdout}{logs.stderr}")


def test_simulator_demo_is_healthy_on_a_read_only_root(podman: str, image: str, tmp_path: Path) -> None:
    """The demo answers /healthz from the host and writes its status file to the status volume."""
    status_dir = tmp_path / "status"
    status_dir.mkdir()
    os.chown(status_dir, 10001, 10001)  # the image's user; the rest of the filesystem is read-only
    port = containers.free_port()
    with daemon(podman, image, status_dir, port):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                http_status(f"http://127.0.0.1:{port}/healthz") == 200
                and (status_dir / "status.json").exists()
            ):
                break
            time.sleep(0.5)
        assert http_status(f"http://127.0.0.1:{port}/healthz") == 200
        assert (status_dir / "status.json").exists()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"canfar_controller_" in response.read()


def test_second_container_on_the_same_state_directory_refuses(
    podman: str, image: str, tmp_path: Path
) -> None:
    """Single writer across containers: the state-directory lock makes a second controller exit 1."""
    status_dir = tmp_path / "status"
    status_dir.mkdir()
    os.chown(status_dir, 10001, 10001)
    with daemon(podman, image, status_dir, containers.free_port()) as first:
        deadline = time.monotonic() + 60
        while not (status_dir / "status.json").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (status_dir / "status.json").exists(), f"{first} never completed a pass"
        second = subprocess.run(
            [podman, *containers.storage_flags(), "run", "--rm", *containers.RUN_FLAGS, "--network=none",
             "--read-only", "-v", f"{EXAMPLES}:{STATE}:ro", image, "run", "--simulator"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert second.returncode == 1, second.stdout + second.stderr
    assert "another canfar-controller is already managing" in second.stdout + second.stderr


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_status_restart_and_memory_work_in_the_image_defaults(podman: str, image: str, tmp_path: Path) -> None:
    """With no flags, `status` and `restart SET` run in the container find the daemon's files; the memory
    (ledger) and the restart request are written beside the status file, on the status volume."""
    status_dir = tmp_path / "status"
    status_dir.mkdir()
    os.chown(status_dir, 10001, 10001)
    with daemon(podman, image, status_dir, containers.free_port()) as name:
        wait_until("the first pass and its memory", lambda: (status_dir / "status.json").exists()
                   and (status_dir / "status.memory.json").exists())
        status = containers.podman(podman, "exec", name, "canfar-controller", "status")
        assert {"batch", "notebook", "workers"} <= set(status.stdout.split())
        restart = containers.podman(podman, "exec", name, "canfar-controller", "restart", "batch")
        assert "restart of batch requested" in restart.stdout
        requests = status_dir / "status.requests"
        assert requests.is_dir()
        # The daemon takes the request at its next pass (every 2 s here) and removes it.
        wait_until("the daemon to take the restart request", lambda: not any(requests.iterdir()))
