"""What the process-level benchmarks share: manifests, the daemon and canfar as processes, waiting, RSS.

The contenders are fresh processes, timed from the moment they are started until the simulator
(in this process) holds every session: the interpreter's start and imports count, as they do
for a user. The simulator is polled as an object, never over HTTP, so the waiting costs the
server nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controller.simulator import Simulator
from tests.controller.conftest import manifest

TOKEN = "bench-token-0123456789"
IMAGE = "images.canfar.net/skaha/astroml:latest"
#: Room for every session of every benchmark: nothing ever waits for capacity.
CORES, RAM_GB = 1_000_000.0, 10_000_000.0
#: How far in the past the manifests were written. A file modified less than the settle window
#: (1 s) ago is acted on only once it has stayed unchanged that long; the benchmarks measure
#: converging, not that wait, so their files are an hour old when the daemon starts.
MANIFEST_AGE = 3600.0
#: The canfar client caps ``replicas`` at 256 per call.
CANFAR_MAX_REPLICAS = 256

#: The official client creating ``total`` sessions like the manifests' (1 core, 1 GB, sleep), with
#: several concurrent ``create`` calls on one ``AsyncSession`` as its documentation shows.
CANFAR_SCRIPT = """\
import asyncio, sys
from canfar.sessions import AsyncSession

url, token, total, image, per_call = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])

async def main():
    session = AsyncSession(token=token, url=url)
    sizes = [min(per_call, total - start) for start in range(0, total, per_call)]
    calls = [session.create(name=f"bench{index}", image=image, cores=1, ram=1, cmd="sleep", args="100000",
                            replicas=size) for index, size in enumerate(sizes)]
    ids = [session_id for created in await asyncio.gather(*calls) for session_id in created]
    assert len(ids) == total, len(ids)

asyncio.run(main())
"""


@contextmanager
def simulator_process(*options: str) -> Iterator[str]:
    """``canfar-controller simulator`` in a child process (its CPU is not the caller's); yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "controller", "simulator", "--port", "0", "--token", TOKEN, *options],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def write_sets(state: Path, sets: int, replicas: int) -> None:
    """``sets`` SessionSets of ``replicas`` headless sessions each, written ``MANIFEST_AGE`` ago."""
    state.mkdir(parents=True, exist_ok=True)
    written = time.time() - MANIFEST_AGE
    for index in range(sets):
        path = state / f"set{index:03d}.yaml"
        path.write_text(manifest(f"set{index:03d}", replicas))
        os.utime(path, (written, written))


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any ``CANFAR_*`` setting, with a private HOME (canfar keeps ~/.canfar)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CANFAR_")}
    env["HOME"] = str(home)
    env.pop("XDG_STATE_HOME", None)
    return {**env, **extra}


def start_daemon(url: str, state: Path, work: Path) -> subprocess.Popen[bytes]:
    """``canfar-controller run`` with default settings (no metrics server, a private status file)."""
    return subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--state", str(state), "--server", url,
         "--metrics-port", "0", "--status-file", str(work / "status.json")],
        env=child_env(work, CANFAR_TOKEN=TOKEN), stdout=subprocess.DEVNULL,
        stderr=(work / "daemon.log").open("wb"),
    )


def start_canfar(url: str, total: int, work: Path) -> subprocess.Popen[bytes]:
    """canfar's ``AsyncSession`` creating ``total`` sessions, at most 256 per ``create`` call."""
    return subprocess.Popen(
        [sys.executable, "-c", CANFAR_SCRIPT, url, TOKEN, str(total), IMAGE, str(CANFAR_MAX_REPLICAS)],
        env=child_env(work), cwd=work, stdout=subprocess.DEVNULL, stderr=(work / "canfar.log").open("wb"),
    )


def wait_for_sessions(simulator: Simulator, count: int, process: subprocess.Popen[bytes], *,
                      timeout: float = 300.0, log: Path | None = None) -> float:
    """Wait until the simulator holds ``count`` sessions; the ``perf_counter`` time it first did.

    Fails if the process exits with an error first, or after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while len(simulator.cluster) < count:
        code = process.poll()
        if code not in (None, 0):
            raise AssertionError(f"the process exited with {code} before creating {count} sessions"
                                 + (f": {log.read_text()[-2000:]}" if log is not None else ""))
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(simulator.cluster)} of {count} sessions after {timeout} s")
        time.sleep(0.002)
    return time.perf_counter()


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the daemon's clean stop) and wait; kill if it hangs."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")
