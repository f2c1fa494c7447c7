"""What a simulated skaha deployment looks like: cluster size, limits, images, faults.

Every default mirrors the skaha Helm chart (``k8s-resources.json``, ``launch-*.yaml``) so that a
client developed against the simulator meets the same limits on the real service. Faults are
off by default: the simulator is a faithful server first and a chaos tool only on request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: Session kinds the server knows (``SessionType.java``).
KINDS = ("carta", "contributed", "desktop", "notebook", "headless", "desktop-app", "firefly")

#: Kinds whose image decides the resources: cores/ram parameters are ignored (``launch-desktop.yaml``).
FIXED_KIND_REQUESTS: dict[str, tuple[float, float]] = {"desktop": (0.25, 1.0), "firefly": (0.1, 4.0)}

#: ``/context`` choices a session may request (chart ``k8s-resources.json``).
CORE_OPTIONS = tuple(range(1, 17))
RAM_OPTIONS = (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 26, 28, 30, 32, 36, 40, 44, 48, 56, 64, 80, 92, 112,
               128, 140, 170, 192)
GPU_OPTIONS = tuple(range(1, 29))

#: The public image cache that ``/image`` serves; any other harbor image needs registry auth.
#: These are the platform images CANFAR documents (its user docs and the ``canfar`` client's docs
#: and tests, e.g. ``base-notebook`` for notebooks, ``terminal:1.1.2`` for headless ``env`` runs),
#: at least one for every session kind; replace or extend them with ``SimulatorConfig.images``.
DEFAULT_IMAGES: dict[str, tuple[str, ...]] = {
    "images.canfar.net/skaha/astroml:latest": ("notebook", "headless", "desktop-app"),
    "images.canfar.net/skaha/astroml-cuda:latest": ("notebook", "headless"),
    "images.canfar.net/skaha/base-notebook:latest": ("notebook", "headless"),
    "images.canfar.net/skaha/base:latest": ("headless",),
    "images.canfar.net/skaha/terminal:1.1.2": ("headless", "desktop-app"),
    "images.canfar.net/skaha/terminal:1.1.1": ("headless", "desktop-app"),
    "images.canfar.net/skaha/casa:6.5": ("notebook", "headless", "desktop-app"),
    "images.canfar.net/skaha/desktop:latest": ("desktop",),
    "images.canfar.net/skaha/carta:latest": ("carta",),
    "images.canfar.net/skaha/firefly:latest": ("firefly",),
    "images.canfar.net/skaha/marimo:latest": ("contributed",),
    "images.canfar.net/skaha/vscode:latest": ("contributed",),
}


def images_from_json(data: Any, *, source: str = "image list") -> dict[str, tuple[str, ...]]:
    """An image catalogue from the JSON shape of ``GET /image``: ``[{"id", "types", "digest"}]``.

    Digests are not kept (the simulator derives them from the id). Raises ``ValueError`` naming
    ``source`` and the entry when the shape is wrong.
    """
    if not isinstance(data, list):
        raise ValueError(f"{source}: expected a JSON array of images as GET /image returns, got {type(data).__name__}")
    images: dict[str, tuple[str, ...]] = {}
    for index, entry in enumerate(data):
        where = f"{source}: entry {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise ValueError(f'{where}: expected an object with a string "id"')
        types = entry.get("types")
        if not isinstance(types, list) or not all(isinstance(kind, str) for kind in types):
            raise ValueError(f'{where} ({entry["id"]}): expected "types" to be a list of session types')
        images[entry["id"]] = tuple(types)
    return images


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The settings of one simulated service; immutable so a running server cannot drift."""

    user: str = "sim-user"
    """The POSIX user every authenticated request maps to."""
    token: str | None = None
    """The only bearer token accepted; ``None`` accepts any bearer token (no credential is still 401)."""
    identity_provider: Callable[[str], bool] | None = field(default=None, compare=False, repr=False)
    """Asked about a bearer token other than ``token``, as skaha asks its OIDC provider: ``True`` accepts it.

    Tests pass their token endpoint's check, so access tokens it issued work until they expire and
    a refreshed one works at once, while anything else is 401.
    """
    cores: float = 64.0
    """Cluster CPU capacity; sessions whose requests do not fit stay ``Pending``."""
    ram_gb: float = 256.0
    """Cluster memory capacity in decimal GB."""
    max_interactive: int = 5
    """Per-user cap on non-headless ``Pending``/``Running`` sessions (chart ``sessions.maxCount``)."""
    time_scale: float = 1.0
    """Simulated seconds per real second, so TTLs and ``sleep N`` can pass faster in tests and demos."""
    error_rate: float = 0.0
    """Fraction of requests answered with a 5xx before they are handled (seeded, reproducible)."""
    latency: float = 0.0
    """Real seconds added before every answer."""
    drop_rate: float = 0.0
    """Fraction of requests whose connection is closed without any answer."""
    seed: int = 0
    """Seed of the fault dice; the same seed and request sequence give the same faults."""
    pending_seconds: float = 2.0
    """Simulated image pull: how long an admitted session stays ``Pending`` before ``Running``."""
    terminating_seconds: float = 5.0
    """How long a deleted session's pod takes to stop. The session leaves lists and GET at once
    (``DeleteAction`` deletes the Job with Background propagation); the pod keeps its cores, RAM,
    logs and events this long."""
    headless_deadline: float = 1_209_600.0
    """``activeDeadlineSeconds`` of headless Jobs (14 days, ``launch-headless.yaml``)."""
    session_expiry: float = 345_600.0
    """``skaha.sessionexpiry`` (4 days): interactive deadline and what renew extends to."""
    ignore_renews: bool = False
    """Answer every renew ``200`` and do nothing (the expiry does not move): a platform whose renew is broken."""
    headless_ttl: float = 3600.0
    """``ttlSecondsAfterFinished`` of headless Jobs: ended sessions vanish (404) after this."""
    interactive_ttl: float = 86_400.0
    """``ttlSecondsAfterFinished`` of interactive Jobs."""
    event_ttl: float = 3600.0
    """Kubernetes keeps events one hour; older ones drop out of ``view=events``."""
    harbor_hosts: tuple[str, ...] = ("images.canfar.net",)
    """``skaha.harborhosts``: the registries session images must come from."""
    images: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    """Public image cache (``GET /image``): image id -> session kinds it is labelled for."""
    private_images: tuple[str, ...] = ()
    """Images in the registry but not in the public cache: they run only with registry auth."""
    accept_private_images: bool = False
    """Registry-auth mode: with a valid ``x-skaha-registry-auth`` header any image from a harbor
    host runs, as the real server accepts it without asking the registry. Off, only the public
    cache and ``private_images`` run; another image stays ``Pending`` with image-pull errors."""
    sessions_host: str = "sessions.canfar.local"
    """Host name of the service: in ``connectURL`` and the sessions' ``skaha_hostname``."""
    max_body_bytes: int = 1_000_000
    """Largest request body read; bigger ones are refused rather than buffered."""
    max_recorded_requests: int = 100_000
    """How many recent requests ``Simulator.requests`` keeps for tests to assert on."""

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("cores", "ram_gb", "time_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.latency < 0:
            raise ValueError(f"latency must not be negative, got {self.latency}")
        if self.max_interactive < 1:
            raise ValueError(f"max_interactive must be at least 1, got {self.max_interactive}")
        for name in ("session_expiry", "headless_deadline"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for image, kinds in self.images.items():
            if not any(image.startswith(host) for host in self.harbor_hosts):
                raise ValueError(f"image {image!r} must come from one of the harbor hosts {list(self.harbor_hosts)}")
            unknown = [kind for kind in kinds if kind not in KINDS]
            if unknown or not kinds:
                raise ValueError(f"image {image!r}: types must be some of {', '.join(KINDS)}, got {list(kinds)}")
        # Frozen all the way down: a running server's catalogue cannot be changed behind its back.
        object.__setattr__(self, "images", MappingProxyType({image: tuple(kinds)
                                                              for image, kinds in self.images.items()}))
