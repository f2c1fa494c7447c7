"""Each skaha endpoint answers with the real server's status, content type and body shape."""

from __future__ import annotations

import re

import httpx
import pytest

from controller.simulator import ManualClock, Simulator
from tests.simulator.support import IMAGE, create, status_of


def test_create_answers_text_plain_id_with_newline(http: httpx.Client) -> None:
    """Create answers 200 text/plain ``<id>\\n`` with an id like the server's RandomStringGenerator(8)."""
    response = http.post("/session", params={"name": "job", "image": IMAGE})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert re.fullmatch(r"[a-z][a-z0-9]{7}\n", response.text)


def test_create_accepts_a_form_body(http: httpx.Client) -> None:
    """Parameters in an x-www-form-urlencoded body work as well as in the query string."""
    response = http.post("/session", data={"name": "formed", "image": IMAGE})
    assert response.status_code == 200
    assert http.get(f"/session/{response.text.strip()}").json()["name"] == "formed"


def test_query_value_wins_over_form_value(http: httpx.Client) -> None:
    """With a parameter in both places the query string's value is used, as getParameter does."""
    response = http.post("/session", params={"name": "inquery"}, data={"name": "inform", "image": IMAGE})
    assert http.get(f"/session/{response.text.strip()}").json()["name"] == "inquery"


def test_env_is_repeatable_and_malformed_entries_are_dropped(http: httpx.Client,
                                                             sim_clock: ManualClock) -> None:
    """Every ``env`` KEY=VALUE reaches the session; entries Java's split does not cut in two are dropped.

    ``"A=".split("=")`` is ``["A"]`` in Java (trailing empty strings go), so ``D=`` is dropped too.
    """
    session_id = create(http, env=["A=1", "B=two", "BAD", "C=x=y", "D="], cmd="env")
    lines = _logs_after_start(http, sim_clock, session_id).splitlines()
    assert "A=1" in lines and "B=two" in lines
    assert not [line for line in lines if line.startswith(("BAD", "C=", "D="))]


def _logs_after_start(http: httpx.Client, clock: ManualClock, session_id: str) -> str:
    clock.advance(3)
    return http.get(f"/session/{session_id}", params={"view": "logs"}).text


def test_name_is_stored_lower_case(http: httpx.Client) -> None:
    """The server lower-cases names."""
    session_id = create(http, name="My-Job-7")
    assert http.get(f"/session/{session_id}").json()["name"] == "my-job-7"


def test_get_returns_the_session_json_with_string_numbers_and_no_nulls(http: httpx.Client) -> None:
    """A fixed-resource session's JSON has string numbers, a bool flag, and no null values."""
    session_id = create(http, cores="2", ram="8")
    data = http.get(f"/session/{session_id}").json()
    assert data["id"] == session_id
    assert data["type"] == "headless" and data["status"] == "Pending" and data["image"] == IMAGE
    assert data["requestedCPUCores"] == "2" and data["requestedRAM"] == "8.59"
    assert data["requestedGPUCores"] == "0" and data["isFixedResources"] is True
    assert data["connectURL"] == ""
    assert None not in data.values()


def test_usage_is_reported_only_while_running_in_skaha_formats(http: httpx.Client, sim_clock: ManualClock) -> None:
    """cpuCoresInUse (3 dp) and ramInUse (decimal GB, 2 dp, no unit) appear once measured; GPUs are the limit."""
    session_id = create(http, cores="2", ram="8", gpus="1", cmd="sleep", args="600")
    pending = http.get(f"/session/{session_id}").json()
    sim_clock.advance(60)
    running = http.get(f"/session/{session_id}").json()
    [listed] = http.get("/session").json()
    assert ("cpuCoresInUse" in pending, "ramInUse" in pending, pending["requestedGPUCores"]) == (False, False, "1")
    assert (running["status"], running["cpuCoresInUse"], running["ramInUse"]) == ("Running", "0.200", "0.86")
    assert listed == running


def test_flexible_session_omits_requested_resources(http: httpx.Client) -> None:
    """Without ``ram`` the session is flexible: no requestedRAM/requestedCPUCores, isFixedResources false."""
    data = http.get(f"/session/{create(http, cores='2')}").json()
    assert data["isFixedResources"] is False
    assert "requestedRAM" not in data and "requestedCPUCores" not in data


def test_start_and_expiry_times_are_iso_utc(http: httpx.Client) -> None:
    """startTime/expiryTime are ISO-8601 with Z; a headless deadline is 14 days."""
    data = http.get(f"/session/{create(http)}").json()
    assert data["startTime"] == "2026-01-01T00:00:00Z"
    assert data["expiryTime"] == "2026-01-15T00:00:00Z"


def test_notebook_has_a_connect_url(http: httpx.Client) -> None:
    """Interactive sessions carry a connectURL built like SessionURLBuilder's."""
    session_id = create(http, type="notebook")
    url = http.get(f"/session/{session_id}").json()["connectURL"]
    assert url.startswith("https://") and f"/session/notebook/{session_id}/lab/tree/" in url
    assert url.endswith(f"?token={session_id}")


