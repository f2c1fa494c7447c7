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
        "CanfarSessionSetCrashLooping",
        "CanfarSessionSetCreateFailing",
        "CanfarSessionSetWaitingForCapacity",
        "CanfarSessionSetUnschedulable",
        "CanfarSessionSetRolloutStalled",
        "CanfarSessionSetSessionExpiring",
        "CanfarSessionSetRenewFailing",
        "CanfarControllerSuspectLists",
        "CanfarCredentialExpiresSoon",
        "CanfarCredentialInvalid",
        "CanfarControllerMemoryUnwritable",
        "CanfarSessionSetScalingInactive",
    } <= names


def test_every_alert_says_what_to_do() -> None:
    """Each rule has a summary and a description, a severity, and is unit-tested in alerts_test.yaml."""
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yaml").read_text())["tests"]
    firing = {
        case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")
    }
    silent = {
        case["alertname"] for test in tests for case in test["alert_rule_test"] if not case.get("exp_alerts")
    }
    incomplete = [
        rule["alert"]
        for rule in rules
        if not (rule["annotations"].get("summary") and rule["annotations"].get("description"))
        or rule["labels"].get("severity") not in {"warning", "critical"}
    ]
    assert incomplete == []
    names = {rule["alert"] for rule in rules}
    assert (names - firing, names - silent) == (set(), set())


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
