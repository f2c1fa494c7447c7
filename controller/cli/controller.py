"""``run``, ``plan``, ``status``, ``restart`` and ``validate``: the controller's own commands.

Every flag has an environment alternative (``CANFAR_CONTROLLER_<FLAG>``, and the client's
``CANFAR_URL`` / ``CANFAR_TOKEN`` / ``CANFAR_TOKEN_FILE`` / ``CANFAR_CERTIFICATE`` /
``CANFAR_CONFIG``); a flag wins. Without a token or certificate, the canfar config's login is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import structlog

from controller.cli.common import add_client_options, client_settings, describe_source, print_error
from controller.cli.config import ControllerSettings, plan_options, settings_from, status_file_of
from controller.cli.demo import embedded_simulator, refuse_foreign_service
from controller.cli.statustable import table
from controller.client import AsyncSession, ClientSettings
from controller.client.credentials import CredentialStatus
from controller.daemon import Daemon, Schedule, lock_state_dir
from controller.errors import ConfigError
from controller.ledger import Ledger, ledger_paths
from controller.listanswer import anomalies_of
from controller.models import ObservedSession
from controller.observability.health import HealthState, MetricsServer, serve
from controller.observability.logs import configure_logging, register_secret
from controller.observability.metrics import ControllerMetrics
from controller.observability.repeats import RepeatFilter
from controller.outcome import REPEAT_AFTER, OutcomeHandler, describe_credential, run_one_pass
from controller.plan import (
    PENDING_LIMIT,
    RESTART_BACKOFF_BASE,
    RESTART_BACKOFF_CAP,
    SESSION_EXPIRY,
    TERMINATING_LIMIT,
    Create,
    Destroy,
    plan,
)
from controller.plan.autoscale import Reading
from controller.plan.durations import duration
from controller.reconcile import Reconciler, describe
from controller.restarts import request_restart, requests_dir
from controller.signals import SIGNAL_TIMEOUT, SignalReader
from controller.statedir import SETTLE_WINDOW, StateLoader
from controller.statusfile import read_status

#: The embedded demo's default intervals: short, so a new user sees the loop act within seconds.
SIMULATOR_DEFAULTS = {"interval": 5.0, "stats_interval": 15.0}
PLAN_EXIT_CODES = """\
exit status:
  0  nothing to do: the service already matches the manifests
  2  the next pass would create or destroy sessions (listed above)
  1  an error: a missing or unreadable state directory, an invalid manifest, or the service
     could not be listed (the reason is on stderr)
