""".ci/packages: on a fresh Debian (no npm, nothing installed) the test command installs Node.js and npm too.

The system tools are replaced by recording stubs on ``PATH``: the script's decisions are what we test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "packages"


def stub_system(tmp_path: Path, *, installed: bool, with_npm: bool) -> tuple[Path, Path]:
    """A ``PATH`` directory with dpkg-query, apt-get, sudo and id stubs; apt-get records its arguments."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    status = "install ok installed" if installed else "unknown ok not-installed"
    stubs = {
        "dpkg-query": f"printf '{status}'",
        "apt-get": f'echo "$*" >> {log}',
        "sudo": '"$@"',
        "id": "echo 1000",
    }
    if with_npm:
        stubs["npm"] = "exit 0"
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    grep = shutil.which("grep")
    assert grep is not None
    (bin_dir / "grep").symlink_to(grep)
    return bin_dir, log


def run_script(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run([bash, str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True,
                          timeout=30, check=False)


def test_fresh_debian_gets_nodejs_and_npm_with_the_other_packages(tmp_path: Path) -> None:
    bin_dir, log = stub_system(tmp_path, installed=False, with_npm=False)
    done = run_script(bin_dir)
    assert done.returncode == 0, done.stderr
    install = [line.split() for line in log.read_text().splitlines() if line.startswith("install")]
    assert len(install) == 1
    assert {"nodejs", "npm", "prometheus", "podman", "buildah"} <= set(install[0])
    assert "nodejs npm" in done.stderr  # says what it installs


def test_a_machine_with_everything_installs_nothing(tmp_path: Path) -> None:
    bin_dir, log = stub_system(tmp_path, installed=True, with_npm=True)
    done = run_script(bin_dir)
    assert done.returncode == 0, done.stderr
    assert not log.exists()
