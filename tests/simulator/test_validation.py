"""Refusals carry the server's exact text/plain message and status, and bad input never breaks it."""

from __future__ import annotations

import base64
import socket

import httpx
import pytest

from controller.simulator import ManualClock, SimulatorServer
from tests.simulator.support import IMAGE, create

PRIVATE = "images.canfar.net/someone/private:1.0"


def _auth(value: str) -> dict[str, str]:
    return {"x-skaha-registry-auth": base64.b64encode(value.encode()).decode()}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "job"}, "Missing parameter 'image'"),
        ({"name": "job", "image": ""}, "image is required"),
        ({"name": "job", "image": "docker.io/library/ubuntu:22.04"},
         "session image 'docker.io/library/ubuntu:22.04' must come from one of [images.canfar.net]"),
        ({"name": "job", "image": IMAGE, "type": "vm"}, "Invalid session type: vm"),
        ({"name": "job", "image": IMAGE, "cores": "0.5"}, "Invalid value for 'cores': 0.5"),
        ({"name": "job", "image": IMAGE, "cores": "17"}, "Invalid value for 'cores': 17"),
        ({"name": "job", "image": IMAGE, "cores": "two"}, "Invalid value for 'cores': two"),
        ({"name": "job", "image": IMAGE, "cores": "NaN"}, "Invalid value for 'cores': NaN"),
        ({"name": "job", "image": IMAGE, "ram": "3"}, "Invalid value for 'ram': 3"),
        ({"name": "job", "image": IMAGE, "ram": "1e9"}, "Invalid value for 'ram': 1e9"),
        ({"image": IMAGE}, "Missing parameter 'name'"),
        ({"name": "  ", "image": IMAGE}, "Missing parameter 'name'"),
        ({"name": "my job", "image": IMAGE}, "name can only contain alpha-numeric chars and '-'"),
        ({"name": "job_1", "image": IMAGE}, "name can only contain alpha-numeric chars and '-'"),
        ({"name": "jöb", "image": IMAGE}, "name can only contain alpha-numeric chars and '-'"),
        ({"name": "job", "image": IMAGE, "gpus": "0"}, "Invalid value for 'gpus': 0"),
        ({"name": "job", "image": IMAGE, "gpus": "1.5"}, "Invalid value for 'gpus': 1.5"),
        ({"name": "job", "image": IMAGE, "gpus": "29"}, "Invalid value for 'gpus': 29"),
        ({"name": "job", "image": PRIVATE},
         "No authentication provided for unknown or private image.  Use x-skaha-registry-auth request "
         "header with base64Encode(username:secret)."),
    ],
)
def test_create_refusals_match_the_server(http: httpx.Client, params: dict[str, str], message: str) -> None:
    """Each invalid create answers 400 text/plain with the server's message."""
    response = http.post("/session", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "bad name", "cores": "99"}, "Invalid value for 'cores': 99"),
        ({"name": "bad name", "type": "vm", "image": "quay.io/x:1"},
         "session image 'quay.io/x:1' must come from one of [images.canfar.net]"),
        ({"type": "vm"}, "Invalid session type: vm"),
        ({"name": "bad name", "gpus": "0"}, "name can only contain alpha-numeric chars and '-'"),
    ],
)
def test_first_failing_check_wins(http: httpx.Client, params: dict[str, str], message: str) -> None:
    """Checks run in PostAction's order: image, type, cores/ram, name, quota, gpus, registry auth."""
    response = http.post("/session", params={"image": IMAGE, **params})
    assert (response.status_code, response.text) == (400, message)


@pytest.mark.parametrize("value", ["1", "1.5", "16", " 2 "])
def test_cores_int_part_must_be_an_option(http: httpx.Client, value: str) -> None:
    """cores parses as a double whose integer part must be an option (so 1.5 passes)."""
    assert http.post("/session", params={"name": "job", "image": IMAGE, "cores": value}).status_code == 200


@pytest.mark.parametrize("kind", ["notebook", "desktop", "carta", "contributed", "firefly", "headless"])
def test_every_creatable_kind_is_accepted(http: httpx.Client, kind: str) -> None:
    """All kinds except desktop-app can be created with POST /session."""
    assert http.post("/session", params={"name": "s", "image": IMAGE, "type": kind}).status_code == 200


def test_desktop_app_cannot_be_created_directly(http: httpx.Client) -> None:
    """type=desktop-app on POST /session is refused as an invalid type (the server has no template)."""
    response = http.post("/session", params={"name": "s", "image": IMAGE, "type": "desktop-app"})
    assert (response.status_code, response.text) == (400, "Invalid session type: desktop-app")


def test_interactive_cap_has_the_server_message(http: httpx.Client) -> None:
    """The sixth interactive session of a user is refused with the server's quota message."""
    for index in range(5):
        create(http, name=f"nb-{index}", type="notebook")
    response = http.post("/session", params={"name": "nb-6", "image": IMAGE, "type": "notebook"})
    assert (response.status_code, response.text) == (
        400, "User sim-user has reached the maximum of 5 active sessions.")


