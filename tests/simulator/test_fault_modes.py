"""Targeted faults a misbehaving service shows: late-applied creates, slow answers, lossy lists, 429s.

Each is observed at the wire, over loopback HTTP and through the in-process transport (the
``wire`` fixture), with simulated time moved by hand.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from controller.client import Session
from controller.errors import APIError
from controller.rules import SessionSpec
from controller.simulator import ManualClock, Simulator, SimulatorConfig, SimulatorServer
from controller.simulator.clock import DEFAULT_START
from controller.simulator.faults import ListMode
from tests.simulator.conftest import IN_PROCESS_URL
from tests.simulator.support import IMAGE, create, fill, names, wait_until

T0 = DEFAULT_START


def _post(http: httpx.Client, name: str) -> httpx.Response:
    return http.post("/session", params={"name": name, "image": IMAGE})


# -- answered with an error, applied later ----------------------------------------------------------


def test_create_answered_504_lands_after_apply_after(simulator: Simulator, sim_clock: ManualClock,
                                                     wire: httpx.Client) -> None:
    """The client gets a 504 and no session; 3 simulated seconds later the session exists all the same."""
    simulator.inject_fault(method="POST", path="/session", status=504, apply_after=3.0)
    assert _post(wire, "late").status_code == 504
    assert names(wire) == []
    sim_clock.advance(2.9)
    assert names(wire) == []
    sim_clock.advance(0.1)
    [row] = wire.get("/session").json()
    assert row["name"] == "late"
    assert row["startTime"] == "2026-01-01T00:00:03Z"  # started when it was applied, not when it was sent


def test_late_create_is_an_ordinary_session(simulator: Simulator, sim_clock: ManualClock,
                                            wire: httpx.Client) -> None:
    """A create applied late has an id of the usual form, runs, and can be read and deleted like any other."""
    simulator.inject_fault(method="POST", path="/session", status=502, apply_after=1.0)
    _post(wire, "late")
    sim_clock.advance(10)
    assert names(wire) == ["late"]
    [created] = simulator.created
    assert len(created.session_id) == 8 and created.session_id[0].isalpha()
    assert wire.get(f"/session/{created.session_id}").json()["status"] == "Running"
    assert wire.delete(f"/session/{created.session_id}").status_code == 200
    assert wire.get(f"/session/{created.session_id}").status_code == 404  # the Job is gone at once


def test_deferred_requests_land_in_simulated_time_order(simulator: Simulator, sim_clock: ManualClock,
                                                        wire: httpx.Client) -> None:
    """Each deferred request takes effect at its own due time, before any request that comes later."""
    simulator.inject_fault(method="POST", path="/session", status=504, apply_after=5.0)
    simulator.inject_fault(method="POST", path="/session", status=504, apply_after=1.0)
    _post(wire, "slow")
    _post(wire, "quick")
    assert simulator.deferred() == [T0 + 1.0, T0 + 5.0]
    sim_clock.advance(7)
    rows = {row["name"]: row for row in wire.get("/session").json()}
    assert rows["quick"]["startTime"] == "2026-01-01T00:00:01Z"
    assert rows["slow"]["startTime"] == "2026-01-01T00:00:05Z"
    assert [(c.name, c.at) for c in simulator.created] == [("quick", T0 + 1.0), ("slow", T0 + 5.0)]
    assert simulator.deferred() == []


def test_deferred_delete_takes_effect_later(simulator: Simulator, sim_clock: ManualClock,
                                            wire: httpx.Client) -> None:
    """Any request can be deferred: a DELETE answered 502 still deletes the session one second later."""
    session_id = create(wire, name="victim")
    sim_clock.advance(3)
    simulator.inject_fault(method="DELETE", path="/session/*", status=502, apply_after=1.0)
    assert wire.delete(f"/session/{session_id}").status_code == 502
    assert wire.get(f"/session/{session_id}").json()["status"] == "Running"
    sim_clock.advance(1)
    assert wire.get(f"/session/{session_id}").status_code == 404  # deleted: the Job is gone at once


def test_catch_up_applies_due_requests_without_a_request(simulator: Simulator, sim_clock: ManualClock,
                                                         wire: httpx.Client) -> None:
    """Tests that read the cluster directly can land due requests with ``catch_up()``."""
    simulator.inject_fault(method="POST", path="/session", status=None, apply_after=2.0)
    with pytest.raises(httpx.RemoteProtocolError):
        _post(wire, "dropped")
    sim_clock.advance(2)
    assert len(simulator.cluster) == 0
    simulator.catch_up()
    assert [record.name for record in simulator.cluster] == ["dropped"]


def test_records_show_what_took_effect(simulator: Simulator, sim_clock: ManualClock, wire: httpx.Client) -> None:
    """Each record says whether and when the request took effect, and which session a create made."""
    normal = create(wire, name="normal")
    simulator.inject_fault(method="POST", path="/session", status=500)
    _post(wire, "refused")
    simulator.inject_fault(method="POST", path="/session", status=None, processed=True)
    with pytest.raises(httpx.RemoteProtocolError):
        _post(wire, "lost-answer")
    simulator.inject_fault(method="POST", path="/session", status=503, apply_after=4.0)
    _post(wire, "late")
    late_record = simulator.requests[-1]
    assert (late_record.applied, late_record.session_id) == (False, None)
    sim_clock.advance(4)
    wire.get("/session")
    by_name = {record.param("name"): record for record in simulator.requests if record.method == "POST"}
    assert by_name["normal"].session_id == normal and by_name["normal"].applied_at == T0
    assert (by_name["refused"].status, by_name["refused"].applied, by_name["refused"].session_id) == (500, False, None)
    assert by_name["lost-answer"].status is None and by_name["lost-answer"].session_id is not None
    late = by_name["late"]
    assert (late.status, late.applied_at, late.at) == (503, T0 + 4.0, T0)
    assert [c.session_id for c in simulator.created] == [normal, by_name["lost-answer"].session_id, late.session_id]
    assert [c.seq for c in simulator.created] == [by_name[n].seq for n in ("normal", "lost-answer", "late")]
    assert simulator.requests[-1].applied  # a list is acted on too


# -- Retry-After and 429 ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry_after", "header"), [
    (429, 7, "7"),
    (503, 2.5, "2.5"),
    (503, None, "1"),  # the server's own transient answer always says 1
    (429, None, None),
    (500, 30, "30"),
])
def test_injected_status_carries_retry_after(simulator: Simulator, wire: httpx.Client, status: int,
                                             retry_after: float | None, header: str | None) -> None:
    """Any injected status can carry a Retry-After header in seconds."""
    simulator.inject_fault(method="GET", path="/session", status=status, retry_after=retry_after)
    response = wire.get("/session")
    assert response.status_code == status
    assert response.headers.get("retry-after") == header
    assert response.headers["content-type"].startswith("text/plain")


def test_429_says_too_many_requests(simulator: Simulator, wire: httpx.Client) -> None:
    """A 429 reads like a rate limiter's answer, and has no effect."""
    simulator.inject_fault(method="POST", path="/session", status=429, retry_after=1)
    response = _post(wire, "limited")
    assert (response.status_code, response.text) == (429, "Too Many Requests")
    assert names(wire) == []


