"""Parsing one manifest file: its SessionSets, its errors with exact lines and fields, and every set name it mentions.

A file is the unit of validity (``controller.statedir`` decides what a broken file means for its
sets); this module only turns text into sets and located errors, with "did you mean" for typos.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from controller.errors import ManifestError
from controller.names import longest_set_name
from controller.spec import SessionSet

Location = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Parsed:
    """One file's contribution: its valid sets, its errors, and every set name it mentions."""

    sets: list[SessionSet]
    errors: list[ManifestError]
    names: set[str]


def parse_file(path: Path, *, prefix: str) -> tuple[list[SessionSet], list[ManifestError], set[str]]:
    """Parse one file: its valid sets, its errors, and every set name it mentions (even invalid)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [ManifestError(str(path), f"cannot read file: {exc}")], set()
    parsed = parse_text(str(path), text, prefix=prefix)
    return parsed.sets, parsed.errors, parsed.names


def parse_text(where: str, text: str, *, prefix: str) -> Parsed:
    """Parse the content of one manifest file; ``where`` names it in errors."""
    if not text.strip():
        return Parsed([], [ManifestError(where, "the file is empty: a manifest defines at least one SessionSet "
                                                 "(delete the file to remove its sets)")], set())
    try:
        documents = list(_documents(text))
    except _DuplicateKey as exc:
        return Parsed([], [ManifestError(where, f"duplicate key {exc.key!r}", line=exc.line)], set())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        return Parsed([], [ManifestError(where, f"invalid YAML: {problem}",
                                          line=mark.line + 1 if mark is not None else None)], set())
    if all(data is None for data, _, _ in documents):
        return Parsed([], [ManifestError(where, "the file defines no SessionSet (only comments or empty "
                                                 "documents); delete the file to remove its sets")], set())

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
                errors.append(ManifestError(where, _message(err, loc), line=_line_of(lines, loc, start),
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
    return Parsed(sets, errors, names)


def _message(error: Mapping[str, Any], loc: Location) -> str:
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1)
        return f"unknown field (did you mean {close[0]!r}?)" if close else "unknown field"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "literal_error" or error["type"].endswith("_type"):
        message += f" (got {error.get('input')!r})"
    return message


def _fields_at(path: Location) -> list[str]:
    """The field names (as written in a manifest) of the model at ``path`` in a SessionSet, for "did you mean"."""
    model: Any = SessionSet
    for part in path:
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        model = getattr(field, "annotation", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return [field.alias or name for name, field in model.model_fields.items()]


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


#: libyaml's C parser when PyYAML was built with it (several times faster), else the pure-Python one.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _documents(text: str) -> Iterator[tuple[Any, dict[Location, int], int]]:
    """Each document's data, a map from key paths to 1-based lines, and its first line."""
    for node in yaml.compose_all(text, Loader=_LOADER):
        lines: dict[Location, int] = {}
        _index_lines(node, (), lines)
        loader = _LOADER("")
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