def test_headless_sessions_are_not_capped(http: httpx.Client) -> None:
    """Headless sessions do not count against, nor are refused by, the interactive cap."""
    for index in range(5):
        create(http, name=f"nb-{index}", type="notebook")
    assert http.post("/session", params={"name": "h", "image": IMAGE}).status_code == 200


def test_deleted_sessions_do_not_count_against_the_cap(http: httpx.Client) -> None:
    """Only listed Pending/Running sessions count: right after deleting one, another interactive session fits."""
    ids = [create(http, name=f"nb-{index}", type="notebook") for index in range(5)]
    http.delete(f"/session/{ids[0]}")
    response = http.post("/session", params={"name": "nb-6", "image": IMAGE, "type": "notebook"})
    assert response.status_code == 200


def test_expired_sessions_do_not_count_against_the_cap(http: httpx.Client, sim_clock: ManualClock) -> None:
    """Interactive sessions past their deadline are Failed and free the cap."""
    for index in range(5):
        create(http, name=f"nb-{index}", type="notebook")
    sim_clock.advance(4 * 86400)
    response = http.post("/session", params={"name": "nb-6", "image": IMAGE, "type": "notebook"})
    assert response.status_code == 200


@pytest.mark.parametrize("header", [_auth("nocolon"), _auth("a:b:c"), _auth(":secret"),
                                    {"x-skaha-registry-auth": "not base64!"}])
def test_bad_registry_auth_is_refused(http: httpx.Client, header: dict[str, str]) -> None:
    """Registry auth that does not decode to username:secret is 400 with the server's text."""
    response = http.post("/session", params={"name": "p", "image": PRIVATE}, headers=header)
    assert response.status_code == 400
    assert response.text == "Invalid input.  Must be in form of username:secret"


def test_private_image_with_auth_is_accepted(http: httpx.Client) -> None:
    """With valid registry auth an image outside the public cache can be requested."""
    response = http.post("/session", params={"name": "p", "image": PRIVATE}, headers=_auth("me:secret"))
    assert response.status_code == 200


def test_renew_without_action_is_refused(http: httpx.Client) -> None:
    """POST to a session without ``action`` is 400 ``Cannot modify an existing session``."""
    response = http.post(f"/session/{create(http)}")
    assert (response.status_code, response.text) == (400, "Cannot modify an existing session")


def test_unknown_action_is_refused(http: httpx.Client) -> None:
    """An action other than renew is 400 ``unrecognized action``."""
    response = http.post(f"/session/{create(http)}", params={"action": "pause"})
    assert (response.status_code, response.text) == (400, "unrecognized action")


def test_renew_of_unknown_session_is_refused(http: httpx.Client) -> None:
    """Renewing a session that has no active job is 400 with the server's message."""
    response = http.post("/session/abcdefgh", params={"action": "RENEW"})
    assert response.status_code == 400
    assert response.text == "No active job for user sim-user with session abcdefgh"


def test_renew_of_ended_session_is_refused(http: httpx.Client, sim_clock: ManualClock) -> None:
    """A Completed session has no active job, so it cannot be renewed."""
    session_id = create(http, cmd="true")
    sim_clock.advance(5)
    response = http.post(f"/session/{session_id}", params={"action": "renew"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("POST", "/session", {"content": b"\xff\xfe\x00garbage", "headers": {
            "content-type": "application/x-www-form-urlencoded"}}),
        ("POST", "/session", {"content": b"%zz&&==&name=%", "headers": {
            "content-type": "application/x-www-form-urlencoded"}}),
        ("POST", "/session", {"content": b'{"name": "x"}', "headers": {"content-type": "application/json"}}),
        ("POST", "/session?name=a%00b&image=" + IMAGE, {}),
        ("POST", "/session?name=" + "a" * 5000 + "&image=" + IMAGE + "&cores=" + "9" * 400, {}),
        ("POST", "/session?image=images.canfar.net/%ff&name=x", {}),
        ("POST", "/session?name=x&image=" + IMAGE + "&cmd=sh&args=-c%20%22unterminated", {}),
        ("POST", "/session?name=x&image=" + IMAGE + "&cmd=sleep&args=-1", {}),
        ("POST", "/session?name=x&image=" + IMAGE + "&cmd=sleep&args=inf", {}),
        ("GET", "/session?view=%ff%fe&type=%00", {}),
        ("GET", "/session/%2e%2e%2f", {}),
        ("GET", "/session//", {}),
        ("DELETE", "/session/" + "x" * 3000, {}),
        ("PUT", "/session", {}),
        ("GET", "/nothing-here", {}),
    ],
)
def test_malformed_input_never_causes_a_server_error(http: httpx.Client, method: str, url: str,
                                                     kwargs: dict[str, object]) -> None:
    """Garbage in parameters, bodies and paths gets a 2xx/4xx answer, never a 5xx or a dropped connection."""
    response = http.request(method, url, **kwargs)  # type: ignore[arg-type]
    assert response.status_code < 500, response.text
    assert http.get("/session").status_code == 200  # and the server is still fine


