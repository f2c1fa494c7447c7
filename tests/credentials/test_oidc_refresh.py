"""OIDC refresh: before expiry, once on a 401, one refresh for many callers, and tokens that survive.

The service is the simulator, trusting exactly the access tokens the test's token endpoint issued
and that have not expired; a call made with a stale token is a 401 there, as on the real platform.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from controller.cli.common import client_settings
from controller.client import AsyncSession, ClientSettings, Session
from controller.errors import AuthenticationError, CredentialError
from controller.rules import SessionSpec
from controller.simulator import Simulator
from tests.credentials.canfar_configs import oidc_config, read_back
from tests.credentials.endpoint import TokenEndpoint

IMAGE = "images.canfar.net/skaha/terminal:1.1.2"


@pytest.fixture
def login(tmp_path: Path, url: str, endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A canfar config holding a fresh login of the endpoint (written by canfar's own models)."""
    return oidc_config(tmp_path / "canfar" / "config.yaml", url=url, token_url=endpoint.url,
                       login=endpoint.issue(), monkeypatch=monkeypatch)


def settings(config: Path, store: Path | None = None) -> ClientSettings:
    return client_settings(argparse.Namespace(canfar_config=config)).model_copy(update={"credential_dir": store})


def statuses(simulator: Simulator) -> list[int | None]:
    return [request.status for request in simulator.requests]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_the_access_token_is_refreshed_before_it_expires_across_many_lifetimes(
        login: Path, endpoint: TokenEndpoint, simulator: Simulator) -> None:
    endpoint.access_life = 1.0
    config = oidc_config_like(login, endpoint)

    async def keep_calling() -> None:
        async with AsyncSession(settings(config)) as client:
            for _ in range(30):
                await client.fetch()
                await asyncio.sleep(0.15)

    started = time.monotonic()
    run(keep_calling())
    lifetimes = (time.monotonic() - started) / 1.0
    assert set(statuses(simulator)) == {200}, "not one call was refused"
    assert lifetimes > 4 and len(endpoint.grants) >= 4


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_401_refreshes_once_and_the_call_is_sent_again(
        login: Path, endpoint: TokenEndpoint, simulator: Simulator, flavour: str) -> None:
    endpoint._access.clear()  # the provider revoked every access token: only a refresh helps
    if flavour == "sync":
        with Session(settings(login)) as client:
            assert client.fetch() == []
    else:
        async def fetch() -> Any:
            async with AsyncSession(settings(login)) as client:
                return await client.fetch()
        assert run(fetch()) == []
    assert statuses(simulator) == [401, 200]
    assert len(endpoint.grants) == 1


def test_a_second_401_is_the_error_and_not_a_loop(login: Path, endpoint: TokenEndpoint, simulator: Simulator) -> None:
    endpoint.access_life = -1.0  # every token the endpoint issues is already expired for the service
    endpoint._access.clear()
    with Session(settings(login)) as client, pytest.raises(AuthenticationError) as raised:
        client.fetch()
    assert statuses(simulator) == [401, 401]
    assert len(endpoint.grants) == 1
    assert "canfar auth login" in (raised.value.hint or "")


@pytest.mark.parametrize("cause", ["expired", "revoked"])
def test_32_concurrent_creates_share_one_refresh(
        login: Path, endpoint: TokenEndpoint, simulator: Simulator, cause: str) -> None:
    endpoint.delay = 0.5  # a slow provider: every create meets the refresh in flight
    if cause == "expired":
        endpoint.access_life = 0.3
        login_expired = oidc_config_like(login, endpoint)
        time.sleep(0.4)
        config = login_expired
    else:
        endpoint._access.clear()
        config = login
    refreshes: list[str] = []

    async def create() -> list[str]:
        async with AsyncSession(settings(config), on_refresh=refreshes.append) as client:
            return await client.create(SessionSpec(name="burst", image=IMAGE, kind="headless", cmd="sleep",
                                                   args="100"), replicas=32)

    ids = run(create())
    assert len(set(ids)) == 32 and len(endpoint.grants) == 1 and refreshes == ["success"]
    assert len([s for s in simulator.requests if s.method == "POST" and s.status == 200]) == 32


