"""The in-process tier: the real controller against the simulator, with no sockets and a manual clock.

``Rig`` wires what ``canfar-controller run`` wires (state directory, client, ledger, reconciler,
outcome handler), except that the client talks to the simulator through an in-process httpx
transport and every clock is a ``ManualClock``: a pass takes milliseconds, and simulated time
moves only when the test says so. The controller's wall clock (``Rig.wall``) is that clock plus
the steps a test makes; its process time (``controller.clock``) runs on the manual clock from the
wall clock at each start. ``crash()`` models kill -9 exactly: the ledger files are as they
were at the instant of the kill, whatever the dying process would still have written.

The simulator's own state (``simulator.cluster``) is the ground truth the invariants are checked
against: what the controller is told may be a lie (faults), what exists may not be. Its request log
is read through ``RequestCursor`` (each request once, across trims) and ``FaultMirror`` (which
injected faults a request really took).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.client import AsyncSession
from controller.clock import ProcessClock
from controller.errors import ControllerError
from controller.journalfile import FileOps
from controller.ledger import Ledger, ledger_paths
from controller.observability.health import HealthState
from controller.observability.metrics import ControllerMetrics
from controller.outcome import OutcomeHandler, run_one_pass
from controller.passoutcome import PassOutcome
from controller.plan import PlanOptions
from controller.platform import STATS_TIMEOUT
from controller.reconcile import Reconciler
from controller.restarts import requests_dir
from controller.signals import SIGNAL_TIMEOUT, SignalReader
from controller.simulator import ManualClock, RecordedRequest, Simulator, SimulatorConfig
from controller.simulator.wire import Request
from controller.statedir import SETTLE_WINDOW, StateLoader

TOKEN = "rig-token"
#: How often the daemon's stats job refreshes the platform statistics (its default).
STATS_INTERVAL = 60.0
URL = "http://simulator.invalid/skaha/v1"
IMAGE = "images.canfar.net/skaha/astroml:latest"
LIVE = ("Pending", "Running")

SESSIONSET = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  template:
    image: {image}
    cores: 1
    ram: 1
    cmd: sleep
    args: "{seconds}"
    env:
      REVISION: "{revision}"
"""


def manifest(name: str, replicas: int, *, revision: int = 1, seconds: int = 10_000_000, image: str = IMAGE) -> str:
    return SESSIONSET.format(name=name, replicas=replicas, revision=revision, seconds=seconds, image=image)


_OWNED = re.compile(r"cc-(?P<set>[a-z0-9-]+?)-(?P<hash>[0-9a-f]{6})-(?P<slot>[1-9][0-9]{0,2})")


def owned(name: str) -> tuple[str, str, int] | None:
    """(set, template hash, slot) of a name this controller would own."""
    match = _OWNED.fullmatch(name)
    return (match["set"], match["hash"], int(match["slot"])) if match else None


