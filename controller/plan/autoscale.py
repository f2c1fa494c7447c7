"""Autoscaled SessionSets: the replica count in force, from signal readings, as HPA and KEDA decide it.

Pure: the readings, the remembered recommendations and the time are arguments; nothing is read here.
The rules (each is also in the planner's rule list):

- a signal's recommendation is ``ceil(value / target)``; a ``platform`` signal gives its count
  directly: the sessions already in force plus as many more as fit in the free cores and RAM minus
  its reserve (fewer when the free room falls below the reserve);
- a value at or below ``activation`` on every signal means idle: 0 before clamping;
- the set's recommendation is the largest, clamped to ``[minReplicas, maxReplicas]``;
- HPA's windows: a scale-up goes only to the lowest recommendation of the last
  ``scaleUp.stabilizationSeconds``, a scale-down only to the highest of the last
  ``scaleDown.stabilizationSeconds``, or of the last ``--destructive-settle`` seconds when that is
  longer (a scale-down destroys or drains sessions, as a manifest scale-down does, and waits as
  long); the count then moves by at most ``maxStep`` per pass;
- a signal that cannot be read never scales down: ``Hold`` keeps the count (a readable signal may
  still raise it), a number sets it (or more, if a readable signal asks for more); a failed pass
  records no recommendation, so a torn read never enters a window; after
  ``FAILURES_BEFORE_INACTIVE`` failed passes in a row ``ScalingActive`` turns False.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from controller.plan.capacity import Capacity
from controller.spec import Autoscale, PlatformSignal, Template
from controller.units import GIB

#: Failed passes in a row after which ``ScalingActive`` is False.
FAILURES_BEFORE_INACTIVE = 3

Mark = tuple[str, str, str]  # (status, reason, message) of a condition


@dataclass(frozen=True, slots=True)
class Reading:
    """One signal's value this pass, or why it could not be read (never both)."""

    value: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ScaleState:
    """What an autoscaled set remembers between passes (and restarts): the windows survive both."""

    #: The replica count in force.
    count: int
    #: The clamped recommendation's runs inside the longer window, oldest first: (since when, value),
    #: each lasting until the next one starts (the last one until now). A steady signal changes nothing
    #: here, so a steady pass leaves the memory (and the ledger on disk) untouched.
    history: tuple[tuple[float, int], ...] = ()
    #: Passes in a row with a signal that could not be read, and the last such error.
    failures: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the autoscaler decided for one set in one pass."""

    count: int
    #: The clamped recommendation (None when no signal could be read and the count is held).
    recommendation: int | None
    #: Each signal's value as read (None: failed), by label.
    values: tuple[tuple[str, float | None], ...]
    #: Why the count in force differs from the recommendation (window, step limit), or None.
    why: str | None
    active: Mark
    limited: Mark
    state: ScaleState


def platform_count(signal: PlatformSignal, capacity: Capacity | None, template: Template, current: int,
                   *, queued_cores: float = 0.0, queued_ram: float = 0.0) -> Reading:
    """The ``platform`` signal: the count in force plus the sessions that fit in the free room over the reserve.

    ``queued_*`` are what our own queued sessions will take and the statistics do not count yet.
    """
    if capacity is None:
        return Reading(error="platform statistics unavailable")
    cores, ram = capacity.request(template)
    spare_cores = capacity.cores_free - queued_cores - signal.reserve_cores
    spare_ram = capacity.ram_free - queued_ram - signal.reserve_ram * GIB
    fit = min(math.floor(spare_cores / cores + 1e-9), math.floor(spare_ram / ram + 1e-6))
    return Reading(value=float(max(0, current + fit)))


def decide(autoscale: Autoscale, readings: Sequence[Reading], state: ScaleState | None, now: float,
           *, settle: float = 0.0) -> Decision:
    """The count in force after this pass; ``readings`` are in the order of ``autoscale.signals``.

    ``settle`` (``--destructive-settle``) is the least scale-down stabilization window.
    """
    down_window = scale_down_window(autoscale, settle)
    current = state.count if state is not None else autoscale.min_replicas
    history = state.history if state is not None else ()
    labels = [signal.label() for signal in autoscale.signals]
    values = tuple((label, reading.value if reading.error is None else None)
                   for label, reading in zip(labels, readings, strict=True))
    errors = [f"{label}: {reading.error}" for label, reading in zip(labels, readings, strict=True)
              if reading.error is not None]
    recommendations = [_one(signal.platform is not None, reading.value, autoscale.target)
                       for signal, reading in zip(autoscale.signals, readings, strict=True)
                       if reading.error is None and reading.value is not None]
    low, high = autoscale.min_replicas, autoscale.max_replicas
    idle = all(reading.value is not None and reading.value <= autoscale.activation for reading in readings
               if reading.error is None)
    raw = 0 if idle and recommendations else max(recommendations, default=0)
    clamped = min(max(raw, low), high)
    limited = _limited(raw, clamped, low, high) if recommendations else (
        "False", "DesiredWithinRange", "no signal could be read")

    if errors:
        failures = (state.failures if state is not None else 0) + 1
        fallback = autoscale.on_signal_failure
        floor = current if fallback == "Hold" else fallback
        wanted = max(floor, clamped) if recommendations else floor
        count = _step(autoscale, current, wanted)
        held = (f"{errors[0]}: holding the count (onSignalFailure: Hold)" if fallback == "Hold" else
                f"{errors[0]}: onSignalFailure sets {fallback}")
        kept = _recent(autoscale, history, now, down_window)
        active = (("False", "FailedGetSignal", f"{len(errors)} signal(s) unreadable {failures} passes in a row: "
                   f"{'; '.join(errors)}") if failures >= FAILURES_BEFORE_INACTIVE else
                  ("True", "ValidSignal", f"a signal failed ({failures} of {FAILURES_BEFORE_INACTIVE} before "
                   f"scaling stops): {errors[0]}"))
        return Decision(count, clamped if recommendations else None, values, held, active, limited,
                        ScaleState(count, kept, failures, "; ".join(errors)))

    kept = _recent(autoscale, history if history and history[-1][1] == clamped else (*history, (now, clamped)),
                   now, down_window)
    up = min(_within(kept, now - autoscale.scale_up.stabilization_seconds))
    down = max(_within(kept, now - down_window))
    stabilized = min(max(current, up), down)
    count = _step(autoscale, current, stabilized)
    why: str | None = None
    if stabilized != clamped:
        if clamped < current:
            why = f"scale-down window: the highest recommendation of the last {down_window:g} s is {down}"
        else:
            why = (f"scale-up window: the lowest recommendation of the last "
                   f"{autoscale.scale_up.stabilization_seconds} s is {up}")
    elif count != stabilized:
        step = autoscale.scale_up.max_step if count > current else autoscale.scale_down.max_step
        why = f"step limit: at most {'+' if count > current else '-'}{step} per pass"
    active = ("True", "ValidSignal", "every signal was read: " + ", ".join(
        f"{label} = {value:g}" for label, value in values if value is not None))
    return Decision(count, clamped, values, why, active, limited, ScaleState(count, kept))


def _one(platform: bool, value: float, target: float) -> int:
    if platform:
        return int(value)
    return math.ceil(value / target - 1e-9)


def _limited(raw: int, clamped: int, low: int, high: int) -> Mark:
    if raw > high:
        return "True", "TooManyReplicas", f"the recommendation {raw} is above maxReplicas: held at {high}"
    if raw < low:
        return "True", "TooFewReplicas", f"the recommendation {raw} is below minReplicas: held at {low}"
    return "False", "DesiredWithinRange", f"the recommendation {clamped} is within [{low}, {high}]"


def _step(autoscale: Autoscale, current: int, wanted: int) -> int:
    if wanted > current:
        return min(wanted, current + autoscale.scale_up.max_step)
    return max(wanted, current - autoscale.scale_down.max_step)


def _within(runs: Sequence[tuple[float, int]], since: float) -> list[int]:
    """The values of the runs that lasted into ``[since, now]`` (the last one always does)."""
    return [value for index, (_, value) in enumerate(runs) if index == len(runs) - 1 or runs[index + 1][0] > since]


def scale_down_window(autoscale: Autoscale, settle: float) -> float:
    """The scale-down stabilization in force: ``scaleDown.stabilizationSeconds``, at least ``settle``."""
    return max(float(autoscale.scale_down.stabilization_seconds), settle)


def _recent(autoscale: Autoscale, runs: Sequence[tuple[float, int]], now: float,
            down_window: float) -> tuple[tuple[float, int], ...]:
    """The runs that lasted into the longer window (memory stays small)."""
    longest = max(autoscale.scale_up.stabilization_seconds, down_window)
    values = _within(runs, now - longest)
    return tuple(runs[len(runs) - len(values):])
