"""``canfar-controller memory check``: the controller's memory (ledger) as a person reads it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from controller.cli.common import client_settings
from controller.cli.config import settings_from, status_file_of
from controller.memorycheck import check

EXIT_CODES = """\
exit codes:
  0  the memory is whole
  1  the snapshot (or the journal) cannot be read: the controller will not start on it
  2  torn records: the controller drops them by itself at its next start, keeping every complete one
"""


def register(subparsers: Any) -> None:
    memory = subparsers.add_parser(
        "memory", help="inspect the controller's memory (its write-ahead ledger)",
        description="Inspect the controller's memory: the snapshot and the journal written ahead of every create.",
    )
    commands = memory.add_subparsers(dest="memory_command", metavar="COMMAND", required=True)
    check_parser = commands.add_parser(
        "check", help="say what the memory holds and what a repair would keep (changes nothing)",
        description="Read the controller's memory without changing it: what it holds (expected creates, the "
                    "uncertain ones by name), which records are torn, and what a repair would keep.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check_parser.add_argument("--status-file", type=Path, metavar="FILE",
                              help="the daemon's status file; the memory lives beside it")
    check_parser.add_argument("--state", type=Path, metavar="DIR",
                              help="directory of SessionSet manifests (with --server, to find the status file)")
    check_parser.add_argument("--server", metavar="URL", help="the daemon's server URL (env CANFAR_URL)")
    check_parser.add_argument("--prefix", help="ownership prefix of managed session names (default cc)")
    check_parser.set_defaults(func=cmd_memory_check)


def cmd_memory_check(args: argparse.Namespace) -> int:
    if args.status_file is not None:
        status_file = args.status_file
    else:
        settings = settings_from(args)
        status_file = status_file_of(settings, args.server or client_settings(args).url)
    report = check(status_file)
    for line in report.lines():
        print(line)
    return report.exit_code
