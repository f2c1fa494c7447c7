"""``parse_observed``: the controller's lean reading of the list answer, tolerant but never of garbage."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from controller.models import ObservedSession, PlatformStats, parse_observed, stats_problem

#: A row as skaha HEAD sends it (session numbers are strings, nulls omitted).
HEAD_ROW = {
    "id": "k3x9q2ab", "userid": "jdoe", "runAsUID": "20001", "runAsGID": "20001", "supplementalGroups": [34241],
    "image": "images.canfar.net/skaha/astroml:latest", "type": "headless", "status": "Running", "name": "sweep-3",
    "startTime": "2026-01-05T21:48:29Z", "expiryTime": "2026-01-19T21:48:29Z", "connectURL": "",
    "requestedRAM": "8.59", "requestedCPUCores": "2", "requestedGPUCores": "0", "ramInUse": "1.61",
    "cpuCoresInUse": "0.233", "isFixedResources": True,
}
STARTED = 1767649709.0  # 2026-01-05T21:48:29Z


def _one(**row: Any) -> ObservedSession:
    [session] = parse_observed(json.dumps([row]))
    return session


def test_a_current_row_gives_the_fields_in_base_units() -> None:
    """Every field the controller needs comes out in base units (RAM in bytes); the rest is ignored."""
    assert parse_observed(json.dumps([HEAD_ROW])) == [ObservedSession(
        id="k3x9q2ab", name="sweep-3", phase="Running", kind="headless", started=STARTED,
        expires=STARTED + 14 * 86400, cores=2.0, ram_bytes=8.59e9, gpus=0.0, cores_in_use=0.233,
        ram_in_use_bytes=1.61e9,
    )]


def test_a_pending_flexible_row_has_no_times_and_no_resources() -> None:
    """Missing startTime, expiryTime and requested resources are None; a missing type is headless."""
    assert _one(id="a1", name="n", status="Pending") == ObservedSession("a1", "n", "Pending", "headless",
                                                                        None, None, None, None, 0.0, None, None)


@pytest.mark.parametrize(
    ("row", "field", "value"),
    [
        ({"status": "Succeeded"}, "phase", "Completed"),  # servers before 1.0.4
        ({"status": "Failed (DeadlineExceeded)"}, "phase", "Failed"),  # servers 1.0.0-1.0.3
        ({"status": "Something new"}, "phase", "Unknown"),
        ({"status": 3}, "phase", "Unknown"),
        ({"type": "notebook"}, "kind", "notebook"),
        ({"type": "<none>"}, "kind", "headless"),
        ({"type": ""}, "kind", "headless"),
        ({"startTime": "<none>"}, "started", None),
        ({"startTime": ""}, "started", None),
        ({"startTime": "yesterday"}, "started", None),
        ({"startTime": 12}, "started", None),
        ({"startTime": "2026-01-05T21:48:29"}, "started", STARTED),  # no zone: UTC
        ({"startTime": "2026-01-05T22:48:29+01:00"}, "started", STARTED),
        ({"expiryTime": "<none>"}, "expires", None),
        ({"requestedCPUCores": "0.500"}, "cores", 0.5),
        ({"requestedCPUCores": 4}, "cores", 4.0),  # a number, not a string
        ({"requestedCPUCores": "<none>"}, "cores", None),
        ({"requestedCPUCores": ""}, "cores", None),
        ({"requestedCPUCores": "NaN"}, "cores", None),
        ({"requestedCPUCores": True}, "cores", None),
        ({"requestedRAM": "2"}, "ram_bytes", 2e9),
        ({"requestedRAM": "16G"}, "ram_bytes", 16e9),  # v0 servers
        ({"requestedRAM": "32Gi"}, "ram_bytes", 32 * 2**30),
        ({"requestedRAM": "<none>"}, "ram_bytes", None),
        ({"requestedRAM": [1]}, "ram_bytes", None),
        ({"requestedGPUCores": "2"}, "gpus", 2.0),
        ({"requestedGPUCores": 1}, "gpus", 1.0),
        ({"requestedGPUCores": "<none>"}, "gpus", 0.0),  # v0 servers: no GPU request known
        ({"cpuCoresInUse": "0.233"}, "cores_in_use", 0.233),
        ({"coresInUse": "1.5"}, "cores_in_use", 1.5),  # older servers' name for it
        ({"cpuCoresInUse": "<none>"}, "cores_in_use", None),
        ({"ramInUse": "1.61"}, "ram_in_use_bytes", 1.61e9),  # decimal GB, 2 dp (skaha HEAD)
        ({"ramInUse": "512Mi"}, "ram_in_use_bytes", 512 * 2**20),
        ({"ramInUse": "<none>"}, "ram_in_use_bytes", None),  # not measured: unknown, not 0
        ({"somethingNew": {"x": 1}}, "name", "n"),  # extra keys are ignored
    ],
)
def test_loose_fields_are_tolerated(row: dict[str, Any], field: str, value: Any) -> None:
    """Placeholders, old statuses, numbers of either type and unknown keys never fail the list."""
    assert getattr(_one(id="a1", name="n", **row), field) == value


def test_rows_sharing_a_resource_string_each_get_their_own_value() -> None:
    """Requested resources are read per row, whichever other rows send the same or another string."""
    rows = [{"id": f"a{i}", "name": f"n{i}", "requestedCPUCores": cores, "requestedRAM": ram}
            for i, (cores, ram) in enumerate([("1", "2.15"), ("2", "8G"), ("1", "2.15"), (2, "<none>"), ("2", "8G")])]
    observed = parse_observed(json.dumps(rows))
    assert [(s.cores, s.ram_bytes) for s in observed] == [
        (1.0, 2.15e9), (2.0, 8e9), (1.0, 2.15e9), (2.0, None), (2.0, 8e9)]


def test_a_session_called_none_is_a_name_not_a_placeholder() -> None:
    """Only "" and "<none>" mean "missing" for ids and names: a session may be named none or null."""
    assert [s.name for s in parse_observed('[{"id": "a1", "name": "none"}, {"id": "null", "name": "x"}]')] == [
        "none", "x"]


@pytest.mark.parametrize(
    "body",
    [
        '{"sessions": []}',  # an object, not an array
        '"[]"',
        "null",
        "<html>login</html>",  # not JSON at all
        '[{"id": "a1", "name": "n"}, 7]',  # a row that is not an object
        '[{"id": "a1", "name": "n"}, ["b1", "m"]]',
        '[{"id": "a1"}]',  # no name
        '[{"id": "a1", "name": "  "}]',
        '[{"id": "a1", "name": null}]',
    ],
)
def test_garbage_fails_the_whole_list(body: str) -> None:
    """A body that is not an array of sessions with names is a ValueError: nothing is acted on.

    (A row with a name but no id is an anomaly of its own: see ``test_a_row_without_an_id_...``.)"""
    with pytest.raises(ValueError):
        parse_observed(body)


def test_the_error_says_which_row_is_wrong() -> None:
    """The message names the row's position and what it lacks, so the bad answer can be found."""
    with pytest.raises(ValueError, match=r"session 1: no name \('b1', missing\)"):
        parse_observed('[{"id": "a1", "name": "n"}, {"id": "b1"}]')


