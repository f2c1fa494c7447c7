"""An in-memory skaha session service, over real HTTP or in-process, for tests, demos and offline work.

It follows the REST contract of the real server (``/work/shared/reference/skaha-api.md``): same
paths, parameters, status codes, error texts and JSON; the official ``canfar`` client works against
it unchanged. Offline development::

    canfar-controller simulator --port 8000 --time-scale 60     # prints http://127.0.0.1:8000/skaha/v1
    CANFAR_URL=http://127.0.0.1:8000/skaha/v1 CANFAR_TOKEN=anything python my_script.py

In tests, over loopback HTTP or in-process (no sockets; any base URL)::

    sim = Simulator(SimulatorConfig(token="t"), clock=ManualClock())
    with SimulatorServer(sim) as server:     # server.url, then sim.requests / sim.inject_fault(...)
        ...
    AsyncSession(url="http://simulator.invalid/skaha/v1", token="t", transport=sim.async_transport())

Faults on demand, for a controller that must survive a misbehaving service (``faults``)::

    sim.inject_fault("POST", "/session", status=504, apply_after=3.0)  # error now, create lands 3 s later
    sim.inject_fault("POST", "/session", status=None, processed=True)  # create made, answer lost
    sim.inject_fault("GET", "/session", status=429, retry_after=5)     # any status, with Retry-After
    sim.inject_fault("POST", "/session", status=400, count=None, name="cc-bad-*")  # only that set
    sim.inject_delay("POST", "/session", seconds=0.5, apply="after")   # slow create, lands when done
    sim.inject_list_fault("partial", keep=0.5)   # or "empty", "garbage", "truncated": still 200
    sim.inject_list_fault("consistent", count=None, keep=0.5)  # the same half left out of every list

Deferred effects land in simulated-time order before the next request (or ``sim.catch_up()``);
a slow request still lands when its client hangs up or its in-process task is cancelled. The
ground truth for checks: ``sim.requests`` (``status`` the client got, ``applied_at``,
``session_id``), ``sim.created`` (every session made, by which request), ``sim.in_flight()``
(requests arrived and not yet answered: wait on it to kill a client mid-request) and
``sim.deferred()`` (effects still to come).

Simulated behaviour worth knowing: headless ``cmd``/``args`` are read as the server renders them
and common programs (``echo``, ``env``, ``sleep N``, ``sh -c``, ``python -c`` …) end with their
exit code, their output being the logs; anything else runs until deleted (see ``workload``).
Sessions that do not fit the configured cores/RAM stay ``Pending``; interactive ones fail at
``session_expiry`` unless renewed; a DELETE removes a session from lists at once. Images outside
the public cache need registry auth and only ``private_images`` actually pull, or every harbor
image with ``accept_private_images`` (see ``sessionroutes``).

Modules, one job each:

- ``clock``: ``ManualClock`` for deterministic tests;
- ``config``: ``SimulatorConfig``, the cluster size, limits, images and faults;
- ``workload``: what a headless command line does; ``process``, ``shell`` and ``pythonc`` are
  the simulated process, its ``sh -c`` subset and its ``python -c`` subset;
- ``state``: sessions, lifecycle and capacity over simulated time;
- ``render``: the server's JSON and text formats;
- ``routes``: authentication, dispatch and error rendering (``handle``), the endpoints other than
  ``/session``;
- ``sessionroutes``: the ``/session`` resource, validated in the server's order;
- ``params``: request parameters read the server's way (first value, blank as none, Java numbers);
- ``faults``: targeted and seeded random faults;
- ``simulator``: ``Simulator``, tying clock, cluster, faults and the request log together;
- ``server``: ``SimulatorServer``, the HTTP front end;
- ``transport``: ``SimulatorTransport``/``AsyncSimulatorTransport``, the in-process httpx front ends.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.simulator.clock import ManualClock
    from controller.simulator.config import SimulatorConfig
    from controller.simulator.server import SimulatorServer
    from controller.simulator.simulator import Creation, InFlight, RecordedRequest, Simulator
    from controller.simulator.transport import AsyncSimulatorTransport, SimulatorTransport
    from controller.simulator.wire import Request, Response

#: Where each public name lives. Loaded on first use (PEP 562), so the daemon, which only needs the
#: simulator for ``--simulator``, does not pay for importing its server at every start.
_EXPORTS = {
    "AsyncSimulatorTransport": "transport", "SimulatorTransport": "transport",
    "Creation": "simulator", "InFlight": "simulator", "RecordedRequest": "simulator", "Simulator": "simulator",
    "ManualClock": "clock",
    "Request": "wire", "Response": "wire",
    "SimulatorConfig": "config",
    "SimulatorServer": "server",
}

__all__ = [
    "AsyncSimulatorTransport",
    "Creation",
    "InFlight",
    "ManualClock",
    "RecordedRequest", "Request", "Response",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorTransport",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"controller.simulator.{module}"), name)
