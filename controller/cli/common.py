"""What every command shares: the error line, and the options that say where the service is and who we are."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from controller.client import ClientSettings
from controller.client.settings import load_settings

#: The start of every error line any command prints.
ERROR_PREFIX = "canfar-controller: error: "


def print_error(message: object) -> int:
    """Print one error line (the same prefix for every command) to stderr; returns exit code 1."""
    print(f"{ERROR_PREFIX}{message}", file=sys.stderr)
    return 1


class ArgumentParser(argparse.ArgumentParser):
    """argparse with our error line: a usage mistake reads like every other error (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{ERROR_PREFIX}{message} (see: {self.prog} --help)\n")


def add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("session service")
    group.add_argument("--server", metavar="URL",
                       help="base URL including /v1, e.g. https://ws-uv.canfar.net/skaha/v1 (env CANFAR_URL)")
    group.add_argument("--token-file", type=Path, metavar="FILE",
                       help="file holding the bearer token, re-read when it changes (env CANFAR_TOKEN_FILE; "
                            "or CANFAR_TOKEN)")
    group.add_argument("--certificate", type=Path, metavar="FILE",
                       help="X.509 proxy certificate file (env CANFAR_CERTIFICATE)")


def client_settings(args: argparse.Namespace, **overrides: Any) -> ClientSettings:
    """Client settings from the environment, the flags on top, then ``overrides``.

    An explicit ``--token-file`` beats ``$CANFAR_TOKEN`` (a flag always wins over the environment).
    """
    values: dict[str, Any] = {}
    if getattr(args, "server", None):
        values["url"] = args.server
    if getattr(args, "token_file", None):
        values["token_file"] = args.token_file
        values["token"] = None
    if getattr(args, "certificate", None):
        values["certificate"] = args.certificate
    values.update(overrides)
    return load_settings(**values)


def serve_error(what: str, host: str, port: int, error: OSError, flag: str) -> str:
    """One wording for a port we cannot listen on, naming the flag that picks another."""
    return f"cannot serve {what} on {host}:{port}: {error.strerror or error}; choose another {flag}"