class SteppingWall:
    """The controller's wall clock: the manual clock plus the steps a test makes (NTP, a resumed VM).

    The manual clock stays the monotonic time of the controller and the simulator's own clock: a
    step moves only what the controller reads as the wall clock, as libfaketime does to a process.
    """

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.offset = 0.0

    def __call__(self) -> float:
        return self.clock() + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Rig:
    """One controller and one simulated service in the same process."""

    root: Path
    seed: int = 0
    clock: ManualClock = field(default_factory=ManualClock)
    interval: float = 30.0
    #: Extra ``SimulatorConfig`` fields (a small cluster, a short session expiry...).
    service: dict[str, Any] = field(default_factory=dict)
    #: The ledger's file layer (a disk that fills up on demand); ``None``: the real one.
    file_ops: FileOps | None = None
    #: Real seconds a stats call may take (the daemon's 5 s; shorter keeps a hanging-stats test quick).
    stats_timeout: float = STATS_TIMEOUT
    #: Extra ``PlanOptions`` fields.
    options: dict[str, Any] = field(default_factory=dict)
    #: A second controller (its own state directory and memory) against this rig's service, clock and loop.
    service_of: Rig | None = None
    #: Client settings instead of the rig's (no retries): ``retries``, ``backoff``.
    client_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = self.root / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.token_file = self.root / "token"
        self.token_file.write_text(TOKEN)
        self.status_file = self.root / "status" / "status.json"
        config = {"cores": 100_000, "ram_gb": 400_000, **self.service}
        if self.service_of is not None:
            self.clock, self.simulator = self.service_of.clock, self.service_of.simulator
        else:
            self.simulator = Simulator(SimulatorConfig(token=TOKEN, seed=self.seed, **config), clock=self.clock)
        self.wall = SteppingWall(self.clock)
        self.metrics = ControllerMetrics(clock=self.process_time)
        self.health = HealthState(interval=self.interval, clock=self.clock)
        self.handler = OutcomeHandler(metrics=self.metrics, health=self.health, status_file=self.status_file,
                                      interval=self.interval, clock=self.process_time, wall=self.wall)
        self.restarts = 0
        self.loop = asyncio.new_event_loop() if self.service_of is None else self.service_of.loop
        self.client: AsyncSession | None = None
        self.reconciler = self._start()

    # -- the controller process -------------------------------------------------------------------

    def process_time(self) -> float:
        """The controller process's clock (``controller.clock``): each start anchors it on the wall clock."""
        return self.reconciler.clock()

    def _start(self) -> Reconciler:
        self.client = AsyncSession(url=URL, token_file=self.token_file, transport=self.simulator.async_transport(),
                                   **{"retries": 0, **self.client_settings})
        return Reconciler(
            # Every file looks freshly written (wall clock 0), so settling is decided on the manual clock.
            loader=StateLoader(self.state, prefix="cc", settle_window=SETTLE_WINDOW, wall_clock=lambda: 0.0),
            client=self.client,
            options=PlanOptions(prefix="cc", **self.options),
            ledger=Ledger(*ledger_paths(self.status_file), ops=self.file_ops),
            clock=ProcessClock(wall=self.wall, steady=self.clock),
            requests_dir=requests_dir(self.status_file),
            # Autoscale signals are waited for in full: a pass's readings do not depend on the machine's speed.
            signals=SignalReader(grace=SIGNAL_TIMEOUT),
            stats_timeout=self.stats_timeout,
        )

    def run_pass(self) -> PassOutcome:
        """One pass, reported through the outcome handler as the daemon does (stats refreshed as its job would)."""
        if self.process_time() - self.reconciler.platform.at >= STATS_INTERVAL:
            with contextlib.suppress(ControllerError):
                self.loop.run_until_complete(self.reconciler.platform.refresh())
        report = self.loop.run_until_complete(run_one_pass(self.reconciler, self.handler))
        if report.error is not None:
            raise report.error
        assert report.outcome is not None
        return report.outcome

    def passes(self, count: int, *, every: float = 5.0) -> PassOutcome:
        outcome = self.run_pass()
        for _ in range(count - 1):
            self.clock.advance(every)
            outcome = self.run_pass()
        return outcome

    def restart(self) -> None:
        """A clean restart: a new process that reads the ledger the old one left."""
        self._close()
        self.restarts += 1
        self.reconciler = self._start()

    def crash_mid_pass(self, *, in_flight: int = 1) -> bool:
        """kill -9 once ``in_flight`` requests are on the wire (or the pass ends); True if it was mid-pass.

        The ledger files are copied at the instant of the kill and put back afterwards, so nothing the
        dying process would still write (a snapshot on cancellation) survives it.
        """
        snapshot, journal = Ledger.beside(self.status_file).snapshot, Ledger.beside(self.status_file).journal

        async def kill() -> bool:
            task = asyncio.ensure_future(self.reconciler.run_pass())
            while not task.done() and self.simulator.in_flight() < in_flight:
                await asyncio.sleep(0)
            if task.done():
                task.result()
                return False
            saved = {path: path.read_bytes() if path.exists() else None for path in (snapshot, journal)}
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            for path, content in saved.items():
                if content is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(content)
            return True

        killed = self.loop.run_until_complete(kill())
        self._close()
        self.restarts += 1
        self.reconciler = self._start()
        return killed

    def _close(self) -> None:
        if self.reconciler.ledger is not None:
            self.reconciler.ledger.close()
        self.loop.run_until_complete(self.reconciler.close())
        if self.client is not None:
            self.loop.run_until_complete(self.client.aclose())

    def close(self) -> None:
        self._close()
        if self.service_of is None:  # a second controller shares the first one's loop
            self.loop.close()

    # -- the world --------------------------------------------------------------------------------

    def write(self, name: str, text: str) -> None:
        (self.state / f"{name}.yaml").write_text(text)

    def add_foreign(self, name: str, *, status_cmd: str = "sleep", args: str = "10000000") -> str:
        """A session someone else made: the controller must never touch it."""
        response = self.simulator.handle(Request(
            "POST", "/skaha/v1/session", query=f"name={name}&image={IMAGE}&cmd={status_cmd}&args={args}",
            headers={"authorization": f"Bearer {TOKEN}"}))
        assert response.status == 200, response.body
        return response.body.decode().strip()

    def delete_outside(self, session_id: str) -> None:
        """A user deleting a session by hand, not through the controller."""
        self.simulator.handle(Request("DELETE", f"/skaha/v1/session/{session_id}",
                                      headers={"authorization": f"Bearer {TOKEN}"}))

    def truth(self) -> list[tuple[str, str, str]]:
        """(id, name, status) of every session that exists now, whatever lists say."""
        self.simulator.catch_up()
        now = self.simulator.now()
        return [(r.id, r.name, r.status(now)) for r in self.simulator.cluster]

    def live_by_slot(self, set_name: str) -> Counter[tuple[str, int]]:
        """Live sessions per (template hash, slot) of one set, from the ground truth."""
        counts: Counter[tuple[str, int]] = Counter()
        for _, name, status in self.truth():
            parts = owned(name)
            if parts is not None and parts[0] == set_name and status in LIVE:
                counts[(parts[1], parts[2])] += 1
        return counts

    def requests(self, method: str, since: int = 0) -> Iterator[Any]:
        return (r for r in self.simulator.requests if r.method == method and r.seq > since)


