"""The daemon's memory on a real, small tmpfs that fills up mid scale-up (issue 16), as a real process.

Mounting needs root (CI has it); elsewhere the test skips, and under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main
from tests.controller.conftest import manifest, wait_until
from tests.controller.test_daemon import running_slots, slots
from tests.tools import missing

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted at teardown."""
    mount = tmp_path / "memory"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        missing(f"mounting a tmpfs (root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as stream:
        while True:
            try:
                stream.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        while True:  # the last bytes, a little at a time
            try:
                stream.write(b"\0" * 512)
            except OSError:
                break
    return filler


def test_a_full_memory_disk_stops_creates_and_the_daemon_resumes_unaided(service, state, daemon, small_disk):
    """3 -> 40 while the memory's disk is full: creates stop without a traceback, the condition is
    warned about once; space freed, the daemon resumes by itself and every slot has one session."""
    status_file = small_disk / "status.json"
    (state / "workers.yaml").write_text(manifest("workers", 3))
    process = daemon("--status-file", str(status_file), "--max-creates-per-pass", "40")
    process.status_file = status_file  # the last --status-file wins: the memory lives on the small disk
    process.wait_passes(2)
    wait_until(lambda: running_slots(service) == [1, 2, 3], what="3 running workers")
    filler = fill(small_disk)
    (state / "workers.yaml").write_text(manifest("workers", 40))
    log = process.log_file
    wait_until(lambda: "memory cannot be written" in log.read_text(), what="the MemoryUnwritable warning")
    creates = len(service.requests("POST"))
    lists = len(service.requests("GET", lists_only=True))
    wait_until(lambda: len(service.requests("GET", lists_only=True)) >= lists + 3, what="three more passes")
    assert len(service.requests("POST")) == creates < 40  # no create while it lasts
    filler.unlink()  # space comes back: no manual step
    wait_until(lambda: running_slots(service) == list(range(1, 41)), timeout=60, what="40 distinct running slots")
    text = log.read_text()
    assert text.count("memory cannot be written") == 1 and text.count("can be written again") == 1
    assert "Traceback" not in text and "never retrieved" not in text and "pass crashed" not in text
    assert text.count("cannot write status file") == 1  # the status file shares the disk: said once too
    status = process.wait_passes(2)
    assert status["memory_unwritable"] is None
    assert collections.Counter(slots(service.live())) == collections.Counter(range(1, 41))
    assert process.stop() == 0
    assert main(["memory", "check", "--status-file", str(status_file)]) == 0
    assert json.loads(status_file.read_text())["memory_unwritable"] is None
    assert os.path.ismount(small_disk)
