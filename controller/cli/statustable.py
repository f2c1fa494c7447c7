"""The ``status`` command's table: one line per SessionSet from the status file, and the last pass."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.plan import PendingChange
from controller.statusfile import SetRow, StatusDocument


def table(document: StatusDocument, path: Path, credential: str | None = None) -> str:
    """The status file as people read it: each set's counts, notable conditions and state, the
    credential (``credential``, already described) and the last pass."""
    rows = [f"{'SESSIONSET':<20} {'DESIRED':>7} {'READY':>5} {'RUNNING':>7} {'PENDING':>7} {'ENDED':>5}  "
            f"{'CONDITIONS':<28} STATE"]
    for name, row in sorted(document.sets.items()):
        desired = "-" if row.desired is None else str(row.desired)
        rows.append(f"{name:<20} {desired:>7} {row.ready:>5} {row.running:>7} {row.pending:>7} {row.ended:>5}  "
                    f"{_conditions(row):<28} {_state_of(row)}")
    rows.extend(_autoscale_line(name, row.autoscale) for name, row in sorted(document.sets.items())
                if row.autoscale is not None)
    rows.extend(pending_line(PendingChange(**change)) for change in document.pending_changes)
    rows.extend(f"invalid: {error}" for error in document.manifest_errors)
    rows.extend(f"Conflict (SecondWriter) {name}: another writer's live sessions {', '.join(ids)}; nothing is "
                "created or destroyed in the set until they are gone"
                for name, ids in sorted(document.conflicts.items()))
    rows.extend(f"unmanaged {name}: {count} session(s) with this prefix of a set this controller never managed; "
                "left alone (`canfar-controller prune` removes leftovers)"
                for name, count in sorted(document.unmanaged.items()))
    if credential is not None:
        rows.append(f"credential: {credential}")
    if document.memory_unwritable:
        problem = document.memory_unwritable
        rows.append(f"MemoryUnwritable ({problem.get('reason')}): {problem.get('path')}: {problem.get('message')}; "
                    "no session is created until the memory can be written")
    rows.append(_last_pass(document, path))
    return "\n".join(rows)


#: Conditions shown in the table when true (Ready and Progressing are the normal states, shown when false).
_NOTABLE = ("Complete", "CrashLooping", "CreateFailing", "WaitingForCapacity", "Invalid", "Suspended",
            "DestroyFailing", "Conflict")


def _conditions(row: SetRow) -> str:
    shown = []
    for condition in row.conditions:
        kind, status = condition.type, condition.status
        if kind == "Ready" and status == "True":
            shown.append("Ready")
        elif kind == "Progressing" and status == "True":
            shown.append("Progressing")
        elif kind == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            shown.append("Stalled")
        elif kind in _NOTABLE and status == "True":
            shown.append(kind)
        elif kind == "ScalingActive" and status == "False":
            shown.append("ScalingInactive")
        elif kind == "ScalingLimited" and status == "True":
            shown.append("ScalingLimited")
    return ",".join(shown) or "-"


def _autoscale_line(name: str, autoscale: dict[str, Any]) -> str:
    """``autoscale workers: file /q = 40; recommends 8, runs 3 (step limit: at most +3 per pass)``."""
    signals = "; ".join(f"{label} = {'unreadable' if value is None else f'{value:g}'}"
                        for label, value in autoscale.get("signals", {}).items())
    recommendation = autoscale.get("recommendation")
    line = (f"autoscale {name}: {signals}; recommends {'-' if recommendation is None else recommendation}, "
            f"runs {autoscale.get('replicas')}")
    return f"{line} ({autoscale['why']})" if autoscale.get("why") else line


def pending_line(change: PendingChange) -> str:
    """``pending workers: scale-down 30→3 acts at 12:00:30 UTC (manifest unchanged for 30 s; 27 live …)``."""
    at = datetime.fromtimestamp(change.acts_at, UTC).strftime("%H:%M:%S UTC")
    return f"pending {change.set_name}: {change.describe(at)}"


def _state_of(row: SetRow) -> str:
    notable = [c for c in row.conditions if c.status == "True" and c.type in _NOTABLE[1:5]]
    if row.invalid:
        return f"invalid: {row.invalid}"
    conflict = next((c for c in row.conditions if c.type == "Conflict" and c.status == "True"), None)
    if conflict is not None:
        return f"Conflict: {conflict.message}"
    if notable:
        return f"{notable[0].type}: {notable[0].message}"
    if row.complete:
        return "complete: every slot has ended and will not run again"
    if row.suspended:
        return "suspended"
    if row.last_error:
        return f"error: {row.last_error}"
    return row.waiting or "ok"


def _last_pass(document: StatusDocument, path: Path) -> str:
    stamp = datetime.fromtimestamp(document.updated_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    age = max(0, round(time.time() - document.updated_at))
    errors = "; ".join(document.errors)
    return (f"last pass {document.pass_id} at {stamp} ({age} s ago): {document.result}"
            f"{': ' + errors if errors else ''} ({path})")
