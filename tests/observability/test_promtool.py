"""The real promtool judges the exposition and the alert rules (Debian's prometheus package)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import yaml

from tests.observability.conftest import PROMETHEUS_DIR, sample_names
from tests.observability.promql import metric_names
from tests.tools import require_tool

ALERTS = PROMETHEUS_DIR / "alerts.yaml"
#: Series Prometheus makes itself, not the controller.
PROMETHEUS_OWN = {"up"}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_exposition_passes_promtool_check_metrics(scrape: Callable[[], str]) -> None:
    """The /metrics text of a populated controller passes promtool's parser and linter, without a remark."""
    result = promtool("check", "metrics", stdin=scrape())
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_alert_rules_pass_promtool_check_rules() -> None:
    """alerts.yaml parses and every expression is valid PromQL."""
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    """The alert unit tests (firing and near misses) pass under promtool test rules."""
    result = promtool("test", "rules", str(PROMETHEUS_DIR / "alerts_test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_the_issue() -> None:
    """There is a rule for each situation the issue asks to alert on."""
    names = {
        rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    }
    assert {
        "CanfarControllerDown",
        "CanfarControllerLoopStuck",
        "CanfarControllerReconcileFailing",
        "CanfarSessionSetBelowDesired",
        "CanfarControllerCreateFailures",
        "CanfarPlatformCPUNearlyExhausted",
        "CanfarPlatformRAMNearlyExhausted",
        "CanfarPlatformStatsStale",
    } <= names


def test_alerts_read_only_exported_metrics(scrape: Callable[[], str]) -> None:
    """Every metric an alert reads is in a real scrape of the controller (or is Prometheus' own `up`)."""
    exported = sample_names(scrape()) | PROMETHEUS_OWN
    used = {
        rule["alert"]: metric_names(rule["expr"])
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    }
    assert all(used.values())
    assert {alert: names - exported for alert, names in used.items() if names - exported} == {}
