"""Every operation of ``Session`` and ``AsyncSession`` against the simulator over loopback HTTP."""

from __future__ import annotations

import webbrowser
from typing import Any

import httpx
import pytest

from controller.errors import APIError, BadRequestError, BatchError, NotFoundError
from controller.models import Event, ObservedSession, PlatformStats, SessionInfo
from controller.rules import SessionSpec
from controller.simulator import ManualClock as Clock
from tests.client.conftest import IMAGE, NOTEBOOK_IMAGE

pytestmark = pytest.mark.usefixtures("flavour")


def _posts(sim: Any) -> list[Any]:
    return [request for request in sim.requests if request.method == "POST" and request.path == "/session"]


def test_create_returns_the_new_id_and_the_session_exists(client: Any) -> None:
    """create returns the server's id, and info finds a session of that name."""
    [session_id] = client.create(SessionSpec("job", IMAGE, cmd="sleep", args="60"))
    [info] = client.info(session_id)
    assert (info.id, info.name, info.kind, info.image) == (session_id, "job", "headless", IMAGE)


def test_create_without_cores_and_ram_is_flexible(client: Any, sim: Any) -> None:
    """Omitted cores and ram are not sent at all, which the service reads as flexible mode."""
    client.create(SessionSpec("flex", IMAGE))
    [request] = _posts(sim)
    assert "cores" not in request.params and "ram" not in request.params
    assert request.params["type"] == ("headless",)


def test_create_sends_fixed_resources_and_gpus(client: Any, sim: Any) -> None:
    """Given cores, ram and gpu arrive as the wire parameters cores, ram and gpus."""
    [session_id] = client.create(SessionSpec("fixed", IMAGE, cores=2, ram=8, gpu=1))
    [request] = _posts(sim)
    assert (request.param("cores"), request.param("ram"), request.param("gpus")) == ("2", "8", "1")
    [info] = client.info(session_id)
    assert info.is_fixed_resources is True


def test_create_replicas_suffixes_names_and_sets_replica_env(client: Any, sim: Any) -> None:
    """replicas=3 sends three requests named -1..-3, each with its REPLICA_ID and REPLICA_COUNT."""
    ids = client.create(SessionSpec("sweep", IMAGE, cmd="sleep", args="60", env=(("MODE", "fast"),)), replicas=3)
    assert len(set(ids)) == 3
    requests = _posts(sim)
    assert sorted(request.param("name") for request in requests) == ["sweep-1", "sweep-2", "sweep-3"]
    for index, request in enumerate(sorted(requests, key=lambda r: r.param("name")), start=1):
        expected = ["MODE=fast", f"REPLICA_ID={index}", "REPLICA_COUNT=3"]
        assert sorted(request.params["env"]) == sorted(expected)
    names = {info.id: info.name for info in client.info(ids)}
    assert [names[session_id] for session_id in ids] == ["sweep-1", "sweep-2", "sweep-3"]


def test_create_single_replica_keeps_the_name(client: Any, sim: Any) -> None:
    """With one replica the name is sent unchanged and REPLICA_COUNT is 1."""
    client.create(SessionSpec("solo", IMAGE))
    [request] = _posts(sim)
    assert request.param("name") == "solo"
    assert set(request.params["env"]) == {"REPLICA_ID=1", "REPLICA_COUNT=1"}


def test_a_single_create_may_set_its_own_replica_identity(client: Any, sim: Any) -> None:
    """The controller creates slot 4 of 5 alone: its REPLICA_ID/REPLICA_COUNT are sent instead of 1/1."""
    client.create(SessionSpec("slot-4", IMAGE, env=(("REPLICA_ID", "4"), ("REPLICA_COUNT", "5"))))
    [request] = _posts(sim)
    assert sorted(request.params["env"]) == ["REPLICA_COUNT=5", "REPLICA_ID=4"]


def test_interactive_sessions_get_no_environment(client: Any, sim: Any) -> None:
    """Only headless sessions use env, so other kinds are sent none (not even REPLICA_*)."""
    client.create(SessionSpec("nb", NOTEBOOK_IMAGE, kind="notebook"))
    [request] = _posts(sim)
    assert "env" not in request.params


def test_fetch_lists_sessions_as_typed_models(client: Any) -> None:
    """fetch returns SessionInfo models for the user's sessions."""
    ids = set(client.create(SessionSpec("a", IMAGE)) + client.create(SessionSpec("b", NOTEBOOK_IMAGE, kind="notebook")))
    sessions = client.fetch()
    assert all(isinstance(session, SessionInfo) for session in sessions)
    assert {session.id for session in sessions} == ids


def test_fetch_filters_by_kind_and_status_on_the_wire(client: Any, sim: Any, clock: Clock) -> None:
    """kind and status are sent as type and status, and the server's filtering comes back."""
    client.create(SessionSpec("a", IMAGE))
    [notebook] = client.create(SessionSpec("b", NOTEBOOK_IMAGE, kind="notebook"))
    clock.advance(60)
    sessions = client.fetch(kind="notebook", status="Running")
    assert [session.id for session in sessions] == [notebook]
    request = sim.requests[-1]
    sent = (request.param("type"), request.param("status"), request.param("view"))
    assert sent == ("notebook", "Running", None)