def test_invalid_content_length_is_400(sim_server: SimulatorServer, sim_token: str) -> None:
    """A request with a non-numeric Content-Length gets 400, not a crash."""
    with socket.create_connection(("127.0.0.1", sim_server.port), timeout=5) as sock:
        sock.sendall(b"POST /skaha/v1/session HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
                     b"Authorization: Bearer " + sim_token.encode() + b"\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")


def test_oversized_body_is_refused(http: httpx.Client) -> None:
    """A body larger than the configured limit is refused with 413 instead of being buffered."""
    response = http.post("/session", content=b"x" * 1_000_001,
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


# -- details of the real server's parameter handling ---------------------------------------------


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_resources_count_as_not_given(http: httpx.Client, blank: str) -> None:
    """Blank cores, ram, gpus and type are ignored (``StringUtil.hasText``): a flexible headless session."""
    response = http.post("/session", params={"name": "job", "image": IMAGE, "cores": blank, "ram": blank,
                                             "gpus": blank, "type": blank})
    assert response.status_code == 200, response.text
    data = http.get(f"/session/{response.text.strip()}").json()
    assert (data["type"], data["isFixedResources"], data["requestedGPUCores"]) == ("headless", False, "0")


@pytest.mark.parametrize(("name", "value", "accepted"), [
    ("cores", "2d", True),  # Java's Double.valueOf takes a d/f suffix
    ("cores", "1e0", True),
    ("cores", "1_0", False),  # but no underscores
    ("cores", "inf", False),
    ("gpus", "+2", True),
    ("gpus", " 2", False),  # Integer.parseInt does not trim
])
def test_numbers_parse_as_java_does(http: httpx.Client, name: str, value: str, accepted: bool) -> None:
    """cores/ram go through Double.valueOf and gpus through Integer.parseInt, not Python's parsers."""
    response = http.post("/session", params={"name": "job", "image": IMAGE, name: value})
    assert (response.status_code == 200) is accepted, response.text
    if not accepted:
        assert response.text == f"Invalid value for '{name}': {value}"


def test_parameter_names_are_case_insensitive(http: httpx.Client) -> None:
    """cadc-rest keeps parameters in a case-insensitive map: ``Name`` and ``IMAGE`` work."""
    response = http.post("/session", params={"Name": "upper", "IMAGE": IMAGE})
    assert response.status_code == 200
    assert http.get(f"/session/{response.text.strip()}").json()["name"] == "upper"


def test_name_starting_with_a_dash_leaves_a_blank_label(http: httpx.Client) -> None:
    """The regex accepts ``-job``, but the name label trims to nothing: 400, and no session."""
    response = http.post("/session", params={"name": "-job", "image": IMAGE})
    assert (response.status_code, response.text) == (400, "canfar.net/name label value cannot be blank")
    assert http.get("/session").json() == []


@pytest.mark.parametrize("name", ["a" * 64, "job-"])
def test_names_that_are_no_hostname_fail_in_kubernetes(http: httpx.Client, name: str) -> None:
    """Over 63 characters or a trailing dash: the pod hostname is invalid, kubectl fails, the server 500s."""
    response = http.post("/session", params={"name": name, "image": IMAGE})
    assert response.status_code == 500
    assert response.text.startswith("unexpected exception: io.kubernetes.client.openapi.ApiException")
    assert "HTTP response code: 404" in response.text
    assert http.get("/session").json() == []


def test_a_63_character_name_is_fine(http: httpx.Client) -> None:
    """63 characters is still a valid hostname and label."""
    assert http.post("/session", params={"name": "a" * 63, "image": IMAGE}).status_code == 200


def test_env_entry_without_a_name_fails_in_kubernetes(http: httpx.Client) -> None:
    """``=x`` splits into an empty name and a value: the Job is invalid and the server 500s."""
    response = http.post("/session", params={"name": "job", "image": IMAGE, "env": "=x"})
    assert response.status_code == 500


def test_renew_without_an_action_value_cannot_modify(http: httpx.Client) -> None:
    """An empty ``action`` is no action (``StringUtil.hasLength``)."""
    session_id = create(http, type="notebook")
    response = http.post(f"/session/{session_id}", params={"action": ""})
    assert (response.status_code, response.text) == (400, "Cannot modify an existing session")


def test_renew_of_a_deleted_session_finds_no_active_job(http: httpx.Client) -> None:
    """Right after DELETE the Job is gone, so renew finds nothing to renew."""
    session_id = create(http, type="notebook")
    http.delete(f"/session/{session_id}")
    response = http.post(f"/session/{session_id}", params={"action": "renew"})
    assert (response.status_code, response.text) == (
        400, f"No active job for user sim-user with session {session_id}")
