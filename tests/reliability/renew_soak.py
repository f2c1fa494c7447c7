"""The soak's platform whose sessions last less than ``--session-expiry``, and the renew bound it threatens.

The simulated platform ends notebooks after ``LIFE`` (a minute) while the controller keeps its 4-day
default; a renew pushes the expiry to now + ``LIFE``, and now and then one is answered 200 and ignored
(the expiry does not move). The soak's controller runs with ``--renew-when-remaining 1`` (``OPTIONS``):
a renew is due at every pass, so the hard bound, not the default fraction (a quarter, which would space
renews by three quarters of the lifetime), is what the faults push against. The invariant: a session
is never renewed twice within a quarter of the platform's lifetime (``expiryTime`` is in whole seconds, so the learnt lifetime may be 1 s short), so
its renews per hour stay bounded, whatever else fails. A kill -9 loses the renews the dying process had
not saved yet, so the bound is checked within one controller process (``generation``); that it
holds across a clean restart is ``tests/reliability/test_renew.py``'s.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from controller.simulator.simulator import RecordedRequest
from tests.reliability.rig import IMAGE, Rig

IGNORED_RENEW = "renew answered 200 and ignored"
#: The soak controller's ``PlanOptions``: every renew due at every pass, so only the bound spaces them.
OPTIONS = {"renew_when_remaining": 1.0}
#: The platform's interactive lifetime in the soak, far below the controller's 4-day assumption.
LIFE = 60.0
#: The least time between two renews of one session that the rule allows.
MIN_GAP = (LIFE - 1) / 4 - 1e-6
NOTEBOOKS = f"""\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: nb
spec:
  replicas: 2
  template:
    kind: notebook
    image: {IMAGE}
"""


class ShortLifetime:
    """Two notebooks on a platform with a one-minute lifetime; renews per session are checked."""

    def __init__(self, rig: Rig, fired: Counter[str]) -> None:
        self.rig, self.fired = rig, fired
        #: Each session's last renew by the current controller process, and all its renews (for the report).
        self.last: dict[str, float] = {}
        self.generation = 0
        self.renews: dict[str, list[float]] = {}
        rig.write("nb", NOTEBOOKS)

    def kinds(self) -> list[tuple[float, str, Callable[[random.Random], bool]]]:
        return [(0.02, IGNORED_RENEW, self._ignore_renew)]

    def _ignore_renew(self, rng: random.Random) -> bool:
        self.rig.simulator.ignore_renews(count=1)
        return False  # fired once a renew takes it (``check``)

    def check(self, fresh: list[RecordedRequest], generation: int, fail: Callable[[str], None]) -> None:
        """The renews among ``fresh``, sent by controller process ``generation``."""
        if generation != self.generation:
            self.generation = generation
            self.last.clear()
        for request in fresh:
            if request.method != "POST" or request.param("action") != "renew":
                continue
            self.fired[IGNORED_RENEW] += request.fault  # only this fault touches a renew
            session_id = request.path.rsplit("/", 1)[-1]
            previous = self.last.get(session_id)
            if previous is not None and request.at - previous < MIN_GAP:
                fail(f"session {session_id} renewed {request.at - previous:.2f} s after its last renew "
                     f"(platform lifetime {LIFE:.0f} s: at most one per {LIFE / 4:.0f} s)")
            self.last[session_id] = request.at
            self.renews.setdefault(session_id, []).append(request.at)

    def per_hour(self) -> float:
        """The most renews one session got, per hour of the time between its first and last renew."""
        rates = [3600 * (len(times) - 1) / (times[-1] - times[0])
                 for times in self.renews.values() if len(times) > 1 and times[-1] > times[0]]
        return max(rates, default=0.0)
