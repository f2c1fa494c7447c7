"""The status file: what the daemon last saw and did, for people and for ``canfar-controller status``.

It is a report, not memory: nothing the controller decides depends on it (that is the ledger's
job, ``controller.ledger``), so it is written atomically but without fsync, once per pass. The
document is versioned; ``read_status`` checks the version and names the file in every error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.atomicfile import replace_file
from controller.errors import ConfigError

VERSION = 1


class ConditionRow(BaseModel):
    """One condition of a set, with Kubernetes' field names."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition: float | None = Field(default=None, alias="lastTransitionTime")


class SetRow(BaseModel):
    """One SessionSet's line of the status file: its ``SetStatus`` (``controller.outcome.status_row``)."""

    model_config = ConfigDict(extra="allow")

    desired: int | None = None
    running: int = 0
    pending: int = 0
    unknown: int = 0
    completed: int = 0
    failed: int = 0
    terminating: int = 0
    outdated: int = 0
    in_flight: int = 0
    uncertain: int = 0
    held: int = 0
    ended: int = 0
    suspended: bool = False
    invalid: str | None = None
    waiting: str | None = None
    backoff_until: float | None = None
    backoff_message: str | None = None
    updated: int = 0
    ready: int = 0
    complete: bool = False
    unschedulable: int = 0
    stuck: int = 0
    #: Sessions the set wants gone whose destroy fails or is ignored (``DestroyFailing``).
    destroy_failing: int = 0
    next_expiry: float | None = None
    conditions: list[ConditionRow] = []
    last_error: str | None = None
    #: Autoscaled sets: signal values, recommendation, the count in force and why it differs.
    autoscale: dict[str, Any] | None = None


class StatusDocument(BaseModel):
    """The whole status file, version 1."""

    model_config = ConfigDict(extra="allow")

    version: Literal[1] = 1
    updated_at: float
    pass_id: int
    result: str
    list_ok: bool
    errors: list[str] = []
    manifest_errors: list[str] = []
    #: Manifest files that changed and have not settled yet.
    unsettled: list[str] = []
    #: Every create waits until then (epoch seconds): the service asked to slow down.
    creates_paused_until: float | None = None
    #: The ``MemoryUnwritable`` condition (reason, path, message, since) while it lasts: no create is sent.
    memory_unwritable: dict[str, Any] | None = None
    sets: dict[str, SetRow] = {}
    #: The credential in use: kind, source, expiry_kind, expiry (epoch s), usable, problem; never the secret.
    credential: dict[str, Any] | None = None
    #: Sets this controller never managed that have sessions with its prefix, and how many: left alone
    #: (``canfar-controller prune`` removes them).
    unmanaged: dict[str, int] = {}
    #: Managed sets with another writer's live sessions (``Conflict``/``SecondWriter``), and their ids.
    conflicts: dict[str, list[str]] = {}
    #: Manifest changes that would destroy live sessions, waiting for their file to stay unchanged
    #: (``--destructive-settle``): set, change, sessions, acts_at (epoch s), window.
    pending_changes: list[dict[str, Any]] = []


def write_status(path: Path, document: StatusDocument) -> None:
    """Replace the status file atomically (a reader never sees half of it)."""
    # Compact: with hundreds of sets it is rewritten every pass (``status`` shows it readably).
    replace_file(path, document.model_dump_json() + "\n")


def read_status(path: Path) -> StatusDocument:
    """The status file at ``path``; ``ConfigError`` naming the file when it is missing or unreadable."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no status file yet at {path}: `canfar-controller run` writes it after its first pass "
                          "(with the same --state, --server and --prefix, or --status-file)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read status file {path}: {exc}") from None
    version = data.get("version") if isinstance(data, dict) else None
    if version != VERSION:
        raise ConfigError(f"status file {path} has version {version!r}; this controller reads version {VERSION}")
    try:
        return StatusDocument.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"status file {path} is damaged: {exc.errors()[0]['msg']}") from None
