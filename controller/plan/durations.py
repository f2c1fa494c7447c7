"""Durations as people read them in messages, rendered from the constant or option that defines them.

A message never spells a duration by hand ("within 10 min") beside the constant that sets it:
changing the constant, or the option, changes the message too.
"""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``45 s``, ``1.5 min``, ``10 min``, ``4 h``, ``4 days``: the largest unit that reads well."""
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} days"
    if seconds >= 2 * 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
