"""Credential metrics: when the credential ends, whether it still works, and how its refreshes went.

``canfar_controller_credential_expiry_timestamp_seconds{kind}`` is what an alert needs to fire
days before a daemon stops working: ``kind="x509"`` is the proxy certificate's notAfter,
``kind="oidc_refresh"`` the OIDC refresh token's end (the login's true end, since access tokens
are refreshed), ``kind="oidc_access"`` the access token's end when there is nothing to refresh it
with. The values are plain arguments so that this layer needs nothing of the client's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: How a refresh ended: a new access token, refused by the token endpoint (log in again), or no answer.
REFRESH_RESULTS = ("success", "refused", "error")


class CredentialMetrics(Collector):
    """The credential's gauges, built at scrape time from the last ``update``, and the refresh counter."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._expiry: tuple[str, float] | None = None
        self._usable: bool | None = None
        self._refreshes = Counter(
            "canfar_controller_credential_refreshes",
            "OIDC access-token refreshes by result (refused: the login must be renewed with `canfar auth login`).",
            ["result"], registry=registry,
        )
        for result in REFRESH_RESULTS:
            self._refreshes.labels(result)
        registry.register(self)

    def refreshed(self, result: str) -> None:
        """Count one refresh; the signature matches the client's ``on_refresh`` hook."""
        self._refreshes.labels(result).inc()

    def update(self, *, expiry_kind: str | None, expiry: float | None, usable: bool) -> None:
        """Record the credential as it is now (once per pass)."""
        with self._lock:
            self._expiry = (expiry_kind, expiry) if expiry_kind is not None and expiry is not None else None
            self._usable = usable

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            expiry, usable = self._expiry, self._usable
        family = GaugeMetricFamily(
            "canfar_controller_credential_expiry_timestamp_seconds",
            "Unix time the credential ends: x509 notAfter, oidc_refresh token, or oidc_access when nothing "
            "can refresh it.", labels=["kind"],
        )
        if expiry is not None:
            family.add_metric([expiry[0]], expiry[1])
        yield family
        if usable is not None:
            yield GaugeMetricFamily("canfar_controller_credential_usable",
                                    "1 while the credential can be used, 0 once it cannot (refused refresh, "
                                    "expired, unreadable).", value=1 if usable else 0)
