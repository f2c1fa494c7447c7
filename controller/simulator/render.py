"""How the server writes things down: session JSON, stats, context, images, events and logs.

Field names, order and formats follow skaha HEAD (``Session.java``, ``SessionBuilder``,
``ResourceStats``, ``ResourceQuantityFormatter``): session numbers are strings, stats numbers are
doubles, nulls are omitted, times are ISO-8601 UTC with ``Z``. Events are the kubectl
custom-columns table, or ``<none>`` when Kubernetes has no (unexpired) events for the pod.

Logs are the output of the simulated program (see ``workload``), as far as it has got at the
time of reading.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from controller.simulator.config import CORE_OPTIONS, GPU_OPTIONS, RAM_OPTIONS, SimulatorConfig
from controller.simulator.state import GB, GIB, Cluster, SessionRecord

RUN_AS_UID = "20001"
SUPPLEMENTAL_GROUPS = (34241,)
NODE = "sim-node-1"
NAMESPACE = "skaha-workload"
#: Per-session ceilings reported by stats and /context (chart ``defaultLimit``).
DEFAULT_LIMIT_CORES = 8
DEFAULT_LIMIT_RAM_GB = 32
DEFAULT_REQUEST_CORES = 1
DEFAULT_REQUEST_RAM_GB = 4
_CONNECT_PATHS = {
    "desktop": "session/desktop/{id}/?password={id}&path=session/desktop/{id}/",
    "notebook": "session/notebook/{id}/lab/tree/arc/home/{user}?token={id}",
    "carta": "session/carta/{id}/",
    "contributed": "session/contrib/{id}/",
    "firefly": "session/firefly/{id}/firefly/",
}


def iso(when: float) -> str:
    """Simulated epoch seconds as the server writes times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def cores_text(cores: float) -> str:
    """Core counts as ``ResourceQuantityFormatter`` writes them: ``2``, or ``0.500`` for 500m."""
    return str(int(cores)) if float(cores).is_integer() else f"{cores:.3f}"


def gigabytes(value_bytes: float) -> str:
    """A byte count in decimal GB with at most 2 decimals, unit-less (``8Gi`` -> ``8.59``)."""
    text = f"{value_bytes / GB:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def session_json(record: SessionRecord, now: float, config: SimulatorConfig) -> dict[str, Any]:
    """The ``Session`` object of list and get, for the status at ``now``."""
    status = record.status(now)
    data: dict[str, Any] = {
        "id": record.id,
        "userid": record.user,
        "runAsUID": RUN_AS_UID,
        "runAsGID": RUN_AS_UID,
        "supplementalGroups": list(SUPPLEMENTAL_GROUPS),
        "image": record.image,
        "type": record.kind,
        "status": status,
        "name": record.name,
    }
    if record.started is not None:
        data["startTime"] = iso(record.started)
        data["expiryTime"] = iso(record.started + record.deadline)
    path = _CONNECT_PATHS.get(record.kind)
    data["connectURL"] = (
        f"https://{config.sessions_host}/" + path.format(id=record.id, user=record.user) if path else "")
    if record.fixed:
        data["requestedRAM"] = f"{record.ram_bytes / GB:.2f}"
        data["requestedCPUCores"] = cores_text(record.cores)
    data["requestedGPUCores"] = str(record.gpus)
    if status == "Running":
        # Metrics-server figures: a tenth of the request, steady, so tests can rely on them.
        data["ramInUse"] = f"{record.ram_bytes / 10 / GB:.2f}"
        data["cpuCoresInUse"] = f"{record.cores / 10:.3f}"
    data["isFixedResources"] = record.fixed
    return data


def public_session_json(record: SessionRecord, now: float) -> dict[str, Any]:
    """The ``PublicSession`` of ``view=all``: no ids or names of other people's sessions."""
    data: dict[str, Any] = {"userid": record.user, "type": record.kind, "status": record.status(now)}
    if record.started is not None:
        data["startTime"] = iso(record.started)
    return data


def stats_json(cluster: Cluster) -> dict[str, Any]:
    """``view=stats``: what admitted sessions request, and the cluster size they draw from.

    Consistent with the simulated scheduler: ``requested*`` is what admitted sessions hold
    (queued ones hold nothing, a deleted one holds its share until its pod is gone; flexible
    sessions count with the ``/context`` ``defaultRequest``), so ``available - requested`` is
    exactly the room a new session must fit in. The per-session ceiling (``maxCPUCores``/
    ``maxRAM``, the chart's ``defaultLimit``) is never more than the whole cluster.
    """
    config = cluster.config
    max_cores = float(min(DEFAULT_LIMIT_CORES, config.cores))
    max_ram = min(float(DEFAULT_LIMIT_RAM_GB), config.ram_gb * GB / GIB)
    max_ram_text = f"{int(max_ram)}Gi" if max_ram.is_integer() else f"{gigabytes(max_ram * GIB)}G"
    return {
        "cores": {
            "requestedCPUCores": round(cluster.used_cores, 3),
            "cpuCoresAvailable": float(config.cores),
            "maxCPUCores": {"cpuCores": max_cores, "withRam": max_ram_text},
        },
        "ram": {
            "requestedRAM": gigabytes(cluster.used_ram_bytes) + "G",
            "ramAvailable": gigabytes(config.ram_gb * GB) + "G",
            "maxRAM": {"ram": max_ram_text, "withCPUCores": max_cores},
        },
    }


