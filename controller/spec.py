"""SessionSet manifests: the desired state, validated strictly before anything acts on it.

Strict means: unknown fields, wrong types and out-of-range values are errors, and so is anything
the session service would silently drop or mangle. The service splits ``args`` on single spaces
with no quoting, splits each ``env`` entry on ``=`` (dropping entries with more than one), renders
both into YAML without escaping, and ignores ``cmd``/``args``/``env`` for every kind but headless.
A manifest that relies on any of that would run something other than what it says. Those rules
are ``controller.rules``, shared with the client and the ``sessions`` command line.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from controller import rules
from controller.errors import ManifestError
from controller.names import MAX_REPLICAS
from controller.rules import SessionKind, SessionSpec

API_VERSION = "canfar.controller/v1alpha1"
KIND = "SessionSet"

RestartPolicy = Literal["Always", "OnFailure", "Never"]

NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Template(_Strict):
    """What every session of the set looks like."""

    kind: SessionKind = "headless"
    image: NonEmpty
    cores: float | None = Field(None, description="omit cores and ram for flexible mode")
    ram: float | None = Field(None, description="GiB (the service reserves this many Gi; it reports them in GB)")
    gpu: int | None = None
    cmd: str | None = None
    args: str | None = None
    env: dict[str, str | int | float] = Field(default_factory=dict)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _checked(value, rules.image_problem(value))

    @field_validator("cores")
    @classmethod
    def _cores(cls, value: float | None) -> float | None:
        return value if value is None else _checked(value, rules.amount_problem(value, rules.CORES))

    @field_validator("ram")
    @classmethod
    def _ram(cls, value: float | None) -> float | None:
        return value if value is None else _checked(value, rules.amount_problem(value, rules.RAM_GIB))

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: int | None) -> int | None:
        return value if value is None else _checked(value, rules.amount_problem(value, rules.GPUS, whole=True))

    @field_validator("cmd")
    @classmethod
    def _cmd(cls, value: str | None) -> str | None:
        return value if value is None else _checked(value, rules.cmd_problem(value))

    @field_validator("args")
    @classmethod
    def _args(cls, value: str | None) -> str | None:
        return value if value is None else _checked(value, rules.args_problem(value))

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if isinstance(item, bool):
                raise ValueError(f"value of {key!r} must be a string or number, not a boolean")
            _checked(item, rules.env_problem(key, _env_value(item)) or rules.reserved_env_problem(key))
        return value

    @model_validator(mode="after")
    def _headless_only(self) -> Template:
        if self.kind != "headless":
            for field in rules.HEADLESS_ONLY:
                if getattr(self, field):
                    raise ValueError(rules.headless_only_problem(self.kind, field))
        return self

    def env_text(self) -> dict[str, str]:
        """The environment as the strings that will be sent."""
        return {key: _env_value(value) for key, value in self.env.items()}

    def session_spec(self, name: str, env: Mapping[str, str] | None = None) -> SessionSpec:
        """The session to create for one slot: this template under ``name``, with ``env`` added.

        The controller passes the slot's ``REPLICA_ID``/``REPLICA_COUNT`` (headless only) in
        ``env``, which overrides the template's own entries of the same key.
        """
        pairs = {**self.env_text(), **env} if env else self.env_text()
        return SessionSpec(name, self.image, self.kind, self.cores, self.ram, self.gpu, self.cmd, self.args,
                           tuple(pairs.items()))

    def hash(self) -> str:
        """Six hex digits identifying this template, stable across runs and key order.

        Computed once per template object (the planner asks for it every pass, and hashing costs a JSON
        dump and a SHA-256); a template is frozen, so the cached value cannot go stale.
        """
        return self._hash

    @cached_property
    def _hash(self) -> str:
        canonical = json.dumps(
            {**self.model_dump(exclude={"env"}), "env": self.env_text()}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:6]


def _env_value(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _checked(value: Any, problem: str | None) -> Any:
    """``value``, or the rule's problem raised as pydantic wants it (it adds file, line and field)."""
    if problem is not None:
        raise ValueError(problem)
    return value


class Metadata(_Strict):
    name: NonEmpty
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _checked(value, rules.name_problem(value))


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


ScaleDownPolicy = Literal["Drain", "Destroy"]
#: HPA's ceiling on a stabilization window (one hour).
MAX_STABILIZATION = 3600
#: How many signals one set may read each pass.
MAX_SIGNALS = 16