# -- matching by session name -----------------------------------------------------------------------


def test_fault_matches_only_names_that_fit_the_glob(simulator: Simulator, wire: httpx.Client) -> None:
    """One set's creates fail while another's succeed; requests without a name are not matched."""
    simulator.inject_fault(status=400, count=None, name="cc-bad-*")
    assert wire.get("/session").status_code == 200
    assert [_post(wire, name).status_code for name in ("cc-bad-1", "cc-good-1", "cc-bad-2", "cc-good-2")] \
        == [400, 200, 400, 200]
    assert sorted(names(wire)) == ["cc-good-1", "cc-good-2"]


# -- lossy lists ------------------------------------------------------------------------------------


def test_partial_list_keeps_some_rows_in_order(simulator: Simulator, sim_token: str, wire: httpx.Client) -> None:
    """``partial`` answers 200 with ``floor(n * keep)`` of the real rows, in their order, once."""
    fill(simulator, 10, token=sim_token)
    full = wire.get("/session").json()
    simulator.inject_list_fault("partial", keep=0.5)
    partial = wire.get("/session")
    assert partial.status_code == 200
    rows = partial.json()
    assert len(rows) == 5
    assert rows == [row for row in full if row in rows]
    assert wire.get("/session").json() == full


def test_partial_list_follows_the_seed(sim_clock: ManualClock) -> None:
    """The same seed drops the same rows; another seed drops others."""

    def kept(seed: int) -> list[str]:
        simulator = Simulator(SimulatorConfig(seed=seed), clock=sim_clock)
        fill(simulator, 20, token="x")
        simulator.inject_list_fault("partial", keep=0.5)
        with httpx.Client(base_url=IN_PROCESS_URL, transport=simulator.transport(),
                          headers={"Authorization": "Bearer x"}) as http:
            return names(http)

    assert kept(1) == kept(1)
    assert kept(1) != kept(2)


