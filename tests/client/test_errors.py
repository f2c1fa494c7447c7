"""Every failure is a typed error with the status and the server's text; reads retry, creates never do."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from controller.errors import (
    AuthenticationError,
    BadRequestError,
    BatchError,
    ClientError,
    InvalidRequestError,
    ServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    TransportError,
)
from controller.rules import SessionSpec
from tests.client.conftest import IMAGE, NOTEBOOK_IMAGE, TOKEN

pytestmark = pytest.mark.usefixtures("flavour")


def _count(sim: Any, method: str, path: str = "/session") -> int:
    return sum(1 for request in sim.requests if request.method == method and request.path == path)


@pytest.mark.parametrize(
    ("replicas", "env", "message"),
    [
        (0, (), "replicas must be between 1 and 512"),
        (513, (), "replicas must be between 1 and 512"),
        (10, (), r"name: with 10 replicas, 'x{61}-10' must be at most 63 characters"),
        (2, (("REPLICA_ID", "7"),), "REPLICA_ID and REPLICA_COUNT are set per replica"),
    ],
)
def test_replicas_that_cannot_work_are_refused_before_any_request(
    client: Any, sim: Any, replicas: int, env: tuple[tuple[str, str], ...], message: str
) -> None:
    """A spec that is valid alone but not with ``replicas`` (name too long, own REPLICA_*) sends nothing."""
    spec = SessionSpec("x" * 61 if replicas == 10 else "job", IMAGE, env=env)
    with pytest.raises(InvalidRequestError, match=message):
        client.create(spec, replicas=replicas)
    assert sim.requests == []


def test_image_from_an_unknown_registry_carries_the_server_message(client: Any) -> None:
    """The service's 400 about harbor hosts arrives as BadRequestError with its text."""
    with pytest.raises(BadRequestError) as caught:
        client.create(SessionSpec("job", "docker.io/library/python:3.12"))
    assert caught.value.status == 400
    assert "must come from one of" in caught.value.server_message
    assert "docker.io/library/python:3.12" in str(caught.value)


def test_image_missing_from_the_registry_carries_the_server_message(client: Any) -> None:
    """An image the registry does not have (not in the public cache) is a 400 with the service's words."""
    with pytest.raises(BadRequestError, match="unknown or private image"):
        client.create(SessionSpec("job", "images.canfar.net/skaha/no-such-image:latest"))


def test_interactive_cap_reached_is_a_bad_request(serve: Any, make_client: Any) -> None:
    """Creating past the per-user interactive limit raises the service's 'reached the maximum' text."""
    _sim, url = serve(max_interactive=1)
    client = make_client(url=url)
    client.create(SessionSpec("nb1", NOTEBOOK_IMAGE, kind="notebook"))
    with pytest.raises(BadRequestError, match="reached the maximum of 1"):
        client.create(SessionSpec("nb2", NOTEBOOK_IMAGE, kind="notebook"))


def test_partial_replicas_keep_the_created_ids(serve: Any, make_client: Any) -> None:
    """When some replicas fail, BatchError holds the ids that were created, by replica name."""
    _sim, url = serve(max_interactive=2)
    client = make_client(url=url)
    with pytest.raises(BatchError) as caught:
        client.create(SessionSpec("nb", NOTEBOOK_IMAGE, kind="notebook"), replicas=3)
    error = caught.value
    assert len(error.results) == 2 and len(error.errors) == 1
    assert set(error.results) | set(error.errors) == {"nb-1", "nb-2", "nb-3"}
    assert all(isinstance(failure, BadRequestError) for failure in error.errors.values())
    assert {session.id for session in client.fetch()} == set(error.results.values())


def test_no_token_is_an_authentication_error(make_client: Any) -> None:
    """Without any credential the service answers 401, raised as AuthenticationError."""
    client = make_client(token=None)
    with pytest.raises(AuthenticationError) as caught:
        client.fetch()
    assert caught.value.status == 401


