"""Plain request and response values, so the routes can be driven without sockets.

The server turns HTTP into a ``Request`` and a ``Response`` back into bytes; everything between
is ordinary function calls. Parameters merge the query string and a form-encoded body, the way
the server's ``SyncInput.getParameter()`` does (query first, so a query value wins).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

FORM = "application/x-www-form-urlencoded"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request: ``path`` without query, header names lower-case."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def params(self) -> dict[str, list[str]]:
        """Every parameter with all its values, query string first, then a form body."""
        merged: dict[str, list[str]] = {}
        sources = [self.query]
        if self.body and self.headers.get("content-type", "").split(";")[0].strip().lower() == FORM:
            sources.append(self.body.decode("utf-8", errors="replace"))
        for source in sources:
            for key, value in parse_qsl(source, keep_blank_values=True, errors="replace"):
                merged.setdefault(key, []).append(value)
        return merged


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer; ``headers`` are extra headers beyond Content-Type and Content-Length."""

    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


def text(status: int, message: str, *, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """A ``text/plain`` answer: how the server writes ids, logs, events and every error."""
    return Response(status, message.encode("utf-8"), TEXT, headers)


def json_response(data: Any) -> Response:
    """A 200 JSON answer; compact (clients parse it), UTF-8 unescaped like Gson without HTML escaping."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(200, body, JSON)
