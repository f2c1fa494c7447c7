"""Sessions live like Kubernetes Jobs: pending, running, ending, reaped, and squeezed by capacity."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from controller.simulator import ManualClock, Simulator, SimulatorConfig, SimulatorServer
from tests.simulator.support import IMAGE, create, status_of

HOUR = 3600.0
DAY = 86400.0


def test_session_is_pending_then_running(http: httpx.Client, sim_clock: ManualClock) -> None:
    """A session that fits is Pending for the image pull (2 s), then Running."""
    session_id = create(http)
    assert status_of(http, session_id) == "Pending"
    sim_clock.advance(1.9)
    assert status_of(http, session_id) == "Pending"
    sim_clock.advance(0.1)
    assert status_of(http, session_id) == "Running"


@pytest.mark.parametrize(
    ("cmd", "args", "after", "status"),
    [
        ("sleep", "30", 31.9, "Running"),
        ("sleep", "30", 32.0, "Completed"),
        ("sleep", "1m", 62.0, "Completed"),
        ("true", None, 2.0, "Completed"),
        ("false", None, 2.0, "Failed"),
        ("/bin/sh", "-c sleep${IFS}5", 7.0, "Completed"),
        ("/bin/sh", "-c 'sleep 5'", 2.0, "Failed"),  # args split on spaces: sh gets "'sleep", an open quote
        ("bash", "-c false", 2.0, "Failed"),
        ("python", "train.py", 14 * DAY + 2, "Failed"),  # runs until the 14-day deadline
        ("python", "train.py", 13 * DAY, "Running"),
    ],
)
def test_headless_command_decides_the_outcome(http: httpx.Client, sim_clock: ManualClock, cmd: str,
                                              args: str | None, after: float, status: str) -> None:
    """``sleep N`` completes after N s, ``true`` completes, ``false`` fails, anything else runs on."""
    params = {"cmd": cmd} | ({"args": args} if args else {})
    session_id = create(http, **params)
    sim_clock.advance(after)
    assert status_of(http, session_id) == status


def test_headless_without_command_runs_until_deleted(http: httpx.Client, sim_clock: ManualClock) -> None:
    """With no cmd (image entrypoint) a headless session keeps running."""
    session_id = create(http)
    sim_clock.advance(DAY)
    assert status_of(http, session_id) == "Running"


def test_ended_headless_is_reaped_after_an_hour(http: httpx.Client, sim_clock: ManualClock) -> None:
    """A Completed headless session is visible for the 1 h TTL, then 404 and gone from lists."""
    session_id = create(http, cmd="true")
    sim_clock.advance(2 + HOUR - 1)
    assert status_of(http, session_id) == "Completed"
    sim_clock.advance(1)
    assert http.get(f"/session/{session_id}").status_code == 404
    assert http.get("/session").json() == []
    assert http.get(f"/session/{session_id}", params={"view": "events"}).status_code == 404


def test_ended_interactive_is_reaped_after_a_day(http: httpx.Client, sim_clock: ManualClock) -> None:
    """An interactive session that hit its 4-day deadline is Failed, and reaped 24 h later."""
    session_id = create(http, type="notebook")
    sim_clock.advance(4 * DAY)
    assert status_of(http, session_id) == "Failed"
    sim_clock.advance(DAY - 1)
    assert status_of(http, session_id) == "Failed"
    sim_clock.advance(1)
    assert http.get(f"/session/{session_id}").status_code == 404


def test_delete_removes_the_session_at_once(http: httpx.Client, sim_clock: ManualClock) -> None:
    """After DELETE a session is 404 and out of the list at once (the Job is deleted in the background).

    Its pod still stops for a few seconds: logs and events stay readable until it is gone.
    """
    session_id = create(http, cmd="sh", args="-c echo${IFS}working;sleep${IFS}1d")
    sim_clock.advance(3)
    http.delete(f"/session/{session_id}")
    assert http.get(f"/session/{session_id}").status_code == 404
    assert http.get("/session").json() == []
    assert http.get(f"/session/{session_id}", params={"view": "logs"}).text == "working\n"
    assert "Killing" in http.get(f"/session/{session_id}", params={"view": "events"}).text
    sim_clock.advance(5)
    assert http.get(f"/session/{session_id}", params={"view": "events"}).status_code == 404
    assert http.get(f"/session/{session_id}", params={"view": "logs"}).text == ""


def test_delete_of_ended_session_removes_it_at_once(http: httpx.Client, sim_clock: ManualClock) -> None:
    """A Completed session has no pod to stop: DELETE removes it immediately."""
    session_id = create(http, cmd="true")
    sim_clock.advance(3)
    http.delete(f"/session/{session_id}")
    assert http.get(f"/session/{session_id}").status_code == 404


def test_renew_pushes_interactive_expiry_to_now_plus_four_days(http: httpx.Client,
                                                               sim_clock: ManualClock) -> None:
    """Renew sets expiryTime to now + 4 days when less than that remains, and the session lives on."""
    session_id = create(http, type="notebook")
    assert http.get(f"/session/{session_id}").json()["expiryTime"] == "2026-01-05T00:00:00Z"
    sim_clock.advance(DAY)
    assert http.post(f"/session/{session_id}", params={"action": "renew"}).status_code == 200
    assert http.get(f"/session/{session_id}").json()["expiryTime"] == "2026-01-06T00:00:00Z"
    sim_clock.advance(4 * DAY - 1)
    assert status_of(http, session_id) == "Running"
    sim_clock.advance(1)
    assert status_of(http, session_id) == "Failed"


def test_renew_of_fresh_headless_is_a_no_op(http: httpx.Client) -> None:
    """Headless sessions start with 14 days, more than renew's 4, so renew changes nothing."""
    session_id = create(http)
    before = http.get(f"/session/{session_id}").json()["expiryTime"]
    assert http.post(f"/session/{session_id}", params={"action": "renew"}).status_code == 200
    assert http.get(f"/session/{session_id}").json()["expiryTime"] == before