def test_a_wrong_token_is_an_authentication_error_that_does_not_show_it(make_client: Any) -> None:
    """A rejected token raises AuthenticationError, and the error text never contains the token."""
    wrong = "wrong-token-1234567"
    client = make_client(token=wrong)
    with pytest.raises(AuthenticationError) as caught:
        client.fetch()
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)


def test_reads_retry_5xx_and_then_succeed(make_client: Any, sim: Any) -> None:
    """Two injected 500s on a list are retried; the third attempt's answer is returned."""
    attempts: list[tuple[str, int | None]] = []
    client = make_client(on_request=lambda operation, status, seconds: attempts.append((operation, status)))
    sim.inject_fault(method="GET", path="/session", status=500, count=2)
    assert client.fetch() == []
    assert _count(sim, "GET") == 3
    assert attempts == [("fetch", 500), ("fetch", 500), ("fetch", 200)]


def test_reads_give_up_after_the_configured_retries(make_client: Any, sim: Any) -> None:
    """A 5xx that persists is raised as ServerError with its text after 1 + retries attempts."""
    client = make_client(retries=2)
    sim.inject_fault(method="GET", path="/session", status=500, count=None)
    with pytest.raises(ServerError, match="simulated failure") as caught:
        client.fetch()
    assert caught.value.status == 500
    assert _count(sim, "GET") == 3


def test_dropped_connections_on_reads_are_retried(client: Any, sim: Any) -> None:
    """A connection closed without an answer is retried for a read."""
    [session_id] = client.create(SessionSpec("a", IMAGE))
    sim.inject_fault(method="GET", path=f"/session/{session_id}", status=None, count=1)
    assert client.info(session_id)[0].id == session_id
    assert _count(sim, "GET", f"/session/{session_id}") == 2


def test_retry_after_is_honoured(make_client: Any, sim: Any) -> None:
    """A 503 with Retry-After: 1 waits at least a second before the retry, whatever the backoff."""
    client = make_client(backoff=0.001)
    sim.inject_fault(method="GET", path="/session", status=503, count=1)
    started = time.monotonic()
    client.stats()
    assert time.monotonic() - started >= 0.95
    assert _count(sim, "GET") == 2


def test_a_503_that_persists_is_service_unavailable(make_client: Any, sim: Any) -> None:
    """With retries off, a 503 surfaces as ServiceUnavailableError with the server's text and Retry-After."""
    client = make_client(retries=0)
    sim.inject_fault(method="GET", path="/session", status=503, count=1)
    with pytest.raises(ServiceUnavailableError, match="temporarily unavailable") as caught:
        client.stats()
    assert caught.value.retry_after == 1.0
    assert str(caught.value).endswith("(retry after 1 s)")


class RateLimiter:
    """A gateway in front of the service (an httpx transport handler): 429 for the first ``limited`` requests."""

    def __init__(self, retry_after: str | None, limited: int = 1) -> None:
        self.retry_after = retry_after
        self.limited = limited
        self.requests: list[tuple[str, float]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, time.monotonic()))
        if len(self.requests) <= self.limited:
            headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            return httpx.Response(429, text="Too Many Requests", headers=headers)
        if request.method == "POST":
            return httpx.Response(200, text="abcdefgh\n")
        return httpx.Response(200, json=[])

    def client(self, make_client: Any, **options: Any) -> Any:
        return make_client(url="http://gateway.test/skaha/v1", transport=httpx.MockTransport(self), **options)


def test_a_read_answered_429_is_retried_after_retry_after(make_client: Any) -> None:
    """A rate-limited list waits what Retry-After asks (longer than the backoff), then succeeds."""
    gateway = RateLimiter(retry_after="0.3")
    assert gateway.client(make_client).fetch() == []
    [(_, first), (_, second)] = gateway.requests
    assert second - first >= 0.29


def test_a_429_that_persists_is_too_many_requests_with_retry_after(make_client: Any) -> None:
    """After the retries, a 429 surfaces as TooManyRequestsError, a ClientError, carrying Retry-After."""
    gateway = RateLimiter(retry_after="0", limited=10)
    with pytest.raises(TooManyRequestsError) as caught:
        gateway.client(make_client, retries=2).fetch()
    assert isinstance(caught.value, ClientError)
    assert (caught.value.status, caught.value.retry_after) == (429, 0.0)
    assert len(gateway.requests) == 3


