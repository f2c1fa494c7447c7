"""Request parameters read as cadc-rest's ``SyncInput`` and skaha's ``PostAction`` read them.

Names are case-insensitive (the caller lower-cases them), the first value wins, and
``cores``/``ram``/``gpus``/``type`` that are blank count as not given (``StringUtil.hasText``).
Numbers parse the Java way (``Double.valueOf``, ``Integer.parseInt``) and ``env`` entries split
like ``String.split``, so the simulator accepts and refuses exactly the values the server does,
with its 400 texts.
"""

from __future__ import annotations

import math
import re

from controller.errors import APIError, error_for_status
from controller.simulator.config import GPU_OPTIONS
from controller.simulator.workload import split_like_java

Params = dict[str, list[str]]


def param(params: Params, name: str) -> str | None:
    """The first value, as ``getParameter`` returns it."""
    values = params.get(name)
    return values[0] if values else None


def text_param(params: Params, name: str) -> str | None:
    """The first value when it has text; blank counts as not given (``StringUtil.hasText``)."""
    value = param(params, name)
    return value if value is not None and value.strip() else None


#: What Java's ``Double.valueOf`` parses (after trimming): decimal, ``NaN``, ``Infinity``, a d/f suffix.
_JAVA_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?)")


def option_param(params: Params, name: str, options: tuple[int, ...]) -> float | None:
    """A cores/ram value: parsed as a double, valid when its int part is one of the options; blank is none."""
    raw = text_param(params, name)
    if raw is None:
        return None
    match = _JAVA_DOUBLE.fullmatch(raw.strip())
    value = math.nan
    if match is not None and match.group(2) is not None:
        value = float(match.group(0).rstrip("fFdD"))
    if not math.isfinite(value) or int(value) not in options:
        raise bad_request(f"Invalid value for '{name}': {raw}")
    return value


def gpus_param(params: Params) -> int:
    """``Integer.parseInt`` (no spaces, optional sign) and one of the options; blank is none."""
    raw = text_param(params, "gpus")
    if raw is None:
        return 0
    value = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else 0
    if value not in GPU_OPTIONS:
        raise bad_request(f"Invalid value for 'gpus': {raw}")
    return value


def env_param(params: Params) -> tuple[tuple[str, str], ...]:
    """Repeatable ``KEY=VALUE`` split on ``=`` the Java way; entries not giving exactly two parts are dropped.

    ``String.split`` drops trailing empty strings, so ``A=`` gives ``["A"]`` and is dropped like
    ``A=b=c`` (``PostAction.getHeadlessImageBundle``).
    """
    pairs = (split_like_java(entry, "=") for entry in params.get("env", []))
    return tuple((pair[0], pair[1]) for pair in pairs if len(pair) == 2)


def bad_request(message: str) -> APIError:
    """The server's 400 with its words, for the caller to raise."""
    return error_for_status("request", 400, message)
