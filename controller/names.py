"""The names the controller gives the sessions it owns (the service's own name rule is ``controller.rules``).

Owned names are ``<prefix>-<set>-<hash>-<slot>``:

- ``prefix``: the controller's ownership tag (``--prefix``); a name without it is never touched;
- ``set``: the SessionSet name;
- ``hash``: 6 hex digits of SHA-256 over the canonical template, so a template change is visible
  in the name (the server does not return cmd/args/env, so the name is the only place to keep it);
- ``slot``: 1..replicas, the session's identity; the replacement for slot 3 is slot 3 again.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from controller.rules import DNS_LABEL, MAX_NAME_LENGTH

HASH_LENGTH = 6
#: Highest replica count, so the slot number has at most three digits.
MAX_REPLICAS = 512

_HASH = re.compile(rf"[0-9a-f]{{{HASH_LENGTH}}}")


def longest_set_name(prefix: str) -> int:
    """The longest SessionSet name that still yields valid session names under ``prefix``."""
    return MAX_NAME_LENGTH - len(prefix) - 1 - 1 - HASH_LENGTH - 1 - len(str(MAX_REPLICAS))


class OwnedName(NamedTuple):
    """The parts of a session name that the controller gave it."""

    set_name: str
    template_hash: str
    slot: int


def owned_name(prefix: str, set_name: str, template_hash: str, slot: int) -> str:
    """The session name for ``slot`` of ``set_name`` with the template whose hash is given."""
    return f"{prefix}-{set_name}-{template_hash}-{slot}"


class NameParser:
    """Recognises the names this controller owns; everything else is foreign.

    Split from the right (slot, then hash) rather than one backtracking regex, and memoized: this
    runs for every session of every pass, 10,000 of them on a busy account, and names repeat.
    """

    #: Names remembered per parser; beyond this the memo starts afresh (names repeat every pass).
    MEMO_SIZE = 200_000

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._head = f"{prefix}-"
        #: Parsed names; read directly by the planner's hot loop (``parse`` fills it).
        self.memo: dict[str, OwnedName | None] = {}

    def parse(self, name: str) -> OwnedName | None:
        """The owned parts of ``name``, or ``None`` when the name is not ours (memoized)."""
        try:
            return self.memo[name]
        except KeyError:
            pass
        if len(self.memo) >= self.MEMO_SIZE:
            self.memo.clear()
        owned = self.memo[name] = self._parse(name)
        return owned

    def _parse(self, name: str) -> OwnedName | None:
        if not name.startswith(self._head):
            return None
        parts = name[len(self._head):].rsplit("-", 2)
        if len(parts) != 3:
            return None
        set_name, template_hash, slot = parts
        if not (slot.isascii() and slot.isdigit() and len(slot) <= 3 and slot[0] != "0"):
            return None
        if _HASH.fullmatch(template_hash) is None or DNS_LABEL.fullmatch(set_name) is None:
            return None
        return OwnedName(set_name, template_hash, int(slot))
