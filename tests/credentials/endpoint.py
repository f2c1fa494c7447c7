"""A small OIDC token endpoint on loopback: the refresh-token grant, rotation, refusal and slow answers.

It checks what a real provider checks (HTTP Basic client credentials, ``grant_type``, a refresh
token it issued and has not rotated away) and answers as one does (RFC 6749 §5.1 / §5.2). Its
``valid`` is what the simulator asks (``SimulatorConfig.identity_provider``), so the service
accepts exactly the access tokens issued here, until they expire.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

CLIENT_ID = "canfar-controller-test-client"
CLIENT_SECRET = "client-secret-5a4b3c2d1e"


@dataclass
class TokenEndpoint:
    """Issues and refreshes tokens; every knob a test needs is a plain attribute."""

    access_life: float = 60.0
    rotate: bool = True
    delay: float = 0.0
    refuse: bool = False
    refresh_life: float | None = 7 * 86400.0
    url: str = ""
    grants: list[dict[str, str]] = field(default_factory=list)
    _access: dict[str, float] = field(default_factory=dict)
    _refresh: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self) -> dict[str, Any]:
        """A new login, as ``canfar auth login`` would store it."""
        with self._lock:
            return self._tokens(rotate=True, refresh=None)

    def valid(self, access: str) -> bool:
        """Whether ``access`` was issued here and has not expired (the simulator's question)."""
        with self._lock:
            return time.time() < self._access.get(access, 0.0)

    def revoke_all(self) -> None:
        with self._lock:
            self._refresh.clear()

    def _tokens(self, *, rotate: bool, refresh: str | None) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(16)
        now = time.time()
        self._access[access] = now + self.access_life
        if rotate or refresh is None:
            if refresh is not None:
                self._refresh.discard(refresh)
            refresh = "rt-" + secrets.token_urlsafe(16)
            self._refresh.add(refresh)
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.access_life,
                                  "refresh_token": refresh, "scope": "openid offline_access",
                                  "expires_at": now + self.access_life}
        if self.refresh_life is not None:
            answer["refresh_expires_in"] = self.refresh_life
        return answer

    def answer(self, authorization: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The endpoint's answer to one POST (status, JSON body)."""
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if authorization != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            self.grants.append(form)
            token = form.get("refresh_token", "")
            if self.refuse or token not in self._refresh:
                return 400, {"error": "invalid_grant", "error_description": "Token is not active"}
            answer = self._tokens(rotate=self.rotate, refresh=token)
        answer.pop("expires_at")
        if not self.rotate:
            answer.pop("refresh_token")
        return 200, answer


class _Handler(BaseHTTPRequestHandler):
    endpoint: TokenEndpoint

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        form = {key: unquote(values[0]) for key, values in parse_qs(body).items()}
        time.sleep(self.endpoint.delay)
        status, answer = self.endpoint.answer(self.headers.get("Authorization", ""), form)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(endpoint: TokenEndpoint) -> Iterator[TokenEndpoint]:
    """Serve ``endpoint`` on 127.0.0.1 at a free port; its ``url`` is set to the token URL."""
    handler = type("Handler", (_Handler,), {"endpoint": endpoint})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/realms/test/protocol/openid-connect/token"
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