def test_renew_of_pending_session_is_allowed(http: httpx.Client) -> None:
    """An admitted but still pulling session has an active job and can be renewed."""
    session_id = create(http, type="notebook")
    assert http.post(f"/session/{session_id}", params={"action": "renew"}).status_code == 200


@pytest.fixture
def small(sim_clock: ManualClock, sim_token: str) -> Iterator[tuple[Simulator, httpx.Client]]:
    """A 4-core, 16 GB cluster over HTTP."""
    simulator = Simulator(SimulatorConfig(token=sim_token, cores=4, ram_gb=16), clock=sim_clock)
    with SimulatorServer(simulator) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {sim_token}"}) as client:
        yield simulator, client


def test_session_that_does_not_fit_stays_pending(small: tuple[Simulator, httpx.Client],
                                                 sim_clock: ManualClock) -> None:
    """With all cores taken a new session stays Pending without a startTime."""
    _, http = small
    create(http, name="big", cores="4", ram="4")
    waiting = create(http, name="waiting", cores="1", ram="1")
    sim_clock.advance(HOUR)
    data = http.get(f"/session/{waiting}").json()
    assert data["status"] == "Pending" and "startTime" not in data


def test_queued_session_starts_when_room_appears(small: tuple[Simulator, httpx.Client],
                                                 sim_clock: ManualClock) -> None:
    """When a running session completes, a queued one is admitted at that instant and then runs."""
    _, http = small
    create(http, name="big", cores="4", ram="4", cmd="sleep", args="10")
    waiting = create(http, name="waiting", cores="2", ram="2")
    sim_clock.advance(20)
    data = http.get(f"/session/{waiting}").json()
    assert data["startTime"] == "2026-01-01T00:00:12Z"  # 2 s pull + 10 s sleep
    assert data["status"] == "Running"


def test_deleting_frees_capacity_after_terminating(small: tuple[Simulator, httpx.Client],
                                                   sim_clock: ManualClock) -> None:
    """A deleted session holds its cores while Terminating; then the queued one starts."""
    _, http = small
    big = create(http, name="big", cores="4", ram="4")
    waiting = create(http, name="waiting", cores="4", ram="4")
    http.delete(f"/session/{big}")
    sim_clock.advance(4)
    assert "startTime" not in http.get(f"/session/{waiting}").json()
    sim_clock.advance(1)
    assert http.get(f"/session/{waiting}").json()["startTime"] == "2026-01-01T00:00:05Z"


def test_small_sessions_overtake_a_big_queued_one(small: tuple[Simulator, httpx.Client]) -> None:
    """Admission is best-effort FIFO: a session too big to fit does not block smaller ones."""
    _, http = small
    create(http, name="half", cores="2", ram="2")
    too_big = create(http, name="too-big", cores="8", ram="2")
    small_one = create(http, name="small", cores="1", ram="1")
    assert "startTime" not in http.get(f"/session/{too_big}").json()
    assert "startTime" in http.get(f"/session/{small_one}").json()


