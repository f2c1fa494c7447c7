"""Utilisation metrics: what each SessionSet, and the account around it, requests and uses.

Read from the list answer the controller gets every pass anyway (``ObservedSession``), so the
figures cost no extra call: per session the service reports its requested cores, RAM and GPUs
and, for sessions the metrics backend measures, the cores and RAM in use. They are summed per
SessionSet and status, and for the whole account split by owner (``controller``: sessions whose
names carry this controller's prefix; ``other``: everything else the account runs), so the
controller's share of the account and of the platform (``canfar_platform_*``) is visible.

Units are base units: cores, bytes (``_bytes``) and whole GPUs. The service sends no GPU
capacity, so GPUs are only ever counted from sessions, never compared with a total.

What is not reported is not invented:

- a session that reports no request (flexible-mode sessions omit ``requestedCPUCores`` and
  ``requestedRAM``) counts with the platform's default request from ``/context``, which is what
  the cluster reserves for it (the same rule the capacity check uses);
- a figure in use exists only where at least one session of the group reported it: no series
  rather than a 0 that would read as "idle".
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.models import ObservedSession
from controller.names import NameParser

__all__ = ["LIVE_STATUSES", "OWNERS", "Usage", "Utilisation", "UtilisationMetrics", "tally"]

#: Values of the ``owner`` label of the account totals.
OWNERS: Final = ("controller", "other")
#: Statuses whose requested figures exist (at 0) for every set and owner: those that hold, or wait
#: for, resources. Ended or terminating sessions appear under their status only while listed.
LIVE_STATUSES: Final = ("Pending", "Running")


@dataclass(slots=True)
class Usage:
    """The resources of a group of sessions: requested, and in use where measured (else None)."""

    cores: float = 0.0
    ram_bytes: float = 0.0
    gpus: float = 0.0
    cores_in_use: float | None = None
    ram_in_use_bytes: float | None = None

    def add(self, session: ObservedSession, default_cores: float, default_ram: float) -> None:
        self.cores += session.cores if session.cores is not None else default_cores
        self.ram_bytes += session.ram_bytes if session.ram_bytes is not None else default_ram
        self.gpus += session.gpus
        if session.cores_in_use is not None:
            self.cores_in_use = (self.cores_in_use or 0.0) + session.cores_in_use
        if session.ram_in_use_bytes is not None:
            self.ram_in_use_bytes = (self.ram_in_use_bytes or 0.0) + session.ram_in_use_bytes


@dataclass(frozen=True)
class Utilisation:
    """One list answer summed up: per (set, status) and per (owner, status)."""

    by_set: Mapping[tuple[str, str], Usage] = field(default_factory=dict)
    by_owner: Mapping[tuple[str, str], Usage] = field(default_factory=dict)
    #: Sets exported even without sessions (at 0), so a set's series exist from its first pass.
    sets: tuple[str, ...] = ()


def tally(observed: Iterable[ObservedSession], names: NameParser, sets: Iterable[str], *,
          default_cores: float, default_ram: float) -> Utilisation:
    """Sum the sessions of one list answer by set and status, and by owner and status.

    An owned session of a set that no longer exists (an orphan on its way out) still counts
    under its set's name: it is the controller's, and it holds resources until it is gone.
    """
    by_set: dict[tuple[str, str], Usage] = {}
    by_owner: dict[tuple[str, str], Usage] = {}
    for session in observed:
        owned = names.parse(session.name)
        owner = "other" if owned is None else "controller"
        key = (owner, session.phase)
        usage = by_owner.get(key)
        if usage is None:
            usage = by_owner[key] = Usage()
        usage.add(session, default_cores, default_ram)
        if owned is not None:
            key = (owned.set_name, session.phase)
            usage = by_set.get(key)
            if usage is None:
                usage = by_set[key] = Usage()
            usage.add(session, default_cores, default_ram)
    return Utilisation(by_set, by_owner, tuple(sets))


#: A group without sessions: nothing requested, nothing measured (never added to).
_NOTHING: Final = Usage()
#: (attribute of ``Usage``, metric suffix, help text); requested figures exist at 0, in-use ones only if measured.
_REQUESTED: Final = (
    ("cores", "requested_cpu_cores", "CPU cores requested"),
    ("ram_bytes", "requested_ram_bytes", "RAM requested, in bytes,"),
    ("gpus", "requested_gpus", "GPUs requested"),
)
_IN_USE: Final = (
    ("cores_in_use", "cpu_cores_in_use", "CPU cores in use (as the service measures them)"),
    ("ram_in_use_bytes", "ram_in_use_bytes", "RAM in use, in bytes (as the service measures it),"),
)


class UtilisationMetrics(Collector):
    """The utilisation families on ``registry``; ``sync`` replaces what they show."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._current: Utilisation | None = None  # None: no list answer yet, so no series
        registry.register(self)

    def sync(self, utilisation: Utilisation) -> None:
        with self._lock:
            self._current = utilisation

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            current = self._current
        if current is None:
            return
        groups = (
            ("canfar_controller_sessionset", "sessionset", "of a SessionSet's sessions, by status.",
             current.by_set, current.sets),
            ("canfar_controller_account", "owner",
             "of the account's sessions, by owner (controller: this controller's; other: the rest) and status.",
             current.by_owner, OWNERS),
        )
        for prefix, label, scope, usage, always in groups:
            keys = self._keys(usage, always)
            for attribute, suffix, what in (*_REQUESTED, *_IN_USE):
                family = GaugeMetricFamily(f"{prefix}_{suffix}", f"{what} {scope}", labels=[label, "status"])
                digits = 0 if suffix.endswith("_bytes") else 3  # the service's own precision; no 0.30000000000000004
                for key in keys:
                    value = getattr(usage.get(key, _NOTHING), attribute)
                    if value is not None:
                        family.add_metric(list(key), round(value, digits))
                yield family

    @staticmethod
    def _keys(usage: Mapping[tuple[str, str], Usage], always: Iterable[str]) -> list[tuple[str, str]]:
        """Every (name, status) to export: each known name in the live statuses, plus every group seen."""
        keys = dict.fromkeys([*((name, status) for name in always for status in LIVE_STATUSES), *usage])
        return sorted(keys)
