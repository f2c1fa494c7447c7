"""Session names: the service's rule, and the names the controller gives the sessions it owns.

The service only checks ``[A-Za-z0-9-]+`` but lower-cases the name and uses it as the pod's
hostname, so anything that is not an RFC 1123 DNS label (lowercase, at most 63 characters, no
leading or trailing ``-``) fails later and less clearly. We check the stricter rule up front.

Owned names are ``<prefix>-<set>-<hash>-<slot>``:

- ``prefix``: the controller's ownership tag (``--prefix``); a name without it is never touched;
- ``set``: the SessionSet name;
- ``hash``: 6 hex digits of SHA-256 over the canonical template, so a template change is visible
  in the name (the server does not return cmd/args/env, so the name is the only place to keep it);
- ``slot``: 1..replicas, the session's identity; the replacement for slot 3 is slot 3 again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NAME_LENGTH = 63
HASH_LENGTH = 6
#: Highest replica count, so the slot number has at most three digits.
MAX_REPLICAS = 512

_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def session_name_problem(name: str) -> str | None:
    """Explain why ``name`` is not a valid session name, or return ``None`` when it is."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters (got {len(name)})"
    if _DNS_LABEL.fullmatch(name) is None:
        return (
            "must be a lowercase DNS label: letters a-z, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def longest_set_name(prefix: str) -> int:
    """The longest SessionSet name that still yields valid session names under ``prefix``."""
    return MAX_NAME_LENGTH - len(prefix) - 1 - 1 - HASH_LENGTH - 1 - len(str(MAX_REPLICAS))


@dataclass(frozen=True, slots=True)
class OwnedName:
    """The parts of a session name that the controller gave it."""

    set_name: str
    template_hash: str
    slot: int


def owned_name(prefix: str, set_name: str, template_hash: str, slot: int) -> str:
    """The session name for ``slot`` of ``set_name`` with the template whose hash is given."""
    return f"{prefix}-{set_name}-{template_hash}-{slot}"


class NameParser:
    """Recognises the names this controller owns; everything else is foreign."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._pattern = re.compile(
            rf"{re.escape(prefix)}-(?P<set>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)"
            rf"-(?P<hash>[0-9a-f]{{{HASH_LENGTH}}})-(?P<slot>[1-9][0-9]{{0,2}})"
        )

    def parse(self, name: str) -> OwnedName | None:
        """The owned parts of ``name``, or ``None`` when the name is not ours."""
        match = self._pattern.fullmatch(name)
        if match is None:
            return None
        return OwnedName(match["set"], match["hash"], int(match["slot"]))
