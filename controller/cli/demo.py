"""``run --simulator``: the demo's own service, and the commands it prints to watch it from another terminal.

What it prints must work as printed in a new terminal, from any directory: the program by its
absolute path (a new terminal has no venv on PATH) and the state directory by its absolute path.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from controller.cli.common import client_settings, serve_error
from controller.cli.simulator import random_seed
from controller.client import ClientSettings
from controller.errors import ConfigError

#: The embedded demo's default intervals: short, so a new user sees the loop act within seconds.
SIMULATOR_DEFAULTS = {"interval": 5.0, "stats_interval": 15.0}


def refuse_foreign_service(args: argparse.Namespace) -> None:
    """``--simulator`` serves its own service: a ``--server`` (or its credentials) would be silently ignored."""
    given = [flag for flag, value in (("--server", args.server), ("--token-file", args.token_file),
                                      ("--certificate", args.certificate)) if value]
    if given:
        raise ConfigError(f"--simulator manages sessions on its own built-in service, so {' and '.join(given)} "
                          "cannot apply: drop it, or drop --simulator to manage that server")


def own_command() -> str:
    """This program as a command that works in any terminal: an absolute path, not what PATH may lack."""
    script = Path(sys.argv[0])
    if script.name == "canfar-controller" and script.is_file():
        return shlex.quote(str(script.absolute()))
    beside = Path(sys.executable).parent / "canfar-controller"  # `python -m controller` in a venv
    if beside.is_file():
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m controller"


def watch_commands(state_dir: Path, prefix_name: str, url: str, token: str) -> str:
    """The demo's banner: commands a new terminal runs verbatim, from any directory."""
    program = own_command()
    state = shlex.quote(str(state_dir.absolute()))
    prefix = "" if prefix_name == "cc" else f" --prefix {shlex.quote(prefix_name)}"
    return (
        f"canfar-controller: demo simulator at {url} (token {token})\n"
        "  watch it from another terminal:\n"
        f"    export CANFAR_URL={url} CANFAR_TOKEN={token}\n"
        f"    {program} status --simulator --state {state}{prefix}\n"
        f"    {program} sessions ps"
    )


@contextmanager
def embedded_simulator(args: argparse.Namespace, state: Path, prefix: str, concurrency: int
                       ) -> Iterator[ClientSettings]:
    """Serve the simulator on 127.0.0.1 and say, on stderr, how to look at it from another terminal."""
    token = args.simulator_token or secrets.token_urlsafe(12)
    from controller.simulator import Simulator, SimulatorConfig, SimulatorServer  # only for the demo

    simulator = Simulator(SimulatorConfig(token=token, cores=args.simulator_cores, ram_gb=args.simulator_ram,
                                          time_scale=args.simulator_time_scale, seed=random_seed()))
    try:
        server = SimulatorServer(simulator, host="127.0.0.1", port=args.simulator_port)
    except OSError as error:
        raise ConfigError(serve_error("the simulator", "127.0.0.1", args.simulator_port, error,
                                      "--simulator-port")) from None
    with server:
        structlog.get_logger("canfar_controller").info("embedded simulator started", url=server.url)
        # Printed, not logged: this token is the demo's own, and the log redactor would hide it.
        print(watch_commands(state, prefix, server.url, token), file=sys.stderr, flush=True)
        yield client_settings(args, url=server.url, token=token, token_file=None, certificate=None,
                              concurrency=concurrency)
