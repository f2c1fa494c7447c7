"""``canfar-controller sessions ...``: one subcommand per operation of the session client.

The server comes from ``--server`` or ``CANFAR_URL``, the credential from ``--token-file``,
``--certificate`` or ``CANFAR_TOKEN`` / ``CANFAR_TOKEN_FILE`` (there is deliberately no
``--token`` flag: it would show in ``ps`` and shell history); without those, both come from the
canfar config (``--canfar-config``, ``CANFAR_CONFIG``, ``~/.canfar/config.yaml``). Data goes to stdout (``-o json``
for machines), diagnostics to stderr; any failure prints the server's own message and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from controller.cli.common import add_client_options, client_settings, print_error
from controller.client import Session
from controller.errors import APIError, BatchError, ControllerError, InvalidRequestError
from controller.models import Event, PlatformStats, SessionInfo, parse_quantity
from controller.rules import KINDS, SessionSpec
from controller.units import GB, ram_text

Action = Callable[[Session, argparse.Namespace], Any]
#: What ``ps`` may filter on: the kinds and statuses the service lists, and its list views.
LISTED_KINDS = (*KINDS, "desktop-app")
STATUSES = ("Pending", "Running", "Terminating", "Completed", "Failed")
VIEWS = ("all", "interactive")
Render = Callable[[Any], str]


def register(subparsers: Any) -> None:
    """Add ``sessions`` and its subcommands to the top-level parser."""
    connection = argparse.ArgumentParser(add_help=False)
    add_client_options(connection)
    connection.add_argument("-o", "--output", choices=("text", "json"), default="text",
                            help="output format (default: text)")

    parser = subparsers.add_parser("sessions", help="list, create and manage sessions",
                                   description="Talk to the skaha session service directly.")
    parser.set_defaults(func=lambda args: _usage(parser))
    commands = parser.add_subparsers(dest="sessions_command", metavar="COMMAND")

    def command(name: str, help: str, action: Action, render: Render) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[connection], help=help, description=help)
        sub.set_defaults(func=lambda args: _run(args, action, render))
        return sub

    def ids_command(name: str, help: str, action: Action, render: Render) -> None:
        sub = command(name, help, lambda s, a: action(s, _resolve_ids(s, a)), render)
        sub.add_argument("ids", nargs="+", metavar="ID", help="session id or name, as `sessions ps` shows them")

    ps = command("ps", "list your sessions", _ps, _render_table)
    ps.add_argument("--kind", choices=LISTED_KINDS, help="only this kind")
    ps.add_argument("--status", choices=STATUSES, help="only this status")
    ps.add_argument("--view", choices=VIEWS, help="server view: 'all' (every user) or 'interactive'")

    create = command("create", "create one session, or several with --replicas", _create, _render_lines)
    create.add_argument("--name", required=True, help="session name (lowercase DNS label)")
    create.add_argument("--image", required=True, help="container image, e.g. images.canfar.net/skaha/x:1")
    create.add_argument("--kind", default="headless", choices=KINDS, help="session kind")
    create.add_argument("--cores", type=float, help="CPU cores (omit with --ram for flexible mode)")
    create.add_argument("--ram", type=float, help="RAM in GiB (omit with --cores for flexible mode)")
    create.add_argument("--gpu", type=int, help="number of GPUs")
    create.add_argument("--cmd", help="command to run (headless only)")
    create.add_argument("--args", help="arguments of the command, separated by spaces (headless only)")
    create.add_argument("--env", action="append", type=_env_item, default=[], metavar="KEY=VALUE",
                        help="environment variable (repeatable, headless only)")
    create.add_argument("--replicas", type=int, default=1, help="number of sessions, named NAME-1..N")

    ids_command("info", "show sessions in detail", lambda s, a: s.info(a.ids), _render_info)
    ids_command("logs", "print sessions' logs", lambda s, a: s.logs(a.ids), _render_logs)
    ids_command("events", "print sessions' Kubernetes events", lambda s, a: s.events(a.ids), _render_events)
    ids_command("delete", "delete sessions", lambda s, a: s.destroy(a.ids), _render_lines)
    ids_command("open", "open running sessions in a browser", _open, _render_lines)
    ids_command("renew", "extend sessions' lifetime", lambda s, a: s.renew(a.ids), _render_lines)

    prune = command("prune", "delete sessions whose name matches a prefix or regex", _prune, _render_lines)
    prune.add_argument("prefix", help="literal name prefix, or a regex if it has metacharacters")
    prune.add_argument("kind", nargs="?", default="headless", choices=LISTED_KINDS,
                       help="session kind (default: headless)")
    prune.add_argument("status", nargs="?", default="Completed", choices=STATUSES,
                       help="session status (default: Completed)")

    command("stats", "show platform capacity and usage", lambda s, a: s.stats(), _render_stats)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _env_item(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


# -- actions ------------------------------------------------------------------------------------


def _ps(session: Session, args: argparse.Namespace) -> list[SessionInfo]:
    return session.fetch(kind=args.kind, status=args.status, view=args.view)


def _resolve_ids(session: Session, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with each id or session name replaced by its id, checked against one list first.

    An unknown one sends nothing at all: a mistyped id would otherwise "succeed" silently (the
    service answers a delete of nothing, or empty logs). Names are what the controller's logs show.
    """
    listed = session.fetch()
    ids = {row.id for row in listed}
    resolved, problems = [], []
    for wanted in args.ids:
        named = [row for row in listed if row.name == wanted]
        if wanted in ids:
            resolved.append(wanted)
        elif len(named) == 1:
            resolved.append(named[0].id)
        elif named:
            choices = ", ".join(f"{row.id} ({row.status})" for row in named)
            problems.append(f"{len(named)} sessions are named {wanted}: {choices}; give an id")
        else:
            problems.append(f"no session {wanted} (ids are in `sessions ps`)")
    if problems:
        raise InvalidRequestError("; ".join(problems))
    return argparse.Namespace(**{**vars(args), "ids": resolved})


