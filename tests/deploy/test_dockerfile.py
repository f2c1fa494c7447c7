"""The Dockerfile as text: hadolint-clean, and the build context stays small."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.generated import ROOT
from tests.deploy.kube import STATE_DIR, STATUS_FILE
from tests.tools import require_tool

DOCKERFILE = ROOT / "Dockerfile"


def test_dockerfile_is_hadolint_clean() -> None:
    """hadolint reports nothing at its default threshold."""
    tool = require_tool("hadolint")
    proc = subprocess.run([tool, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_hadolint_catches_an_unpinned_apt_install(tmp_path) -> None:
    """The lint above can fail: a typical sloppy line is reported."""
    tool = require_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        DOCKERFILE.read_text().replace("RUN groupadd", "RUN apt-get install -y curl && groupadd", 1)
    )
    proc = subprocess.run([tool, str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "DL3008" in proc.stdout


def test_dockerignore_admits_only_the_package_and_its_metadata() -> None:
    """Everything is excluded except pyproject.toml, README.md and controller/ (no .venv, .git or tests)."""
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!controller/",
    }


def test_image_defaults_are_the_paths_the_deployments_use() -> None:
    """The image's default state directory and status file are those the Deployments pass, so
    `kubectl exec deploy/canfar-controller -- canfar-controller status` (or `restart SET`) finds the daemon's files."""
    env = dict(re.findall(r"(CANFAR_CONTROLLER_\w+)=(\S+)", DOCKERFILE.read_text()))
    assert (env["CANFAR_CONTROLLER_STATE"], env["CANFAR_CONTROLLER_STATUS_FILE"]) == (STATE_DIR, STATUS_FILE)
