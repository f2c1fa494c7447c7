"""The official ``canfar`` client's own server-facing tests, run unchanged against the simulator.

``canfar==1.5.2``'s source distribution ships its test suite. Its ``integration`` tests talk to a
live CANFAR service with a configured account: a session lifecycle that runs ``env`` and expects
``TEST=test`` in the logs, the image catalogue, the resource context and the availability check.
Here they run in a subprocess, with canfar's own pytest configuration, against a simulator on a
fast clock. Only the environment of that run (``CANFAR_URL``, ``CANFAR_TOKEN``, ``HOME`` in a
temporary directory) and ``canfar_shim`` (a ``-p`` plugin that sets the first two again after
canfar's own fixture clears them) point them at it.

``.ci/test`` downloads the sdist into ``.ci/cache/`` (``pip download --no-binary :all: --no-deps``);
without it these tests skip on a developer machine and fail in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.simulator import Simulator, SimulatorConfig, SimulatorServer
from tests.tools import missing

CANFAR_VERSION = "1.5.2"
ROOT = Path(__file__).resolve().parents[2]
SDIST = ROOT / ".ci" / "cache" / f"canfar-{CANFAR_VERSION}.tar.gz"
TOKEN = "peer-token"
#: Fast enough that canfar's one-second polls see a session complete on the next look.
TIME_SCALE = 50.0

#: The sdist's tests that talk to a server (marked ``integration``), each expected to pass here.
SERVER_FACING = (
    "tests/test_sessions_integration.py::test_sync_session_lifecycle_is_self_contained",
    "tests/test_sessions_integration.py::test_async_session_lifecycle_is_self_contained",
    "tests/test_images.py::test_images_fetch",
    "tests/test_images.py::test_images_with_kind",
    "tests/test_context.py::test_context",
    "tests/test_overview.py::test_available",
)
#: Server-facing tests that need the real platform, and why; they are deselected.
NEEDS_REAL_PLATFORM = {
    "tests/test_data_smoke.py::test_canfar_data_lists_live_primary_storage":
        "lists the CADC VOSpace storage 'arc:/' with a saved real X.509 certificate or OIDC login; "
        "VOSpace is a separate service the simulator does not provide",
}


@pytest.fixture(scope="module")
def sdist_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """canfar's source tree, unpacked from the cached sdist."""
    if not SDIST.is_file():
        missing(f"the canfar {CANFAR_VERSION} sdist ({SDIST.relative_to(ROOT)})")
    target = tmp_path_factory.mktemp("canfar-sdist")
    with tarfile.open(SDIST) as archive:
        archive.extractall(target, filter="data")
    return target / f"canfar-{CANFAR_VERSION}"


@pytest.fixture(scope="module")
def peer_simulator() -> Iterator[tuple[Simulator, str]]:
    """A simulator on the real clock, sped up, served over loopback HTTP."""
    simulator = Simulator(SimulatorConfig(token=TOKEN, time_scale=TIME_SCALE))
    with SimulatorServer(simulator) as server:
        yield simulator, server.url


def run_canfar_tests(tree: Path, url: str, home: Path, report: Path) -> subprocess.CompletedProcess[str]:
    """canfar's integration tests as its own config runs them, minus coverage and xdist options."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CANFAR_", "PYTEST_"))}
    env.update({
        "HOME": str(home), "CANFAR_TEST_HOME": str(home),
        # Session-scoped fixtures (images, context) are built before canfar clears CANFAR_*; the
        # shim sets them again for each test.
        "CANFAR_URL": url, "CANFAR_TOKEN": TOKEN,
        "PEER_CANFAR_URL": url, "PEER_CANFAR_TOKEN": TOKEN,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(tree)]),
    })
    command = [sys.executable, "-m", "pytest", "-p", "canfar_shim", "-o", "addopts=", "-m", "integration",
               "-p", "no:cacheprovider", "--junitxml", str(report), "-q", "tests",
               *(f"--deselect={test}" for test in NEEDS_REAL_PLATFORM)]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=300, check=False)


def outcomes(report: Path) -> dict[str, str]:
    """Test id -> passed/failed/skipped/error, read from pytest's JUnit XML."""
    results = {}
    for case in ElementTree.parse(report).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        test_id = f"{module}.py::{case.get('name')}"
        verdict = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        results[test_id] = verdict
    return results


@pytest.mark.timeout(600)  # installs and runs another project's test suite
def test_canfar_own_server_facing_tests_pass_against_the_simulator(
        sdist_tree: Path, peer_simulator: tuple[Simulator, str], tmp_path: Path) -> None:
    """Every server-facing test of canfar's suite passes, and really talked to the simulator."""
    simulator, url = peer_simulator
    result = run_canfar_tests(sdist_tree, url, tmp_path / "home", tmp_path / "report.xml")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert outcomes(tmp_path / "report.xml") == dict.fromkeys(SERVER_FACING, "passed")
    created = [request for request in simulator.requests if request.method == "POST" and request.path == "/session"]
    assert [request.param("cmd") for request in created] == ["env", "env"]
    assert {request.path for request in simulator.requests} >= {"/image", "/context", "/session"}


def test_every_server_facing_test_is_run_or_excused(sdist_tree: Path) -> None:
    """No integration test of the sdist is left out silently: each is run here or listed with a reason."""
    marked = set()
    for path in sorted((sdist_tree / "tests").glob("test_*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if line.strip() == "@pytest.mark.integration":
                test = next(row for row in lines[index:] if row.lstrip().startswith(("def ", "async def ")))
                name = test.split("def ", 1)[1].split("(", 1)[0]
                marked.add(f"tests/{path.name}::{name}")
    assert marked == set(SERVER_FACING) | set(NEEDS_REAL_PLATFORM)