def _create(session: Session, args: argparse.Namespace) -> list[str]:
    spec = SessionSpec(args.name, args.image, args.kind, args.cores, args.ram, args.gpu, args.cmd, args.args,
                       tuple(args.env))
    return session.create(spec, replicas=args.replicas)


def _prune(session: Session, args: argparse.Namespace) -> list[str]:
    return session.destroy_with(args.prefix, kind=args.kind, status=args.status)


def _open(session: Session, args: argparse.Namespace) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opened = session.connect(args.ids)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return opened


def _run(args: argparse.Namespace, action: Action, render: Render) -> int:
    as_json = args.output == "json"
    try:
        settings = client_settings(args)
        with Session(settings) as session:
            result = action(session, args)
    except BatchError as error:
        _print_partial(error, as_json=as_json)
        return 1
    except ControllerError as error:
        return print_error(error)
    print(_dumps(result) if as_json else render(result), end="")
    return 0


def _print_partial(error: BatchError, *, as_json: bool) -> None:
    """Keep what succeeded (on stdout: e.g. the ids a partial create did make) and say what failed."""
    if as_json:
        print(_dumps({
            "operation": error.operation,
            "results": error.results,
            "errors": {key: _error_data(failure) for key, failure in error.errors.items()},
        }), end="")
    else:
        for key, value in error.results.items():
            print(f"{key}: {value if isinstance(value, str) else 'ok'}")
    print_error(error)


def _error_data(error: APIError) -> dict[str, Any]:
    return {"type": type(error).__name__, "status": error.status, "message": error.server_message}


# -- rendering ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"raw"})
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_jsonable(value), indent=2) + "\n"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(header), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "".join(line.rstrip() + "\n" for line in lines)


def _render_table(sessions: list[SessionInfo]) -> str:
    return _table(
        ("ID", "NAME", "KIND", "STATUS", "IMAGE", "STARTED"),
        ((s.id, s.name, s.kind, s.status, s.image, s.start_time.isoformat() if s.start_time else "-")
         for s in sessions),
    )


def _render_lines(ids: list[str]) -> str:
    return "".join(f"{item}\n" for item in ids)


#: Fields of a session that the service reports in decimal GB (a bare number, or ``8G`` on old servers).
_RAM_FIELDS = frozenset({"requestedRAM", "ramInUse"})


def _render_info(sessions: list[SessionInfo]) -> str:
    blocks = []
    for session in sessions:
        data = _jsonable(session)
        for key in _RAM_FIELDS.intersection(data):  # the service's decimal GB, shown in GiB like everything else
            amount = parse_quantity(data[key], bare_unit=GB)
            data[key] = ram_text(amount) if amount is not None else data[key]
        blocks.append("".join(f"{key}: {value}\n" for key, value in data.items()))
    return "\n".join(blocks)


def _render_logs(logs: dict[str, str]) -> str:
    if len(logs) == 1:
        text = next(iter(logs.values()))
        return text if not text or text.endswith("\n") else text + "\n"
    parts = []
    for session_id, text in logs.items():
        parts.append(f"==> {session_id} <==\n{text}" + ("" if not text or text.endswith("\n") else "\n"))
    return "\n".join(parts)


def _render_events(events: dict[str, list[Event]]) -> str:
    parts = []
    for session_id, rows in events.items():
        title = f"==> {session_id} <==\n" if len(events) > 1 else ""
        body = _table(("TYPE", "REASON", "MESSAGE", "FIRST-TIME", "LAST-TIME"),
                      ((e.type, e.reason, e.message, e.first_time, e.last_time) for e in rows)) if rows \
            else "no events\n"
        parts.append(title + body)
    return "\n".join(parts)


def _render_stats(stats: PlatformStats) -> str:
    def cores(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    def ram(value: float | None) -> str:
        return "-" if value is None else ram_text(value)

    rows = (
        ("CPU cores requested", cores(stats.cpu_cores_requested)),
        ("CPU cores available", cores(stats.cpu_cores_available)),
        ("RAM requested", ram(stats.ram_requested_bytes)),
        ("RAM available", ram(stats.ram_available_bytes)),
        ("Max cores per session", cores(stats.session_max_cpu_cores)),
        ("Max RAM per session", ram(stats.session_max_ram_bytes)),
    )
    return "".join(f"{label + ':':24} {value}\n" for label, value in rows)
