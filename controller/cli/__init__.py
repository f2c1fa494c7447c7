"""The command line: the one place that wires settings, client, simulator, metrics and daemon.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from controller import __version__
from controller.cli import auth, controller, memory, prune, reports, sessions, simulator
from controller.cli.common import ArgumentParser, print_error
from controller.errors import ControllerError


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="canfar-controller",
        description="Keep SessionSets of CANFAR Science Platform sessions alive.",
    )
    parser.add_argument("--version", action="version", version=f"canfar-controller {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (controller, reports, prune, sessions, simulator, auth, memory):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    client_log = logging.getLogger("controller.client")
    level = client_log.level
    if args.command != "run":
        # A one-shot command reports its final error once; the client's retry lines before it repeat it.
        client_log.setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except ControllerError as exc:  # every expected failure: one line, the reason, exit 1
        return print_error(exc)
    except KeyboardInterrupt:
        return 130
    finally:
        client_log.setLevel(level)