def test_stats_report_requested_from_admitted_sessions(small: tuple[Simulator, httpx.Client]) -> None:
    """Stats count the requests of admitted sessions only, against the configured cluster size."""
    _, http = small
    create(http, name="a", cores="3", ram="4")
    create(http, name="queued", cores="3", ram="4")
    cores = http.get("/session", params={"view": "stats"}).json()["cores"]
    assert (cores["requestedCPUCores"], cores["cpuCoresAvailable"]) == (3.0, 4.0)


def test_pending_for_capacity_has_a_failed_scheduling_event(small: tuple[Simulator, httpx.Client]) -> None:
    """Events of a session waiting for room show the scheduler's FailedScheduling warning."""
    _, http = small
    create(http, name="big", cores="4", ram="4")
    waiting = create(http, name="waiting", cores="1", ram="1")
    events = http.get(f"/session/{waiting}", params={"view": "events"}).text
    assert "FailedScheduling" in events and "Insufficient cpu" in events


def test_missing_private_image_stays_pending_with_pull_errors(http: httpx.Client,
                                                              sim_clock: ManualClock) -> None:
    """A private image that does not exist never runs: Pending with Failed/BackOff pull events."""
    import base64

    auth = {"x-skaha-registry-auth": base64.b64encode(b"me:secret").decode()}
    response = http.post("/session", params={"name": "p", "image": "images.canfar.net/me/nope:1"},
                         headers=auth)
    session_id = response.text.strip()
    sim_clock.advance(10)
    assert status_of(http, session_id) == "Pending"
    events = http.get(f"/session/{session_id}", params={"view": "events"}).text
    assert "Failed to pull image" in events and "BackOff" in events
    assert http.get(f"/session/{session_id}", params={"view": "logs"}).text == ""


def test_configured_private_image_runs_with_auth(sim_clock: ManualClock, sim_token: str) -> None:
    """An image listed in private_images starts normally when registry auth is given."""
    import base64

    image = "images.canfar.net/me/mine:1"
    simulator = Simulator(SimulatorConfig(token=sim_token, private_images=(image,)), clock=sim_clock)
    with SimulatorServer(simulator) as server, httpx.Client(base_url=server.url, headers={
            "Authorization": f"Bearer {sim_token}",
            "x-skaha-registry-auth": base64.b64encode(b"me:secret").decode()}) as http:
        session_id = http.post("/session", params={"name": "p", "image": image}).text.strip()
        sim_clock.advance(3)
        assert status_of(http, session_id) == "Running"


def test_logs_grow_as_the_program_runs(http: httpx.Client, sim_clock: ManualClock) -> None:
    """Logs show what the program has written so far in simulated time, then it ends with its code."""
    session_id = create(http, cmd="sh", args="-c echo${IFS}start;sleep${IFS}10;echo${IFS}done;exit${IFS}3")
    logs = lambda: http.get(f"/session/{session_id}", params={"view": "logs"}).text  # noqa: E731
    sim_clock.advance(2)
    assert (logs(), status_of(http, session_id)) == ("start\n", "Running")
    sim_clock.advance(10)
    assert (logs(), status_of(http, session_id)) == ("start\ndone\n", "Failed")


def test_deadline_cuts_the_output(sim_clock: ManualClock, sim_token: str) -> None:
    """A program killed at its deadline never writes what it would have written later."""
    simulator = Simulator(SimulatorConfig(token=sim_token, headless_deadline=60), clock=sim_clock)
    with SimulatorServer(simulator) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {sim_token}"}) as http:
        session_id = create(http, cmd="sh", args="-c echo${IFS}a;sleep${IFS}100;echo${IFS}b")
        sim_clock.advance(200)
        assert status_of(http, session_id) == "Failed"
        assert http.get(f"/session/{session_id}", params={"view": "logs"}).text == "a\n"


def test_events_expire_after_an_hour(http: httpx.Client, sim_clock: ManualClock) -> None:
    """Kubernetes keeps events one hour: a long-running session's events become ``<none>``."""
    session_id = create(http)
    sim_clock.advance(2 * HOUR)
    assert http.get(f"/session/{session_id}", params={"view": "events"}).text == "<none>\n"