def oidc_config_like(config: Path, endpoint: TokenEndpoint) -> Path:
    """Store a new login of ``endpoint`` in ``config`` (as a second ``canfar auth login`` would)."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        url = read_url(config)
        return oidc_config(config, url=url, token_url=endpoint.url, login=endpoint.issue(), monkeypatch=monkeypatch)
    finally:
        monkeypatch.undo()


def read_url(config: Path) -> str:
    settings_ = client_settings(argparse.Namespace(canfar_config=config))
    assert settings_.url is not None
    return settings_.url


def test_rotated_tokens_are_written_back_so_canfar_keeps_working(
        login: Path, endpoint: TokenEndpoint) -> None:
    endpoint.access_life = 0.2
    oidc_config_like(login, endpoint)
    time.sleep(0.3)
    before = read_back(login)
    with Session(settings(login)) as client:
        client.fetch()
    after = read_back(login)  # canfar's own models accept the file
    assert after.token.refresh is not None and after.token.access is not None
    assert after.token.refresh.get_secret_value() in endpoint._refresh
    assert after.token.refresh != before.token.refresh and after.refreshable
    assert endpoint.valid(after.token.access.get_secret_value())
    assert after.client == before.client and after.endpoints == before.endpoints
    assert stat.S_IMODE(login.stat().st_mode) == 0o600
    assert not list(login.parent.glob(".config.yaml.*")), "no temporary file is left behind"


def test_a_read_only_config_is_left_alone_and_the_rotated_login_kept_beside_the_memory(
        login: Path, endpoint: TokenEndpoint, tmp_path: Path, simulator: Simulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    login.chmod(0o400)  # like a Kubernetes Secret or a systemd credential
    original = login.read_bytes()
    store = tmp_path / "memory"
    endpoint._access.clear()
    with Session(settings(login, store)) as client:
        client.fetch()
    assert login.read_bytes() == original
    copy = store / "canfar-login.json"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    kept = json.loads(copy.read_text())["tokens"]["refresh"]
    assert kept in endpoint._refresh  # the file's refresh token was rotated away

    # A restart: the copy wins over the file while the file is unchanged.
    endpoint._access.clear()
    with Session(settings(login, store)) as client:
        client.fetch()
    assert [grant["refresh_token"] for grant in endpoint.grants][-1] == kept
    assert statuses(simulator)[-1] == 200

    # A new login in the file (the Secret was updated): the file wins again.
    login.chmod(0o600)
    oidc_config(login, url=read_url(login), token_url=endpoint.url, login=endpoint.issue(), monkeypatch=monkeypatch)
    login.chmod(0o400)
    fresh = read_back(login).token.refresh
    assert fresh is not None
    endpoint._access.clear()
    with Session(settings(login, store)) as client:
        client.fetch()
    assert endpoint.grants[-1]["refresh_token"] == fresh.get_secret_value()


def test_a_refused_refresh_stops_calls_with_one_clear_error_until_the_user_logs_in_again(
        login: Path, endpoint: TokenEndpoint, simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint.refuse = True
    endpoint._access.clear()
    refreshes: list[str] = []
    with Session(settings(login), on_refresh=refreshes.append) as client:
        with pytest.raises(AuthenticationError):
            client.fetch()
        for _ in range(3):
            with pytest.raises(CredentialError) as raised:
                client.fetch()
        message = str(raised.value)
        assert str(login) in message and "'srcnet'" in message and "invalid_grant" in message
        assert message.endswith("run `canfar auth login`")
        assert refreshes == ["refused"] and len(endpoint.grants) == 1, "no hammering of the token endpoint"
        assert not client.credential().usable

        endpoint.refuse = False
        oidc_config(login, url=read_url(login), token_url=endpoint.url, login=endpoint.issue(),
                    monkeypatch=monkeypatch)
        assert client.fetch() == []  # the new login is picked up without a restart
        assert client.credential().usable


def test_a_slow_refresh_at_80_percent_does_not_hold_calls_while_the_token_still_works(
        login: Path, endpoint: TokenEndpoint, simulator: Simulator) -> None:
    endpoint.access_life = 2.0
    config = oidc_config_like(login, endpoint)
    endpoint.delay = 1.0

    async def scenario() -> tuple[bool, bool]:
        async with AsyncSession(settings(config)) as client:
            first = client._tokens.current()
            await asyncio.sleep(1.7)  # past 80 % of the token's life
            await client.fetch()  # starts the refresh in the background and goes on with the old token
            used_old = client._tokens.last == first and len(endpoint.grants) <= 1
            await asyncio.sleep(1.2)
            await client.fetch()
            return used_old, client._tokens.last != first

    used_old, used_new = run(scenario())
    assert used_old and used_new
    assert set(statuses(simulator)) == {200} and len(endpoint.grants) == 1


def test_a_token_endpoint_that_does_not_answer_is_tried_again_later_not_on_every_call(
        tmp_path: Path, url: str, endpoint: TokenEndpoint, simulator: Simulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint.access_life = 0.2
    login = endpoint.issue()
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/token"
    config = oidc_config(tmp_path / "config.yaml", url=url, token_url=down, login=login, monkeypatch=monkeypatch)
    time.sleep(0.3)
    refreshes: list[str] = []
    with Session(settings(config), on_refresh=refreshes.append) as client:
        for _ in range(3):
            with pytest.raises(AuthenticationError):
                client.fetch()
        assert client.credential().usable, "not refused: the next attempt may work"
    assert refreshes == ["error"], "one attempt, then a pause (15 s) before the next"
