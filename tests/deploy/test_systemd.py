"""manifests/systemd: the unit passes `systemd-analyze verify` silently and keeps its hardening."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.generated import MANIFESTS
from tests.tools import require_tool

UNIT = MANIFESTS / "systemd" / "canfar-controller.service"
SYSUSERS = MANIFESTS / "systemd" / "canfar-controller.sysusers"
SHIPPED_BINARY = "/opt/canfar-controller/bin/canfar-controller"


def directives(text: str) -> dict[str, list[str]]:
    """Key -> every value it is given in the [Service] section (continuation lines joined)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(" ".join(value.split()))
    return found


def local_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's console script, which exists on this machine."""
    script = Path(sys.executable).parent / "canfar-controller"
    text = UNIT.read_text()
    assert SHIPPED_BINARY in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(SHIPPED_BINARY, str(script)))
    return copy


def test_unit_verifies_with_nothing_on_stderr(tmp_path: Path) -> None:
    """systemd-analyze verify exits 0 and prints nothing: unknown keys and bad values only warn."""
    tool = require_tool("systemd-analyze")
    proc = subprocess.run(
        [tool, "verify", str(local_copy(tmp_path))], capture_output=True, text=True, timeout=120
    )
    assert (proc.returncode, proc.stderr) == (0, "")


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelled key shows up on stderr."""
    tool = require_tool("systemd-analyze")
    copy = local_copy(tmp_path)
    copy.write_text(copy.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    proc = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, timeout=120)
    assert "NoNewPrivilege" in proc.stderr


def test_unit_exposure_is_low(tmp_path: Path) -> None:
    """systemd-analyze security rates the sandbox as OK (exposure below 2 on its 0-10 scale)."""
    tool = require_tool("systemd-analyze")
    proc = subprocess.run(
        [tool, "security", "--offline=true", str(local_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert match is not None, proc.stdout + proc.stderr
    assert float(match.group(1)) < 2.0, proc.stdout


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("User", "canfar-controller"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("Restart", "on-failure"),
        ("StateDirectory", "canfar-controller"),
        ("ConfigurationDirectory", "canfar-controller"),
        ("LoadCredential", "token:/etc/canfar-controller/token"),
        ("CapabilityBoundingSet", ""),
    ],
)
def test_unit_sets_hardening_directive(key: str, value: str) -> None:
    """The issue's promises: dedicated user, read-only system, no privilege gain, credentials, restart."""
    assert value in directives(UNIT.read_text()).get(key, [])


def test_exec_start_reads_state_writes_status_and_takes_the_token_credential() -> None:
    """The daemon gets the state dir, a status file in StateDirectory, and the token from LoadCredential."""
    (exec_start,) = directives(UNIT.read_text())["ExecStart"]
    assert exec_start.startswith(f"{SHIPPED_BINARY} run ")
    assert "--state /etc/canfar-controller/sessionsets" in exec_start
    assert "--status-file /var/lib/canfar-controller/status.json" in exec_start
    assert "--token-file %d/token" in exec_start


def test_token_never_appears_in_the_environment() -> None:
    """No CANFAR_TOKEN= in the unit: environment variables leak through /proc and `systemctl show`."""
    assert "CANFAR_TOKEN=" not in UNIT.read_text()


def test_sysusers_file_creates_the_service_user(tmp_path: Path) -> None:
    """The shipped sysusers.d snippet is accepted by systemd-sysusers and creates the unit's User=."""
    tool = require_tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        (tmp_path / "etc" / name).write_text(
            "root:x:0:0:root:/root:/bin/sh\n" if name == "passwd" else "root:x:0:\n"
        )
    proc = subprocess.run(
        [tool, "--dry-run", f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Creating user 'canfar-controller'" in proc.stdout + proc.stderr
