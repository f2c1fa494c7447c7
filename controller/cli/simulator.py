"""``canfar-controller simulator``: serve a simulated skaha session service until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from controller.cli.common import print_error
from controller.simulator import Simulator, SimulatorConfig, SimulatorServer


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulator",
        help="serve an in-memory skaha session service for offline development",
        description="Serve an in-memory skaha session service at http://HOST:PORT/skaha/v1 "
                    "until SIGINT or SIGTERM.",
    )
    defaults = SimulatorConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000,
                        help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--token", default=None,
                        help="accept only this bearer token (default: any bearer token)")
    parser.add_argument("--user", default=defaults.user,
                        help="user every request maps to (default: %(default)s)")
    parser.add_argument("--cores", type=float, default=defaults.cores,
                        help="cluster CPU cores (default: %(default)s)")
    parser.add_argument("--ram", type=float, default=defaults.ram_gb,
                        help="cluster RAM in GB (default: %(default)s)")
    parser.add_argument("--max-interactive", type=int, default=defaults.max_interactive,
                        help="per-user cap on interactive sessions (default: %(default)s)")
    parser.add_argument("--time-scale", type=float, default=defaults.time_scale,
                        help="simulated seconds per real second (default: %(default)s)")
    parser.add_argument("--error-rate", type=float, default=0.0,
                        help="fraction of requests answered 500/503 (default: %(default)s)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added to every answer (default: %(default)s)")
    parser.add_argument("--drop-rate", type=float, default=0.0,
                        help="fraction of connections closed without an answer (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault dice (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 1 on bad settings or a busy port."""
    try:
        config = SimulatorConfig(
            user=args.user, token=args.token, cores=args.cores, ram_gb=args.ram,
            max_interactive=args.max_interactive, time_scale=args.time_scale, error_rate=args.error_rate,
            latency=args.latency, drop_rate=args.drop_rate, seed=args.seed,
        )
        server = SimulatorServer(Simulator(config), host=args.host, port=args.port)
    except (ValueError, OSError) as error:
        return print_error(f"simulator: {error}")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(server.url, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