def test_fetch_passes_the_view(client: Any, sim: Any) -> None:
    """view is sent as is; view=all rows (other users, no ids) still parse."""
    client.create(SessionSpec("a", IMAGE))
    sessions = client.fetch(view="all")
    assert sim.requests[-1].param("view") == "all"
    assert len(sessions) == 1 and sessions[0].kind == "headless"


def test_observe_reads_the_fields_the_controller_needs(client: Any, clock: Clock) -> None:
    """observe returns one lean row per session, agreeing with fetch's full models."""
    client.create(SessionSpec("fixed", IMAGE, cores=2, ram=8))
    client.create(SessionSpec("nb", NOTEBOOK_IMAGE, kind="notebook"))
    client.create(SessionSpec("done", IMAGE, cmd="true"))
    clock.advance(60)
    full = {session.id: session for session in client.fetch()}
    observed = client.observe()
    assert sorted(row.id for row in observed) == sorted(full)
    for row in observed:
        session = full[row.id]
        assert isinstance(row, ObservedSession)
        assert (row.name, row.phase, row.kind) == (session.name, session.phase, session.kind)
        assert row.started == session.start_time.timestamp()
        assert row.expires == session.expiry_time.timestamp()
    by_name = {row.name: row for row in observed}
    assert (by_name["fixed"].cores, by_name["fixed"].ram_bytes) == (2.0, 8.59e9)  # 8 Gi in decimal GB
    assert (by_name["nb"].cores, by_name["done"].phase) == (None, "Completed")


def test_observe_filters_by_kind_on_the_wire(client: Any, sim: Any) -> None:
    """observe(kind) sends type=kind and nothing else."""
    client.create(SessionSpec("a", IMAGE))
    [notebook] = client.create(SessionSpec("b", NOTEBOOK_IMAGE, kind="notebook"))
    assert [row.id for row in client.observe("notebook")] == [notebook]
    assert dict(sim.requests[-1].params) == {"type": ("notebook",)}


@pytest.mark.parametrize(
    "body", ['{"error": "not a list"}', '[{"id": "abcdefgh"}]', '[{"id": "abcdefgh", "name": "a"}, "x"]'],
)
def test_observe_refuses_an_answer_it_cannot_trust(make_client: Any, body: str) -> None:
    """A 200 that is not an array of sessions with ids and names fails the whole list as an APIError."""
    gateway = httpx.MockTransport(lambda request: httpx.Response(200, text=body))
    client = make_client(url="http://gateway.test/skaha/v1", transport=gateway)
    with pytest.raises(APIError, match=r"list failed \(HTTP 200\): unexpected response") as caught:
        client.observe()
    assert caught.value.status == 200


def test_observe_retries_like_a_read(client: Any, sim: Any) -> None:
    """A 5xx on the list is retried, and the answer after it is returned."""
    client.create(SessionSpec("a", IMAGE))
    sim.inject_fault(method="GET", path="/session", status=503, count=1)
    sim.requests.clear()
    assert [row.name for row in client.observe()] == ["a"]
    assert [request.status for request in sim.requests] == [503, 200]


def test_stats_returns_platform_stats(client: Any, sim: Any) -> None:
    """stats asks for view=stats and returns numbers in base units."""
    stats = client.stats()
    assert isinstance(stats, PlatformStats)
    assert stats.cpu_cores_available is not None and stats.cpu_cores_available > 0
    assert sim.requests[-1].param("view") == "stats"


def test_info_keeps_the_order_of_many_ids(client: Any) -> None:
    """info over many ids returns one model per id, in the order asked."""
    ids = client.create(SessionSpec("a", IMAGE)) + client.create(SessionSpec("b", IMAGE)) + client.create(SessionSpec("c", IMAGE))
    assert [info.id for info in client.info(list(reversed(ids)))] == list(reversed(ids))


def test_info_of_an_unknown_id_raises_not_found_with_the_server_text(client: Any) -> None:
    """A single unknown id raises NotFoundError carrying 404 and the service's message."""
    with pytest.raises(NotFoundError) as caught:
        client.info("nosuchid")
    assert caught.value.status == 404
    assert "nosuchid" in caught.value.server_message


def test_info_over_many_ids_loses_neither_results_nor_errors(client: Any) -> None:
    """One unknown id among many: BatchError holds the found sessions and the 404 for the other."""
    [known] = client.create(SessionSpec("a", IMAGE))
    with pytest.raises(BatchError) as caught:
        client.info([known, "nosuchid"])
    assert list(caught.value.results) == [known]
    assert caught.value.results[known].id == known
    assert isinstance(caught.value.errors["nosuchid"], NotFoundError)
    assert "nosuchid" in str(caught.value)


def test_logs_returns_text_by_id(client: Any, clock: Clock) -> None:
    """logs returns each session's text under its id."""
    ids = client.create(SessionSpec("a", IMAGE, cmd="true")) + client.create(SessionSpec("b", IMAGE, cmd="true"))
    clock.advance(60)
    logs = client.logs(ids)
    assert list(logs) == ids
    assert all(isinstance(text, str) for text in logs.values())