"""


def register(subparsers: Any) -> None:
    _register_run(subparsers)
    _register_reports(subparsers)


def _register_run(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run the controller daemon", description="Run the controller daemon.")
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
    run.add_argument("--status-file", type=Path, metavar="FILE",
                     help="where the status of each pass is written (default: one file per state directory, "
                          "server and prefix under $XDG_STATE_HOME/canfar-controller/)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level (default info)")
    run.add_argument("--max-creates-per-pass", type=int, metavar="N",
                     help="most sessions created in one pass; the next pass starts at once if more are due "
                          "(default 500)")
    run.add_argument("--concurrency", type=int, metavar="N",
                     help="API calls in flight at once, and connections kept alive (default 32, like the canfar "
                          "client; env CANFAR_CONTROLLER_CONCURRENCY)")
    run.add_argument("--restart-backoff", type=float,
                     help="seconds before an ended slot runs again; doubles per consecutive end, "
                          f"up to {RESTART_BACKOFF_CAP:g} (default {RESTART_BACKOFF_BASE:g})")
    run.add_argument("--session-expiry", type=float, metavar="SECONDS",
                     help="how long the platform lets an interactive session live "
                          f"(default {SESSION_EXPIRY:g}, {duration(SESSION_EXPIRY)})")
    run.add_argument("--renew-when-remaining", type=float, metavar="FRACTION",
                     help="renew an interactive session once less than this part of its lifetime remains "
                          "(default 0.75: once a day with 4-day sessions); spec.renew: false turns it off per set")
    run.add_argument("--pending-limit", type=float, metavar="SECONDS",
                     help="report a session Pending this long as unschedulable, with its events "
                          f"(default {PENDING_LIMIT:g})")
    run.add_argument("--terminating-limit", type=float, metavar="SECONDS",
                     help="report a session Terminating or Unknown this long as stuck, with its events "
                          f"(default {TERMINATING_LIMIT:g})")
    run.add_argument("--no-capacity", dest="capacity", action="store_false", default=None,
                     help="create without checking the platform's free capacity (by default creates that "
                          "do not fit wait, instead of piling up Pending sessions)")
    run.add_argument("--simulator", action="store_true",
                     help="start the built-in skaha simulator and manage sessions there (no account needed)")
    run.add_argument("--simulator-port", type=int, default=0, metavar="PORT",
                     help="port of the built-in simulator on 127.0.0.1 (default: any free port; printed at start)")
    run.add_argument("--simulator-token", metavar="TOKEN",
                     help="the token the built-in simulator accepts (default: a random one, printed at start)")
    run.add_argument("--simulator-cores", type=float, default=64.0, help="simulated cluster cores (default 64)")
    run.add_argument("--simulator-ram", type=float, default=256.0,
                     help="simulated cluster RAM in GB of 10**9 bytes (default 256)")
    run.add_argument("--simulator-time-scale", type=float, default=1.0,
                     help="simulated seconds per real second (default 1); above 1 the simulator's timestamps "
                          "run ahead of the wall clock")
    run.set_defaults(func=cmd_run)


def _register_reports(subparsers: Any) -> None:
    plan_parser = subparsers.add_parser(
        "plan", help="show what the next pass would do (exit 2 if anything, 1 on errors)",
        description="List the sessions once and show what the next pass would create and destroy.",
        epilog=PLAN_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_state_options(plan_parser, positional=False)
    add_client_options(plan_parser)
    _add_status_file_option(plan_parser)
    plan_parser.add_argument("-o", "--output", choices=["text", "json"], default="text",
                             help="output format (default: text)")
    plan_parser.set_defaults(func=cmd_plan)

    status = subparsers.add_parser(
        "status", help="show each SessionSet as the daemon last recorded it (no server needed)",
        description="Show what the daemon recorded after its last pass: each SessionSet's desired, running, "
                    "pending and ended sessions, and its errors. Reads the status file only; exit 1 when "
                    "there is none yet.",
    )
    _add_state_options(status, positional=False)
    status.add_argument("--server", metavar="URL",
                        help="the daemon's server URL, used only to find its status file (env CANFAR_URL)")
    status.add_argument("--canfar-config", type=Path, metavar="FILE",
                        help="the canfar config whose active server the daemon uses, to find its status file "
                             "(default ~/.canfar/config.yaml; env CANFAR_CONFIG)")
    _add_status_file_option(status)
    status.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help="output format (default: text)")
    status.set_defaults(func=cmd_status)

    restart = subparsers.add_parser(
        "restart", help="run a SessionSet afresh (a complete or crash-looping one), without editing it",
        description="Ask the controller to run SET afresh at its next pass, like `kubectl rollout restart`: its "
                    "finished slots run again, and its restart back-off, crash-loop history and create back-off "
                    "are forgotten. Running sessions are not touched.",
    )
    restart.add_argument("set", metavar="SET", help="the SessionSet's name")
    _add_state_options(restart, positional=False)
    restart.add_argument("--server", metavar="URL",
                         help="the daemon's server URL, used only to find its files (env CANFAR_URL)")
    _add_status_file_option(restart)
    restart.set_defaults(func=cmd_restart)

    validate = subparsers.add_parser("validate", help="check a state directory; exit 1 on any error",
                                     description="Check every manifest of a state directory, without a server.")
    _add_state_options(validate, positional=True)
    validate.add_argument("--strict", action="store_true",
                          help="also exit 1 when the directory defines no SessionSet at all")
    validate.set_defaults(func=cmd_validate)


def _add_state_options(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    if positional:
        parser.add_argument("state", type=Path, metavar="DIR", help="the state directory")
    else:
        parser.add_argument("--state", type=Path, metavar="DIR",
                            help="directory of SessionSet manifests (env CANFAR_CONTROLLER_STATE)")
    parser.add_argument("--prefix", help="ownership prefix of managed session names (default cc)")


def _add_status_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status-file", type=Path, metavar="FILE",
                        help="the daemon's status file (default: the one `run` writes for this state directory, "
                             "server and prefix)")
    parser.add_argument("--simulator", action="store_true",
                        help="the daemon is a `run --simulator` demo: find its files by state directory and "
                             "prefix alone (its server's port changes from run to run)")


# -- run --------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.simulator:
        refuse_foreign_service(args)
        demo = {k: v for k, v in SIMULATOR_DEFAULTS.items() if k not in settings.model_fields_set}
        settings = settings.model_copy(update=demo)
    configure_logging(settings.log_level)
    assert settings.state is not None
    lock = lock_state_dir(settings.state)
    try:
        with ExitStack() as stack:
            client_config = (stack.enter_context(embedded_simulator(args, settings.state, settings.prefix,
                                                                    settings.concurrency)) if args.simulator
                             else client_settings(args, concurrency=settings.concurrency))
            status_file = status_file_of(settings, client_config.require_url(), demo=args.simulator)
            # A login refreshed from a read-only canfar config is kept beside the controller's memory.
            client_config = client_config.model_copy(update={"credential_dir": status_file.parent})
            if args.simulator and settings.status_file is None:
                # The embedded simulator starts empty: what a previous demo remembered about its
                # sessions (finished slots, expected creates) would only mislead this one.
                for path in (status_file, *ledger_paths(status_file)):
                    path.unlink(missing_ok=True)
            return asyncio.run(_run(args, settings, client_config, status_file))
    finally:
        os.close(lock)


def _register_credentials(client_config: ClientSettings) -> None:
    """Tell the log redactor the token in use, as a second line of defence behind never logging it."""
    if client_config.token is not None:
        register_secret(client_config.token.get_secret_value())
    if client_config.token_file is not None:
        with contextlib.suppress(OSError, ValueError):  # the client reports an unusable token file itself
            register_secret(client_config.token_file.read_text(encoding="utf-8").strip())


def _serve_metrics(settings: ControllerSettings, metrics: ControllerMetrics, health: HealthState) -> MetricsServer:
    try:
        return serve(settings.metrics_host, settings.metrics_port, metrics.registry, health)
    except ConfigError as error:
        raise ConfigError(f"{error}; choose another --metrics-port (or CANFAR_CONTROLLER_METRICS_PORT), "
                          "or 0 to serve no metrics") from None


async def _run(args: argparse.Namespace, settings: ControllerSettings, client_config: ClientSettings,
               status_file: Path) -> int:
    _register_credentials(client_config)
    retries = RepeatFilter(REPEAT_AFTER)  # a service that is down would repeat its retry lines every pass
    logging.getLogger("controller.client").addFilter(retries)
    try:
        return await _serve(args, settings, client_config, status_file)
    finally:
        logging.getLogger("controller.client").removeFilter(retries)


async def _serve(args: argparse.Namespace, settings: ControllerSettings, client_config: ClientSettings,
                 status_file: Path) -> int:
    metrics = ControllerMetrics()
    health = HealthState(interval=settings.interval)
    server = _serve_metrics(settings, metrics, health) if settings.metrics_port and not args.once else None
    assert settings.state is not None
    try:
        credential, server_from = describe_source(client_config)
        structlog.get_logger("canfar_controller").info("credential in use", source=credential, server=server_from)
        async with AsyncSession(client_config, on_request=metrics.observe_api,
                                on_refresh=metrics.credential.refreshed) as client:
            reconciler = Reconciler(
                # One pass acts on the files as they are; the daemon waits for changed files to settle.
                loader=StateLoader(settings.state, prefix=settings.prefix,
                                   settle_window=0.0 if args.once else SETTLE_WINDOW),
                client=client,
                options=plan_options(settings),
                ledger=Ledger.beside(status_file),
                dry_run=args.dry_run,
                concurrency=settings.concurrency,
                requests_dir=requests_dir(status_file),
                stats_max_age=3 * settings.stats_interval,
                # One pass has no next pass to take a slow signal's reading: it waits the whole timeout.
                signals=SignalReader(grace=SIGNAL_TIMEOUT) if args.once else None,
            )
            handler = OutcomeHandler(metrics=metrics, health=health, status_file=status_file,
                                     interval=settings.interval, credential=client.credential)
            try:
                if args.once:
                    return await _once(reconciler, handler, settings)
                daemon = Daemon(reconciler, handler, schedule=Schedule(settings.interval, settings.stats_interval),
                                metrics=metrics, state_dir=settings.state)
                return await daemon.run()
            finally:
                await reconciler.close()
    finally:
        if server is not None:
            server.shutdown()


async def _once(reconciler: Reconciler, handler: OutcomeHandler, settings: ControllerSettings) -> int:
    if settings.capacity:
        reconciler.platform.prefetch()  # alongside the pass's list call; a failure plans without
    report = await run_one_pass(reconciler, handler)
    if report.error is not None:
        raise report.error
    assert report.outcome is not None
    return 0 if report.outcome.result == "success" else 1


# -- plan, status, restart, validate ------------------------------------------------------------

def cmd_plan(args: argparse.Namespace) -> int:
    """List once and plan with the daemon's remembered expectations; 0 nothing, 2 changes, 1 errors."""
    settings = settings_from(args)
    assert settings.state is not None
    desired = StateLoader(settings.state, prefix=settings.prefix).load()
    client_config = client_settings(args)
    # Read only: a torn journal is copied aside by the daemon, not by a look at its plan.
    status_file = status_file_of(settings, client_config.require_url(), demo=args.simulator)
    memory = Ledger(*ledger_paths(status_file), copy_torn=False).load()
    # A refresh made here is kept where `run` looks for it (a read-only canfar config).
    client_config = client_config.model_copy(update={"credential_dir": status_file.parent})

    async def fetch() -> tuple[list[ObservedSession], dict[str, tuple[Reading, ...]]]:
        reader = SignalReader(grace=SIGNAL_TIMEOUT)  # autoscaled sets plan with their signals as they are now
        reader.start(desired.sets)
        try:
            async with AsyncSession(client_config) as client:
                return await client.observe(), await reader.collect(desired.sets)
        finally:
            await reader.aclose()

    options = plan_options(settings.model_copy(update={"max_creates_per_pass": 10**6, "capacity": False}))
    observed, readings = asyncio.run(fetch())
    decided = plan(desired, observed, memory, time.time(), options=options, anomalies=anomalies_of(observed),
                   signals=readings)
    actions: list[Create | Destroy] = [*decided.destroys, *decided.creates]
    if args.output == "json":
        print(json.dumps({
            "changes": decided.changes,
            "destroy": [{"set": d.set_name, "id": d.session_id, "name": d.name, "reason": d.reason}
                        for d in decided.destroys],
            "create": [{"set": c.set_name, "slot": c.slot, "name": c.name, "reason": c.reason}
                       for c in decided.creates],
            "renew": [{"set": r.set_name, "id": r.session_id, "name": r.name} for r in decided.renews],
            "manifest_errors": [str(e) for e in desired.errors],
        }, indent=2))
    else:
        for error in desired.errors:
            print(f"invalid: {error}")
        for action in actions:
            print(describe(action))
        for renew in decided.renews:
            print(f"renew {renew.session_id} {renew.name} (set {renew.set_name})")
        if not actions and not decided.renews:
            print("nothing to do")
    if desired.errors:
        return print_error(f"{len(desired.errors)} manifest error(s) in {settings.state}: "
                           "their sets keep their last good spec, or are left alone")
    return 2 if decided.changes else 0


