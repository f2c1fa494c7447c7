"""``plan``, ``status``, ``restart`` and ``validate``: the commands that look at a controller, not run it.

Each one reads (a state directory, the daemon's status file, one listing of the service) and
reports, or leaves a request for the daemon to act on; none of them holds the state directory's
lock or changes a session. ``run`` itself, the daemon, is in :mod:`controller.cli.controller`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from controller.cli.common import add_client_options, client_settings, print_error
from controller.cli.config import (
    ControllerSettings,
    add_state_options,
    plan_options,
    settings_from,
    status_file_of,
)
from controller.cli.demo import SIMULATOR_DEFAULTS
from controller.cli.statustable import pending_line, table
from controller.client import AsyncSession
from controller.client.credentials import CredentialStatus
from controller.errors import ConfigError
from controller.ledger import Ledger, ledger_paths
from controller.listanswer import anomalies_of
from controller.models import ObservedSession
from controller.outcome import describe_credential
from controller.plan import Create, Destroy, plan
from controller.plan.autoscale import Reading
from controller.rebase import rebase
from controller.reconcile import describe
from controller.restarts import request_restart
from controller.signals import SIGNAL_TIMEOUT, SignalReader
from controller.statedir import StateLoader
from controller.statusfile import read_status

PLAN_EXIT_CODES = """\
exit status:
  0  nothing to do: the service already matches the manifests
  2  the next pass would create or destroy sessions (listed above)
  1  an error: a missing or unreadable state directory, an invalid manifest, or the service
     could not be listed (the reason is on stderr)
"""


def register(subparsers: Any) -> None:
    plan_parser = subparsers.add_parser(
        "plan", help="show what the next pass would do (exit 2 if anything, 1 on errors)",
        description="List the sessions once and show what the next pass would create and destroy.",
        epilog=PLAN_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_state_options(plan_parser, positional=False)
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
    add_state_options(status, positional=False)
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
    add_state_options(restart, positional=False)
    restart.add_argument("--server", metavar="URL",
                         help="the daemon's server URL, used only to find its files (env CANFAR_URL)")
    _add_status_file_option(restart)
    restart.set_defaults(func=cmd_restart)

    validate = subparsers.add_parser("validate", help="check a state directory; exit 1 on any error",
                                     description="Check every manifest of a state directory, without a server.")
    add_state_options(validate, positional=True)
    validate.add_argument("--strict", action="store_true",
                          help="also exit 1 when the directory defines no SessionSet at all")
    validate.set_defaults(func=cmd_validate)


def _add_status_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status-file", type=Path, metavar="FILE",
                        help="the daemon's status file (default: the one `run` writes for this state directory, "
                             "server and prefix)")
    parser.add_argument("--simulator", action="store_true",
                        help="the daemon is a `run --simulator` demo: find its files by state directory and "
                             "prefix alone (its server's port changes from run to run)")


def cmd_plan(args: argparse.Namespace) -> int:
    """List once and plan with the daemon's remembered expectations; 0 nothing, 2 changes, 1 errors."""
    settings = settings_from(args)
    assert settings.state is not None
    # With the time, so that a destructive change the daemon would hold shows as held here too.
    desired = StateLoader(settings.state, prefix=settings.prefix).load(time.time())
    client_config = client_settings(args)
    # Read only: a torn journal is copied aside by the daemon, not by a look at its plan.
    status_file = status_file_of(settings, client_config.require_url(), demo=args.simulator)
    ledger = Ledger(*ledger_paths(status_file), copy_torn=False)
    memory, now = ledger.load(), time.time()
    rebase(memory, now, ledger.clock_offset)  # the daemon's times onto this clock, as a restart would
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
    decided = plan(desired, observed, memory, now, options=options, anomalies=anomalies_of(observed),
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
            "pending": [dataclasses.asdict(change) for change in decided.pending],
            "manifest_errors": [str(e) for e in desired.errors],
        }, indent=2))
    else:
        for error in desired.errors:
            print(f"invalid: {error}")
        for action in actions:
            print(describe(action))
        for renew in decided.renews:
            print(f"renew {renew.session_id} {renew.name} (set {renew.set_name})")
        for change in decided.pending:
            print(pending_line(change))
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
