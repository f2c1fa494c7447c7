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
CANFAR_CONFIG_DROP_IN = MANIFESTS / "systemd" / "canfar-controller.service.d" / "canfar-config.conf"
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


def with_drop_in(tmp_path: Path) -> Path:
    """The local unit copy plus the canfar-config drop-in in ``<unit>.d/``, where systemd looks for it."""
    unit = local_copy(tmp_path)
    script = Path(sys.executable).parent / "canfar-controller"
    drop_in = tmp_path / f"{UNIT.name}.d" / CANFAR_CONFIG_DROP_IN.name
    drop_in.parent.mkdir()
    drop_in.write_text(CANFAR_CONFIG_DROP_IN.read_text().replace(SHIPPED_BINARY, str(script)))
    return unit


def test_the_canfar_config_drop_in_verifies_and_keeps_the_sandbox(tmp_path: Path) -> None:
    """With the drop-in the unit still verifies silently, and its exposure stays low."""
    tool = require_tool("systemd-analyze")
    unit = with_drop_in(tmp_path)
    proc = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    proc = subprocess.run([tool, "security", "--offline=true", str(unit)], capture_output=True, text=True,
                          timeout=120)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout)
    assert match is not None and float(match.group(1)) < 2.0, proc.stdout + proc.stderr


def test_the_drop_in_replaces_the_token_with_the_canfar_config_credential() -> None:
    """ExecStart and LoadCredential are reset (not added to), and the server comes from the config."""
    found = directives(CANFAR_CONFIG_DROP_IN.read_text())
    assert found["ExecStart"][0] == "" and found["LoadCredential"] == ["", "canfar-config:/etc/canfar-controller/"
                                                                           "canfar-config.yaml"]
    command = found["ExecStart"][1]
    assert "--canfar-config %d/canfar-config" in command and "--token-file" not in command
    assert "--state /etc/canfar-controller/sessionsets" in command
    assert "--status-file /var/lib/canfar-controller/status.json" in command
    assert found["Environment"] == ["CANFAR_URL="]


def test_the_drop_in_command_line_is_one_the_controller_accepts(tmp_path: Path) -> None:
    """The drop-in's ExecStart flags parse (a typo there would only show when the service starts)."""
    from controller.cli import build_parser

    command = directives(CANFAR_CONFIG_DROP_IN.read_text())["ExecStart"][1].split()
    args = build_parser().parse_args([part.replace("%d", str(tmp_path)) for part in command[1:]])
    assert args.canfar_config == tmp_path / "canfar-config" and args.token_file is None
