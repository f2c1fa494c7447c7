"""The test helper that finds metric names in PromQL must itself be right, or checks pass vacuously."""

from __future__ import annotations

import pytest

from tests.observability.promql import metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (sessionset, status) (canfar_controller_sessions{sessionset=~"$sessionset"}) > 0',
            {"canfar_controller_sessions"},
        ),
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[$__rate_interval])))", {"a_bucket"}),
        ("time() - max(b_timestamp_seconds)", {"b_timestamp_seconds"}),
        ("x / on (job) group_left(version) y > 1e9", {"x", "y"}),
        ("a unless on (s) (b == 1) or c offset 5m", {"a", "b", "c"}),
        ('absent(up{job="canfar-controller"})', {"up"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    """Metric names are found; functions, keywords, labels, numbers and variables are not."""
    assert metric_names(expr) == names
