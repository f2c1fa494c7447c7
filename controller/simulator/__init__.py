"""An in-memory skaha session service, over real HTTP or in-process, for tests, demos and offline work.

It follows the REST contract of the real server (``/work/shared/reference/skaha-api.md``): same
paths, parameters, status codes, error texts and JSON; the official ``canfar`` client works against
it unchanged. Offline development::

    canfar-controller simulator --port 8000 --time-scale 60     # prints http://127.0.0.1:8000/skaha/v1
    CANFAR_URL=http://127.0.0.1:8000/skaha/v1 CANFAR_TOKEN=anything python my_script.py

In tests::

    sim = Simulator(SimulatorConfig(token="t"), clock=ManualClock())
    with SimulatorServer(sim) as server:     # server.url, then sim.requests / sim.inject_fault(...)
        ...

Simulated behaviour worth knowing: headless ``cmd``/``args`` are read as the server renders them
and common programs (``echo``, ``env``, ``sleep N``, ``sh -c``, ``python -c`` …) end with their
exit code, their output being the logs; anything else runs until deleted (see ``workload``).
Sessions that do not fit the configured cores/RAM stay ``Pending``; interactive ones fail at
``session_expiry`` unless renewed; a DELETE removes a session from lists at once. Images outside
the public cache need registry auth and only ``private_images`` actually pull, or every harbor
image with ``accept_private_images`` (see ``routes``).

Modules, one job each:

- ``clock``: ``ManualClock`` for deterministic tests;
- ``config``: ``SimulatorConfig``, the cluster size, limits, images and faults;
- ``workload``: what a headless command line does; ``process``, ``shell`` and ``pythonc`` are
  the simulated process, its ``sh -c`` subset and its ``python -c`` subset;
- ``state``: sessions, lifecycle and capacity over simulated time;
- ``render``: the server's JSON and text formats;
- ``routes``: request validation and dispatch (``handle``);
- ``faults``: targeted and seeded random faults;
- ``simulator``: ``Simulator``, tying clock, cluster, faults and the request log together;
- ``server``: ``SimulatorServer``, the HTTP front end.
"""

from __future__ import annotations

from controller.simulator.clock import ManualClock
from controller.simulator.config import SimulatorConfig
from controller.simulator.server import SimulatorServer
from controller.simulator.simulator import RecordedRequest, Simulator
from controller.simulator.wire import Request, Response

__all__ = [
    "ManualClock",
    "RecordedRequest", "Request", "Response",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
]