def context_json(config: SimulatorConfig) -> dict[str, Any]:
    """``/context``: the chart's ``k8s-resources.json`` (``maxInteractiveSessions`` is a string there)."""
    return {
        "cores": {"default": 2, "defaultRequest": DEFAULT_REQUEST_CORES, "defaultLimit": DEFAULT_LIMIT_CORES,
                  "options": list(CORE_OPTIONS)},
        "memoryGB": {"default": 8, "defaultRequest": DEFAULT_REQUEST_RAM_GB,
                     "defaultLimit": DEFAULT_LIMIT_RAM_GB, "options": list(RAM_OPTIONS)},
        "gpus": {"options": list(GPU_OPTIONS)},
        "maxInteractiveSessions": str(config.max_interactive),
    }


def images_json(config: SimulatorConfig, kind: str | None) -> list[dict[str, Any]]:
    """``/image``: the public cache, optionally only images labelled for ``kind``."""
    return [
        {"id": image, "types": list(kinds), "digest": "sha256:" + hashlib.sha256(image.encode()).hexdigest()}
        for image, kinds in config.images.items()
        if kind is None or kind in kinds
    ]


# -- events and logs ----------------------------------------------------------------------------

Event = tuple[str, str, str, float, float]  # type, reason, message, first, last
_EVENT_HEADER = ("TYPE", "REASON", "MESSAGE", "FIRST-TIME", "LAST-TIME")


def pod_name(record: SessionRecord) -> str:
    return f"skaha-{record.kind}-{record.user}-{record.id}-{record.id[:5]}".lower()


def events_of(record: SessionRecord, now: float) -> list[Event]:
    """The pod's Kubernetes events up to ``now``, as a scheduler and kubelet would have logged them."""
    events: list[Event] = []
    image, container = record.image, f"{record.kind}-{record.id}"
    if record.started is None or record.started > record.created:
        shortage = record.blocked_by or "1 Insufficient cpu"
        events.append(("Warning", "FailedScheduling", f"0/1 nodes are available: {shortage}.",
                       record.created, record.started if record.started is not None else now))
    if record.started is not None:
        start = record.started
        events.append(("Normal", "Scheduled",
                       f"Successfully assigned {NAMESPACE}/{pod_name(record)} to {NODE}", start, start))
        events.append(("Normal", "Pulling", f'Pulling image "{image}"', start, start))
        if record.running_at is not None and now >= record.running_at:
            ran = record.running_at
            events.append(("Normal", "Pulled", f'Successfully pulled image "{image}"', ran, ran))
            events.append(("Normal", "Created", f"Created container {container}", ran, ran))
            if record.outcome.error:
                events.append(("Warning", "Failed", f"Error: {record.outcome.error}", ran, ran))
            else:
                events.append(("Normal", "Started", f"Started container {container}", ran, ran))
        elif record.running_at is None:
            last = min(now, record.ends_at) if record.ends_at is not None else now
            events.append(("Warning", "Failed", f'Failed to pull image "{image}": not found', start, last))
            events.append(("Normal", "BackOff", f'Back-off pulling image "{image}"', start, last))
        if record.ends_at is not None and now >= record.ends_at and record.ended_by_deadline():
            events.append(("Warning", "DeadlineExceeded", "Job was active longer than specified deadline",
                           record.ends_at, record.ends_at))
    if record.deleted is not None:
        deleted = record.deleted
        events.append(("Normal", "Killing", f"Stopping container {container}", deleted, deleted))
    return events


def events_table(events: list[Event], *, now: float, ttl: float) -> str:
    """kubectl custom-columns output; ``<none>`` when every event has expired or none happened."""
    rows = [(kind, reason, message, iso(first), iso(last))
            for kind, reason, message, first, last in events if last >= now - ttl]
    if not rows:
        return "<none>\n"
    table = [_EVENT_HEADER, *rows]
    widths = [max(len(row[column]) for row in table) + 3 for column in range(len(_EVENT_HEADER) - 1)]
    lines = ["".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[-1]
             for row in table]
    return "\n".join(lines) + "\n"


def logs_text(record: SessionRecord, now: float) -> str:
    """What ``kubectl logs`` shows: the program's output written up to ``now``.

    Nothing before the container starts or when it could not start; output the program would
    write after its deadline or after a DELETE never appears.
    """
    running_at = record.running_at
    if running_at is None or now < running_at or record.outcome.error:
        return ""
    stop = now
    if record.ends_at is not None:
        stop = min(stop, record.ends_at)
    if record.deleted is not None:
        stop = min(stop, record.deleted)
    elapsed = stop - running_at
    return "".join(text for at, text in record.outcome.output if at <= elapsed)
