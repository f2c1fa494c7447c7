"""Restart requests: ``canfar-controller restart SET`` leaves a file; the next pass consumes it.

A request makes the set run afresh: its finished slots run again, its restart histories and
create back-off are forgotten (``Memory.forget_set``). The files live beside the status file
(``…requests/restart.<set>``), so the command needs no connection to the running controller, and
a new request wakes the daemon like a manifest change.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from controller.plan import Memory


def requests_dir(status_file: Path) -> Path:
    """Where ``canfar-controller restart`` leaves requests for the controller of ``status_file``."""
    return status_file.with_name(f"{status_file.name.removesuffix('.json')}.requests")


def request_restart(status_file: Path, set_name: str) -> Path:
    """Ask the controller of ``status_file`` to run ``set_name`` afresh at its next pass."""
    directory = requests_dir(status_file)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"restart.{set_name}"
    path.write_text(f"{set_name}\n")
    return path


class RestartRequests:
    """Reads and consumes the restart requests of one controller."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        #: Requests applied but not removable (another user's file): their stamp, so they apply once.
        self._applied: dict[Path, int] = {}
        self._log = structlog.get_logger("canfar_controller")

    def pending(self) -> tuple[str, ...]:
        """The request files there now (the daemon's watch wakes the loop when they change)."""
        if self.directory is None:
            return ()
        try:
            return tuple(sorted(entry.name for entry in os.scandir(self.directory)))
        except OSError:
            return ()

    def take(self, memory: Memory) -> None:
        """Carry out every request in the directory on ``memory``, and remove it."""
        if self.directory is None or not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("restart.*")):
            try:
                stamp = path.stat().st_mtime_ns
            except OSError:
                continue
            if self._applied.get(path) == stamp:
                continue  # applied already; it could not be removed (see below)
            name = path.name.removeprefix("restart.")
            memory.forget_set(name)
            self._log.info("restart requested: the set runs afresh", sessionset=name)
            try:
                path.unlink()
            except OSError as exc:
                # Applied once all the same; a request the controller cannot remove (written by
                # another user) must not restart the set again on every pass.
                self._applied[path] = stamp
                self._log.error("cannot remove a restart request after applying it; it is ignored until it "
                                "changes", path=str(path), error=str(exc))
