"""The session service's rules, written once: what it accepts, and what it would quietly get wrong.

Manifests (``controller.spec``), the client's ``create`` and the ``sessions`` command line all
check a session through this module, so the same mistake gets the same message everywhere.
The rules are stricter than the server's own checks where the server accepts something and
then does the wrong thing with it (skaha HEAD, see ``shared/reference/skaha-api.md``):

- **name**: the server checks only ``[A-Za-z0-9-]+``, but lower-cases the name and uses it as
  the pod's hostname, so anything that is not an RFC 1123 DNS label fails later, as a 500;
- **image**: a full reference with a registry host (the server refuses other hosts anyway);
- **cores, ram, gpu**: the canfar client's bounds (1..256 cores, 1..512 GiB, 1..28 GPUs; ``0``
  GPUs is not an option on the server); omit cores and ram for flexible mode. The client and
  the server's docs call ``ram`` GB, but the server reserves that many GiB (``controller.units``);
- **cmd**: rendered as one word (``command: ["<cmd>"]``), so no spaces;
- **args**: split on every single space, each part quoted, with no escaping and no quoting
  support, so no quotes, ``$``, backslashes, tabs or newlines, and no double or surrounding
  spaces (they become empty arguments);
- **env**: each ``KEY=VALUE`` is split on ``=`` and an entry with more than one ``=`` is dropped
  without a word; values are rendered into YAML without escaping;
- **cmd, args and env** are rendered only into headless sessions: other kinds ignore them.

Pure: no I/O, nothing but the standard library and ``controller.errors``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from controller.errors import InvalidRequestError

#: Every kind the service can create through ``POST /session`` (desktop-app has its own endpoint).
SessionKind = Literal["headless", "notebook", "desktop", "carta", "firefly", "contributed"]
KINDS: tuple[SessionKind, ...] = get_args(SessionKind)

MAX_NAME_LENGTH = 63
#: Inclusive bounds of the resources a session may request.
CORES = (1, 256)
RAM_GIB = (1, 512)
GPUS = (1, 28)
#: Set per replica in each headless session's environment (by the client for ``replicas``, by
#: the controller for a slot), so a manifest may not set them.
RESERVED_ENV = frozenset({"REPLICA_ID", "REPLICA_COUNT"})

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMAGE = re.compile(r"[a-z0-9.-]+(:[0-9]+)?/[^\s:@]+(:[\w][\w.-]*)?(@sha256:[0-9a-f]{64})?")
_UNSAFE = re.compile(r"[\"'\\\n\r\t`$]")

HEADLESS_ONLY = ("cmd", "args", "env")


# -- one rule per field: each returns what is wrong, or None -----------------------------------


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid session name, or ``None`` when it is."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters (got {len(name)})"
    if DNS_LABEL.fullmatch(name) is None:
        return (
            "must be a lowercase DNS label: letters a-z, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def kind_problem(kind: str) -> str | None:
    if kind not in KINDS:
        return f"must be one of {', '.join(KINDS)} (got {kind!r})"
    return None


def image_problem(image: str) -> str | None:
    if _IMAGE.fullmatch(image) is None:
        return (
            "must be a full image reference such as images.canfar.net/project/name:tag "
            "(registry host, path, optional tag)"
        )
    return None


def amount_problem(value: Any, bounds: tuple[int, int], *, whole: bool = False) -> str | None:
    """Why ``value`` is not a number (a whole one if ``whole``) within ``bounds``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (whole and not isinstance(value, int)):
        return f"must be {'a whole number' if whole else 'a number'} (got {value!r})"
    low, high = bounds
    if not low <= value <= high:
        return f"must be between {low} and {high} (got {value:g})"
    return None


def cmd_problem(cmd: str) -> str | None:
    if not cmd or any(c.isspace() for c in cmd) or _UNSAFE.search(cmd):
        return "must be a single executable without spaces or quotes; put its arguments in 'args'"
    return None


def args_problem(args: str) -> str | None:
    if _UNSAFE.search(args):
        return (
            "must not contain quotes, backslashes, '$', '`', tabs or newlines: "
            "the service splits args on single spaces and does no quoting or escaping"
        )
    if not args or args != args.strip(" ") or "  " in args:
        return (
            "must be words separated by single spaces, without leading or trailing spaces: "
            "the service splits on every space, so extra spaces become empty arguments"
        )
    return None


