"""``canfar-controller prune``: remove on purpose the sessions with our prefix that the inventory does not claim.

The daemon never destroys a session outside its inventory (``controller.plan.ownership``): after
the memory volume was lost, sessions of sets that were removed meanwhile are left running and
reported as unmanaged. ``prune`` is how a person removes them, knowingly: it lists them first (a
dry run, the default) and destroys them only with ``act``. Sessions of sets the controller manages
that it did not create are another writer's (``Conflict``): they are shown, never pruned.

It reads the memory without changing it and refuses a memory without an inventory (a controller
that has not finished a pass yet, or one written before inventories existed): everything would
look like a leftover then.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.errors import ConfigError, ControllerError
from controller.listanswer import anomalies_of
from controller.plan.memory import Memory
from controller.plan.ownership import Leftovers, leftovers
from controller.sessionapi import SessionAPI
from controller.spec import DesiredState


@dataclass
class PruneResult:
    """What ``prune`` found, and with ``act`` what it destroyed and what failed (id -> the service's message)."""

    found: Leftovers
    destroyed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def require_inventory(memory: Memory, where: str) -> None:
    """A memory without an inventory claims nothing: pruning from it would remove every session."""
    if not memory.inventoried:
        raise ConfigError(f"the controller's memory at {where} has no inventory yet (no pass of this controller "
                          "has finished with it, or it was written before inventories existed): run the controller "
                          "first, so that it adopts its sessions; nothing was destroyed")


async def prune(client: SessionAPI, memory: Memory, desired: DesiredState, *, prefix: str, where: str,
                act: bool) -> PruneResult:
    """List once, find the leftovers, and with ``act`` destroy them one by one."""
    require_inventory(memory, where)
    observed = await client.observe()
    anomalies = anomalies_of(observed)
    if anomalies.suspect:
        raise ConfigError(f"the list answer is not trustworthy ({anomalies.describe()}): nothing was destroyed; "
                          "try again")
    result = PruneResult(leftovers(memory, observed, desired, prefix=prefix))
    if not act:
        return result
    for session in result.found.prunable:
        try:
            await client.destroy(session.id)
        except ControllerError as exc:
            result.failed[session.id] = str(exc)
        else:
            result.destroyed.append(session.id)
    return result
