"""Typed views of what the session service sends: sessions, platform stats and events.

The service is loose: fields go missing, ``"<none>"`` and ``""`` stand for unknown values,
old servers say ``Succeeded`` where new ones say ``Completed``, numbers arrive as strings,
and the stats object changed shape in 2025. These models accept all of it, keep unknown keys,
and expose clean values (``phase``, base units) so nothing downstream has to care.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

#: What the controller makes of a status string.
Phase = Literal["Pending", "Running", "Terminating", "Completed", "Failed", "Unknown"]

_PHASES: dict[str, Phase] = {
    "pending": "Pending",
    "running": "Running",
    "terminating": "Terminating",
    "completed": "Completed",
    "succeeded": "Completed",  # servers before 1.0.4
    "failed": "Failed",
    "error": "Failed",  # documented by clients, never sent by current servers
}
_PLACEHOLDERS = {"", "<none>", "none", "null", "not-applicable"}


@functools.lru_cache(maxsize=512)
def phase_of(status: str | None) -> Phase:
    """Map any status a server has ever sent (``"Failed (DeadlineExceeded)"`` too) to a phase."""
    if not status:
        return "Unknown"
    head = status.split("(", 1)[0].strip().lower()
    return _PHASES.get(head, "Unknown")


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in _PLACEHOLDERS:
        return None
    return value


class SessionInfo(BaseModel):
    """One session as the list and get endpoints describe it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    id: str
    name: str = ""
    status: str = "Unknown"
    kind: str = Field("headless", validation_alias=AliasChoices("type", "kind"), serialization_alias="type")
    image: str = ""
    userid: str | None = None
    start_time: datetime | None = Field(None, alias="startTime")
    expiry_time: datetime | None = Field(None, alias="expiryTime")
    connect_url: str | None = Field(None, alias="connectURL")
    requested_ram: str | None = Field(None, alias="requestedRAM")
    requested_cpu_cores: str | None = Field(None, alias="requestedCPUCores")
    requested_gpu_cores: str | None = Field(None, alias="requestedGPUCores")
    ram_in_use: str | None = Field(None, alias="ramInUse")
    cpu_cores_in_use: str | None = Field(None, validation_alias=AliasChoices("cpuCoresInUse", "coresInUse"))
    is_fixed_resources: bool | None = Field(None, alias="isFixedResources")
    appid: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _placeholders(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("name", "status", "kind", "image", mode="before")
    @classmethod
    def _required_text(cls, value: Any, info: Any) -> Any:
        if value is None:
            return {"name": "", "status": "Unknown", "kind": "headless", "image": ""}[info.field_name]
        return str(value)

    @field_validator("requested_ram", "requested_cpu_cores", "requested_gpu_cores", "ram_in_use",
                     "cpu_cores_in_use", "userid", "appid", "connect_url", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @field_validator("start_time", "expiry_time", mode="before")
    @classmethod
    def _lenient_time(cls, value: Any) -> Any:
        if value is None or isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None

    @property
    def phase(self) -> Phase:
        return phase_of(self.status)

    @property
    def ended(self) -> bool:
        return self.phase in ("Completed", "Failed")


# -- quantities -------------------------------------------------------------------------------

_QUANTITY = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([EPTGMK]i?|[kmu]|B)?\s*", re.IGNORECASE)
_SUFFIX = {
    "": 1, "b": 1, "m": 1e-3, "u": 1e-6, "k": 1e3, "K": 1e3,
    "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def parse_quantity(value: Any, *, bare_unit: float = 1.0) -> float | None:
    """Parse a Kubernetes-style quantity (``8G``, ``32Gi``, ``500m``, ``2``) into base units.

    ``bare_unit`` scales a number that carries no suffix (stats RAM without a unit is bytes, but
    a session's ``requestedRAM`` is decimal GB). Returns ``None`` for unknown or unparsable values.
    """
    value = _blank_to_none(value)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) * bare_unit
    match = _QUANTITY.fullmatch(str(value))
    if match is None:
        return None
    number, suffix = float(match[1]), match[2] or ""
    if not suffix:
        return number * bare_unit
    factor = _SUFFIX.get(suffix)
    if factor is None:  # case-insensitive fallbacks such as "gi" or "GB"
        factor = _SUFFIX.get(suffix[0].upper() + suffix[1:].lower(), _SUFFIX.get(suffix.upper()))
    return None if factor is None else number * factor


class PlatformStats(BaseModel):
    """Platform capacity from ``view=stats``, in base units (cores and bytes), both stats shapes."""

    model_config = ConfigDict(frozen=True)

    cpu_cores_requested: float | None = None
    cpu_cores_available: float | None = None
    ram_requested_bytes: float | None = None
    ram_available_bytes: float | None = None
    session_max_cpu_cores: float | None = None
    session_max_ram_bytes: float | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PlatformStats:
        """Read the current (2025-11) shape and the 2022 shape (``coresInUse``, ``maxCores``)."""
        cores: dict[str, Any] = data["cores"] if isinstance(data.get("cores"), dict) else {}
        ram: dict[str, Any] = data["ram"] if isinstance(data.get("ram"), dict) else {}
        max_cores = _first(cores, "maxCPUCores", "maxCores") or {}
        max_ram = _first(ram, "maxRAM") or {}
        return cls(
            cpu_cores_requested=parse_quantity(_first(cores, "requestedCPUCores", "coresInUse")),
            cpu_cores_available=parse_quantity(_first(cores, "cpuCoresAvailable", "coresAvailable")),
            ram_requested_bytes=parse_quantity(_first(ram, "requestedRAM", "ramInUse")),
            ram_available_bytes=parse_quantity(_first(ram, "ramAvailable")),
            session_max_cpu_cores=parse_quantity(
                _first(max_cores, "cpuCores", "cores") if isinstance(max_cores, dict) else max_cores
            ),
            session_max_ram_bytes=parse_quantity(
                _first(max_ram, "ram") if isinstance(max_ram, dict) else max_ram
            ),
            raw=data,
        )


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


class Event(BaseModel):
    """One Kubernetes event row of ``view=events``."""

    model_config = ConfigDict(frozen=True)

    type: str = ""
    reason: str = ""
    message: str = ""
    first_time: str = ""
    last_time: str = ""


_EVENT_COLUMNS = ("TYPE", "REASON", "MESSAGE", "FIRST-TIME", "LAST-TIME")


def parse_events(text: str) -> list[Event]:
    """Parse the kubectl custom-columns table the service returns (``<none>`` means no events).

    Column positions come from the header row, so messages containing spaces stay whole.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() == "<none>":
        return []
    header = lines[0]
    starts = [header.find(column) for column in _EVENT_COLUMNS]
    if any(start < 0 for start in starts):
        # Not the table we know: keep the text rather than lose it.
        return [Event(message=line.strip()) for line in lines]
    bounds = [*starts[1:], None]
    events = []
    for line in lines[1:]:
        cells = [line[start:end].strip() for start, end in zip(starts, bounds, strict=True)]
        events.append(Event(type=cells[0], reason=cells[1], message=cells[2], first_time=cells[3],
                            last_time=cells[4]))
    return events


# -- the controller's lean view of a list answer -------------------------------------------------


class ObservedSession(NamedTuple):
    """One session of a list answer, with only what the controller decides on (cheap to build)."""

    id: str
    name: str
    phase: Phase
    kind: str
    started: float | None  # startTime, epoch seconds; None while the service has not started it
    expires: float | None  # expiryTime, epoch seconds
    cores: float | None  # requestedCPUCores (fixed-resource sessions only)
    ram_bytes: float | None  # requestedRAM (decimal GB on the wire) in bytes


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value or value in _PLACEHOLDERS:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def parse_observed(text: str) -> list[ObservedSession]:
    """Read a list answer into ``ObservedSession`` rows; anything that is not a list of sessions is an error.

    A body that is not a JSON array, or a row without an id or a name, raises ``ValueError``: the
    controller never acts on an answer it cannot fully read.
    """
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON array of sessions, got {type(data).__name__}")
    rows = []
    for row in data:
        if not isinstance(row, dict):
            raise ValueError(f"expected a session object, got {type(row).__name__}")
        session_id, name = row.get("id"), row.get("name")
        if not isinstance(session_id, str) or not session_id or not isinstance(name, str) or not name:
            raise ValueError("a session row has no id or no name")
        ram = parse_quantity(row.get("requestedRAM"), bare_unit=1e9)
        rows.append(ObservedSession(
            session_id, name, phase_of(row.get("status")), str(row.get("type") or "headless"),
            _epoch(row.get("startTime")), _epoch(row.get("expiryTime")),
            parse_quantity(row.get("requestedCPUCores")), ram,
        ))
    return rows