def test_a_retry_after_beyond_the_cap_goes_to_the_caller_at_once(make_client: Any) -> None:
    """A server asking for two minutes is not waited out inside the call: the error carries the 120 s."""
    gateway = RateLimiter(retry_after="120")
    with pytest.raises(TooManyRequestsError) as caught:
        gateway.client(make_client).fetch()
    assert caught.value.retry_after == 120.0
    assert "retry after 120 s" in str(caught.value)
    assert len(gateway.requests) == 1


def test_a_create_answered_429_is_not_resent(make_client: Any) -> None:
    """A rate-limited create made nothing, and it is left to the caller when to create again."""
    gateway = RateLimiter(retry_after="5")
    with pytest.raises(TooManyRequestsError) as caught:
        gateway.client(make_client).create(SessionSpec("job", IMAGE))
    assert caught.value.retry_after == 5.0
    assert gateway.requests[0][0] == "POST" and len(gateway.requests) == 1


def test_a_429_without_retry_after_backs_off_as_usual(make_client: Any) -> None:
    """No Retry-After: the error's retry_after is None and reads retry with the ordinary backoff."""
    gateway = RateLimiter(retry_after=None)
    assert gateway.client(make_client).fetch() == []
    assert len(gateway.requests) == 2


def test_create_is_not_retried_on_5xx(client: Any, sim: Any) -> None:
    """A create answered with 500 is sent once only: it may have made a session."""
    sim.inject_fault(method="POST", path="/session", status=500, count=1)
    with pytest.raises(ServerError):
        client.create(SessionSpec("job", IMAGE))
    assert _count(sim, "POST") == 1


def test_create_is_not_retried_when_the_answer_is_lost(client: Any, sim: Any) -> None:
    """A create whose connection drops after the server acted is not resent, so no duplicate appears."""
    sim.inject_fault(method="POST", path="/session", status=None, count=1, processed=True)
    with pytest.raises(TransportError) as caught:
        client.create(SessionSpec("job", IMAGE))
    assert caught.value.status is None
    assert caught.value.__cause__ is not None
    assert _count(sim, "POST") == 1
    assert [session.name for session in client.fetch()] == ["job"]


def test_an_unreachable_server_is_a_transport_error(make_client: Any) -> None:
    """Nothing listening: TransportError chained to the httpx exception, after the retries."""
    client = make_client(url="http://127.0.0.1:9/skaha/v1", retries=1)
    with pytest.raises(TransportError) as caught:
        client.fetch()
    assert caught.value.status is None and caught.value.__cause__ is not None


def test_invalid_regex_is_a_clear_value_error(client: Any, sim: Any) -> None:
    """destroy_with with a broken regex raises a ValueError naming it, before any request."""
    with pytest.raises(ValueError, match=r"invalid regular expression '\[abc'"):
        client.destroy_with("[abc")
    assert sim.requests == []


def test_batch_destroy_reports_each_failure(make_client: Any, sim: Any) -> None:
    """A DELETE failing for one id among several is reported for that id; the others succeed."""
    client = make_client(retries=0)
    sim.inject_fault(method="DELETE", path="/session/bbbbbbbb", status=500, count=1)
    with pytest.raises(BatchError) as caught:
        client.destroy(["aaaaaaaa", "bbbbbbbb", "cccccccc"])
    assert sorted(caught.value.results) == ["aaaaaaaa", "cccccccc"]
    assert list(caught.value.errors) == ["bbbbbbbb"]
    assert caught.value.errors["bbbbbbbb"].status == 500


def test_the_token_is_not_in_server_text_even_if_echoed(make_client: Any, sim: Any) -> None:
    """Were a proxy to echo the token in an error body, the exception would still not show it."""
    client = make_client()
    with pytest.raises(BadRequestError) as caught:
        client.create(SessionSpec("job", f"docker.io/{TOKEN}:latest"))
    assert TOKEN not in str(caught.value)