class RequestCursor:
    """Hands out each request the simulator recorded exactly once, by its sequence number.

    Positions in ``Simulator.requests`` shift when the simulator trims its log, and a request is
    recorded when it is answered, so a delayed one lands after requests that arrived later: a
    cursor keeps the sequence numbers it has handed out, and forgets those older than the log.
    """

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._read: set[int] = set()

    def fresh(self) -> list[RecordedRequest]:
        """The requests recorded since the last call, in the order recorded."""
        log = self.simulator.requests
        if not log:
            return []
        oldest = min(record.seq for record in log)
        self._read = {seq for seq in self._read if seq >= oldest}
        fresh = [record for record in log if record.seq not in self._read]
        self._read.update(record.seq for record in fresh)
        return fresh


class FaultMirror:
    """Which injected faults really fired: the simulator's targeted rules, mirrored in the order added.

    The simulator gives each request the first rule that matches it (one use of it) and records the
    request with ``fault=True``; replaying those records against the same rules, in arrival order,
    says which rule each one took. An injected fault that no request took has not fired.
    """

    def __init__(self, fired: Counter[str], *, refused: str) -> None:
        self.fired = fired
        self.refused = refused  # the name prefix of the always-refused set: its rule comes first, forever
        self.rules: list[list[Any]] = []  # [kind, method, list_only, remaining, stats_only]

    def expect(self, kind: str, method: str, count: int, *, list_only: bool = False, stats_only: bool = False) -> bool:
        """Mirror a rule just added; it counts as fired only once a request takes it (so: False now)."""
        self.rules.append([kind, method, list_only, count, stats_only])
        return False

    def credit(self, records: list[RecordedRequest]) -> None:
        for record in sorted(records, key=lambda r: r.seq):
            if not record.fault or record.path != "/session":
                continue
            if record.method == "POST" and (record.param("name") or "").startswith(self.refused):
                continue
            for rule in self.rules:
                kind, method, list_only, _, stats_only = rule
                stats = record.param("view") == "stats"
                if method == record.method and not (list_only and stats) and not (stats_only and not stats):
                    self.fired[kind] += 1
                    rule[3] -= 1
                    if not rule[3]:
                        self.rules.remove(rule)
                    break
            else:
                raise AssertionError(f"request {record.seq} took a fault the soak did not inject")
