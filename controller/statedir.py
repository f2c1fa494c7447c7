"""Loading the state directory: every manifest file, validated on its own, with exact locations.

A file is the unit of validity. A file with any error contributes nothing new: the sets it
defined keep their last good spec (or, if they never had one, are left untouched) and are
reported invalid, while every other file applies normally. Two files defining the same set is an
error for that set only. ``DesiredState.complete`` is true only when everything parsed cleanly;
the planner prunes orphans only then, so a typo can never look like a deleted set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from controller.errors import ManifestError
from controller.names import longest_set_name
from controller.spec import DesiredState, SessionSet

SUFFIXES = (".yaml", ".yml", ".json")

Location = tuple[str | int, ...]


def manifest_files(directory: Path) -> list[Path]:
    """Manifest files under ``directory``, sorted, skipping hidden entries (ConfigMap ``..data``)."""
    found = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, f) for f in files if f.endswith(SUFFIXES) and not f.startswith(".")]
    return sorted(found)


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


class StateLoader:
    """Reads a state directory again and again, remembering each set's last good spec."""

    def __init__(self, directory: Path, *, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self._last_good: dict[str, SessionSet] = {}
        self._sets_of_file: dict[Path, set[str]] = {}

    def load(self) -> DesiredState:
        if not self.directory.is_dir():
            error = ManifestError(str(self.directory), "state directory does not exist or is not a directory")
            return DesiredState(sets=dict(self._last_good), invalid={}, errors=(error,))
        errors: list[ManifestError] = []
        invalid: dict[str, str] = {}
        definitions: dict[str, list[tuple[Path, SessionSet]]] = {}
        files = manifest_files(self.directory)
        for path in files:
            sets, file_errors, names = parse_file(path, prefix=self.prefix)
            if file_errors:
                errors += file_errors
                for name in names | self._sets_of_file.get(path, set()):
                    invalid.setdefault(name, str(file_errors[0]))
                continue
            self._sets_of_file[path] = {s.name for s in sets}
            for session_set in sets:
                definitions.setdefault(session_set.name, []).append((path, session_set))
        for path in set(self._sets_of_file) - set(files):
            del self._sets_of_file[path]

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
        # A set that vanished while some file is broken may live in that file: keep it.
        if errors:
            for name, spec in self._last_good.items():
                effective.setdefault(name, spec)
        self._last_good = dict(effective)
        return DesiredState(sets=effective, invalid=invalid, errors=tuple(errors))


def parse_file(path: Path, *, prefix: str) -> tuple[list[SessionSet], list[ManifestError], set[str]]:
    """Parse one file: its valid sets, its errors, and every set name it mentions (even invalid)."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [ManifestError(where, f"cannot read file: {exc}")], set()
    try:
        documents = list(_documents(text))
    except _DuplicateKey as exc:
        return [], [ManifestError(where, f"duplicate key {exc.key!r}", line=exc.line)], set()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        return [], [ManifestError(where, f"invalid YAML: {problem}",
                                  line=mark.line + 1 if mark is not None else None)], set()

    sets: list[SessionSet] = []
    errors: list[ManifestError] = []
    names: set[str] = set()
    for index, (data, lines, start) in enumerate(documents):
        document = index + 1 if len(documents) > 1 else None
        if data is None:
            continue
        if not isinstance(data, dict):
            errors.append(ManifestError(where, "expected a mapping with apiVersion, kind, metadata, spec",
                                        line=start, document=document))
            continue
        name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
        if isinstance(name, str):
            names.add(name)
        try:
            session_set = SessionSet.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                errors.append(ManifestError(where, _message(err), line=_line_of(lines, loc, start),
                                            field=_dotted(loc), document=document))
            continue
        longest = longest_set_name(prefix)
        if len(session_set.name) > longest:
            errors.append(ManifestError(
                where, f"must be at most {longest} characters so that session names "
                f"'{prefix}-<name>-<hash>-<slot>' stay within 63", line=_line_of(lines, ("metadata", "name"), start),
                field="metadata.name", document=document))
            continue
        sets.append(session_set)
    return sets, errors, names


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "literal_error" or error["type"].endswith("_type"):
        message += f" (got {error.get('input')!r})"
    return message


def _dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith(("function-", "float", "int", "str")))


def _line_of(lines: Mapping[Location, int], loc: Location, default: int) -> int:
    """The line of the deepest part of ``loc`` that exists in the document."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return default


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.line = line


def _documents(text: str) -> Iterator[tuple[Any, dict[Location, int], int]]:
    """Each document's data, a map from key paths to 1-based lines, and its first line."""
    for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
        lines: dict[Location, int] = {}
        _index_lines(node, (), lines)
        loader = yaml.SafeLoader("")
        yield loader.construct_document(node), lines, node.start_mark.line + 1


def _index_lines(node: yaml.Node, path: Location, lines: dict[Location, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(item, (*path, index), lines)