def test_consistent_list_leaves_out_the_same_sessions_every_time(simulator: Simulator, sim_token: str,
                                                                 wire: httpx.Client) -> None:
    """``consistent`` keeps rows chosen by id: the same ones in every answer, whatever else changes, while
    each left-out session still answers ``GET /session/{id}``."""
    fill(simulator, 20, token=sim_token)
    full = wire.get("/session").json()
    simulator.inject_list_fault("consistent", count=None, keep=0.5, seed=7)
    answers = [wire.get("/session").json() for _ in range(4)]
    assert all(answer == answers[0] for answer in answers) and 4 <= len(answers[0]) <= 16
    assert answers[0] == [row for row in full if row in answers[0]]
    left_out = [row for row in full if row not in answers[0]]
    for row in left_out:
        assert wire.get(f"/session/{row['id']}").json()["status"] == row["status"]
    create(wire, "cc-one-more")
    wire.delete(f"/session/{answers[0][0]['id']}")
    after = {row["id"] for row in wire.get("/session").json()}
    assert not after & {row["id"] for row in left_out}
    assert {row["id"] for row in answers[0][1:]} <= after
    simulator.clear_faults()
    assert {row["id"] for row in left_out} <= {row["id"] for row in wire.get("/session").json()}


@pytest.mark.parametrize(("mode", "check"), [
    ("empty", lambda body: json.loads(body) == []),
    ("garbage", lambda body: isinstance(json.loads(body), dict)),
    ("truncated", lambda body: body.startswith("[{") and not body.endswith("]")),
])
def test_spoiled_list_answers_are_200(simulator: Simulator, sim_token: str, wire: httpx.Client,
                                      mode: ListMode, check: Callable[[str], bool]) -> None:
    """``empty``, ``garbage`` and ``truncated`` lists come back 200 as JSON, with nothing usable in them."""
    fill(simulator, 3, token=sim_token)
    simulator.inject_list_fault(mode, count=2)
    for _ in range(2):
        response = wire.get("/session")
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
        assert check(response.text)
    assert len(wire.get("/session").json()) == 3


def test_truncated_list_is_not_json(simulator: Simulator, sim_token: str, wire: httpx.Client) -> None:
    """A truncated list is the first half of the real answer, which no JSON parser accepts."""
    fill(simulator, 3, token=sim_token)
    full = wire.get("/session").text
    simulator.inject_list_fault("truncated")
    body = wire.get("/session").text
    assert full.startswith(body) and len(body) == len(full) // 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_list_faults_spare_stats_and_single_sessions(simulator: Simulator, sim_token: str,
                                                     wire: httpx.Client) -> None:
    """Only session lists are spoiled; stats and single-session reads pass and leave the fault armed."""
    fill(simulator, 2, token=sim_token)
    simulator.inject_list_fault("empty")
    assert "cores" in wire.get("/session", params={"view": "stats"}).json()
    session_id = simulator.created[0].session_id
    assert wire.get(f"/session/{session_id}").status_code == 200
    assert wire.get("/session", params={"type": "headless"}).json() == []
    assert len(wire.get("/session").json()) == 2


def test_our_client_refuses_a_garbage_list(simulator: Simulator, sim_token: str) -> None:
    """Through our client a garbage list is an error, not an empty result."""
    fill(simulator, 2, token=sim_token)
    simulator.inject_list_fault("garbage")
    with Session(url=IN_PROCESS_URL, token=sim_token, transport=simulator.transport()) as session, \
            pytest.raises(APIError, match="unexpected response"):
        session.fetch()


