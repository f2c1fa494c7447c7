"""Finding the real tools tests drive: missing ones skip locally but fail in CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip (on a developer machine) or fail (in CI, where a skipped real-tool test would hide a gap)."""
    message = f"{what} is not available; `bash .ci/test` installs it"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The absolute path of command ``name``, also looking in the venv and the tools dir."""
    extra = [str(Path(__file__).resolve().parent.parent / ".ci" / "tools" / "node_modules" / ".bin")]
    venv_bin = Path(os.sys.executable).parent
    path = shutil.which(name, path=os.pathsep.join([str(venv_bin), os.environ.get("PATH", ""), *extra]))
    if path is None:
        missing(f"command {name!r}")
    return path  # type: ignore[return-value]
