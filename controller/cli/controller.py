"""``run``, ``plan``, ``status`` and ``validate``: the controller's own commands.

Every flag has an environment alternative (``CANFAR_CONTROLLER_<FLAG>``, and the client's
``CANFAR_URL`` / ``CANFAR_TOKEN`` / ``CANFAR_TOKEN_FILE`` / ``CANFAR_CERTIFICATE``); a flag wins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import structlog
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller import rules
from controller.cli.common import add_client_options, client_settings
from controller.client import AsyncSession
from controller.daemon import Daemon, Schedule, lock_state_dir
from controller.errors import ConfigError
from controller.models import SessionInfo
from controller.observability.health import HealthState, serve
from controller.observability.logs import configure_logging, register_secret
from controller.observability.metrics import ControllerMetrics
from controller.plan import Create, Destroy, Plan, PlanOptions, plan
from controller.reconcile import Reconciler, describe, read_status_file, status_row
from controller.simulator import Simulator, SimulatorConfig, SimulatorServer
from controller.spec import DesiredState
from controller.statedir import StateLoader

MAX_PREFIX_LENGTH = 16
#: The embedded demo's default intervals: short, so a new user sees the loop act within seconds.
SIMULATOR_DEFAULTS = {"interval": 5.0, "stats_interval": 15.0}


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
    max_creates_per_pass: int = Field(20, ge=1)
    concurrency: int = Field(8, ge=1, le=128, description="API calls in flight at once")
    allow_empty: bool = False
    restart_backoff: float = Field(10.0, ge=0, description="first wait before a slot runs again; doubles to 300 s")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        problem = rules.name_problem(value)
        if problem is None and len(value) > MAX_PREFIX_LENGTH:
            problem = f"must be at most {MAX_PREFIX_LENGTH} characters"
        if problem is not None:
            raise ValueError(f"prefix {value!r} {problem}")
        return value


def default_status_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "canfar-controller" / "status.json"


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run the controller daemon")
    _add_state_options(run, positional=False)
    add_client_options(run)
    run.add_argument("--interval", type=float, help="seconds between passes (default 30; 5 with --simulator)")
    run.add_argument("--stats-interval", type=float,
                     help="seconds between platform stats calls (default 60; 15 with --simulator)")
    run.add_argument("--once", action="store_true", help="run one pass and exit (0 if it succeeded)")
    run.add_argument("--dry-run", action="store_true", help="log what would be done, change nothing")
    run.add_argument("--allow-empty", action="store_true", default=None,
                     help="allow pruning every owned session when the state directory defines no sets")
    run.add_argument("--metrics-host", help="address for /metrics, /healthz, /readyz (default 127.0.0.1)")
    run.add_argument("--metrics-port", type=int, help="port for /metrics, /healthz, /readyz (default 8080; 0 = off)")
    run.add_argument("--status-file", type=Path, help="where the status of each pass is written")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--max-creates-per-pass", type=int)
    run.add_argument("--restart-backoff", type=float,
                     help="seconds before an ended slot runs again; doubles per consecutive end, "
                          "up to 300 (default 10)")
    run.add_argument("--simulator", action="store_true",
                     help="start the built-in skaha simulator and manage sessions there (no account needed)")
    run.add_argument("--simulator-cores", type=float, default=64.0, help="simulated cluster cores (default 64)")
    run.add_argument("--simulator-ram", type=float, default=256.0, help="simulated cluster RAM in GB (default 256)")
    run.add_argument("--simulator-time-scale", type=float, default=1.0,
                     help="simulated seconds per real second (default 1)")
    run.set_defaults(func=cmd_run)

    for name, summary, func in (
        ("plan", "show what the next pass would do (exit 2 if anything)", cmd_plan),
        ("status", "show each SessionSet: desired, running, pending, ended, errors", cmd_status),
    ):
        observer = subparsers.add_parser(name, help=summary)
        _add_state_options(observer, positional=False)
        add_client_options(observer)
        observer.add_argument("--status-file", type=Path, help="the daemon's status file (expectations, errors)")
        observer.add_argument("-o", "--output", choices=["text", "json"], default="text")
        observer.set_defaults(func=func)

    validate = subparsers.add_parser("validate", help="check a state directory; exit 1 on any error")
    _add_state_options(validate, positional=True)
    validate.set_defaults(func=cmd_validate)


def _add_state_options(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    if positional:
        parser.add_argument("state", type=Path, metavar="DIR", help="the state directory")
    else:
        parser.add_argument("--state", type=Path, metavar="DIR",
                            help="directory of SessionSet manifests (env CANFAR_CONTROLLER_STATE)")
    parser.add_argument("--prefix", help="ownership prefix of managed session names (default cc)")


def settings_from(args: argparse.Namespace) -> ControllerSettings:
    """Environment first, flags on top; errors name the setting."""
    overrides = {key: value for key, value in vars(args).items()
                 if key in ControllerSettings.model_fields and value is not None}
    try:
        settings = ControllerSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    if settings.state is None:
        raise ConfigError("no state directory: pass --state DIR or set CANFAR_CONTROLLER_STATE")
    return settings


# -- run --------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.simulator:
        demo = {k: v for k, v in SIMULATOR_DEFAULTS.items() if k not in settings.model_fields_set}
        settings = settings.model_copy(update=demo)
    configure_logging(settings.log_level)
    state = settings.state
    assert state is not None
    if not state.is_dir():
        raise ConfigError(f"state directory {state} does not exist")
    lock = lock_state_dir(state)
    try:
        with ExitStack() as stack:
            client_config = (stack.enter_context(_embedded_simulator(args)) if args.simulator
                             else client_settings(args))
            return asyncio.run(_run(args, settings, client_config))
    finally:
        os.close(lock)


@contextmanager
def _embedded_simulator(args: argparse.Namespace) -> Iterator[Any]:
    token = secrets.token_urlsafe(24)
    simulator = Simulator(SimulatorConfig(token=token, cores=args.simulator_cores, ram_gb=args.simulator_ram,
                                          time_scale=args.simulator_time_scale))
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        structlog.get_logger("canfar_controller").info("embedded simulator started", url=server.url)
        yield client_settings(args, url=server.url, token=token)


def _register_credentials(client_config: Any) -> None:
    """Tell the log redactor the token in use, as a second line of defence behind never logging it."""
    if client_config.token is not None:
        register_secret(client_config.token.get_secret_value())
    if client_config.token_file is not None:
        with contextlib.suppress(OSError, ValueError):  # the client reports an unusable token file itself
            register_secret(client_config.token_file.read_text(encoding="utf-8").strip())


async def _run(args: argparse.Namespace, settings: ControllerSettings, client_config: Any) -> int:
    _register_credentials(client_config)
    metrics = ControllerMetrics()
    health = HealthState(interval=settings.interval)
    server = None
    if settings.metrics_port and not args.once:
        server = serve(settings.metrics_host, settings.metrics_port, metrics.registry, health)
    assert settings.state is not None
    try:
        async with AsyncSession(client_config, on_request=metrics.observe_api) as client:
            reconciler = Reconciler(
                loader=StateLoader(settings.state, prefix=settings.prefix),
                client=client,
                options=PlanOptions(prefix=settings.prefix, allow_empty=settings.allow_empty,
                                    max_creates=settings.max_creates_per_pass,
                                    restart_backoff=settings.restart_backoff),
                metrics=metrics,
                dry_run=args.dry_run,
                concurrency=settings.concurrency,
                status_file=settings.status_file or default_status_file(),
            )
            if args.once:
                outcome = await reconciler.run_pass()
                return 0 if outcome.result == "success" else 1
            daemon = Daemon(reconciler, schedule=Schedule(settings.interval, settings.stats_interval),
                            metrics=metrics, health=health, state_dir=settings.state)
            return await daemon.run()
    finally:
        if server is not None:
            server.shutdown()


# -- plan, status, validate -------------------------------------------------------------------

def _observe(args: argparse.Namespace, settings: ControllerSettings) -> tuple[DesiredState, Plan, dict[str, str]]:
    """Load the state, list once, and plan with the daemon's remembered expectations."""
    assert settings.state is not None
    desired = StateLoader(settings.state, prefix=settings.prefix).load()
    expectations, last_errors = read_status_file(settings.status_file or default_status_file())

    async def fetch() -> list[SessionInfo]:
        async with AsyncSession(client_settings(args)) as client:
            return await client.fetch()

    observed = asyncio.run(fetch())
    decided = plan(desired, observed, expectations, time.time(),
                   options=PlanOptions(prefix=settings.prefix, allow_empty=settings.allow_empty,
                                       max_creates=10**6))
    return desired, decided, last_errors