# -- slow answers -----------------------------------------------------------------------------------


def _create_in_thread(http: httpx.Client, name: str) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(_post(http, name)))
    thread.start()
    return thread, answers


@pytest.mark.parametrize(("apply", "visible_while_waiting"), [("before", True), ("after", False)])
def test_slow_create_takes_effect_before_or_after_the_wait(
        simulator: Simulator, sim_server: SimulatorServer, sim_token: str, apply: str,
        visible_while_waiting: bool) -> None:
    """``apply`` decides whether a slow create is visible while its answer is still on the way."""
    simulator.inject_delay(method="POST", path="/session", seconds=0.3, apply=apply)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {sim_token}"}
    with httpx.Client(base_url=sim_server.url, headers=headers) as slow, \
            httpx.Client(base_url=sim_server.url, headers=headers) as http:
        thread, answers = _create_in_thread(slow, "slow")
        wait_until(lambda: simulator.in_flight() == 1, what="the create to arrive")
        assert (names(http) == ["slow"]) is visible_while_waiting
        thread.join()
        [answer] = answers
        assert answer.status_code == 200
        assert names(http) == ["slow"]
        assert simulator.created[0].session_id == answer.text.strip()


def test_slow_error_answer_with_processed_create(simulator: Simulator, wire: httpx.Client) -> None:
    """A slow 504 whose create went through: the session exists by the time the error arrives."""
    simulator.inject_fault(method="POST", path="/session", status=504, processed=True, delay=0.05)
    assert _post(wire, "behind-gateway").status_code == 504
    assert names(wire) == ["behind-gateway"]


