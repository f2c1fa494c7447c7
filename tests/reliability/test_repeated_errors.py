"""A repeated error is logged once, then once per 10 minutes with a count (a 401 every pass, say)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from controller.observability.repeats import RepeatFilter
from controller.outcome import REPEAT_AFTER, OutcomeHandler
from controller.simulator import ManualClock
from tests.reliability.rig import TOKEN, Rig


def captured(rig: Rig) -> LogCapture:
    """Route the rig's pass reports into a capture, on the rig's manual clock."""
    capture = LogCapture()
    rig.handler = OutcomeHandler(metrics=rig.metrics, health=rig.health, status_file=rig.status_file,
                                 interval=rig.interval, clock=rig.clock,
                                 log=structlog.wrap_logger(None, processors=[capture]))
    return capture


def warnings(capture: LogCapture) -> list[dict[str, Any]]:
    return [entry for entry in capture.entries if entry["log_level"] == "warning"]


def test_a_401_every_pass_is_logged_once_then_every_10_minutes_with_a_count(rig: Rig) -> None:
    capture = captured(rig)
    rig.token_file.write_text("not-the-token-0123456789")
    rig.passes(45, every=30.0)  # 22 minutes, a pass every 30 s
    said = warnings(capture)
    assert [entry["event"] for entry in said] == ["this pass changes nothing"] * 3
    assert "HTTP 401" in said[0]["reason"] and "suppressed_repeats" not in said[0]
    assert [entry.get("suppressed_repeats") for entry in said[1:]] == [19, 19]  # 20 passes per 10 min, 1 said
    assert [entry["event"] for entry in capture.entries if entry["log_level"] == "info"].count("pass done") == 3

    rig.token_file.write_text(TOKEN)
    rig.clock.advance(30.0)
    rig.run_pass()
    assert capture.entries[-2]["event"] == "listing works again"
    rig.token_file.write_text("not-the-token-0123456789")
    rig.clock.advance(30.0)
    rig.run_pass()
    assert warnings(capture)[-1]["event"] == "this pass changes nothing"  # a new failure is news at once
    assert len(warnings(capture)) == 4


def test_a_different_error_is_news_at_once(rig: Rig) -> None:
    capture = captured(rig)
    rig.token_file.write_text("not-the-token-0123456789")
    rig.passes(3, every=30.0)
    rig.simulator.inject_fault(method="GET", path="/session", status=403, count=None)
    rig.clock.advance(30.0)
    rig.run_pass()
    reasons = [entry["reason"] for entry in warnings(capture)]
    assert len(reasons) == 2 and "HTTP 401" in reasons[0] and "HTTP 403" in reasons[1]


def test_the_clients_retry_lines_repeat_once_per_10_minutes(caplog: pytest.LogCaptureFixture) -> None:
    """While the service is down every pass retries the same way: the daemon's filter lets one through per 10 min."""
    clock = ManualClock()
    retries = RepeatFilter(REPEAT_AFTER, clock=clock)
    log = logging.getLogger("controller.client")
    log.addFilter(retries)
    caplog.set_level(logging.WARNING, logger="controller.client")
    try:
        for attempt in range(41):  # a pass every 30 s for 20 minutes, each retrying once after its own delay
            log.warning("%s; retry %d of %d in %.2fs", "list failed (no response): ConnectError", 1, 3,
                        0.3 + attempt / 100)
            clock.advance(30.0)
        log.warning("%s; retry %d of %d in %.2fs", "stats failed (HTTP 503)", 1, 3, 0.5)  # another failure: news
    finally:
        log.removeFilter(retries)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 4
    assert lines[0] == "list failed (no response): ConnectError; retry 1 of 3 in 0.30s"
    assert lines[1].endswith("; retry 1 of 3 in 0.50s (suppressed_repeats=19)")
    assert lines[3].startswith("stats failed (HTTP 503)")
