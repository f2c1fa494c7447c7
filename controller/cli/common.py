"""What every command shares: the error line, and the options that say where the service is and who we are."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from controller.client import ClientSettings
from controller.client.canfarconfig import DEFAULT_PATH as DEFAULT_CANFAR_CONFIG
from controller.client.canfarconfig import read_login
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
    group.add_argument("--canfar-config", type=Path, metavar="FILE",
                       help="the canfar client's config, whose active server and login are used when no token "
                            "or certificate is given (default ~/.canfar/config.yaml; env CANFAR_CONFIG)")


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
    if getattr(args, "canfar_config", None):
        values["config"] = args.canfar_config
    values.update(overrides)
    settings = load_settings(**values)
    if settings.explicit_credential:
        return settings.model_copy(update={"config": None})
    if settings.config is None and DEFAULT_CANFAR_CONFIG.expanduser().is_file():
        settings = settings.model_copy(update={"config": DEFAULT_CANFAR_CONFIG.expanduser()})
    if settings.config is None:
        return settings
    login = read_login(settings.config)
    if settings.url is None and login.url is None:
        raise login.error(f"its active server {login.server!r} has no URL")
    return settings.model_copy(update={"url": settings.url or login.url, "config": login.path})


def describe_source(settings: ClientSettings) -> tuple[str, str]:
    """Where the credential and the server come from, in words for a log line (never the secret)."""
    mode = settings.auth_mode
    if mode == "canfar-config":
        assert settings.config is not None
        login = read_login(settings.config)
        credential = f"{'X.509 certificate' if login.mode == 'x509' else 'OIDC login'} of {login.where}"
        server = f"{settings.safe_url} (" + (f"server {login.server!r} of the canfar config)"
                                             if settings.url == login.url else "--server / CANFAR_URL)")
        return credential, server
    credential = {"token": "CANFAR_TOKEN", "token-file": f"token file {settings.token_file}",
                  "certificate": f"certificate {settings.certificate}", "none": "none"}[mode]
    return credential, f"{settings.safe_url} (--server / CANFAR_URL)"


def serve_error(what: str, host: str, port: int, error: OSError, flag: str) -> str:
    """One wording for a port we cannot listen on, naming the flag that picks another."""
    return f"cannot serve {what} on {host}:{port}: {error.strerror or error}; choose another {flag}"