def test_slow_create_lands_though_the_client_hung_up(simulator: Simulator, sim_server: SimulatorServer,
                                                     sim_token: str, capfd: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A client killed mid-request (its socket reset) does not stop the create, and the server stays quiet."""
    caplog.set_level(logging.DEBUG, logger="controller.simulator.server")
    simulator.inject_delay(method="POST", path="/session", seconds=0.2, apply="after")
    url = urlsplit(sim_server.url)
    request = (f"POST {url.path}/session?name=orphan&image={IMAGE} HTTP/1.1\r\nHost: {url.netloc}\r\n"
               f"Authorization: Bearer {sim_token}\r\nContent-Length: 0\r\n\r\n").encode()
    with socket.create_connection((sim_server.host, sim_server.port)) as sock:
        sock.sendall(request)
        wait_until(lambda: simulator.in_flight() == 1, what="the create to arrive")
        # Linger 0: close with a reset, as the kernel does for a killed process with unread data.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_until(lambda: any("went away" in r.getMessage() for r in caplog.records),
               what="the server to fail writing the answer")
    with httpx.Client(base_url=sim_server.url, headers={"Authorization": f"Bearer {sim_token}"}) as http:
        assert names(http) == ["orphan"]
    # What socketserver prints, with a traceback, for an error escaping a request handler.
    assert "Exception occurred during processing of request" not in capfd.readouterr().err


def test_slow_create_lands_though_the_client_timed_out(simulator: Simulator, sim_server: SimulatorServer,
                                                       sim_token: str) -> None:
    """A client that gives up (read timeout) sees a transport error; the session is made anyway."""
    simulator.inject_delay(method="POST", path="/session", seconds=0.3, apply="after")
    with Session(url=sim_server.url, token=sim_token, timeout=0.05) as session, pytest.raises(APIError):
        session.create(SessionSpec("impatient", IMAGE))
    wait_until(lambda: simulator.in_flight() == 0, what="the server to finish the create")
    assert [c.name for c in simulator.created] == ["impatient"]
    assert simulator.requests[-1].session_id == simulator.created[0].session_id


# -- bad set-ups fail where they are made -----------------------------------------------------------


@pytest.mark.parametrize("call", [
    pytest.param(lambda sim: sim.inject_fault(status=504, processed=True, apply_after=1.0), id="processed-and-later"),
    pytest.param(lambda sim: sim.inject_fault(status=504, apply_after=-1.0), id="negative-apply_after"),
    pytest.param(lambda sim: sim.inject_fault(status=None, retry_after=1.0), id="retry_after-on-a-drop"),
    pytest.param(lambda sim: sim.inject_fault(status=429, retry_after=-1.0), id="negative-retry_after"),
    pytest.param(lambda sim: sim.inject_fault(status=500, delay=float("nan")), id="nan-delay"),
    pytest.param(lambda sim: sim.inject_fault(status=504, name=""), id="empty-name-glob"),
    pytest.param(lambda sim: sim.inject_delay(seconds=-0.1), id="negative-seconds"),
    pytest.param(lambda sim: sim.inject_delay(seconds=0.1, apply="during"), id="unknown-apply"),
    pytest.param(lambda sim: sim.inject_list_fault("partial", keep=1.5), id="keep-above-1"),
    pytest.param(lambda sim: sim.inject_list_fault("lossy"), id="unknown-list-mode"),
    pytest.param(lambda sim: sim.inject_list_fault("empty", count=0), id="count-0"),
])
def test_nonsense_fault_is_refused(simulator: Simulator, call: object) -> None:
    """A fault that cannot happen is a ValueError when it is set up, not a puzzle later."""
    with pytest.raises(ValueError):
        call(simulator)  # type: ignore[operator]


# -- a service that will not let go -----------------------------------------------------------------


def test_an_ignored_delete_is_answered_200_and_the_session_keeps_running(
        simulator: Simulator, sim_clock: ManualClock, wire: httpx.Client) -> None:
    """The DELETE of the one session whose name matches is acknowledged and ignored; others go as usual."""
    keep = create(wire, "stubborn")
    other = create(wire, "ordinary")
    sim_clock.advance(60)
    simulator.ignore_deletes(name="stub*")
    assert wire.delete(f"/session/{keep}").status_code == 200
    assert wire.delete(f"/session/{other}").status_code == 200
    sim_clock.advance(60)
    assert [(row["name"], row["status"]) for row in wire.get("/session").json()] == [("stubborn", "Running")]
    assert wire.delete(f"/session/{keep}").status_code == 200  # the fault fired once: this one is honoured
    assert names(wire) == []


@pytest.mark.parametrize("status", ["Terminating", "Unknown"])
def test_a_stuck_session_is_listed_so_through_a_delete_until_let_go(
        simulator: Simulator, sim_clock: ManualClock, wire: httpx.Client, status: str) -> None:
    """A stuck session stays listed with its stuck status, deleted or not; once let go, a deleted one is gone."""
    session_id = create(wire, "stuck")
    sim_clock.advance(60)
    simulator.stick(session_id, status)
    assert wire.delete(f"/session/{session_id}").status_code == 200
    sim_clock.advance(3600)
    assert [row["status"] for row in wire.get("/session").json()] == [status]
    simulator.unstick(session_id)
    assert names(wire) == []


def test_a_hanging_stats_call_answers_late_with_the_fault_while_lists_answer_at_once(
        simulator: Simulator, sim_clock: ManualClock, wire: httpx.Client) -> None:
    """Only the statistics call hangs: a list on the same path is answered normally."""
    simulator.hang_stats(0.2, status=504)
    assert wire.get("/session").status_code == 200
    started = time.monotonic()
    assert wire.get("/session", params={"view": "stats"}).status_code == 504
    assert time.monotonic() - started >= 0.2
    assert wire.get("/session", params={"view": "stats"}).status_code == 200


@pytest.mark.parametrize(("status", "after"), [("Terminating", []), ("Unknown", ["Running"])])
def test_a_stuck_session_never_deleted_is_gone_or_back_once_let_go(
        simulator: Simulator, sim_clock: ManualClock, wire: httpx.Client, status: str, after: list[str]) -> None:
    """Stuck Terminating, it was stopping all along: gone once let go. Stuck Unknown: its node came back."""
    session_id = create(wire, "stuck")
    sim_clock.advance(60)
    simulator.stick(session_id, status)
    sim_clock.advance(600)
    simulator.unstick()
    assert [row["status"] for row in wire.get("/session").json()] == after
