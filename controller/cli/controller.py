"""``run``: the controller daemon (or, with ``--once``, a single pass), wired from its settings.

The commands that only look at a controller (``plan``, ``status``, ``restart``, ``validate``) are
in :mod:`controller.cli.reports`; this module is the one that takes the state directory's lock,
serves metrics and drives the reconciler.

Every flag has an environment alternative (``CANFAR_CONTROLLER_<FLAG>``, and the client's
``CANFAR_URL`` / ``CANFAR_TOKEN`` / ``CANFAR_TOKEN_FILE`` / ``CANFAR_CERTIFICATE`` /
``CANFAR_CONFIG``); a flag wins. Without a token or certificate, the canfar config's login is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import structlog

from controller.cli.common import add_client_options, client_settings, describe_source
from controller.cli.config import (
    ControllerSettings,
    add_state_options,
    plan_options,
    settings_from,
    status_file_of,
)
from controller.cli.demo import SIMULATOR_DEFAULTS, embedded_simulator, refuse_foreign_service
from controller.client import AsyncSession, ClientSettings
from controller.daemon import Daemon, Schedule, lock_state_dir
from controller.errors import ConfigError
from controller.ledger import Ledger, ledger_paths
from controller.observability.health import HealthState, MetricsServer, serve
from controller.observability.logs import configure_logging, register_secret
from controller.observability.metrics import ControllerMetrics
from controller.observability.repeats import RepeatFilter
from controller.outcome import REPEAT_AFTER, OutcomeHandler, run_one_pass
from controller.plan import (
    DESTRUCTIVE_SETTLE,
    PENDING_LIMIT,
    RENEW_WHEN_REMAINING,
    RESTART_BACKOFF_BASE,
    RESTART_BACKOFF_CAP,
    SESSION_EXPIRY,
    TERMINATING_LIMIT,
)
from controller.plan.durations import duration
from controller.reconcile import Reconciler
from controller.restarts import requests_dir
from controller.signals import SIGNAL_TIMEOUT, SignalReader
from controller.statedir import SETTLE_WINDOW, StateLoader


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run the controller daemon", description="Run the controller daemon.")
    add_state_options(run, positional=False)
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
                     help="how long the platform lets an interactive session live, assumed only until "
                          "the session's own lifetime is learnt from its start and expiry or a renew "
                          f"(default {SESSION_EXPIRY:g}, {duration(SESSION_EXPIRY)})")
    run.add_argument("--renew-when-remaining", type=float, metavar="FRACTION",
                     help="renew an interactive session once less than this part of its learnt lifetime "
                          "remains, never more than once per quarter of it (default "
                          f"{RENEW_WHEN_REMAINING:g}: with 4-day sessions, once less than a day remains); "
                          "spec.renew: false turns it off per set")
    run.add_argument("--pending-limit", type=float, metavar="SECONDS",
                     help="report a session Pending this long as unschedulable, with its events "
                          f"(default {PENDING_LIMIT:g})")
    run.add_argument("--terminating-limit", type=float, metavar="SECONDS",
                     help="report a session Terminating or Unknown this long as stuck, with its events "
                          f"(default {TERMINATING_LIMIT:g})")
    run.add_argument("--destructive-settle", type=float, metavar="SECONDS",
                     help="a manifest change that would destroy live sessions (a lower replicas, a Recreate or "
                          "maxUnavailable template change, a removed set) acts only once its file has been "
                          f"unchanged this long; creates do not wait (default {DESTRUCTIVE_SETTLE:g}; 0 = at once)")
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

