"""Loading the state directory: every manifest file, validated on its own, with exact locations.

A file is the unit of validity. A file with any error contributes nothing new: the sets it
defined keep their last good spec (or, if they never had one, are left untouched) and are
reported invalid, while every other file applies normally. Two files defining the same set is an
error for that set only. ``DesiredState.complete`` is true only when everything parsed cleanly;
the planner prunes orphans only then, so a typo can never look like a deleted set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from controller.clock import file_clock
from controller.errors import ManifestError
from controller.manifestparse import Parsed, parse_file, parse_text
from controller.spec import DesiredState, SessionSet

SUFFIXES = (".yaml", ".yml", ".json")


def manifest_files(directory: Path) -> list[Path]:
    """Manifest files under ``directory``, sorted, skipping hidden entries (ConfigMap ``..data``)."""
    return _walk(directory)[0]


def _walk(directory: Path) -> tuple[list[Path], list[Path]]:
    """The manifest files under ``directory`` (sorted) and the directories walked to find them."""
    found, walked = [], []
    for root, dirs, files in os.walk(directory, followlinks=True):
        walked.append(Path(root))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, f) for f in files if f.endswith(SUFFIXES) and not f.startswith(".")]
    return sorted(found), walked


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """A cheap summary that changes when any manifest is added, removed or rewritten."""
    result = []
    for path in manifest_files(directory):
        try:
            stat = path.stat()
        except OSError:
            continue
        result.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(result)


#: How long a changed file must stay the same before it is acted on (see ``StateLoader``).
SETTLE_WINDOW = 1.0
#: How long the loader remembers when a set went (older removals fall back to the directory's last change).
_REMEMBER_REMOVED = 86_400.0


class _InForce(NamedTuple):
    """The content of a file that is in force: parsed, and its digest (None when it could not be read)."""

    parsed: Parsed
    digest: bytes | None


@dataclass(slots=True)
class _File:
    """The latest content seen in one file, and whether it has settled."""

    stamp: tuple[int, int, int]  # inode, size, mtime_ns of that content
    digest: bytes
    since: float  # when this content was first read (loader clock)
    mtime: float  # wall-clock seconds
    text: str | None  # kept until parsed
    parsed: Parsed | None = None


class StateLoader:
    """Reads a state directory again and again, remembering each set's last good spec.

    **Settling.** A file that changed is acted on only once its content has been stable for
    ``settle_window`` seconds: either it was last modified that long ago, or two reads that far
    apart saw the same content. Until then the file's previous content stays in force, so a manifest
    caught half-written (a slow ``cp``, ``scp`` or shell redirect that makes ``replicas: 30`` read as
    ``replicas: 3`` for a moment) never scales a set down; a file that vanished counts as there for
    the same window. ``DesiredState.settles_at`` says when to look again.

    **Stability.** A write can stall for longer than that window, so the loader also reports, per
    set, since when its file has been unchanged (``unchanged_since``: the newest content's first
    read or its mtime, whichever is older), since when each set it saw go has been absent
    (``removed_since``), and since when nothing in the directory changed (directory mtimes
    included, so a file deleted before a restart counts). The planner's rule *Destructive settle*
    holds destroys of live sessions until these are older than ``--destructive-settle``.

    **Cost.** A file is read again only when its inode, size or mtime change, and parsed only once
    its content settled, with libyaml's C loader where available: a steady state costs one ``stat``
    per file per pass.
    """

    def __init__(self, directory: Path, *, prefix: str, settle_window: float = 0.0,
                 wall_clock: Callable[[], float] = file_clock) -> None:
        self.directory = directory
        self.prefix = prefix
        self.settle_window = settle_window
        self._wall_clock = wall_clock  # against file mtimes; injectable so tests decide what is "old"
        self._last_good: dict[str, SessionSet] = {}
        self._sets_of_file: dict[Path, set[str]] = {}
        self._files: dict[Path, _File] = {}
        self._settled: dict[Path, _InForce] = {}
        self._absent_since: dict[Path, float] = {}
        #: Sets that went: the file that defined them and since when they are absent.
        self._removed: dict[str, tuple[Path | None, float]] = {}
        #: Each directory walked: its mtime_ns and since when it has had it (loader clock).
        self._directories: dict[Path, tuple[int, float]] = {}

    def load(self, now: float | None = None) -> DesiredState:
        """The desired state at ``now`` (loader clock); ``None`` reads every file as settled."""
        if not self.directory.is_dir():
            error = ManifestError(str(self.directory), "state directory does not exist or is not a directory")
            return DesiredState(sets=dict(self._last_good), invalid={}, errors=(error,), loaded=False)
        clock = now if now is not None else 0.0
        window = self.settle_window if now is not None else 0.0
        files, directories = _walk(self.directory)
        homes = {name: path for path, names in self._sets_of_file.items() for name in names}
        before = set(self._last_good)
        changed: dict[Path, float] = {}  # since when each file (or its absence) is as it is now
        contributions: list[tuple[Path, Parsed]] = []
        unsettled: list[str] = []
        settles_at: float | None = None
        for path in files:
            self._absent_since.pop(path, None)
            parsed, waits_until = self._read(path, clock, window)
            changed[path] = self._unchanged_since(path, clock)
            if waits_until is not None:
                unsettled.append(str(path))
                settles_at = waits_until if settles_at is None else min(settles_at, waits_until)
            if parsed is not None:
                contributions.append((path, parsed))
        present = set(files)
        for path in [p for p in self._settled if p not in present]:
            since = changed[path] = self._absent_since.setdefault(path, clock)
            if clock - since < window:  # a vanished file counts as there until its absence settles
                unsettled.append(str(path))
                settles_at = since + window if settles_at is None else min(settles_at, since + window)
                contributions.append((path, self._settled[path].parsed))
                continue
            self._forget(path)
        for path in [p for p in self._files if p not in present and p not in self._settled]:
            self._forget(path)
        desired = self._combine(contributions, tuple(unsettled), settles_at)
        if now is None:
            return desired
        return self._stamp(desired, before, homes, changed, directories, clock)

    def _unchanged_since(self, path: Path, now: float) -> float:
        """Since when the file has had its newest content: first read, or its mtime if older."""
        known = self._files.get(path)
        if known is None:  # unreadable: as far as we know, it is changing
            return now
        return min(known.since, now - max(self._wall_clock() - known.mtime, 0.0))

    def _stamp(self, desired: DesiredState, before: set[str], homes: dict[str, Path],
               changed: dict[Path, float], directories: list[Path], now: float) -> DesiredState:
        """``desired`` with the times the rule *Destructive settle* decides with."""
        now_homes = {name: path for path, names in self._sets_of_file.items() for name in names}
        unchanged = {name: changed.get(now_homes[name], now) if name in now_homes else now
                     for name in desired.sets}
        for name in before - set(desired.sets):
            home = homes.get(name)
            self._removed[name] = (home, changed.get(home, now) if home is not None else now)
        removed: dict[str, float] = {}
        for name, (home, since) in list(self._removed.items()):
            if name in desired.sets or now - since > _REMEMBER_REMOVED:
                del self._removed[name]
                continue
            if home is not None and home in changed:  # the file it was in changed again
                since = max(since, changed[home])
                self._removed[name] = (home, since)
            removed[name] = since
        quiet = max([*changed.values(), *removed.values(), *self._directories_since(directories, now)],
                    default=now)
        return dataclasses.replace(desired, unchanged_since=unchanged, removed_since=removed,
                                   directory_unchanged_since=quiet)

    def _directories_since(self, directories: list[Path], now: float) -> list[float]:
        """Since when each directory has had its mtime (a file created, deleted or renamed in it)."""
        seen: dict[Path, tuple[int, float]] = {}
        for directory in directories:
            try:
                stat = directory.stat()
            except OSError:
                seen[directory] = (-1, now)
                continue
            known = self._directories.get(directory)
            if known is not None and known[0] == stat.st_mtime_ns:
                seen[directory] = known
            else:
                seen[directory] = (stat.st_mtime_ns, now - max(self._wall_clock() - stat.st_mtime, 0.0))
        self._directories = seen
        return [since for _, since in seen.values()]

    def _read(self, path: Path, now: float, window: float) -> tuple[Parsed | None, float | None]:
        """The file's settled contribution, and when it may settle if its newest content has not."""
        try:
            stat = path.stat()
        except OSError as exc:
            return Parsed([], [ManifestError(str(path), f"cannot read file: {exc.strerror or exc}")], set()), None
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        known = self._files.get(path)
        if known is None or known.stamp != stamp:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                parsed = Parsed([], [ManifestError(str(path), f"cannot read file: {reason or exc}")], set())
                self._files.pop(path, None)
                self._settled[path] = _InForce(parsed, None)
                return parsed, None
            digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
            if known is not None and known.digest == digest:
                known.stamp, known.mtime = stamp, stat.st_mtime  # touched, not changed
            elif (in_force := self._settled.get(path)) is not None and in_force.digest == digest:
                # Back to the content in force: nothing to wait for.
                known = self._files[path] = _File(stamp, digest, now, stat.st_mtime, None, in_force.parsed)
            else:
                known = self._files[path] = _File(stamp, digest, now, stat.st_mtime, text)
        if known.parsed is None:
            age = self._wall_clock() - known.mtime
            if now - known.since < window and age < window:
                settles_at = min(known.since + window, now + window - age)
                in_force = self._settled.get(path)
                return (in_force.parsed if in_force is not None else None), settles_at
            assert known.text is not None
            known.parsed = parse_text(str(path), known.text, prefix=self.prefix)
            known.text = None
            self._settled[path] = _InForce(known.parsed, known.digest)
        return known.parsed, None

    def _forget(self, path: Path) -> None:
        self._files.pop(path, None)
        self._settled.pop(path, None)
        self._absent_since.pop(path, None)
        self._sets_of_file.pop(path, None)

    def _combine(self, contributions: list[tuple[Path, Parsed]], unsettled: tuple[str, ...],
                 settles_at: float | None) -> DesiredState:
        errors: list[ManifestError] = []
        invalid: dict[str, str] = {}
        definitions: dict[str, list[tuple[Path, SessionSet]]] = {}
        for path, parsed in contributions:
            if parsed.errors:
                errors += parsed.errors
                for name in parsed.names | self._sets_of_file.get(path, set()):
                    invalid.setdefault(name, str(parsed.errors[0]))
                continue
            self._sets_of_file[path] = {s.name for s in parsed.sets}
            for session_set in parsed.sets:
                definitions.setdefault(session_set.name, []).append((path, session_set))

        current: dict[str, SessionSet] = {}
        for name, defined in definitions.items():
            if len(defined) > 1:
                places = ", ".join(str(p) for p, _ in defined)
                error = ManifestError(str(defined[1][0]), f"SessionSet {name!r} is defined more than once ({places})",
                                      field="metadata.name")
                errors.append(error)
                invalid.setdefault(name, str(error))
            elif name not in invalid:
                current[name] = defined[0][1]
        # A set that is invalid now keeps its last good spec; one never valid stays untouched.
        effective = dict(current)
        for name in invalid:
            if name in self._last_good:
                effective[name] = self._last_good[name]
        # A set that vanished while some file is broken or unsettled may live in that file: keep it.
        if errors or unsettled:
            for name, spec in self._last_good.items():
                effective.setdefault(name, spec)
        self._last_good = dict(effective)
        return DesiredState(sets=effective, invalid=invalid, errors=tuple(errors), unsettled=unsettled,
                            settles_at=settles_at)


__all__ = ["SETTLE_WINDOW", "StateLoader", "fingerprint", "manifest_files", "parse_file", "parse_text"]
