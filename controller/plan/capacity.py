"""Platform capacity as the planner sees it: what is free, and what one more session would take.

Built from the service's own statistics (``view=stats``): free = available - requested, for cores
and for RAM, and no session may ask for more than the platform's per-session ceiling
(``maxCPUCores`` / ``maxRAM``). Flexible-mode sessions (no cores/ram in the template) are counted
with the platform's default request (``/context``'s ``defaultRequest``), because that is what the
cluster reserves for them. The statistics count only sessions the cluster had admitted when they
were taken, so the planner also subtracts its own sessions admitted since, those still queued,
and the creates it sent that no list shows yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.spec import Template
from controller.units import GIB, ram_text

#: The platform's default request for flexible sessions when ``/context`` cannot tell (chart defaults).
DEFAULT_CORES = 1.0
DEFAULT_RAM = 4 * GIB


@dataclass(frozen=True, slots=True)
class Capacity:
    """What the platform can still start, in cores and bytes."""

    cores_free: float
    ram_free: float
    #: When the statistics were taken (the controller's clock): sessions started later are not in them.
    as_of: float = float("inf")
    max_cores: float | None = None
    max_ram: float | None = None
    default_cores: float = DEFAULT_CORES
    default_ram: float = DEFAULT_RAM

    def request(self, template: Template) -> tuple[float, float]:
        """The cores and bytes one session of ``template`` reserves."""
        cores = template.cores if template.cores is not None else self.default_cores
        ram = template.ram * GIB if template.ram is not None else self.default_ram
        return cores, ram

    def too_large(self, template: Template) -> str | None:
        """Why no session of ``template`` can ever start here, or ``None``."""
        cores, ram = self.request(template)
        if (self.max_cores is not None and cores > self.max_cores + 1e-9) or (
                self.max_ram is not None and ram > self.max_ram + 1):
            return (f"each session asks for {describe(cores, ram)}, more than the largest session the platform "
                    f"allows ({describe(self.max_cores, self.max_ram)})")
        return None


def describe(cores: float | None, ram: float | None) -> str:
    """``2 cores and 8 GiB``: how resources read in messages (RAM in GiB, the unit requests are made in)."""
    parts = []
    if cores is not None:
        parts.append(f"{cores:g} core{'s' if cores != 1 else ''}")
    if ram is not None:
        parts.append(ram_text(ram))
    return " and ".join(parts) or "no limit"


class CapacityBudget:
    """The capacity budget of one plan: each create that fits takes its share of what is free."""

    def __init__(self, capacity: Capacity, *, reserved_cores: float, reserved_ram: float) -> None:
        self.capacity = capacity
        self.cores = capacity.cores_free - reserved_cores
        self.ram = capacity.ram_free - reserved_ram

    def take(self, template: Template) -> str | None:
        """Reserve one session of ``template``; or say why it does not fit (and reserve nothing)."""
        too_large = self.capacity.too_large(template)
        if too_large is not None:
            return too_large
        cores, ram = self.capacity.request(template)
        if cores > self.cores + 1e-9 or ram > self.ram + 1:
            return (f"needs {describe(cores, ram)} per session; the platform has "
                    f"{describe(max(self.cores, 0.0), max(self.ram, 0.0))} free")
        self.cores -= cores
        self.ram -= ram
        return None
