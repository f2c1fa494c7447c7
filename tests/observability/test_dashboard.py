"""The Grafana dashboard: typed against Grafana's published schema, and querying only real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.conftest import DASHBOARD, ROOT, sample_names
from tests.observability.promql import metric_names
from tests.tools import missing, require_tool

TOOLS = ROOT / ".ci" / "tools" / "node_modules"
#: Grafana's built-in variables, replaced by a plausible value so promtool can parse the PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$sessionset": ".*"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query target."""
    return [
        (panel["title"], target["expr"]) for panel in panels(board) for target in panel.get("targets", [])
    ]


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def test_dashboard_type_checks_against_grafana_schema(tmp_path: Path) -> None:
    """The JSON satisfies @grafana/schema's Dashboard type under tsc --strict (unknown keys fail too)."""
    tsc = require_tool("tsc")
    if not (TOOLS / "@grafana" / "schema").is_dir():
        missing("@grafana/schema in .ci/tools/node_modules")
    (tmp_path / "node_modules").symlink_to(TOOLS)
    check = tmp_path / "check.ts"
    check.write_text(
        "import type { Dashboard } from '@grafana/schema';\n"
        f"export const dashboard = ({DASHBOARD.read_text()}) satisfies Dashboard;\n"
    )
    result = subprocess.run(
        [
            tsc,
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--moduleResolution",
            "bundler",
            "--module",
            "esnext",
            "--target",
            "es2022",
            str(check),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_expression_reads_exported_metrics(scrape: Callable[[], str]) -> None:
    """Each metric name in each panel query is in a real scrape of a populated controller."""
    exported = sample_names(scrape())
    unknown = {
        (title, name)
        for title, expr in expressions(dashboard())
        for name in metric_names(expr)
        if name not in exported
    }
    assert unknown == set()


def test_every_query_selects_a_metric() -> None:
    """No query is empty or made of functions alone (the check above would then pass vacuously)."""
    assert all(metric_names(expr) for _, expr in expressions(dashboard()))


def test_expressions_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (Grafana variables substituted) as a recording rule."""
    promtool = require_tool("promtool")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query:{i}", "expr": substitute(expr)}
                    for i, (_, expr) in enumerate(expressions(dashboard()))
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "metric",
    [
        "canfar_platform_cpu_cores_requested",
        "canfar_platform_cpu_cores_available",
        "canfar_platform_ram_requested_bytes",
        "canfar_platform_ram_available_bytes",
        "canfar_platform_session_max_cpu_cores",
        "canfar_platform_session_max_ram_bytes",
        "canfar_controller_sessions",
        "canfar_controller_sessionset_desired_replicas",
        "canfar_controller_sessions_created_total",
        "canfar_controller_sessions_destroyed_total",
        "canfar_controller_create_failures_total",
        "canfar_controller_reconcile_total",
        "canfar_controller_reconcile_duration_seconds_bucket",
        "canfar_controller_api_requests_total",
        "canfar_controller_api_request_duration_seconds_bucket",
        "canfar_controller_sessionset_condition",
        "canfar_controller_sessionset_condition_reason",
        "canfar_controller_sessionset_backoff_seconds",
        "canfar_controller_sessionset_uncertain_creates",
        "canfar_controller_sessionset_held_slots",
        "canfar_controller_suspect_lists_total",
        "canfar_controller_sessions_renewed_total",
        "canfar_controller_renew_failures_total",
        "canfar_controller_sessionset_unschedulable_sessions",
        "canfar_controller_sessionset_next_expiry_timestamp_seconds",
        "canfar_controller_sessionset_requested_cpu_cores",
        "canfar_controller_sessionset_requested_ram_bytes",
        "canfar_controller_sessionset_requested_gpus",
        "canfar_controller_sessionset_cpu_cores_in_use",
        "canfar_controller_sessionset_ram_in_use_bytes",
        "canfar_controller_account_requested_cpu_cores",
        "canfar_controller_account_requested_ram_bytes",
        "canfar_controller_account_requested_gpus",
        "canfar_controller_credential_expiry_timestamp_seconds",
        "canfar_controller_credential_usable",
        "canfar_controller_credential_refreshes_total",
        "canfar_controller_autoscale_signal_value",
        "canfar_controller_autoscale_recommended_replicas",
        "canfar_controller_autoscale_signal_failures_total",
    ],
)
def test_dashboard_shows(metric: str) -> None:
    """Each figure the issue asks the dashboard to show is queried by some panel."""
    assert any(metric in metric_names(expr) for _, expr in expressions(dashboard()))


def test_datasource_and_sessionset_variables() -> None:
    """A Prometheus datasource variable and a sessionset variable fed by the desired-replicas series."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    assert (
        variables["sessionset"]["query"]
        == "label_values(canfar_controller_sessionset_desired_replicas, sessionset)"
    )
    assert variables["sessionset"]["datasource"]["uid"] == "${datasource}"


def test_every_query_uses_the_datasource_variable() -> None:
    """Panels and targets follow the datasource variable, so the dashboard imports anywhere."""
    board = dashboard()
    refs = [p["datasource"] for p in panels(board) if p["type"] != "row"]
    refs += [t["datasource"] for p in panels(board) for t in p.get("targets", [])]
    assert {json.dumps(ref, sort_keys=True) for ref in refs} == {
        '{"type": "prometheus", "uid": "${datasource}"}'
    }


def test_conditions_are_shown_per_set_over_time() -> None:
    """A state timeline shows each set's conditions that are True, one row per set and condition."""
    timelines = [p for p in panels(dashboard()) if p["type"] == "state-timeline"]
    assert [
        (t["expr"], t["legendFormat"]) for p in timelines for t in p["targets"]
    ] == [
        (
            'max by (sessionset, condition) (canfar_controller_sessionset_condition{sessionset=~"$sessionset", '
            'status="True"})',
            "{{sessionset}} {{condition}}",
        )
    ]


def test_set_panels_filter_by_the_sessionset_variable() -> None:
    """Every query of a per-set metric honours the sessionset variable."""
    per_set = re.compile(
        r"canfar_controller_(sessions|sessionset_\w+|sessions_\w+_total|create_failures_total|renew_failures_total)\b"
    )
    unfiltered = [
        (title, expr)
        for title, expr in expressions(dashboard())
        if per_set.search(expr) and "$sessionset" not in expr
    ]
    assert unfiltered == []


def test_panel_ids_are_unique_and_uid_is_set() -> None:
    """Grafana needs unique panel ids; the uid keeps links stable across imports."""
    board = dashboard()
    ids = [p["id"] for p in panels(board)]
    assert (len(ids) == len(set(ids)), board["uid"], board["title"]) == (
        True,
        "canfar-controller",
        "CANFAR controller",
    )


def test_utilisation_row_with_its_panels() -> None:
    """A "Utilisation" row (before "Autoscaling"): utilisation %, the controller's share, per-set resources, GPUs."""
    board = dashboard()
    rows = [p for p in board["panels"] if p["type"] == "row"]
    start = board["panels"].index(next(r for r in rows if r["title"] == "Utilisation"))
    end = board["panels"].index(next(r for r in rows if r["title"] == "Autoscaling"))
    titles = [p["title"] for p in board["panels"][start + 1:end]]
    assert ([r["title"] for r in rows[-2:]], titles) == (["Utilisation", "Autoscaling"], [
        "Platform utilisation", "Share of the platform's cores", "Share of the platform's RAM",
        "CPU cores requested per set", "RAM requested per set", "GPUs requested",
        "In use vs requested (efficiency)", "Resources per set now",
    ])


def test_gpus_are_never_compared_with_a_capacity() -> None:
    """The service reports no GPU capacity, so no query divides GPUs by anything or invents a total."""
    gpu_queries = [expr for _, expr in expressions(dashboard()) if "gpus" in expr]
    assert gpu_queries and [expr for expr in gpu_queries if "/" in expr or "capacity" in expr] == []


def test_autoscaling_row_comes_last_with_signal_recommendation_and_limits() -> None:
    """The "Autoscaling" row is the last one, and its panels show signals vs sessions, the recommendation
    vs the count in force, and the limits and failed reads."""
    panels = dashboard()["panels"]
    rows = [i for i, panel in enumerate(panels) if panel["type"] == "row"]
    assert panels[rows[-1]]["title"] == "Autoscaling"
    shown = {name for panel in panels[rows[-1] + 1:] for target in panel["targets"]
             for name in metric_names(target["expr"])}
    assert {"canfar_controller_autoscale_signal_value", "canfar_controller_sessions",
            "canfar_controller_autoscale_recommended_replicas", "canfar_controller_sessionset_desired_replicas",
            "canfar_controller_sessionset_condition", "canfar_controller_autoscale_signal_failures_total"} <= shown
