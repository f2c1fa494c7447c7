"""``canfar-controller auth``: which credential and server a deployment would use, and whether they work.

For a user to check a deployment before starting it: the same settings as ``run`` (flags, the
``CANFAR_*`` environment, the canfar config), then what they resolve to and from where, the
credential's expiry, and one authenticated call (a list of the user's sessions). Exit 0 when the
call succeeds, 1 otherwise. Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from controller.cli.common import add_client_options, client_settings, describe_source, print_error
from controller.client import Session
from controller.errors import ControllerError
from controller.outcome import describe_expiry


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "auth", help="show the credential and server that would be used, and make one authenticated call",
        description="Show which credential and server `run` would use and where each comes from, when the "
                    "credential expires, and list your sessions once to prove it works (exit 0; 1 if not).",
    )
    add_client_options(parser)
    parser.add_argument("--state-home", type=Path, metavar="DIR",
                        help="where a login refreshed from a read-only canfar config is kept: the directory "
                             "of `run`'s status file (otherwise a refresh made here lives in memory only)")
    parser.set_defaults(func=cmd_auth)


def cmd_auth(args: argparse.Namespace) -> int:
    settings = client_settings(args)
    if args.state_home is not None:
        settings = settings.model_copy(update={"credential_dir": args.state_home})
    credential, server = describe_source(settings)
    print(f"server:     {server}")
    print(f"credential: {credential}")
    settings.require_url()
    with Session(settings) as client:
        try:
            sessions = client.observe()
        except ControllerError as error:
            print(f"expiry:     {_expiry(client)}")
            return print_error(f"the authenticated call failed: {error}")
        print(f"expiry:     {_expiry(client)}")
    print(f"check:      listed {len(sessions)} session(s) with this credential: it works")
    return 0


def _expiry(client: Session) -> str:
    status = client.credential()
    return describe_expiry(status, time.time()) + (f"; UNUSABLE: {status.problem}" if status.problem else "")
