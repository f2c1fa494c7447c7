"""What a headless session's command does: how long it runs and how it ends.

The simulator runs no containers, so the command line is read as a script: ``sleep N`` completes
after N seconds, ``true`` completes at once, ``false`` fails at once, and anything else (or no
command, i.e. the image's entrypoint) runs until it is deleted or its deadline passes. The forms
``sh -c "sleep 5"`` / ``bash -c 'false'`` are understood too, because that is how people write them.
A ``cmd`` containing a space fails to start, as on the real service, which passes ``cmd`` as one
argv element (``command: ["sleep 5"]``): put the arguments in ``args``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a container behaves once started: ``runtime`` None means it never exits on its own."""

    runtime: float | None
    exit_code: int = 0
    error: str = ""
    """Why the container could not start, as the kubelet would say."""


FOREVER = Outcome(runtime=None)


def outcome_of(cmd: str | None, args: str | None) -> Outcome:
    """The simulated behaviour of ``cmd args`` (the server splits args on single spaces)."""
    if cmd and any(character.isspace() for character in cmd):
        return Outcome(runtime=0.0, exit_code=128,
                       error=f'exec: "{cmd}": executable file not found in $PATH')
    words = ([cmd] if cmd else []) + (args.split(" ") if args else [])
    words = [word for word in words if word]
    if len(words) >= 3 and _program(words[0]) in ("sh", "bash") and words[1] == "-c":
        try:
            words = shlex.split(" ".join(words[2:]))
            words = shlex.split(words[0]) if len(words) == 1 else words
        except ValueError:
            return FOREVER
    if not words:
        return FOREVER
    program = _program(words[0])
    if program == "true" and len(words) == 1:
        return Outcome(runtime=0.0, exit_code=0)
    if program == "false" and len(words) == 1:
        return Outcome(runtime=0.0, exit_code=1)
    if program == "sleep" and len(words) == 2:
        seconds = _seconds(words[1])
        if seconds is not None:
            return Outcome(runtime=seconds, exit_code=0)
    return FOREVER


def _program(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _seconds(text: str) -> float | None:
    """``sleep``'s duration syntax: a number with an optional s/m/h/d suffix."""
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:])
    number = text[:-1] if factor else text
    try:
        value = float(number)
    except ValueError:
        return None
    if value != value or value < 0 or value == float("inf"):  # NaN, negative, infinite
        return None
    return value * (factor or 1)