class _Alias(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class HttpSignal(_Alias):
    """GET ``url``, read the number at the dotted ``field`` of the JSON answer (bearer from ``tokenFile``)."""

    url: NonEmpty
    field: NonEmpty
    token_file: NonEmpty | None = Field(None, alias="tokenFile")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _checked(value, _url_problem(value))

    @field_validator("field")
    @classmethod
    def _field(cls, value: str) -> str:
        if any(not part for part in value.split(".")):
            raise ValueError("must be a dotted path to a number such as 'queue.pending'")
        return value


class PrometheusSignal(_Alias):
    """An instant query: an empty vector reads as 0, several series are an error."""

    url: NonEmpty
    query: NonEmpty

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _checked(value, _url_problem(value))


class PlatformSignal(_Alias):
    """As many sessions as fit in the platform's free cores and RAM (GiB), minus a reserve for others."""

    reserve_cores: float = Field(0.0, ge=0, alias="reserveCores")
    reserve_ram: float = Field(0.0, ge=0, alias="reserveRAM")


class Signal(_Alias):
    """One signal: exactly one of ``file``, ``http``, ``prometheus`` or ``platform``."""

    file: NonEmpty | None = None
    http: HttpSignal | None = None
    prometheus: PrometheusSignal | None = None
    platform: PlatformSignal | None = None

    @model_validator(mode="after")
    def _one(self) -> Signal:
        given = [kind for kind in ("file", "http", "prometheus", "platform") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"a signal is exactly one of file, http, prometheus or platform (got "
                             f"{', '.join(given) or 'none'})")
        if self.file is not None and not self.file.startswith("/"):
            raise ValueError(f"file must be an absolute path (got {self.file!r})")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in ("file", "http", "prometheus", "platform") if getattr(self, kind) is not None)

    def label(self) -> str:
        """How the signal is named in metrics and status: its kind and source, never a credential."""
        if self.file is not None:
            return f"file {self.file}"
        if self.http is not None:
            host = self.http.url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
            return f"http {host} {self.http.field}"
        if self.prometheus is not None:
            return f"prometheus {self.prometheus.query}"
        return "platform"


def _url_problem(url: str) -> str | None:
    if re.fullmatch(r"https?://[^\s/@]+(/\S*)?", url) is None:
        return f"must be an http:// or https:// URL without credentials in it (got {url.split('@')[-1]!r})"
    return None


class ScaleUp(_Alias):
    stabilization_seconds: int = Field(0, ge=0, le=MAX_STABILIZATION, alias="stabilizationSeconds")
    max_step: int = Field(10, ge=1, le=MAX_REPLICAS, alias="maxStep")


class ScaleDown(_Alias):
    stabilization_seconds: int = Field(300, ge=0, le=MAX_STABILIZATION, alias="stabilizationSeconds")
    policy: ScaleDownPolicy = "Drain"
    max_step: int = Field(10, ge=1, le=MAX_REPLICAS, alias="maxStep")


class Autoscale(_Alias):
    """Replicas from signals (``spec.autoscale``, instead of ``spec.replicas``); see docs/autoscaling.md."""

    min_replicas: int = Field(0, ge=0, le=MAX_REPLICAS, alias="minReplicas")
    max_replicas: int = Field(ge=1, le=MAX_REPLICAS, alias="maxReplicas")
    #: Signal units one session handles.
    target: float = Field(gt=0)
    #: A value at or below this on every signal means idle: minReplicas.
    activation: float = Field(0.0, ge=0)
    signals: list[Signal] = Field(min_length=1, max_length=MAX_SIGNALS)
    scale_up: ScaleUp = Field(default_factory=lambda: ScaleUp.model_validate({}), alias="scaleUp")
    scale_down: ScaleDown = Field(default_factory=lambda: ScaleDown.model_validate({}), alias="scaleDown")
    on_signal_failure: Literal["Hold"] | int = Field("Hold", alias="onSignalFailure")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscale:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) must not exceed maxReplicas ({self.max_replicas})")
        fallback = self.on_signal_failure
        if fallback != "Hold" and not self.min_replicas <= fallback <= self.max_replicas:
            raise ValueError(f"onSignalFailure must be Hold or a number of replicas between minReplicas and "
                             f"maxReplicas (got {fallback})")
        return self


class SessionSetSpec(_Strict):
    #: A fixed count; or ``autoscale`` instead (exactly one of the two).
    replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS)
    template: Template
    restart_policy: RestartPolicy = Field("Always", alias="restartPolicy")
    suspend: bool = False
    update_strategy: UpdateStrategy = Field(default_factory=lambda: UpdateStrategy.model_validate({}),
                                            alias="updateStrategy")
    #: Renew interactive sessions before they expire (the platform ends them after 4 days otherwise).
    renew: bool = True
    autoscale: Autoscale | None = None

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    @field_validator("autoscale")
    @classmethod
    def _not_both(cls, value: Autoscale | None, info: ValidationInfo) -> Autoscale | None:
        if value is not None and "replicas" in info.data and info.data["replicas"] is not None:
            raise ValueError("give either replicas or autoscale, not both: autoscale sets the replica count")
        return value

    @model_validator(mode="after")
    def _count_given(self) -> SessionSetSpec:
        if self.replicas is None and self.autoscale is None:
            raise ValueError("replicas (a fixed count) or autoscale (a count from signals) is required")
        return self


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
    #: False when the state directory itself could not be read (the sets are the last good ones).
    loaded: bool = True
    #: Since when each set's manifest file has been unchanged (the loader's clock); the rule
    #: *Destructive settle* holds a change that would destroy live sessions until the file is stable.
    unchanged_since: Mapping[str, float] = field(default_factory=dict)
    #: Since when each set the loader saw go has been absent (its file deleted or the set removed from it).
    removed_since: Mapping[str, float] = field(default_factory=dict)
    #: Since when nothing in the state directory has changed: the latest a set removed unseen (before
    #: a restart) can have gone. ``None`` with a state loaded without a clock: nothing is held.
    directory_unchanged_since: float | None = None

    @property
    def complete(self) -> bool:
        """True when every manifest parsed cleanly and settled: the only state in which pruning is allowed."""
        return not self.errors and not self.unsettled