def test_an_empty_list_is_an_empty_list() -> None:
    """[] is a valid answer (no sessions); whether to trust it is the controller's decision."""
    assert parse_observed("[]") == []


def _row(session_id: Any, name: str, status: str = "Running") -> dict[str, Any]:
    return {**HEAD_ROW, "id": session_id, "name": name, "status": status}


def test_a_repeated_id_is_one_session_the_last_row() -> None:
    """The same session listed twice is one session (its last row), and the answer says so."""
    observed = parse_observed(json.dumps([_row("a1", "cc-w-abc-1", "Pending"), _row("b1", "cc-w-abc-2"),
                                          _row("a1", "cc-w-abc-1", "Running"), _row("a1", "cc-w-abc-1")]))
    assert [(s.id, s.phase) for s in observed] == [("a1", "Running"), ("b1", "Running")]
    assert observed.anomalies.counts["duplicate_id"] == 2
    assert observed.anomalies.suspect
    assert observed.anomalies.held_names == frozenset()


@pytest.mark.parametrize("session_id", [None, "", "<none>", 17])
def test_a_row_without_an_id_is_left_out_and_its_name_held(session_id: Any) -> None:
    """A row with a name but no usable id cannot be destroyed, and its slot must not be refilled."""
    row = _row("b1", "cc-w-abc-2")
    idless = {k: v for k, v in _row(session_id, "cc-w-abc-1").items() if session_id is not None or k != "id"}
    observed = parse_observed(json.dumps([idless, row]))
    assert [s.id for s in observed] == ["b1"]
    assert observed.anomalies.counts["missing_id"] == 1
    assert observed.anomalies.held_names == frozenset({"cc-w-abc-1"})


def test_an_id_under_two_names_is_left_out_and_both_names_held() -> None:
    """Which name is it? Neither row is believed, neither slot refilled."""
    observed = parse_observed(json.dumps([_row("a1", "cc-w-abc-1"), _row("a1", "cc-w-abc-2"), _row("b1", "x")]))
    assert [s.id for s in observed] == ["b1"]
    assert observed.anomalies.counts == {"duplicate_id": 0, "missing_id": 0, "id_under_two_names": 1}
    assert observed.anomalies.held_names == frozenset({"cc-w-abc-1", "cc-w-abc-2"})


def test_a_clean_answer_has_no_anomalies() -> None:
    observed = parse_observed(json.dumps([_row("a1", "n1"), _row("b1", "n2")]))
    assert not observed.anomalies.suspect


@pytest.mark.parametrize(("figures", "reason"), [
    ({"cpu_cores_available": math.nan}, "NotANumber"),
    ({"ram_available_bytes": math.inf}, "Infinite"),
    ({"ram_requested_bytes": -math.inf}, "Infinite"),
    ({"cpu_cores_requested": -10.0}, "Negative"),
    ({"cpu_cores_available": 0.0}, "ZeroCapacity"),
    ({"session_max_ram_bytes": 0.0}, "ZeroCapacity"),
])
def test_stats_that_cannot_be_believed_say_why(figures: dict[str, float], reason: str) -> None:
    good = {"cpu_cores_requested": 2.0, "cpu_cores_available": 64.0, "ram_requested_bytes": 0.0,
            "ram_available_bytes": 1e11, "session_max_cpu_cores": 16.0, "session_max_ram_bytes": 6e10}
    problem = stats_problem(PlatformStats(**{**good, **figures}))
    assert problem is not None and problem[0] == reason
    [attribute] = figures
    assert attribute in problem[1]


def test_sane_stats_and_missing_figures_are_believed() -> None:
    """Nothing in use is fine (requested 0); a figure the service did not send is not a problem."""
    assert stats_problem(PlatformStats(cpu_cores_requested=0.0, cpu_cores_available=8.0)) is None
    assert stats_problem(PlatformStats()) is None