def test_get_unknown_session_is_404_text(http: httpx.Client) -> None:
    """An unknown id answers 404 text/plain ``session <id> not found``."""
    response = http.get("/session/abcdefgh")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "session abcdefgh not found"


def test_list_returns_own_sessions(http: httpx.Client) -> None:
    """The list holds every session created, headless included."""
    ids = {create(http, name=f"job-{index}") for index in range(3)}
    response = http.get("/session")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert {row["id"] for row in response.json()} == ids


def test_list_filters_by_type_case_insensitively(http: httpx.Client) -> None:
    """``type`` filters by kind, ignoring case."""
    create(http, name="h")
    notebook = create(http, name="n", type="notebook")
    assert [row["id"] for row in http.get("/session", params={"type": "NoteBook"}).json()] == [notebook]


def test_list_filters_by_status(http: httpx.Client, sim_clock: ManualClock) -> None:
    """``status`` filters by the current status, ignoring case."""
    first = create(http, name="a")
    sim_clock.advance(3)
    create(http, name="b")
    assert [row["id"] for row in http.get("/session", params={"status": "running"}).json()] == [first]


def test_view_interactive_lists_only_non_headless(http: httpx.Client) -> None:
    """``view=interactive`` leaves headless sessions out and ignores ``type``."""
    create(http, name="h")
    notebook = create(http, name="n", type="notebook")
    rows = http.get("/session", params={"view": "interactive", "type": "headless"}).json()
    assert [row["id"] for row in rows] == [notebook]


def test_view_all_lists_public_sessions(http: httpx.Client) -> None:
    """``view=all`` lists PublicSession objects: userid, type, status, startTime only."""
    create(http)
    rows = http.get("/session", params={"view": "all"}).json()
    assert rows == [{"userid": "sim-user", "type": "headless", "status": "Pending",
                     "startTime": "2026-01-01T00:00:00Z"}]


def test_view_stats_has_the_current_shape_with_doubles(http: httpx.Client) -> None:
    """``view=stats`` reports requested and available cores/RAM from the cluster size, as doubles."""
    create(http, cores="2", ram="8")
    stats = http.get("/session", params={"view": "stats"}).json()
    assert stats == {
        "cores": {"requestedCPUCores": 2.0, "cpuCoresAvailable": 64.0,
                  "maxCPUCores": {"cpuCores": 8.0, "withRam": "32Gi"}},
        "ram": {"requestedRAM": "8.59G", "ramAvailable": "256G",
                "maxRAM": {"ram": "32Gi", "withCPUCores": 8.0}},
    }
    assert isinstance(stats["cores"]["requestedCPUCores"], float)


def test_logs_are_text_plain(http: httpx.Client, sim_clock: ManualClock) -> None:
    """``view=logs`` answers text/plain; empty before the container starts, then the program's output."""
    session_id = create(http, cmd="echo", args="ready")
    before = http.get(f"/session/{session_id}", params={"view": "logs"})
    assert before.status_code == 200 and before.text == ""
    assert before.headers["content-type"].startswith("text/plain")
    assert _logs_after_start(http, sim_clock, session_id) == "ready\n"


def test_logs_of_unknown_session_are_empty_200(http: httpx.Client) -> None:
    """Logs are fetched by label, so an unknown id gives 200 with an empty body."""
    response = http.get("/session/abcdefgh", params={"view": "logs"})
    assert (response.status_code, response.text) == (200, "")


