"""The one mapping between the controller's ``Memory`` and its snapshot document (``version: 1``).

Each field of ``Memory`` is named once below, with how it is written: a plain JSON value, a
sorted list of ids, or rows (the key's columns, then the value's own fields). The pydantic model
that validates a snapshot (``MemoryDocument``), ``to_document`` and ``from_document`` are all
derived from that one table, so a field cannot be written one way and read another; a field of
``Memory`` missing from the table is an error at import.

The document's shape is the version-1 file format: changing a column name or order here changes
the files (``tests/unit/test_ledger_golden.py`` guards it).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

from controller.plan.autoscale import ScaleState
from controller.plan.memory import (
    ConditionMark,
    CreateBackoff,
    DestroyRetry,
    ExpectedCreate,
    Lingering,
    Lookup,
    Memory,
    RenewMark,
    SeenSession,
    SetNotes,
    SlotHistory,
)

VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class _Value:
    """A field written as it is (a number, ``None``, or a map of id to time), maps sorted by key."""

    name: str
    annotation: Any
    default: Any

    def dump(self, value: Any) -> Any:
        return dict(sorted(value.items())) if isinstance(value, dict) else value

    def load(self, value: Any) -> Any:
        return dict(value) if isinstance(value, dict) else value


@dataclass(frozen=True)
class _Ids:
    """A set of ids, written as a sorted list."""

    name: str
    kind: Callable[[list[str]], Any]
    annotation: Any = list[str]
    default: Any = ()

    def dump(self, value: Any) -> Any:
        return sorted(value)

    def load(self, value: Any) -> Any:
        return self.kind(value)


@dataclass(frozen=True)
class _Rows:
    """A keyed collection written as sorted rows: the key's columns, then the value's columns.

    ``value`` is a dataclass (its fields are the columns, ``rename`` gives other column names), a
    tuple of named columns, or nothing (a set of key tuples). ``nested`` keys a map of maps by
    its two key columns.
    """

    name: str
    keys: tuple[tuple[str, type], ...]
    value: type | tuple[tuple[str, type], ...] | None = None
    rename: tuple[tuple[str, str], ...] = ()
    nested: bool = False

    @property
    def columns(self) -> tuple[tuple[str, str, Any, Any], ...]:
        """(attribute, column, type, default) of the value's columns."""
        if self.value is None:
            return ()
        if isinstance(self.value, tuple):
            return tuple((column, column, kind, dataclasses.MISSING) for column, kind in self.value)
        hints = typing.get_type_hints(self.value)
        renamed = dict(self.rename)
        return tuple((f.name, renamed.get(f.name, f.name), hints[f.name], f.default)
                     for f in dataclasses.fields(self.value))

    @property
    def annotation(self) -> Any:
        row: Any = {column: (kind, ...) for column, kind in self.keys}
        for _, column, kind, default in self.columns:
            row[column] = (kind, ... if default is dataclasses.MISSING else default)
        model = create_model(f"{self.name.title().replace('_', '')}Entry", __base__=_Strict, **row)
        return list[model]  # type: ignore[valid-type]

    default: Any = ()

    def _items(self, value: Any) -> list[tuple[tuple[Any, ...], Any]]:
        if self.nested:
            return [((outer, inner), item) for outer, items in value.items() for inner, item in items.items()]
        if self.value is None:
            return [(key, None) for key in value]
        return [((key if isinstance(key, tuple) else (key,)), item) for key, item in value.items()]

    def dump(self, value: Any) -> list[dict[str, Any]]:
        names = [column for column, _ in self.keys]
        columns = self.columns
        rows = []
        for key, item in sorted(self._items(value), key=lambda pair: pair[0]):
            row = dict(zip(names, key, strict=True))
            if isinstance(self.value, tuple):
                row.update(zip((column for _, column, _, _ in columns), item, strict=True))
            elif item is not None:
                row.update((column, _plain(getattr(item, attribute))) for attribute, column, _, _ in columns)
            rows.append(row)
        return rows

    def load(self, rows: list[BaseModel]) -> Any:
        names = [column for column, _ in self.keys]
        columns = self.columns
        loaded: dict[Any, Any] = {}
        for row in rows:
            key = tuple(getattr(row, column) for column in names)
            if self.value is None:
                loaded[key] = None
                continue
            values = {attribute: getattr(row, column) for attribute, column, _, _ in columns}
            item = tuple(values.values()) if isinstance(self.value, tuple) else self.value(**values)
            if self.nested:
                loaded.setdefault(key[0], {})[key[1]] = item
            else:
                loaded[key if len(key) > 1 else key[0]] = item
        return set(loaded) if self.value is None else loaded


_SET, _SLOT = ("set", str), ("slot", int)

