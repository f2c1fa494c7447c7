"""RAM units, said once: what the service means by a number, and how the controller shows it.

Three units meet here, and mixing them up is a 7% error:

- a request (a manifest's ``ram``, ``sessions create --ram``, ``/context``'s ``memoryGB``) is in
  **GiB**: the service reserves ``ram`` Gi (2**30 bytes each), whatever its docs call it;
- what the service reports (``requestedRAM`` and ``ramInUse`` of a session, the ``G`` of
  ``view=stats``) is in decimal **GB** (10**9 bytes): ``ram: 8`` comes back as ``8.59``;
- metrics are in **bytes** (``_bytes``), so Grafana and PromQL pick the display unit.

Everything the controller prints for people is in GiB, the unit requests are made in.
"""

from __future__ import annotations

from typing import Final

#: Bytes in one GiB (what a request's number means) and in one GB (what the service reports).
GIB: Final = 2**30
GB: Final = 1e9


def ram_text(value_bytes: float) -> str:
    """RAM for people: GiB with at most two decimals (``8 GiB``, ``238.42 GiB``, ``0.8 GiB``)."""
    text = f"{value_bytes / GIB:.2f}".rstrip("0").rstrip(".")
    return f"{text} GiB"
