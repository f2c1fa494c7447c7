"""One simulated container process: its clock, what it writes, and the ways it stops early.

Programs of the workload model (``workload``, ``shell``, ``pythonc``) run instantly in real time
and move only this simulated clock: ``sleep 10`` adds ten seconds. Output is kept with the
instant it was written, so logs read while the session runs show only what was written so far.
"""

from __future__ import annotations

#: Output kept per session; a runaway ``print`` in a loop must not fill the simulator's memory.
MAX_OUTPUT_CHARS = 1_000_000


class Blocked(Exception):  # a control-flow signal, not an error
    """The program runs on with no end the model can know: until it is destroyed or its deadline."""


class Exited(Exception):  # a control-flow signal, not an error
    """The process ends now with ``status`` (``exit N`` in a shell, ``sys.exit`` in Python)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Process:
    """What one container has done so far: simulated seconds spent and output written."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.output: list[tuple[float, str]] = []
        self._written = 0

    def write(self, text: str) -> None:
        """Append to the log (stdout and stderr alike, as ``kubectl logs`` shows them)."""
        room = MAX_OUTPUT_CHARS - self._written
        if text and room > 0:
            text = text[:room]
            self._written += len(text)
            self.output.append((self.elapsed, text))

    def sleep(self, seconds: float) -> None:
        """Let simulated time pass; an endless sleep never returns."""
        if seconds == float("inf"):
            raise Blocked
        self.elapsed += seconds