def test_events_are_a_kubectl_table(http: httpx.Client) -> None:
    """``view=events`` is the custom-columns table with the kubectl header."""
    session_id = create(http)
    response = http.get(f"/session/{session_id}", params={"view": "events"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert re.fullmatch(r"TYPE {3,}REASON {3,}MESSAGE {3,}FIRST-TIME {3,}LAST-TIME", lines[0])
    assert any("Scheduled" in line for line in lines[1:])


def test_events_of_unknown_session_are_404_with_a_dot(http: httpx.Client) -> None:
    """Events of an unknown session answer 404 ``session <id> not found.`` (with the dot)."""
    response = http.get("/session/abcdefgh", params={"view": "events"})
    assert (response.status_code, response.text) == (404, "session abcdefgh not found.")


def test_delete_answers_200_empty(http: httpx.Client) -> None:
    """DELETE of a session answers 200 with an empty body."""
    response = http.delete(f"/session/{create(http)}")
    assert (response.status_code, response.text) == (200, "")


def test_delete_unknown_session_answers_200(http: httpx.Client) -> None:
    """DELETE of an unknown id answers 200, as servers since 1.0.0 do."""
    assert http.delete("/session/abcdefgh").status_code == 200


def test_delete_without_id_is_refused(http: httpx.Client) -> None:
    """DELETE /session without an id is 400 ``Cannot kill all sessions.``."""
    response = http.delete("/session")
    assert (response.status_code, response.text) == (400, "Cannot kill all sessions.")


def test_renew_answers_200_empty(http: httpx.Client) -> None:
    """Renewing an active session answers 200 with an empty body."""
    session_id = create(http, type="notebook")
    response = http.post(f"/session/{session_id}", params={"action": "renew"})
    assert (response.status_code, response.text) == (200, "")


def test_renew_moves_the_expiry_to_now_plus_the_lifetime_unless_ignored(http: httpx.Client, simulator: Simulator,
                                                                        sim_clock: ManualClock) -> None:
    """A renew pushes expiryTime to now + session_expiry; an ignored one answers 200 and leaves it."""
    session_id = create(http, type="notebook")
    sim_clock.advance(600)
    before = http.get(f"/session/{session_id}").json()["expiryTime"]
    assert http.post(f"/session/{session_id}", params={"action": "renew"}).status_code == 200
    moved = http.get(f"/session/{session_id}").json()["expiryTime"]
    assert moved > before
    sim_clock.advance(600)
    simulator.ignore_renews(session_id=session_id)
    assert http.post(f"/session/{session_id}", params={"action": "renew"}).status_code == 200
    assert http.get(f"/session/{session_id}").json()["expiryTime"] == moved


def test_too_many_path_segments_are_invalid(http: httpx.Client) -> None:
    """More than three segments after /session is 400 ``Invalid request: <path below /session/>``.

    The server prints ``SyncInput.getPath()``: the servlet's path info without its leading slash.
    """
    response = http.get("/session/a/app/b/c")
    assert response.status_code == 400
    assert response.text == "Invalid request: a/app/b/c"


def test_image_lists_public_images(http: httpx.Client) -> None:
    """``/image`` lists {id, types, digest} objects of the public cache."""
    images = http.get("/image").json()
    astroml = next(image for image in images if image["id"] == IMAGE)
    assert set(astroml) == {"id", "types", "digest"} and "headless" in astroml["types"]
    assert astroml["digest"].startswith("sha256:")


def test_image_filters_by_type(http: httpx.Client) -> None:
    """``/image?type=carta`` lists only images labelled carta."""
    images = http.get("/image", params={"type": "carta"}).json()
    assert images and all("carta" in image["types"] for image in images)


def test_image_unknown_type_is_400(http: httpx.Client) -> None:
    """An unknown type for /image is 400 ``unknown type: <t>``."""
    response = http.get("/image", params={"type": "bogus"})
    assert (response.status_code, response.text) == (400, "unknown type: bogus")


def test_context_has_the_chart_resources(http: httpx.Client) -> None:
    """``/context`` serves k8s-resources.json with the configured interactive cap (a string, as in Helm)."""
    context = http.get("/context").json()
    assert context["cores"]["defaultRequest"] == 1 and context["cores"]["options"][-1] == 16
    assert 192 in context["memoryGB"]["options"]
    assert context["gpus"]["options"][0] == 1
    assert context["maxInteractiveSessions"] == "5"


def test_repository_lists_harbor_hosts(http: httpx.Client) -> None:
    """``/repository`` lists the registry hosts."""
    assert http.get("/repository").json() == ["images.canfar.net"]


def test_status_helper_sees_pending_first(http: httpx.Client) -> None:
    """A new session is Pending."""
    assert status_of(http, create(http)) == "Pending"


@pytest.mark.parametrize("view", ["interactive", "Interactive", "INTERACTIVE"])
def test_view_interactive_ignores_case(http: httpx.Client, view: str) -> None:
    """GetAction compares ``interactive`` with equalsIgnoreCase."""
    create(http, name="h")
    notebook = create(http, name="n", type="notebook")
    assert [row["id"] for row in http.get("/session", params={"view": view}).json()] == [notebook]


def test_other_views_are_case_sensitive(http: httpx.Client) -> None:
    """``stats`` and ``all`` are compared with equals: ``view=Stats`` is a plain session list."""
    session_id = create(http)
    assert [row["id"] for row in http.get("/session", params={"view": "Stats"}).json()] == [session_id]
    assert "id" in http.get("/session", params={"view": "ALL"}).json()[0]


def test_any_second_path_segment_is_a_desktop_app_request(http: httpx.Client) -> None:
    """The server only counts segments: ``/session/{id}/anything`` lists desktop apps like ``/app``."""
    session_id = create(http)
    assert http.get(f"/session/{session_id}/whatever").json() == []


def test_default_catalogue_has_the_platform_images_for_every_kind(http: httpx.Client) -> None:
    """The public images are the platform's documented ones, with at least one per creatable kind."""
    notebooks = {image["id"] for image in http.get("/image", params={"type": "notebook"}).json()}
    assert "images.canfar.net/skaha/base-notebook:latest" in notebooks
    headless = {image["id"] for image in http.get("/image", params={"type": "headless"}).json()}
    assert "images.canfar.net/skaha/terminal:1.1.2" in headless
    for kind in ("notebook", "desktop", "carta", "contributed", "firefly", "headless", "desktop-app"):
        assert http.get("/image", params={"type": kind}).json(), kind