#: A destroy retry's row (``DestroyRetry``, keyed by session id), its columns derived from the dataclass.
_RETRY_COLUMNS = (("set_name", "set"),)
_retry_columns: dict[str, Any] = {
    dict(_RETRY_COLUMNS).get(column.name, column.name): (
        typing.get_type_hints(DestroyRetry)[column.name],
        ... if column.default is dataclasses.MISSING else column.default)
    for column in dataclasses.fields(DestroyRetry)}
RetryEntry: type[_Strict] = create_model("RetryEntry", __base__=_Strict, **_retry_columns)


#: ``Memory.lingering``: destroys the service ignored, sessions stuck Terminating or Unknown.
LingeringEntry: type[_Strict] = create_model(
    "LingeringEntry", __base__=_Strict, retries=(dict[str, RetryEntry], {}),  # type: ignore[valid-type]
    since=(dict[str, float], {}), reported=(list[str], []), evidence=(dict[str, str], {}))


@dataclass(frozen=True)
class _Lingering:
    """Sessions the service will not let go (``Lingering``), written as one nested object."""

    name: str
    annotation: Any = LingeringEntry

    @property
    def default(self) -> Any:
        return LingeringEntry()

    def dump(self, value: Lingering) -> dict[str, Any]:
        renamed = dict(_RETRY_COLUMNS)
        retries = {sid: {renamed.get(k, k): v for k, v in dataclasses.asdict(retry).items()}
                   for sid, retry in sorted(value.retries.items())}
        return {"retries": retries, "since": dict(sorted(value.since.items())),
                "reported": sorted(value.reported), "evidence": dict(sorted(value.evidence.items()))}

    def load(self, value: Any) -> Any:
        back = {column: attribute for attribute, column in _RETRY_COLUMNS}
        retries = {sid: DestroyRetry(**{back.get(k, k): v for k, v in entry.model_dump().items()})
                   for sid, entry in value.retries.items()}
        return Lingering(retries=retries, since=dict(value.since),
                         reported=set(value.reported), evidence=dict(value.evidence))


#: Every field of ``Memory``, in the document's order, and how it is written.
FIELDS: tuple[_Value | _Ids | _Rows | _Lingering, ...] = (
    _Rows("creates", (_SET, _SLOT), ExpectedCreate),
    _Value("destroys", dict[str, float], {}),
    _Ids("orphans_seen", frozenset),
    _Rows("restarts", (_SET, _SLOT), SlotHistory),
    _Rows("finished", (_SET, _SLOT, ("template_hash", str))),
    _Rows("seen_live", (("id", str),), SeenSession, rename=(("set_name", "set"),)),
    _Ids("missing", frozenset),
    _Value("suspect_since", float | None, None),
    _Rows("lookups", (("id", str),), Lookup),
    _Rows("backoffs", (_SET,), CreateBackoff),
    _Value("creates_paused_until", float, 0.0),
    _Ids("ended_reported", set),
    _Rows("conditions", (_SET, ("type", str)), ConditionMark, nested=True),
    _Rows("progress", (_SET,), (("fingerprint", str), ("since", float))),
    _Value("pending_since", dict[str, float], {}),
    _Ids("unschedulable_reported", set),
    _Value("renew_failures", dict[str, float], {}),
    _Rows("notes", (_SET,), SetNotes),
    _Rows("autoscale", (_SET,), ScaleState),
    _Lingering("lingering"),
    _Rows("renews", (("id", str),), RenewMark),
    _Value("inventoried", bool, False),
    _Ids("managed_sets", set),
    _Ids("owned", set),
    _Value("owned_missed", dict[str, float], {}),
    _Value("written_off", dict[str, float], {}),
)

if [f.name for f in FIELDS] != [f.name for f in dataclasses.fields(Memory)]:
    raise TypeError("controller.memorydoc.FIELDS must name every field of Memory, in order")

#: The snapshot file: ``version``, the last journal record it contains, and every field of ``Memory``.
class _Header(_Strict):
    version: Literal[1] = 1
    #: The last journal record already contained in this snapshot.
    journal_seq: int = 0
    #: How far the wall clock was ahead of the writer's process time (``controller.clock``) when it
    #: wrote this: its times + this are wall-clock times. Written only when not 0 (no step seen).
    clock_offset: float = 0.0


_columns: dict[str, Any] = {f.name: (f.annotation, _plain(f.default)) for f in FIELDS}
MemoryDocument: type[_Header] = create_model("MemoryDocument", __base__=_Header, **_columns)


def to_document(memory: Memory, journal_seq: int, clock_offset: float = 0.0) -> dict[str, Any]:
    """The snapshot of ``memory`` as plain JSON data in the shape of ``MemoryDocument``."""
    offset = {"clock_offset": clock_offset} if clock_offset else {}
    return {"version": VERSION, "journal_seq": journal_seq, **offset,
            **{f.name: f.dump(getattr(memory, f.name)) for f in FIELDS}}


def from_document(document: _Header) -> Memory:
    """The memory a validated ``MemoryDocument`` holds."""
    return Memory(**{f.name: f.load(getattr(document, f.name)) for f in FIELDS})
