"""The soak's faults of a service that will not let go, and the invariant they threaten.

Deletes answered 200 and ignored, deletes that fail (the soak's ``deletes that fail`` scales a set
down while its top slot's deletes fail), sessions stuck Terminating or Unknown for a while, and a
stats call that hangs (``docs/stuck-sessions.md``). The invariants: no slot has two Running sessions,
unless one is a new template's session created before the outdated one beside it was destroyed
(a rollout's surge), never one created beside a destroyed session that the service ignored; and
no session gets more than ``DELETES_PER_HOUR`` DELETE calls in an hour, however its deletes fail
or are ignored (one per pass without the destroy back-off).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from controller.passoutcome import PassOutcome
from controller.simulator.simulator import RecordedRequest
from tests.reliability.rig import LIVE, FaultMirror, Rig, owned

IGNORED, STUCK, HANG = "deletes answered 200 and ignored", "session stuck", "stats call hangs"
FAILED = "deletes that fail (5xx)"
#: DELETE calls one session may get in any hour: the destroy back-off makes 12 (5 s doubling to 10 min),
#: plus one per kill mid-pass (its back-off not yet recorded) and the SIGHUP before the soak converges.
DELETES_PER_HOUR = 15
#: Real seconds the soak's stats calls may take: a hanging one costs this much, not the daemon's 5 s.
STATS_TIMEOUT = 0.02


def only_failed_destroys(outcome: PassOutcome) -> bool:
    """A pass whose only failures are destroys the service failed is live: it did all it could, and they back
    off (so the soak's liveness share is not spent on the ``deletes that fail`` it injects)."""
    return (outcome.result == "partial" and not outcome.uncertain and bool(outcome.errors)
            and all(error.startswith("destroy ") for error in outcome.errors))


class Lingering:
    """The three faults, the sessions they hold, and the Running-pairs check."""

    def __init__(self, rig: Rig, fired: Counter[str], faults: FaultMirror) -> None:
        self.rig, self.fired, self.faults = rig, fired, faults
        #: When the controller first sent a DELETE for each session, and when each create was sent.
        self.first_delete: dict[str, float] = {}
        #: When the service first answered a DELETE of each session (200: destroyed, or so it said).
        self.first_answered: dict[str, float] = {}
        #: When each DELETE of each session was sent (the last hour's), and the sessions of this step's.
        self.deletes: dict[str, list[float]] = {}
        self.deleted_now: set[str] = set()
        self.sent: dict[int, float] = {}
        #: Sessions stuck Terminating or Unknown, and the step at which the service lets each go.
        self.stuck: dict[str, int] = {}
        self.step = 0

    def kinds(self) -> list[tuple[float, str, Callable[[random.Random], bool]]]:
        return [(0.04, IGNORED, self._ignore_deletes), (0.02, STUCK, self._stick), (0.02, HANG, self._hang_stats)]

    def _ignore_deletes(self, rng: random.Random) -> bool:
        self.rig.simulator.ignore_deletes(count=rng.randint(1, 4))
        return False  # fired once a DELETE takes it (``record``)

    def _stick(self, rng: random.Random) -> bool:
        live = [sid for sid, name, status in self.rig.truth() if status in LIVE and owned(name) and sid not in self.stuck]
        if not live:
            return False
        session_id = rng.choice(live)
        self.rig.simulator.stick(session_id, rng.choice(["Terminating", "Unknown"]))
        self.stuck[session_id] = self.step + rng.randint(5, 60)
        return True

    def _hang_stats(self, rng: random.Random) -> bool:
        self.rig.simulator.hang_stats(STATS_TIMEOUT * 5, status=rng.choice([504, None]))
        return self.faults.expect(HANG, "GET", 1, stats_only=True)

    def release(self, step: int) -> None:
        """The service lets go of the sessions whose time has come."""
        self.step = step
        for session_id in [sid for sid, until in self.stuck.items() if until <= step]:
            self.rig.simulator.unstick(session_id)
            del self.stuck[session_id]

    def stop(self) -> None:
        self.rig.simulator.unstick()
        self.stuck.clear()

    def record(self, fresh: list[RecordedRequest]) -> None:
        for request in fresh:
            if request.method == "DELETE":
                session_id = request.path.rsplit("/", 1)[-1]
                self.first_delete.setdefault(session_id, request.at)
                if request.status == 200:
                    self.first_answered.setdefault(session_id, request.at)
                self.deletes.setdefault(session_id, []).append(request.at)
                self.deleted_now.add(session_id)
                if request.fault:  # only these two faults touch a DELETE
                    self.fired[IGNORED if request.status == 200 else FAILED] += 1
            elif request.method == "POST":
                self.sent[request.seq] = request.at

    def retried(self, request: RecordedRequest) -> bool:
        """A DELETE sent again for a destroy the service ignored (decided when the session was not wanted)."""
        return self.first_delete.get(request.path.rsplit("/", 1)[-1], request.at) < request.at

    def check(self, fail: Callable[[str], None]) -> None:
        self._check_deletes(fail)
        running: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for sid, name, status in self.rig.truth():
            parts = owned(name)
            if parts is not None and status == "Running":
                running.setdefault((parts[0], parts[2]), []).append((sid, parts[1]))
        crowded = {key: rows for key, rows in running.items() if len(rows) > 1}
        if not crowded:
            return
        created = {c.session_id: self.sent.get(c.seq, c.at) if c.seq is not None else c.at
                   for c in self.rig.simulator.created}
        for key, rows in crowded.items():
            rows.sort(key=lambda row: created.get(row[0], 0.0))
            for index, (newer, template) in enumerate(rows):
                for older, older_template in rows[:index]:
                    # The newer one destroyed as a duplicate (answered 200) that the service kept: not ours to prevent.
                    if template == older_template and newer not in self.first_answered:
                        fail(f"slot {key} has two Running sessions of one template: {older}, {newer}")
                    deleted = self.first_answered.get(older)  # a failed DELETE destroyed nothing
                    if deleted is not None and created.get(newer, 0.0) >= deleted:
                        fail(f"slot {key}: {newer} was created beside {older}, destroyed at {deleted}, still running")

    def _check_deletes(self, fail: Callable[[str], None]) -> None:
        """Deletes per session per hour stay bounded, whether they fail, are ignored, or both."""
        for session_id in self.deleted_now:
            times = self.deletes[session_id]
            times[:] = [at for at in times if at > times[-1] - 3600.0]
            if len(times) > DELETES_PER_HOUR:
                fail(f"session {session_id} got {len(times)} DELETE calls within an hour (at most "
                     f"{DELETES_PER_HOUR}): its destroy does not back off")
        self.deleted_now.clear()
