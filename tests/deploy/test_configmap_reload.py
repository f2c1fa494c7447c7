"""A ConfigMap edit reaches the running controller without a restart (the chart relies on it).

The kubelet updates a ConfigMap volume atomically: the files live in a hidden timestamped directory,
``..data`` links to it, and each key is a link ``<key> -> ..data/<key>``. An update writes a new
directory and renames a new ``..data`` link over the old one. This test builds that exact layout,
runs the real daemon against the simulator, swaps ``..data`` as the kubelet would, and watches
/metrics for the new desired state.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.containers import free_port
from tests.deploy.generated import EXAMPLES

WORKERS = (EXAMPLES / "workers.yaml").read_text()


class AtomicVolume:
    """A directory laid out and updated the way the kubelet's AtomicWriter does it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def write(self, files: dict[str, str]) -> None:
        self.generation += 1
        payload = self.root / f"..2026_01_01_00_00_{self.generation:02d}.000000001"
        payload.mkdir()
        for key, text in files.items():
            (payload / key).write_text(text)
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        (self.root / "..data_tmp").symlink_to(payload.name)
        os.rename(self.root / "..data_tmp", self.root / "..data")
        for key in files:
            if not (self.root / key).is_symlink():
                (self.root / key).symlink_to(f"..data/{key}")
        for link in self.root.iterdir():
            if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
                link.unlink()
        if old is not None:
            for item in (self.root / old).iterdir():
                item.unlink()
            (self.root / old).rmdir()


def desired_replicas(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    pattern = r'^canfar_controller_sessionset_desired_replicas\{sessionset="([^"]+)"\} (\S+)$'
    return {name: float(value) for name, value in re.findall(pattern, text, re.MULTILINE)}


def wait_for(port: int, expected: dict[str, float], *, seconds: float = 30) -> dict[str, float]:
    deadline = time.monotonic() + seconds
    seen = desired_replicas(port)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.3)
        seen = desired_replicas(port)
    return seen


@pytest.fixture
def volume(tmp_path: Path) -> AtomicVolume:
    root = tmp_path / "sessionsets"
    root.mkdir()
    state = AtomicVolume(root)
    state.write({"workers.yaml": WORKERS})
    return state


@pytest.fixture
def controller(volume: AtomicVolume, tmp_path: Path) -> Iterator[int]:
    """`canfar-controller run --simulator` on the volume; yields its metrics port."""
    port = free_port()
    script = Path(sys.executable).parent / "canfar-controller"
    log = (tmp_path / "controller.log").open("w")
    process = subprocess.Popen(
        [str(script), "run", "--simulator", "--state", str(volume.root), "--interval", "1",
         "--metrics-port", str(port), "--status-file", str(tmp_path / "status.json")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        print((tmp_path / "controller.log").read_text()[-3000:])


def test_configmap_update_is_picked_up_without_restart(volume: AtomicVolume, controller: int) -> None:
    """Changing replicas and adding a key, as `kubectl edit configmap` would, changes the desired state."""
    assert wait_for(controller, {"workers": 3.0}) == {"workers": 3.0}
    batch = (EXAMPLES / "batch.yaml").read_text()
    volume.write({"workers.yaml": WORKERS.replace("replicas: 3", "replicas: 5"), "batch.yaml": batch})
    assert wait_for(controller, {"workers": 5.0, "batch": 2.0}) == {"workers": 5.0, "batch": 2.0}
