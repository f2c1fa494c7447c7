"""SessionSet manifests: the desired state, validated strictly before anything acts on it.

Strict means: unknown fields, wrong types and out-of-range values are errors, and so is anything
the session service would silently drop or mangle. The service splits ``args`` on single spaces
with no quoting, splits each ``env`` entry on ``=`` (dropping entries with more than one), renders
both into YAML without escaping, and ignores ``cmd``/``args``/``env`` for every kind but headless.
A manifest that relies on any of that would run something other than what it says.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from controller.errors import ManifestError
from controller.names import MAX_REPLICAS, session_name_problem

API_VERSION = "canfar.controller/v1alpha1"
KIND = "SessionSet"

#: Every kind the service can create through ``POST /session`` (desktop-app has its own endpoint).
SessionKind = Literal["headless", "notebook", "desktop", "carta", "firefly", "contributed"]
RestartPolicy = Literal["Always", "OnFailure", "Never"]

#: Set by the controller in each headless session's environment, so users may not set them.
RESERVED_ENV = frozenset({"REPLICA_ID", "REPLICA_COUNT"})

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMAGE = re.compile(r"[a-z0-9.-]+(:[0-9]+)?/[^\s:@]+(:[\w][\w.-]*)?(@sha256:[0-9a-f]{64})?")
_UNSAFE = re.compile(r"[\"'\\\n\r\t`$]")

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Template(_Strict):
    """What every session of the set looks like."""

    kind: SessionKind = "headless"
    image: NonEmpty
    cores: float | None = Field(None, ge=1, le=256, description="omit cores and ram for flexible mode")
    ram: float | None = Field(None, ge=1, le=512, description="GB")
    gpu: int | None = Field(None, ge=1, le=28)
    cmd: str | None = None
    args: str | None = None
    env: dict[str, str | int | float] = Field(default_factory=dict)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if _IMAGE.fullmatch(value) is None:
            raise ValueError(
                "must be a full image reference such as images.canfar.net/project/name:tag "
                "(registry host, path, optional tag)"
            )
        return value

    @field_validator("cmd")
    @classmethod
    def _cmd(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value) or _UNSAFE.search(value)):
            raise ValueError(
                "must be a single executable without spaces or quotes; put its arguments in 'args'"
            )
        return value

    @field_validator("args")
    @classmethod
    def _args(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if _UNSAFE.search(value):
            raise ValueError(
                "must not contain quotes, backslashes, '$', '`', tabs or newlines: "
                "the service splits args on single spaces and does no quoting or escaping"
            )
        if value != value.strip(" ") or "  " in value or not value:
            raise ValueError(
                "must be words separated by single spaces, without leading or trailing spaces: "
                "the service splits on every space, so extra spaces become empty arguments"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if _ENV_KEY.fullmatch(key) is None:
                raise ValueError(f"key {key!r} is not a valid environment variable name")
            if key in RESERVED_ENV:
                raise ValueError(f"key {key!r} is set by the controller (the slot and the replica count)")
            if isinstance(item, bool):
                raise ValueError(f"value of {key!r} must be a string or number, not a boolean")
            text = str(item)
            if "=" in text:
                raise ValueError(f"value of {key!r} contains '=', which the service drops the entry for")
            if _UNSAFE.search(text) or text != text.strip():
                raise ValueError(
                    f"value of {key!r} must not contain quotes, backslashes, '$', '`', tabs, newlines or "
                    "surrounding spaces: the service renders it without escaping"
                )
        return value

    @model_validator(mode="after")
    def _headless_only(self) -> Template:
        if self.kind != "headless":
            for field in ("cmd", "args", "env"):
                if getattr(self, field):
                    raise ValueError(
                        f"'{field}' is only honoured for headless sessions; the service ignores it for "
                        f"kind {self.kind!r}"
                    )
        return self

    def env_text(self) -> dict[str, str]:
        """The environment as the strings that will be sent."""
        return {key: _env_value(value) for key, value in self.env.items()}

    def hash(self) -> str:
        """Six hex digits identifying this template, stable across runs and key order."""
        canonical = json.dumps(
            {**self.model_dump(exclude={"env"}), "env": self.env_text()}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:6]


def _env_value(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Metadata(_Strict):
    name: NonEmpty
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        problem = session_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


UpdateType = Literal["RollingUpdate", "OnCompletion", "Recreate"]
_PERCENT = re.compile(r"(100|[1-9]?[0-9])%")


class UpdateStrategy(_Strict):
    """How sessions of an outdated template are replaced after the template changes.

    - ``RollingUpdate``: a new session is created beside the old one (at most ``maxSurge`` slots at
      a time) and the old one destroyed once the new one runs; ``maxUnavailable`` slots may instead
      lose their old session first. The defaults (25%, 0) never leave a slot empty.
    - ``OnCompletion``: an outdated session is never destroyed while it runs; its slot gets the new
      template when it ends (batch work is not killed mid-run).
    - ``Recreate``: every outdated session is destroyed first; new ones start once all are gone.
    """

    type: UpdateType = "RollingUpdate"
    max_surge: int | str = Field("25%", alias="maxSurge")
    max_unavailable: int | str = Field(0, alias="maxUnavailable")

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _amount(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must be a number of slots (0 or more) or a percentage such as '25%'")
            return value
        if _PERCENT.fullmatch(value) is None:
            raise ValueError("must be a number of slots (0 or more) or a percentage such as '25%'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> UpdateStrategy:
        given = self.model_fields_set & {"max_surge", "max_unavailable"}
        if self.type != "RollingUpdate" and given:
            raise ValueError(f"maxSurge and maxUnavailable apply only to type RollingUpdate, not {self.type}")
        if self.type == "RollingUpdate" and _is_zero(self.max_surge) and _is_zero(self.max_unavailable):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0: the rollout could never progress")
        return self

    def surge(self, replicas: int) -> int:
        """Slots that may run a new session beside an old one at once (percentages round up)."""
        return _slots(self.max_surge, replicas, round_up=True)

    def unavailable(self, replicas: int) -> int:
        """Slots that may be without a running session during a rollout (percentages round down)."""
        return _slots(self.max_unavailable, replicas, round_up=False)


def _is_zero(value: int | str) -> bool:
    return value in (0, "0%")


def _slots(value: int | str, replicas: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = replicas * int(value[:-1]) / 100
    return math.ceil(share) if round_up else math.floor(share)


class SessionSetSpec(_Strict):
    replicas: int = Field(ge=0, le=MAX_REPLICAS)
    template: Template
    restart_policy: RestartPolicy = Field("Always", alias="restartPolicy")
    suspend: bool = False
    update_strategy: UpdateStrategy = Field(default_factory=lambda: UpdateStrategy.model_validate({}),
                                            alias="updateStrategy")
    #: Renew interactive sessions before they expire (the platform ends them after 4 days otherwise).
    renew: bool = True

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class SessionSet(_Strict):
    """One SessionSet document."""

    api_version: Literal["canfar.controller/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["SessionSet"]
    metadata: Metadata
    spec: SessionSetSpec

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    @property
    def name(self) -> str:
        return self.metadata.name


@dataclass(frozen=True)
class DesiredState:
    """The desired state of one pass, as the planner needs it."""

    #: Effective specs: the current ones, or the last good one of a set whose file is now invalid.
    sets: Mapping[str, SessionSet]
    #: Sets whose manifest is currently invalid, with the first problem; their sessions are protected.
    invalid: Mapping[str, str] = field(default_factory=dict)
    #: Every problem found, in file order.
    errors: tuple[ManifestError, ...] = ()
    #: Files that changed and have not settled yet (their previous content is still in force).
    unsettled: tuple[str, ...] = ()
    #: When the earliest unsettled file may settle (the loader's clock): look again then.
    settles_at: float | None = None

    @property
    def complete(self) -> bool:
        """True when every manifest parsed cleanly and settled: the only state in which pruning is allowed."""
        return not self.errors and not self.unsettled