def cmd_plan(args: argparse.Namespace) -> int:
    desired, decided, _ = _observe(args, settings_from(args))
    actions: list[Create | Destroy] = [*decided.destroys, *decided.creates]
    if args.output == "json":
        print(json.dumps({
            "changes": decided.changes,
            "destroy": [{"set": d.set_name, "id": d.session_id, "name": d.name, "reason": d.reason}
                        for d in decided.destroys],
            "create": [{"set": c.set_name, "slot": c.slot, "name": c.name, "reason": c.reason}
                       for c in decided.creates],
            "manifest_errors": [str(e) for e in desired.errors],
        }, indent=2))
    else:
        for error in desired.errors:
            print(f"invalid: {error}")
        for action in actions:
            print(describe(action))
        if not actions:
            print("nothing to do")
    return 2 if decided.changes else 0


def cmd_status(args: argparse.Namespace) -> int:
    desired, decided, last_errors = _observe(args, settings_from(args))
    rows = {name: status_row(s, last_errors.get(name)) for name, s in sorted(decided.statuses.items())}
    if args.output == "json":
        print(json.dumps({"sets": rows, "manifest_errors": [str(e) for e in desired.errors]}, indent=2))
        return 0
    header = f"{'SESSIONSET':<24} {'DESIRED':>7} {'RUNNING':>7} {'PENDING':>7} {'ENDED':>5}  STATE"
    print(header)
    for name, row in rows.items():
        state = ("invalid: " + row["invalid"] if row["invalid"] else "suspended" if row["suspended"]
                 else "error: " + row["last_error"] if row["last_error"] else row["waiting"] or "ok")
        desired_text = "-" if row["desired"] is None else str(row["desired"])
        print(f"{name:<24} {desired_text:>7} {row['running']:>7} {row['pending']:>7} {row['ended']:>5}  {state}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    assert settings.state is not None
    desired = StateLoader(settings.state, prefix=settings.prefix).load()
    for error in desired.errors:
        print(error, file=sys.stderr)
    if desired.errors:
        print(f"{len(desired.errors)} error(s) in {settings.state}", file=sys.stderr)
        return 1
    print(f"{settings.state}: {len(desired.sets)} SessionSet(s) valid: {', '.join(sorted(desired.sets)) or '-'}")
    return 0