def _watched_status_file(args: argparse.Namespace, settings: ControllerSettings) -> Path:
    """The status file of the daemon ``status`` and ``restart`` speak of: a demo's, or the one for its server."""
    if args.simulator:
        return status_file_of(settings, None, demo=True)
    server = args.server or client_settings(args).url
    if (settings.status_file is None and (server is None or not status_file_of(settings, server).exists())
            and status_file_of(settings, None, demo=True).exists()):
        raise ConfigError(f"no daemon of {settings.state} has written a status file for "
                          f"{'this server' if server else 'a server'}, but a `run --simulator` demo of it has: "
                          "add --simulator to look at the demo")
    return status_file_of(settings, server)


def cmd_status(args: argparse.Namespace) -> int:
    """What the daemon recorded after its last pass, from its status file alone."""
    settings = settings_from(args)
    path = _watched_status_file(args, settings)
    document = read_status(path)
    if args.output == "json":
        print(document.model_dump_json(indent=2))
        return 0
    credential = (None if document.credential is None
                  else describe_credential(CredentialStatus(**document.credential), time.time()))
    print(table(document, path, credential))
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    """Leave a restart request for the daemon of this state directory; it acts on its next pass."""
    settings = settings_from(args)
    assert settings.state is not None
    desired = StateLoader(settings.state, prefix=settings.prefix).load()
    if args.set not in desired.sets:
        known = ", ".join(sorted(desired.sets)) or "none"
        raise ConfigError(f"no valid SessionSet named {args.set!r} in {settings.state} (valid sets: {known})")
    path = _watched_status_file(args, settings)
    request_restart(path, args.set)
    print(f"restart of {args.set} requested: the controller runs it afresh at its next pass")
    interval = SIMULATOR_DEFAULTS["interval"] if args.simulator and "interval" not in settings.model_fields_set \
        else settings.interval
    idle = _no_daemon_since(path, interval)
    if idle is not None:
        print(f"canfar-controller: warning: {idle}, so the request waits for the next start", file=sys.stderr)
    return 0


def _no_daemon_since(path: Path, interval: float) -> str | None:
    """Why no daemon seems to be running for ``path`` (no pass written for 3 intervals), or ``None``."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"no daemon has written the status file {path} yet"
    except OSError:
        return None
    if age <= 3 * interval:
        return None
    since = f"{round(age)} seconds" if age < 120 else f"{round(age / 60)} minutes"
    return f"no daemon has written the status file {path} for {since}"


def cmd_validate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    assert settings.state is not None
    desired = StateLoader(settings.state, prefix=settings.prefix).load()
    for error in desired.errors:
        print(error, file=sys.stderr)
    if desired.errors:
        return print_error(f"{len(desired.errors)} error(s) in {settings.state}")
    if not desired.sets:
        empty = (f"{settings.state} defines no SessionSet (manifests are .yaml, .yml or .json files with "
                 "kind: SessionSet); the controller would manage nothing there")
        if args.strict:
            return print_error(empty)
        print(f"canfar-controller: warning: {empty}", file=sys.stderr)
        return 0
    print(f"{settings.state}: {len(desired.sets)} SessionSet(s) valid: {', '.join(sorted(desired.sets))}")
    return 0
