"""The shared, I/O-free layer: request building, the retry policy, name selection, parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from controller.client import exchange as ex
from controller.client import operations as ops
from controller.errors import (
    BadRequestError,
    InvalidRequestError,
    ServerError,
    TooManyRequestsError,
    TransportError,
)
from controller.rules import SessionSpec


def _transport_error(cause: Exception) -> TransportError:
    return ex.transport_error("fetch", cause)


READ = ex.Request("fetch", "GET", "session")
CREATE = ex.Request("create", "POST", "session", idempotent=False)


def test_create_parameters_match_the_canfar_client() -> None:
    """One replica's parameters are the canfar client's list of pairs, env repeated, gpus named gpus."""
    spec = SessionSpec("job", "images.canfar.net/skaha/x:1", cores=2, ram=8, gpu=1, cmd="python",
                       args="run.py --fast", env=(("FOO", "bar"),))
    calls = ops.create_calls(spec, replicas=2)
    assert list(calls) == ["job-1", "job-2"]
    request = calls["job-2"].request
    assert (request.method, request.path, request.idempotent) == ("POST", "session", False)
    assert request.params == (
        ("name", "job-2"), ("image", "images.canfar.net/skaha/x:1"), ("cores", "2"), ("ram", "8"),
        ("type", "headless"), ("gpus", "1"), ("cmd", "python"), ("args", "run.py --fast"), ("env", "FOO=bar"),
        ("env", "REPLICA_ID=2"), ("env", "REPLICA_COUNT=2"),
    )


@pytest.mark.parametrize(("value", "sent"), [(2, "2"), (2.0, "2"), (1.5, "1.5")])
def test_numbers_are_sent_without_a_needless_decimal(value: float, sent: str) -> None:
    """Whole cores are sent as integers (the server parses doubles but people read logs)."""
    [call] = ops.create_calls(SessionSpec("job", "images.canfar.net/skaha/x:1", cores=value)).values()
    assert ("cores", sent) in call.request.params


@pytest.mark.parametrize(
    ("error", "request_", "delay"),
    [
        (ServerError("fetch", status=500), READ, 1.0),
        (_transport_error(httpx.ReadError("reset")), READ, 1.0),
        (BadRequestError("fetch", status=400), READ, None),
        (ServerError("create", status=500), CREATE, None),
        (_transport_error(httpx.ReadTimeout("slow")), CREATE, None),
        (_transport_error(httpx.ConnectError("refused")), CREATE, 1.0),  # never left: safe to resend
    ],
)
def test_only_safe_failures_are_retried(error: Exception, request_: ex.Request, delay: float | None) -> None:
    """5xx and transport errors retry for idempotent requests; a create only if it never connected."""
    policy = ex.RetryPolicy(retries=3, backoff=1.0, jitter=lambda: 1.0)
    assert policy.delay(request_, error, 0) == delay


def test_backoff_doubles_with_jitter_and_stops_after_the_retries() -> None:
    """Delays double per attempt, jitter scales them to 50-100%, and the last retry is the limit."""
    error = ServerError("fetch", status=500)
    full = ex.RetryPolicy(retries=3, backoff=0.5, jitter=lambda: 1.0)
    half = ex.RetryPolicy(retries=3, backoff=0.5, jitter=lambda: 0.0)
    assert [full.delay(READ, error, attempt) for attempt in range(4)] == [0.5, 1.0, 2.0, None]
    assert [half.delay(READ, error, attempt) for attempt in range(3)] == [0.25, 0.5, 1.0]


def test_a_delete_is_retried_at_most_twice_whatever_the_settings() -> None:
    """The controller retries a failed destroy with its own back-off: the client adds at most 2 calls to each."""
    error = ServerError("destroy", status=500)
    [call] = next(ops.destroy("abc")).values()
    policy = ex.RetryPolicy(retries=10, backoff=0.5, jitter=lambda: 1.0)
    assert [policy.delay(call.request, error, attempt) for attempt in range(3)] == [0.5, 1.0, None]
    assert ex.RetryPolicy(retries=1).limit(call.request) == 1  # fewer settings win
    assert policy.limit(READ) == 10


def test_retry_after_raises_the_delay_and_a_longer_one_is_left_to_the_caller() -> None:
    """A Retry-After up to MAX_DELAY wins over the backoff; a longer one is not waited out here."""
    policy = ex.RetryPolicy(retries=3, backoff=0.5, jitter=lambda: 1.0)
    assert policy.delay(READ, ServerError("stats", status=503, retry_after=2.0), 0) == 2.0
    assert policy.delay(READ, ServerError("stats", status=503, retry_after=ex.MAX_DELAY), 0) == ex.MAX_DELAY
    assert policy.delay(READ, ServerError("stats", status=503, retry_after=3600.0), 0) is None


@pytest.mark.parametrize(
    ("request_", "delay"),
    [(READ, 5.0), (ex.Request("destroy", "DELETE", "session/x"), 5.0), (CREATE, None)],
)
def test_429_is_retried_for_idempotent_requests_only(request_: ex.Request, delay: float | None) -> None:
    """A 429 made nothing, yet only reads, deletes and renews are resent; creates go back to the caller."""
    policy = ex.RetryPolicy(retries=3, backoff=0.5, jitter=lambda: 1.0)
    assert policy.delay(request_, TooManyRequestsError("x", status=429, retry_after=5.0), 0) == delay


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # HTTP date, 30 s after "now" below
        ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),  # the obsolete RFC 850 form
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past
        ("soon", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float | None) -> None:
    """Retry-After is delay-seconds or an HTTP date; anything else counts as absent."""
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert ex.retry_after(header, now=lambda: now) == seconds


@pytest.mark.parametrize(
    ("prefix", "matches", "misses"),
    [
        ("job-", ["job-1", "job-"], ["xjob-1", "jo"]),
        ("a-2$", ["beta-2", "a-2"], ["a-20"]),
        ("^(x|y)-", ["x-1", "y-2"], ["z-x-1"]),
    ],
)
def test_name_pattern_is_an_anchored_literal_or_a_searched_regex(
    prefix: str, matches: list[str], misses: list[str]
) -> None:
    """Plain prefixes anchor at the start; metacharacters make a regex searched anywhere."""
    pattern = ops.name_pattern(prefix)
    assert all(pattern.search(name) for name in matches)
    assert not any(pattern.search(name) for name in misses)


@pytest.mark.parametrize("prefix", ["", "(unclosed", "*star"])
def test_bad_prefixes_are_invalid_requests(prefix: str) -> None:
    """An empty prefix or a broken regex is an InvalidRequestError, which is a ValueError."""
    with pytest.raises(InvalidRequestError):
        ops.name_pattern(prefix)


def test_session_ids_are_quoted_into_the_path() -> None:
    """An id cannot walk out of /session/ on the server."""
    assert ops.session_path("../x") == "session/..%2Fx"


@pytest.mark.parametrize("ids", [[""], [" x"], ["x "], [None]])
def test_blank_ids_are_refused(ids: list[str]) -> None:
    """An empty or padded id would address the list endpoint or another session: refuse it."""
    with pytest.raises(InvalidRequestError):
        ops.id_list(ids)


def test_parsers_accept_what_real_servers_send() -> None:
    """Missing keys, extra keys, <none> placeholders and old status values all parse."""
    old, public = ops.parse_sessions(
        '[{"id": "abc", "status": "Succeeded", "ramInUse": "<none>", "somethingNew": 1},'
        ' {"userid": "other", "type": "notebook", "status": "Failed (DeadlineExceeded)"}]'
    )
    assert (old.phase, old.ram_in_use, old.model_extra) == ("Completed", None, {"somethingNew": 1})
    assert (public.kind, public.phase, public.userid) == ("notebook", "Failed", "other")
    stats = ops.parse_stats('{"cores": {"coresInUse": 4, "coresAvailable": 60, "maxCores": {"cores": 8}}}')
    assert (stats.cpu_cores_requested, stats.cpu_cores_available, stats.session_max_cpu_cores) == (4, 60, 8)


@pytest.mark.parametrize("body", ["", "two words\n", "\n"])
def test_a_create_answer_without_an_id_is_an_error(body: str) -> None:
    """A 200 whose body is not one id is reported, not returned as a bogus id."""
    call = ex.Call(CREATE, ops.parse_created_id)
    with pytest.raises(Exception, match="unexpected response"):
        ex.interpret(call, httpx.Response(200, text=body))


def test_an_unparsable_200_is_an_api_error_with_the_status() -> None:
    """A list answer that is not JSON raises APIError(status=200), not a JSONDecodeError."""
    call = ex.Call(READ, ops.parse_sessions)
    with pytest.raises(Exception, match=r"fetch failed \(HTTP 200\): unexpected response"):
        ex.interpret(call, httpx.Response(200, text="<html>login</html>"))


def test_fetch_refuses_the_stats_view() -> None:
    """view='stats' returns an object, not sessions: fetch points to stats() instead."""
    with pytest.raises(InvalidRequestError, match=r"use stats\(\)"):
        next(ops.fetch(view="stats"))