def test_time_scale_speeds_up_simulated_time(sim_token: str) -> None:
    """With time_scale 1000 a ``sleep 60`` completes within a tenth of a real second."""
    clock = ManualClock()
    simulator = Simulator(SimulatorConfig(token=sim_token, time_scale=1000), clock=clock)
    with SimulatorServer(simulator) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {sim_token}"}) as http:
        session_id = create(http, cmd="sleep", args="60")
        clock.advance(0.063)  # 2 s pull + 60 s sleep = 62 simulated seconds
        assert status_of(http, session_id) == "Completed"


def test_time_scale_works_with_the_real_clock(sim_token: str) -> None:
    """Against the real clock a big time scale makes ``sleep 5`` complete in well under a second."""
    import time

    simulator = Simulator(SimulatorConfig(token=sim_token, time_scale=500))
    with SimulatorServer(simulator) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {sim_token}"}) as http:
        session_id = create(http, cmd="sleep", args="5")
        deadline = time.monotonic() + 5
        while status_of(http, session_id) != "Completed":
            assert time.monotonic() < deadline, "sleep 5 at 500x did not complete"
            time.sleep(0.01)


def test_sessions_of_one_simulator_get_distinct_ids(http: httpx.Client) -> None:
    """Ids never repeat within a simulator."""
    ids = [create(http, name=f"s{index}") for index in range(50)]
    assert len(set(ids)) == 50


def test_image_constant_is_public(http: httpx.Client) -> None:
    """The image the tests use is in the public cache (no registry auth needed)."""
    assert IMAGE in {image["id"] for image in http.get("/image").json()}


def test_cmd_with_a_space_fails_to_start(http: httpx.Client, sim_clock: ManualClock) -> None:
    """``cmd="sleep 5"`` is one argv element on the real service, so the container cannot start."""
    session_id = create(http, cmd="sleep 5")
    sim_clock.advance(3)
    assert status_of(http, session_id) == "Failed"
    events = http.get(f"/session/{session_id}", params={"view": "events"}).text
    assert 'exec: "sleep 5": executable file not found' in events


def test_stats_match_what_the_scheduler_does(small: tuple[Simulator, httpx.Client],
                                             sim_clock: ManualClock) -> None:
    """Flexible sessions count with /context's defaultRequest; the room left decides who is Pending.

    On a 4-core, 16 GB cluster three flexible sessions (1 core, 4 GiB each) are admitted and a
    fourth waits for RAM; stats report exactly the three, and never a per-session maximum above
    the cluster.
    """
    _, http = small
    context = http.get("/context").json()
    flexible = [create(http, name=f"f{index}") for index in range(4)]
    stats = http.get("/session", params={"view": "stats"}).json()
    assert stats["cores"]["requestedCPUCores"] == 3 * context["cores"]["defaultRequest"]
    assert stats["ram"]["requestedRAM"] == "12.88G"  # 3 x 4 GiB in decimal GB
    assert stats["cores"]["maxCPUCores"]["cpuCores"] <= stats["cores"]["cpuCoresAvailable"]
    sim_clock.advance(3)
    assert [status_of(http, session_id) for session_id in flexible] == ["Running"] * 3 + ["Pending"]


def test_a_deleted_session_holds_its_share_until_its_pod_is_gone(small: tuple[Simulator, httpx.Client],
                                                                 sim_clock: ManualClock) -> None:
    """Stats keep counting a deleted session while its pod stops, as the scheduler does."""
    _, http = small
    session_id = create(http, cores="2", ram="4")
    sim_clock.advance(3)
    http.delete(f"/session/{session_id}")
    assert http.get("/session", params={"view": "stats"}).json()["cores"]["requestedCPUCores"] == 2.0
    sim_clock.advance(5)
    assert http.get("/session", params={"view": "stats"}).json()["cores"]["requestedCPUCores"] == 0.0


def test_interactive_sessions_fail_at_expiry_unless_renewed(sim_clock: ManualClock, sim_token: str) -> None:
    """With a short session_expiry an unrenewed notebook fails at it; a renewed one keeps running."""
    simulator = Simulator(SimulatorConfig(token=sim_token, session_expiry=100), clock=sim_clock)
    with SimulatorServer(simulator) as server, httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {sim_token}"}) as http:
        kept, dropped = create(http, name="kept", type="notebook"), create(http, name="dropped", type="notebook")
        sim_clock.advance(60)
        assert http.post(f"/session/{kept}", params={"action": "renew"}).status_code == 200
        sim_clock.advance(40)
        assert (status_of(http, kept), status_of(http, dropped)) == ("Running", "Failed")
        assert http.get(f"/session/{kept}").json()["expiryTime"] == "2026-01-01T00:02:40Z"
