"""``canfar-controller simulator``: serve a simulated skaha session service until interrupted."""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.cli.common import print_error, serve_error
from controller.simulator.config import DEFAULT_IMAGES, SimulatorConfig, images_from_json

if TYPE_CHECKING:
    from controller.simulator.simulator import RecordedRequest

WORKLOADS = """\
what headless sessions do:
  The service passes cmd as one argv element and splits args on single spaces, with no
  quoting; the simulator reads the command line the same way and plays it in simulated time.
  These end with their exit code, and what they print is the session's logs (view=logs):
    echo, printf, env, printenv, true, false, sleep N (s/m/h/d, infinity),
    sh/bash -c SCRIPT (; && || quoting $VAR ${VAR:-x} exit N export set -e),
    python -c CODE (print, arithmetic, f-strings, os.environ, sys.argv, sys.exit, time.sleep).
  A script cannot contain spaces (they split it): write sh -c echo${IFS}hi;exit${IFS}3.
  env prints the session environment: PATH, HOSTNAME, the env you sent (REPLICA_ID and
  REPLICA_COUNT when your client sends them), then skaha_hostname, skaha_username,
  skaha_sessionid, HOME, PWD and OMP_NUM_THREADS as the platform injects them.
  cmd="sleep 5" cannot start (one argv element); anything else (python train.py, no cmd)
  runs until destroyed or until its deadline (14 days headless, --session-expiry interactive).

lifecycle:
  Pending (image pull, 2 s) -> Running -> Completed (exit 0) | Failed (exit != 0, deadline).
  Sessions that do not fit --cores/--ram stay Pending; view=stats reports what admitted
  sessions request (flexible ones count with /context's defaultRequest: 1 core, 4 GiB).
  Interactive sessions fail at --session-expiry unless renewed (action=renew). Ended
  sessions vanish after 1 h (headless) or 24 h (interactive). DELETE removes a session from
  the list at once; its pod holds its cores for a few seconds more.

images:
  GET /image serves the platform's public images (images.canfar.net/skaha/astroml:latest,
  base-notebook, terminal:1.1.2, desktop, carta, firefly, marimo, ...). --images FILE
  replaces them with a JSON array as GET /image returns it; --image adds or replaces one.
  Other images from images.canfar.net need the x-skaha-registry-auth header; with
  --registry-auth they then run, without it they stay Pending with image-pull errors.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulator",
        help="serve an in-memory skaha session service for offline development",
        description="Serve an in-memory skaha session service at http://HOST:PORT/skaha/v1 "
                    "until SIGINT or SIGTERM. Exits 0 when stopped, 1 on bad settings or a busy port.",
        epilog=WORKLOADS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
                        help="cluster RAM in GB of 10**9 bytes (default: %(default)s)")
    parser.add_argument("--max-interactive", type=int, default=defaults.max_interactive,
                        help="per-user cap on interactive sessions (default: %(default)s)")
    parser.add_argument("--session-expiry", type=float, default=defaults.session_expiry, metavar="SECONDS",
                        help="lifetime of interactive sessions and what renew extends to "
                             "(default: %(default)s, 4 days)")
    parser.add_argument("--ignore-renews", action="store_true",
                        help="answer every renew 200 without moving the session's expiry (a broken renew)")
    parser.add_argument("--request-log", type=Path, default=None, metavar="FILE",
                        help="append every answered request to FILE as a JSON line (method, path, params, "
                             "status, simulated arrival time): what tests of a separate process count")
    parser.add_argument("--time-scale", type=float, default=defaults.time_scale,
                        help="simulated seconds per real second (default: %(default)s); above 1 the "
                             "service's timestamps (startTime, expiryTime, events) run ahead of the wall "
                             "clock, by (N - 1) x the time since it started")
    parser.add_argument("--images", type=Path, default=None, metavar="FILE",
                        help="replace the public image catalogue with FILE, a JSON array in the "
                             "shape of GET /image ([{\"id\": ..., \"types\": [...]}])")
    parser.add_argument("--image", action="append", default=[], metavar="ID=TYPE[,TYPE]",
                        help="add an image to the public catalogue, or replace its types "
                             "(repeatable; applied after --images)")
    parser.add_argument("--registry-auth", action="store_true",
                        help="run any image from images.canfar.net when the request carries a valid "
                             "x-skaha-registry-auth header, as the real service does")
    parser.add_argument("--error-rate", type=float, default=0.0,
                        help="fraction of requests answered 500/503 (default: %(default)s)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added to every answer (default: %(default)s)")
    parser.add_argument("--drop-rate", type=float, default=0.0,
                        help="fraction of connections closed without an answer (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the session ids and the fault dice, to replay a run (default: random, "
                             "so two simulators hand out different ids)")
    parser.set_defaults(func=run)


def random_seed() -> int:
    """A fresh seed: served simulators are not a replay unless asked, and their session ids differ."""
    return secrets.randbits(32)


def image_catalogue(images_file: Path | None, images: list[str]) -> dict[str, tuple[str, ...]]:
    """The public images: the defaults or ``images_file``, then each ``ID=TYPE[,TYPE]`` on top."""
    if images_file is None:
        catalogue = dict(DEFAULT_IMAGES)
    else:
        try:
            data = json.loads(images_file.read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(f"--images {images_file}: cannot read: {error.strerror or error}") from error
        except json.JSONDecodeError as error:
            raise ValueError(f"--images {images_file}: not JSON: {error}") from error
        catalogue = images_from_json(data, source=f"--images {images_file}")
    for entry in images:
        image, sep, kinds = entry.rpartition("=")
        types = tuple(kind.strip() for kind in kinds.split(",") if kind.strip())
        if not sep or not image or not types:
            raise ValueError(f"--image {entry!r}: expected ID=TYPE[,TYPE], "
                             "e.g. images.canfar.net/skaha/astroml:latest=notebook,headless")
        catalogue[image] = types
    return catalogue


def request_logger(path: Path) -> Callable[[RecordedRequest], None]:
    """Append each recorded request to ``path`` as one JSON line, flushed at once."""
    try:
        out = path.open("a", encoding="utf-8")
    except OSError as error:
        raise ValueError(f"--request-log {path}: cannot open: {error.strerror or error}") from error

    def write(request: RecordedRequest) -> None:
        out.write(json.dumps({"seq": request.seq, "at": request.at, "method": request.method, "path": request.path,
                              "params": {key: list(values) for key, values in request.params.items()},
                              "status": request.status}) + "\n")
        out.flush()

    return write


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 1 on bad settings or a busy port."""
    try:
        config = SimulatorConfig(
            user=args.user, token=args.token, cores=args.cores, ram_gb=args.ram,
            max_interactive=args.max_interactive, session_expiry=args.session_expiry,
            ignore_renews=args.ignore_renews,
            time_scale=args.time_scale, images=image_catalogue(args.images, args.image),
            accept_private_images=args.registry_auth, error_rate=args.error_rate,
            latency=args.latency, drop_rate=args.drop_rate, seed=random_seed() if args.seed is None else args.seed,
        )
        from controller.simulator.server import SimulatorServer  # the server only when serving
        from controller.simulator.simulator import Simulator

        simulator = Simulator(config)
        if args.request_log is not None:
            simulator.on_record = request_logger(args.request_log)
        server = SimulatorServer(simulator, host=args.host, port=args.port)
    except ValueError as error:
        return print_error(f"simulator: {error}")
    except OSError as error:
        return print_error(serve_error("the simulator", args.host, args.port, error, "--port"))
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