def env_problem(key: str, value: str) -> str | None:
    """Why the entry ``key=value`` would not reach the session as written (reserved keys aside)."""
    if _ENV_KEY.fullmatch(key) is None:
        return f"key {key!r} is not a valid environment variable name"
    if "=" in value:
        return f"value of {key!r} contains '=', which the service drops the entry for"
    if _UNSAFE.search(value) or value != value.strip():
        return (
            f"value of {key!r} must not contain quotes, backslashes, '$', '`', tabs, newlines or "
            "surrounding spaces: the service renders it without escaping"
        )
    return None


def reserved_env_problem(key: str) -> str | None:
    if key in RESERVED_ENV:
        return f"key {key!r} is set by the controller (the slot and the replica count)"
    return None


def headless_only_problem(kind: str, field: str) -> str:
    return f"'{field}' is only honoured for headless sessions; the service ignores it for kind {kind!r}"


def number_text(value: float) -> str:
    """A number as sent: whole numbers without a needless ``.0`` (the server parses doubles)."""
    return str(int(value)) if float(value).is_integer() else str(value)


# -- a whole session ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """One session to create, checked against every rule above when it is made.

    ``env`` is a tuple of ``(KEY, VALUE)`` pairs in the order they are sent. ``REPLICA_ID`` and
    ``REPLICA_COUNT`` may be given (the controller gives a slot its identity); the client adds
    them itself when they are not. Raises ``InvalidRequestError`` naming the field, with the
    same words a manifest gets for the same mistake.
    """

    name: str
    image: str
    kind: SessionKind = "headless"
    cores: float | None = None
    ram: float | None = None  # GiB
    gpu: int | None = None
    cmd: str | None = None
    args: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        problem = _first_problem(self)
        if problem is not None:
            field, text = problem
            raise InvalidRequestError(f"invalid session spec: {field}: {text}")

    def params(self) -> list[tuple[str, str]]:
        """The wire parameters, ``name`` first, in the canfar client's order (``env`` repeats)."""
        params = [("name", self.name), ("image", self.image)]
        if self.cores is not None:
            params.append(("cores", number_text(self.cores)))
        if self.ram is not None:
            params.append(("ram", number_text(self.ram)))
        params.append(("type", self.kind))
        if self.gpu is not None:
            params.append(("gpus", str(self.gpu)))
        if self.cmd is not None:
            params.append(("cmd", self.cmd))
        if self.args is not None:
            params.append(("args", self.args))
        params += [("env", f"{key}={value}") for key, value in self.env]
        return params

    @property
    def env_keys(self) -> frozenset[str]:
        return frozenset(key for key, _ in self.env)


def _first_problem(spec: SessionSpec) -> tuple[str, str] | None:
    checks: list[tuple[str, str | None]] = [
        ("name", _text_problem(spec.name) or name_problem(spec.name)),
        ("image", _text_problem(spec.image) or image_problem(spec.image)),
        ("kind", _text_problem(spec.kind) or kind_problem(spec.kind)),
    ]
    if spec.cores is not None:
        checks.append(("cores", amount_problem(spec.cores, CORES)))
    if spec.ram is not None:
        checks.append(("ram", amount_problem(spec.ram, RAM_GIB)))
    if spec.gpu is not None:
        checks.append(("gpu", amount_problem(spec.gpu, GPUS, whole=True)))
    if spec.cmd is not None:
        checks.append(("cmd", _text_problem(spec.cmd) or cmd_problem(spec.cmd)))
    if spec.args is not None:
        checks.append(("args", _text_problem(spec.args) or args_problem(spec.args)))
    for field, problem in checks:
        if problem is not None:
            return field, problem
    if not isinstance(spec.env, tuple):
        return "env", f"must be a tuple of (KEY, VALUE) pairs (got {type(spec.env).__name__})"
    for pair in spec.env:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(part, str) for part in pair)):
            return "env", f"must be a tuple of (KEY, VALUE) pairs of text (got {pair!r})"
        problem = env_problem(*pair)
        if problem is not None:
            return "env", problem
    if spec.kind != "headless":
        for field in HEADLESS_ONLY:
            if getattr(spec, field):
                return field, headless_only_problem(spec.kind, field)
    return None


def _text_problem(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be text (got {type(value).__name__})"
