"""One id, one session: the hygiene of a list answer, before anything is planned from it.

A session id names one session. An answer that repeats an id (the same row twice) does not show
two sessions in one slot; read naively it would make the planner destroy the "newer" one, which
is the same, only session, again and again. So the parser keeps one row per id (the last) and
counts the repeats. Two other shapes cannot be read as sessions at all: a row without an id (it
cannot be destroyed, and its slot cannot be refilled either) and an id listed under two names
(which name is it?). Their rows are left out and their names *held*: the planner refills neither
slot. Any of the three makes the answer suspect for destroys: that pass destroys nothing.

Pure: no I/O. ``ObservedList`` is a plain list of sessions that carries what was found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Generic, Protocol, TypeVar


class _Row(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...


Row = TypeVar("Row", bound=_Row)

#: Label ``kind`` of ``canfar_controller_list_anomalies_total``.
LIST_ANOMALY_KINDS: Final = ("duplicate_id", "missing_id", "id_under_two_names")
#: The same metric's ``kind`` for a live session a list left out that the service, asked by id, still
#: has (the rule *Disappearance confirmed*): counted per lookup, not found by the parser.
LEFT_OUT_LIVE: Final = "left_out_live"


@dataclass(frozen=True)
class ListAnomalies:
    """What broke one id, one session in an answer: rows by kind, and the names whose slots are held."""

    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    held_names: frozenset[str] = frozenset()

    @property
    def suspect(self) -> bool:
        """Whether the answer is suspect for destroys (nothing is destroyed from it)."""
        return any(self.counts.values())

    def describe(self) -> str:
        found = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in sorted(self.counts.items()) if count)
        return f"list answer breaks one id, one session ({found}): nothing is destroyed this pass"


NO_ANOMALIES: Final = ListAnomalies()


class ObservedList(list[Row], Generic[Row]):
    """The sessions of one answer, one row per id, with the anomalies found on the way."""

    anomalies: ListAnomalies = NO_ANOMALIES


def anomalies_of(observed: Iterable[object]) -> ListAnomalies:
    """The anomalies an answer carries (none for a plain list: a test's or an older client's)."""
    return observed.anomalies if isinstance(observed, ObservedList) else NO_ANOMALIES


def one_per_id(rows: list[Row], idless_names: Iterable[str] = ()) -> ObservedList[Row]:
    """``rows`` with one row per id (the last), the ids under two names left out; ``idless_names``
    are the names of rows that came without an id (already left out by the parser)."""
    held = set(idless_names)
    counts = dict.fromkeys(LIST_ANOMALY_KINDS, 0)
    counts["missing_id"] = len(held)
    result: ObservedList[Row] = ObservedList()
    ids = {row.id for row in rows}
    if len(ids) == len(rows):
        result.extend(rows)
    else:
        last: dict[str, Row] = {}
        names: dict[str, set[str]] = {}
        for row in rows:
            if row.id in last:
                counts["duplicate_id"] += 1
            last[row.id] = row
            names.setdefault(row.id, set()).add(row.name)
        for session_id, row in last.items():
            if len(names[session_id]) > 1:
                counts["id_under_two_names"] += 1
                counts["duplicate_id"] -= len(names[session_id]) - 1  # counted under its own kind
                held |= names[session_id]
            else:
                result.append(row)
    if any(counts.values()):
        result.anomalies = ListAnomalies(MappingProxyType(counts), frozenset(held))
    return result
