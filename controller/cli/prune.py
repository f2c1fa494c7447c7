"""``canfar-controller prune``: remove leftovers the inventory does not claim (a dry run unless ``--yes``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from controller.cli.common import add_client_options, client_settings, print_error
from controller.cli.config import add_state_options, settings_from, status_file_of
from controller.client import AsyncSession
from controller.ledger import Ledger, ledger_paths
from controller.models import ObservedSession
from controller.names import NameParser
from controller.prune import PruneResult, prune
from controller.statedir import StateLoader

EXIT_CODES = """\
exit status:
  0  nothing to prune, or (with --yes) every leftover was destroyed
  2  a dry run found leftovers (listed above; --yes destroys them)
  1  an error: no memory or no inventory yet, the list failed or was not trustworthy, or a destroy failed
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "prune", help="remove sessions with this prefix that the controller's inventory does not claim",
        description="List the sessions whose names carry this controller's prefix but that its memory's inventory "
                    "does not claim: sessions of sets it does not manage, e.g. left over after its memory volume "
                    "was lost. A dry run by default; --yes destroys them. Sessions of managed sets that another "
                    "writer made (Conflict) are shown but never pruned.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_state_options(parser, positional=False)
    add_client_options(parser)
    parser.add_argument("--status-file", type=Path, metavar="FILE",
                        help="the daemon's status file; its memory lives beside it (default: the one `run` writes "
                             "for this state directory, server and prefix)")
    parser.add_argument("--yes", action="store_true", help="destroy the leftovers (default: only list them)")
    parser.set_defaults(func=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    assert settings.state is not None
    client_config = client_settings(args)
    status_file = status_file_of(settings, client_config.require_url())
    snapshot, journal = ledger_paths(status_file)
    if not snapshot.exists():
        return print_error(f"no controller memory at {snapshot}: run the controller first (with the same --state, "
                           "--server and --prefix, or give --status-file); nothing was destroyed")
    memory = Ledger(snapshot, journal, copy_torn=False).load()  # read only
    desired = StateLoader(settings.state, prefix=settings.prefix).load()
    client_config = client_config.model_copy(update={"credential_dir": status_file.parent})

    async def run() -> PruneResult:
        async with AsyncSession(client_config) as client:
            return await prune(client, memory, desired, prefix=settings.prefix, where=str(snapshot), act=args.yes)

    result = asyncio.run(run())
    names = NameParser(settings.prefix)
    found = result.found
    if found.strangers:
        print(f"not pruned: {len(found.strangers)} session(s) of managed sets that another writer made "
              "(Conflict); stop that writer or give it its own --prefix:")
        print("\n".join(_row(session, names) for session in found.strangers))
    if not found.prunable:
        print("nothing to prune: every session with this prefix is in the inventory")
        return 0
    if not args.yes:
        print(f"would destroy {len(found.prunable)} leftover session(s) (dry run; --yes destroys them):")
        print("\n".join(_row(session, names) for session in found.prunable))
        return 2
    for session in found.prunable:
        if session.id in result.failed:
            print(f"canfar-controller: cannot destroy {session.id} {session.name}: {result.failed[session.id]}",
                  file=sys.stderr)
        else:
            print(f"destroyed {_row(session, names).strip()}")
    if result.failed:
        return print_error(f"{len(result.failed)} of {len(found.prunable)} leftover(s) could not be destroyed")
    return 0


def _row(session: ObservedSession, names: NameParser) -> str:
    parsed = names.parse(session.name)
    set_name = parsed.set_name if parsed is not None else "?"
    return f"  {session.id}  {session.name}  set {set_name}  {session.phase}"
