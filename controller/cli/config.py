"""The controller's settings: ``CANFAR_CONTROLLER_*`` variables with command-line flags on top, and
where a controller's status file (and so its memory) lives for a state directory, server and prefix.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller import rules
from controller.errors import ConfigError
from controller.plan import (
    DESTRUCTIVE_SETTLE,
    MAX_CREATES_PER_PASS,
    PENDING_LIMIT,
    RENEW_WHEN_REMAINING,
    RESTART_BACKOFF_BASE,
    RESTART_BACKOFF_CAP,
    SESSION_EXPIRY,
    TERMINATING_LIMIT,
    PlanOptions,
)
from controller.plan.durations import duration

MAX_PREFIX_LENGTH = 16


#: Stands for the server in the status-file key of a ``run --simulator`` demo (never a real URL).
DEMO_SERVER_KEY = "simulator"


class ControllerSettings(BaseSettings):
    """Daemon settings from ``CANFAR_CONTROLLER_*``; command-line flags override them."""

    model_config = SettingsConfigDict(env_prefix="CANFAR_CONTROLLER_", extra="ignore")

    state: Path | None = None
    interval: float = Field(30.0, gt=0, description="seconds between passes (±10% jitter)")
    stats_interval: float = Field(60.0, gt=0, description="seconds between platform stats calls")
    prefix: str = Field("cc", description="ownership tag at the start of every managed session name")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(8080, ge=0, le=65535)
    status_file: Path | None = None
    log_level: str = "info"
    max_creates_per_pass: int = Field(MAX_CREATES_PER_PASS, ge=1)
    concurrency: int = Field(32, ge=1, le=128,
                             description="API calls in flight at once, and connections kept alive")
    allow_empty: bool = False
    restart_backoff: float = Field(RESTART_BACKOFF_BASE, ge=0, description="first wait before a slot runs again; "
                                   f"doubles to {duration(RESTART_BACKOFF_CAP)}")
    session_expiry: float = Field(SESSION_EXPIRY, gt=0, description="the platform's interactive session lifetime, "
                                                                       "until a session's own is learnt")
    renew_when_remaining: float = Field(RENEW_WHEN_REMAINING, gt=0, le=1,
                                        description="renew once less than this part of the learnt lifetime remains")
    pending_limit: float = Field(PENDING_LIMIT, gt=0, description="seconds Pending before a session is unschedulable")
    terminating_limit: float = Field(TERMINATING_LIMIT, gt=0,
                                     description="seconds Terminating or Unknown before a session is stuck")
    capacity: bool = Field(True, description="plan creates against the platform's free capacity")
    destructive_settle: float = Field(DESTRUCTIVE_SETTLE, ge=0,
                                      description="seconds a manifest file must stay unchanged before a change "
                                                  "that destroys live sessions acts (0: at once)")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        problem = rules.name_problem(value)
        if problem is None and len(value) > MAX_PREFIX_LENGTH:
            problem = f"must be at most {MAX_PREFIX_LENGTH} characters"
        if problem is not None:
            raise ValueError(f"prefix {value!r} {problem}")
        return value


def default_status_file(state: Path, server: str, prefix: str) -> Path:
    """Where ``run`` keeps its status when no ``--status-file`` is given.

    ``$XDG_STATE_HOME/canfar-controller/<state-dir-name>-<8 hex>/status.json``, the hex being
    SHA-256 of the resolved state directory, the server URL and the prefix: two controllers (or
    a demo and a real run) never share a memory, and ``status`` and ``plan`` find the daemon's
    file by computing the same path from the same three settings.
    """
    resolved = state.resolve()
    digest = hashlib.sha256(f"{resolved}\n{server}\n{prefix}".encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", resolved.name) or "root"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "canfar-controller" / f"{name}-{digest}" / "status.json"


def status_file_of(settings: ControllerSettings, server: str | None, *, demo: bool = False) -> Path:
    """The explicit ``--status-file``, or the default one for this state directory, server and prefix.

    A ``run --simulator`` demo (``demo``) is keyed by its state directory and prefix alone: its
    server's port is random, and one demo of a directory keeps one status directory across runs.
    """
    if settings.status_file is not None:
        return settings.status_file
    assert settings.state is not None
    if demo:
        return default_status_file(settings.state, DEMO_SERVER_KEY, settings.prefix)
    if server is None:
        raise ConfigError(
            "cannot find the status file: pass --status-file FILE, or --server URL (or CANFAR_URL), "
            "which with --state and --prefix locates the file `run` writes (or --simulator for a demo's)"
        )
    return default_status_file(settings.state, server, settings.prefix)


def settings_from(args: argparse.Namespace) -> ControllerSettings:
    """Environment first, flags on top; errors name the setting. The state directory must be readable."""
    overrides = {key: value for key, value in vars(args).items()
                 if key in ControllerSettings.model_fields and value is not None}
    try:
        settings = ControllerSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    if settings.state is None:
        raise ConfigError("no state directory: pass --state DIR or set CANFAR_CONTROLLER_STATE")
    check_state_dir(settings.state)
    return settings


def check_state_dir(state: Path) -> None:
    """A ``ConfigError`` in one line unless ``state`` is a directory we can list and read."""
    if not state.exists():
        raise ConfigError(f"state directory {state} does not exist")
    if not state.is_dir():
        raise ConfigError(f"state directory {state} is not a directory")
    if not os.access(state, os.R_OK | os.X_OK):
        raise ConfigError(f"state directory {state} cannot be read (permission denied)")


def plan_options(settings: ControllerSettings) -> PlanOptions:
    return PlanOptions(prefix=settings.prefix, allow_empty=settings.allow_empty,
                       max_creates=settings.max_creates_per_pass, restart_backoff=settings.restart_backoff,
                       session_expiry=settings.session_expiry, renew_when_remaining=settings.renew_when_remaining,
                       pending_limit=settings.pending_limit, terminating_limit=settings.terminating_limit,
                       check_capacity=settings.capacity, destructive_settle=settings.destructive_settle)


def add_state_options(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    """The state directory and prefix flags that pick the controller (``run`` and the report commands)."""
    if positional:
        parser.add_argument("state", type=Path, metavar="DIR", help="the state directory")
    else:
        parser.add_argument("--state", type=Path, metavar="DIR",
                            help="directory of SessionSet manifests (env CANFAR_CONTROLLER_STATE)")
    parser.add_argument("--prefix", help="ownership prefix of managed session names (default cc)")
