"""The platform as the controller last saw it: statistics, context, and the capacity budget from them.

The daemon's stats job refreshes it (``refresh``) on its own interval, never the pass itself, so a
steady pass still costs one call; before the first pass the daemon asks at once (``prefetch``) and
the pass waits for that answer after its list call (``await_prefetch``), so the first creates
are checked against capacity at the cost of one round trip, not two. Without statistics younger
than ``max_age`` there is no budget: creates go ahead unchecked, and the plan says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable

import structlog

from controller.clock import process_time
from controller.errors import ControllerError, StatsError, TransportError
from controller.models import PlatformContext, PlatformStats, stats_problem
from controller.plan import Capacity
from controller.plan.capacity import DEFAULT_CORES, DEFAULT_RAM
from controller.sessionapi import SessionAPI

#: The most a statistics call may take: a pass that would wait longer goes ahead without them.
STATS_TIMEOUT = 5.0


class PlatformView:
    """The last statistics (and when they were fetched, clock seconds) and the platform's context."""

    def __init__(self, client: SessionAPI, *, max_age: float = 180.0,
                 clock: Callable[[], float] = process_time, timeout: float = STATS_TIMEOUT) -> None:
        self.client = client
        self.timeout = timeout
        self.max_age = max_age
        self.clock = clock
        self.stats: PlatformStats | None = None
        self.at = -math.inf
        self.context: PlatformContext | None = None
        self._prefetch: asyncio.Task[PlatformStats] | None = None
        self._log = structlog.get_logger("canfar_controller")

    async def refresh(self) -> PlatformStats:
        """Fetch the platform statistics (and, the first time, its context, at the same time).

        Within ``timeout`` or not at all (a ``TransportError``): a hanging stats endpoint must not hold
        up the pass that waits for it. Statistics that cannot be believed (``stats_problem``) raise
        ``StatsError`` and leave the controller without statistics until a good answer comes.
        """
        try:
            async with asyncio.timeout(self.timeout):
                if self.context is None:  # one round trip, not two, before the daemon's first pass
                    stats, context = await asyncio.gather(self.client.stats(), self._fetch_context())
                    self.context = context
                else:
                    stats = await self.client.stats()
        except TimeoutError:
            raise TransportError("platform stats", server_message=(
                f"no answer within {self.timeout:g} s; planning without them")) from None
        problem = stats_problem(stats)
        if problem is not None:  # garbage: plan as without statistics (StatsUnavailable), never wait on it
            self.stats, self.at = None, -math.inf
            raise StatsError(*problem)
        self.stats, self.at = stats, self.clock()
        return stats

    async def _fetch_context(self) -> PlatformContext:
        try:
            return await self.client.context()
        except ControllerError as exc:  # the chart's defaults will do
            self._log.warning("cannot read the platform context; assuming 1 core and 4 GiB for flexible "
                              "sessions", error=str(exc))
            return PlatformContext()

    def prefetch(self) -> asyncio.Task[PlatformStats]:
        """Start fetching the statistics now; the next pass waits for them after its list call.

        A stats call that hangs holds that pass up for ``timeout`` at most, and it goes ahead as
        ``StatsUnavailable``.
        """
        self._prefetch = asyncio.ensure_future(self.refresh())
        return self._prefetch

    async def await_prefetch(self) -> None:
        """Wait for statistics asked for before the pass; a failure is the stats job's to report."""
        if self._prefetch is not None:
            task, self._prefetch = self._prefetch, None
            with contextlib.suppress(ControllerError):
                await task

    def budget(self, now: float) -> Capacity | None:
        """The free capacity creates may use, from fresh statistics; ``None`` when there are none."""
        stats = self.stats
        if stats is None or now - self.at > self.max_age:
            return None
        cores, cores_used = stats.cpu_cores_available, stats.cpu_cores_requested
        ram, ram_used = stats.ram_available_bytes, stats.ram_requested_bytes
        if cores is None or cores_used is None or ram is None or ram_used is None:
            return None
        context = self.context or PlatformContext()
        return Capacity(
            cores_free=cores - cores_used,
            ram_free=ram - ram_used,
            as_of=self.at,
            max_cores=stats.session_max_cpu_cores, max_ram=stats.session_max_ram_bytes,
            default_cores=context.default_cores or DEFAULT_CORES,
            default_ram=context.default_ram_bytes or DEFAULT_RAM,
        )
