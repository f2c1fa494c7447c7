"""Typed views of what the session service sends: sessions, platform stats and events.

The service is loose: fields go missing, ``"<none>"`` and ``""`` stand for unknown values,
old servers say ``Succeeded`` where new ones say ``Completed``, numbers arrive as strings,
and the stats object changed shape in 2025. These models accept all of it, keep unknown keys,
and expose clean values (``phase``, base units) so nothing downstream has to care.
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from controller.listanswer import ObservedList, one_per_id

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
    cpu_cores_in_use: str | None = Field(None, validation_alias=AliasChoices("cpuCoresInUse", "coresInUse"),
                                         serialization_alias="cpuCoresInUse")
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


class ObservedSession(NamedTuple):
    """One session as the controller's list path needs it: a plain tuple, no validation framework.

    The full ``SessionInfo`` costs about ten times more to build; a pass over 10,000 sessions
    reads only these. The last three fields feed only the utilisation metrics, so they default.
    """

    id: str
    name: str
    phase: Phase  # phase_of(status)
    kind: str  # wire "type", default "headless"
    started: float | None  # startTime as epoch seconds (None while unset/unparsable)
    expires: float | None  # expiryTime as epoch seconds
    cores: float | None  # requestedCPUCores (present for fixed-resource sessions)
    ram_bytes: float | None  # requestedRAM (decimal GB string) in bytes
    gpus: float = 0.0  # requestedGPUCores (the GPU limit; "0", or missing on old servers: none)
    cores_in_use: float | None = None  # cpuCoresInUse (or the older coresInUse): None when not measured
    ram_in_use_bytes: float | None = None  # ramInUse (decimal GB string) in bytes


def parse_observed(text: str | bytes) -> ObservedList[ObservedSession]:
    """The list endpoint's answer as ``ObservedSession`` rows, tolerant of what servers send.

    Placeholders (``"<none>"``, ``""``), missing and extra keys, old status values and numbers
    sent as strings (or as numbers) are all fine. What is refused, with ``ValueError``, is an
    answer the controller must not act on at all: a body that is not a JSON array, or a row that
    is not an object or has no name. One such row fails the whole list, because acting on the
    rest would treat the bad row's session as missing. Rows that break one id, one session (a
    repeated id, no id, an id under two names) are sorted out by ``controller.listanswer``.

    This runs for every session of every pass, so the common case is inlined and the rarer
    shapes go to helpers; times and resource strings are converted once per answer, since
    sessions started in one burst share their times and most share their requests.
    """
    rows = json.loads(text)
    if type(rows) is not list:
        raise ValueError(f"expected a JSON array of sessions, got {type(rows).__name__}")
    idless: list[str] = []
    times: dict[Any, float | None] = {None: None}
    cores_of: dict[str, float | None] = {}
    ram_of: dict[str, float | None] = {}
    new = tuple.__new__
    observed: list[ObservedSession] = []
    append = observed.append
    for row in rows:
        if type(row) is not dict:
            raise ValueError(f"session {len(observed)}: expected an object, got {type(row).__name__}")
        get = row.get
        session_id = get("id")
        name = get("name")
        if type(session_id) is not str or type(name) is not str or _missing(session_id) or _missing(name):
            if type(name) is str and not _missing(name):  # its slot is held, see controller.listanswer
                idless.append(name)
                continue
            raise ValueError(f"session {len(observed)}: no name ({_show(session_id)}, {_show(name)})")
        status = get("status")
        kind = get("type")
        start = get("startTime")
        expiry = get("expiryTime")
        cores = get("requestedCPUCores")
        ram = get("requestedRAM")
        gpus = get("requestedGPUCores")
        cores_used = get("cpuCoresInUse")
        if cores_used is None:
            cores_used = get("coresInUse")
        ram_used = get("ramInUse")
        started = times[start] if start in times else times.setdefault(start, _epoch(start))
        expires = times[expiry] if expiry in times else times.setdefault(expiry, _epoch(expiry))
        if type(cores) is str:
            cores = cores_of[cores] if cores in cores_of else cores_of.setdefault(cores, _number(cores))
        elif cores is not None:
            cores = _number(cores)
        if type(ram) is str:
            ram = ram_of[ram] if ram in ram_of else ram_of.setdefault(ram, _ram_bytes(ram))
        elif ram is not None:
            ram = _ram_bytes(ram)
        gpus = 0.0 if gpus is None or gpus == "0" else _number(gpus) or 0.0
        if cores_used is not None:
            cores_used = _number(cores_used)
        if ram_used is not None:
            ram_used = _ram_bytes(ram_used)
        append(new(ObservedSession, (
            session_id,
            name,
            phase_of(status) if type(status) is str else "Unknown",
            kind if type(kind) is str and kind and kind != "<none>" else "headless",
            started,
            expires,
            cores,
            ram,
            gpus,
            cores_used,
            ram_used,
        )))
    return one_per_id(observed, idless)


def _missing(text: str) -> bool:
    """An id or name that is not there. Only these two placeholders: a session may be called ``none``."""
    return not text or text == "<none>" or text.isspace()


def _show(value: Any) -> str:
    return "missing" if value is None else repr(value[:40]) if type(value) is str else type(value).__name__


def _epoch(value: Any) -> float | None:
    """Epoch seconds of an ISO-8601 time (``Z`` or an offset; none means UTC), ``None`` if not one."""
    if type(value) is not str:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:  # "", "<none>" and anything else that is not a time
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _number(value: Any) -> float | None:
    """A float from a number or a numeric string; ``None`` for placeholders and anything else."""
    if type(value) is str or type(value) is int or type(value) is float:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _ram_bytes(value: Any) -> float | None:
    """``requestedRAM`` in bytes: decimal GB without a unit (current servers) or a quantity (``8G``)."""
    number = _number(value)
    if number is not None:
        return float(round(number * 1e9))
    return parse_quantity(value, bare_unit=1e9) if type(value) is str else None


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


#: Figures that are a platform's total (and a session's largest) size: zero means the answer is wrong.
_TOTALS = ("cpu_cores_available", "ram_available_bytes", "session_max_cpu_cores", "session_max_ram_bytes")


def stats_problem(stats: PlatformStats) -> tuple[str, str] | None:
    """Why ``stats`` cannot be believed, as (reason label, message); ``None`` when they can.

    NaN, infinite or negative figures, or a total capacity of zero, are not a platform's state
    but a broken answer: planning against them would stall every create (``StatsUnavailable``).
    """
    for attribute in _FIGURES:
        value = getattr(stats, attribute)
        if value is None:
            continue
        reason = ("NotANumber" if math.isnan(value) else "Infinite" if math.isinf(value)
                  else "Negative" if value < 0 else "ZeroCapacity" if value == 0 and attribute in _TOTALS else None)
        if reason is not None:
            return reason, f"platform statistics unusable: {attribute} is {value}"
    return None


_FIGURES = ("cpu_cores_requested", "ram_requested_bytes", *_TOTALS)


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


class PlatformContext(BaseModel):
    """What ``/context`` says about session resources: the defaults flexible sessions get."""

    model_config = ConfigDict(frozen=True)

    default_cores: float | None = None
    default_ram_bytes: float | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PlatformContext:
        """``cores.defaultRequest`` and ``memoryGB.defaultRequest`` (GiB, as the server requests them)."""
        cores: dict[str, Any] = data["cores"] if isinstance(data.get("cores"), dict) else {}
        memory: dict[str, Any] = data["memoryGB"] if isinstance(data.get("memoryGB"), dict) else {}
        ram = parse_quantity(_first(memory, "defaultRequest", "default"))
        return cls(default_cores=parse_quantity(_first(cores, "defaultRequest", "default")),
                   default_ram_bytes=ram * 2**30 if ram is not None else None, raw=data)


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
