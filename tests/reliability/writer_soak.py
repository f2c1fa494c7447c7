"""The soak's second writer: another controller with our prefix creating sessions of a managed set.

It creates (unrecorded, like any set-up through ``Simulator.handle``) one to three live sessions named like ours (``cc-<set>-<hash>-<slot>``, in slots far
above any replica count, so the slot invariants stay about our own sessions), keeps them a while
and removes them itself. Only once the controller's memory on disk has an inventory: a fresh
memory's first pass adopts what it finds, by design (``docs/ownership.md``).

The invariant: nothing outside the inventory is destroyed. The writer's sessions never get a
DELETE from the controller, and (in a step without a kill, whose last pass's memory would be
lost) every session the controller destroyed is in its inventory.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from controller.ledger import Ledger
from controller.simulator.simulator import RecordedRequest
from tests.reliability.rig import Rig

SECOND_WRITER = "second writer"
#: Slots the writer uses: far above any count the soak scales to.
SLOTS = range(200, 240)


class SecondWriter:
    """The writer's sessions, when it removes each, and the check of every DELETE against the inventory."""

    def __init__(self, rig: Rig, sets: list[str], current: Callable[[str], str]) -> None:
        self.rig, self.sets, self.current = rig, sets, current
        #: Every session the writer ever made, and the live ones with the step it removes them at.
        self.made: set[str] = set()
        self.live: dict[str, int] = {}
        #: The names of the live ones (a writer never has two live sessions in one slot either).
        self.names: dict[str, str] = {}
        self.step = 0

    def kinds(self) -> list[tuple[float, str, Callable[[random.Random], bool]]]:
        return [(0.02, SECOND_WRITER, self._write)]

    def _inventoried(self) -> bool:
        snapshot = Ledger.beside(self.rig.status_file).snapshot
        try:
            return bool(json.loads(snapshot.read_text()).get("inventoried"))
        except (OSError, ValueError):
            return False

    def _write(self, rng: random.Random) -> bool:
        if not self._inventoried():
            return False
        name = rng.choice(self.sets)
        free = [slot for slot in SLOTS if f"cc-{name}-{self.current(name)}-{slot}" not in self.names.values()]
        for slot in rng.sample(free, min(rng.randint(1, 3), len(free))):  # one session per slot, like a controller
            session_name = f"cc-{name}-{self.current(name)}-{slot}"
            session_id = self.rig.add_foreign(session_name)
            self.made.add(session_id)
            self.names[session_id] = session_name
            self.live[session_id] = self.step + rng.randint(3, 40)
        return True

    def release(self, step: int) -> None:
        """The writer removes the sessions whose time has come (as it would its own)."""
        self.step = step
        for session_id in [sid for sid, until in self.live.items() if until <= step]:
            self.rig.delete_outside(session_id)
            del self.live[session_id]
            self.names.pop(session_id, None)

    def stop(self) -> None:
        self.release(10**9)

    def check(self, deletes: list[RecordedRequest], fail: Callable[[str], None], *, killed: bool) -> None:
        owned = self.rig.reconciler.memory.owned
        for request in deletes:  # the controller's only: the writer's own and hand deletes are not recorded
            session_id = request.path.rsplit("/", 1)[-1]
            if session_id in self.made:
                fail(f"the second writer's session {session_id} was destroyed")
            if not killed and session_id not in owned:
                fail(f"session {session_id} was destroyed but is not in the inventory")