def test_events_are_parsed_into_models(client: Any, clock: Clock) -> None:
    """events returns parsed Event rows by id."""
    [session_id] = client.create(SessionSpec("a", IMAGE))
    clock.advance(60)
    events = client.events(session_id)
    assert list(events) == [session_id]
    assert events[session_id] and all(isinstance(event, Event) for event in events[session_id])
    assert all(event.reason for event in events[session_id])


def test_destroy_deletes_each_id(client: Any, clock: Clock, sim: Any) -> None:
    """destroy sends one DELETE per id and returns the ids; the sessions then go away."""
    ids = client.create(SessionSpec("a", IMAGE)) + client.create(SessionSpec("b", IMAGE))
    assert client.destroy(ids) == ids
    deleted = sorted(r.path for r in sim.requests if r.method == "DELETE")
    assert deleted == sorted(f"/session/{i}" for i in ids)
    clock.advance(3600)
    assert client.fetch() == []


def test_destroy_with_a_literal_prefix_is_anchored(client: Any, clock: Clock) -> None:
    """A literal prefix matches only names that start with it, and only Completed sessions by default."""
    done = client.create(SessionSpec("job-a", IMAGE, cmd="true")) + client.create(SessionSpec("job-b", IMAGE, cmd="true"))
    other = client.create(SessionSpec("xjob-c", IMAGE, cmd="true"))
    running = client.create(SessionSpec("job-d", IMAGE, cmd="sleep", args="1d"))
    clock.advance(60)
    assert sorted(client.destroy_with("job-")) == sorted(done)
    clock.advance(10)  # past Terminating, well before the 1 h TTL reaps the others
    remaining = {session.id for session in client.fetch()}
    assert remaining == set(other + running)


def test_destroy_with_a_regex_searches_the_name(client: Any, clock: Clock) -> None:
    """A prefix with metacharacters is a regex searched anywhere in the name."""
    client.create(SessionSpec("alpha-1", IMAGE, cmd="true"))
    [beta] = client.create(SessionSpec("beta-2", IMAGE, cmd="true"))
    [gamma] = client.create(SessionSpec("gamma-2", IMAGE, cmd="false"))
    clock.advance(60)
    assert client.destroy_with("a-2$") == [beta]
    assert client.destroy_with("a-2$", status="Failed") == [gamma]


def test_destroy_with_no_match_sends_no_delete(client: Any, sim: Any) -> None:
    """Nothing matching means no DELETE at all and an empty result."""
    client.create(SessionSpec("a", IMAGE, cmd="true"))
    assert client.destroy_with("zzz") == []
    assert not [r for r in sim.requests if r.method == "DELETE"]


def test_renew_extends_a_running_session(client: Any, clock: Clock, sim: Any) -> None:
    """renew posts action=renew to the session and returns its id."""
    [session_id] = client.create(SessionSpec("nb", NOTEBOOK_IMAGE, kind="notebook"))
    clock.advance(3 * 86400)
    before = client.info(session_id)[0].expiry_time
    assert client.renew(session_id) == [session_id]
    request = sim.requests[-1]
    sent = (request.method, request.path, request.param("action"))
    assert sent == ("POST", f"/session/{session_id}", "renew")
    assert client.info(session_id)[0].expiry_time > before


def test_renew_of_an_ended_session_raises_with_the_server_text(client: Any, clock: Clock) -> None:
    """Renewing a session with no active job is a BadRequestError saying so."""
    [session_id] = client.create(SessionSpec("a", IMAGE, cmd="true"))
    clock.advance(60)
    with pytest.raises(BadRequestError, match="No active job"):
        client.renew(session_id)


def test_connect_opens_running_sessions_and_warns_about_others(
    client: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running sessions' connectURLs go to the browser; a session still Pending is skipped with a warning."""
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    [running] = client.create(SessionSpec("nb", NOTEBOOK_IMAGE, kind="notebook"))
    clock.advance(60)
    [pending] = client.create(SessionSpec("nb2", NOTEBOOK_IMAGE, kind="notebook"))
    with pytest.warns(UserWarning, match=f"{pending} is Pending"):
        assert client.connect([running, pending]) == [running]
    [info] = client.info(running)
    assert opened == [info.connect_url]
    assert info.connect_url.startswith("https://")


def test_connect_warns_when_no_browser_opens(
    client: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the browser cannot be started, the session is not reported as opened and the URL is shown."""
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: False)
    [running] = client.create(SessionSpec("nb", NOTEBOOK_IMAGE, kind="notebook"))
    clock.advance(60)
    with pytest.warns(UserWarning, match="no browser could open"):
        assert client.connect(running) == []


def test_a_failing_request_hook_does_not_fail_the_call(make_client: Any) -> None:
    """A broken on_request hook (metrics) is logged, and the operation still returns its result."""

    def broken(operation: str, status: int | None, seconds: float) -> None:
        raise RuntimeError("metrics down")

    assert make_client(on_request=broken).fetch() == []
