"""configure_logging: JSON lines off a terminal, console on one, levels, and token redaction."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from controller.errors import ConfigError
from controller.observability import logs
from controller.observability.logs import REDACTED, SecretRedactor, configure_logging, register_secret

TOKEN = "s3cr3t-T0ken-value-abcdef"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test configures logging its own way, with no secrets left by another; restore afterwards."""
    monkeypatch.setattr(logs, "_REDACTOR", SecretRedactor())
    monkeypatch.delenv("CANFAR_TOKEN", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_off_a_terminal() -> None:
    """Not on a terminal: one JSON object per line with level, timestamp, logger and fields."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    structlog.get_logger("controller.test").info("pass done", result="success")
    [line] = json_lines(stream)
    assert {k: line[k] for k in ("event", "level", "result", "logger")} == {
        "event": "pass done",
        "level": "info",
        "result": "success",
        "logger": "controller.test",
    }
    assert line["timestamp"].endswith("Z")


def test_console_on_a_terminal() -> None:
    """On a terminal the output is the readable console format, not JSON."""
    stream = Terminal()
    configure_logging("info", stream=stream)
    structlog.get_logger().info("pass done", result="success")
    text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())  # colours: it is a terminal
    assert "pass done" in text and "result=success" in text and not text.startswith("{")


def test_json_can_be_forced_on_a_terminal() -> None:
    """json=True wins over the terminal check (a container with a TTY still ships JSON)."""
    stream = Terminal()
    configure_logging("info", json=True, stream=stream)
    structlog.get_logger().info("hello")
    assert json_lines(stream)[0]["event"] == "hello"


@pytest.mark.parametrize(
    ("level", "shown"), [("debug", ["debug", "info"]), ("INFO", ["info"]), ("warning", [])]
)
def test_level_filters(level: str, shown: list[str]) -> None:
    """--log-level drops the events below it."""
    stream = io.StringIO()
    configure_logging(level, stream=stream)
    log = structlog.get_logger()
    log.debug("debug")
    log.info("info")
    assert [line["event"] for line in json_lines(stream)] == shown


def test_unknown_level_is_a_config_error() -> None:
    """A typo in --log-level is reported, naming the valid levels."""
    with pytest.raises(ConfigError, match=r"verbose.*debug"):
        configure_logging("verbose", stream=io.StringIO())


def test_bound_context_rides_along() -> None:
    """Context bound for a pass (contextvars) and on a logger both appear on every line."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    structlog.contextvars.bind_contextvars(pass_id="p-1")
    structlog.get_logger().bind(sessionset="workers").info("created", session_id="abc12345")
    [line] = json_lines(stream)
    assert (line["pass_id"], line["sessionset"], line["session_id"]) == ("p-1", "workers", "abc12345")


def test_library_records_are_json_too() -> None:
    """Stdlib records of libraries (APScheduler, httpx) come out in the same JSON shape."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    logging.getLogger("apscheduler.scheduler").warning("job %s missed", "reconcile")
    [line] = json_lines(stream)
    assert (line["event"], line["level"], line["logger"]) == (
        "job reconcile missed",
        "warning",
        "apscheduler.scheduler",
    )


@pytest.mark.parametrize(
    "emit",
    [
        pytest.param(
            lambda log: log.info("request", headers={"Authorization": f"Bearer {TOKEN}"}), id="header"
        ),
        pytest.param(lambda log: log.info(f"sending Authorization: Bearer {TOKEN}"), id="bearer-in-text"),
        pytest.param(lambda log: log.info("settings", token=TOKEN), id="sensitive-key"),
        pytest.param(lambda log: log.info("settings", access_token=TOKEN), id="suffixed-key"),
        pytest.param(lambda log: log.info(f"url https://x/?token={TOKEN}&a=1"), id="query-string"),
        pytest.param(lambda log: log.info(f'body {{"password": "{TOKEN}"}}'), id="json-text"),
        pytest.param(lambda log: log.info("nested", data=[{"deep": ("x", f"Bearer {TOKEN}")}]), id="nested"),
    ],
)
def test_token_shapes_are_redacted_unconfigured(emit: Any) -> None:
    """Credentials recognisable by their shape or key are scrubbed without being configured."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    emit(structlog.get_logger())
    output = stream.getvalue()
    assert TOKEN not in output and REDACTED in output


@pytest.mark.parametrize(
    "emit",
    [
        pytest.param(lambda log: log.info("verbatim", note=f"the token is {TOKEN}!"), id="text"),
        pytest.param(lambda log: log.info("object", error=ValueError(f"bad {TOKEN}")), id="object"),
        pytest.param(lambda log: log.info(f"{TOKEN}"), id="event"),
    ],
)
def test_configured_token_is_redacted_anywhere(emit: Any) -> None:
    """The configured token is scrubbed wherever it appears, even in plain prose or an object."""
    stream = io.StringIO()
    configure_logging("info", stream=stream, secrets=[TOKEN])
    emit(structlog.get_logger())
    output = stream.getvalue()
    assert TOKEN not in output and REDACTED in output


def test_registered_secret_is_redacted() -> None:
    """A token registered after configuration (read later from a file) is scrubbed from then on."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    register_secret("late-token-0123456789")
    structlog.get_logger().info("saw late-token-0123456789")
    assert json_lines(stream)[0]["event"] == f"saw {REDACTED}"


def test_traceback_is_redacted() -> None:
    """A token inside an exception message is scrubbed from the rendered traceback too."""
    stream = io.StringIO()
    configure_logging("info", stream=stream, secrets=[TOKEN])
    try:
        raise RuntimeError(f"server echoed {TOKEN}")
    except RuntimeError:
        structlog.get_logger().exception("pass failed")
    [line] = json_lines(stream)
    assert "RuntimeError" in line["exception"] and TOKEN not in line["exception"]


def test_token_from_environment_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """$CANFAR_TOKEN is scrubbed even when nobody passed it explicitly."""
    other = "environment-token-987654"
    monkeypatch.setenv("CANFAR_TOKEN", other)
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    structlog.get_logger().info(f"oops {other}")
    assert other not in stream.getvalue()


def test_jwt_is_redacted_without_being_configured() -> None:
    """Anything shaped like a JWT is scrubbed even if it is not the configured token."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXZhbHVl"
    assert SecretRedactor().redact_text(f"got {jwt} back") == f"got {REDACTED} back"


def test_ordinary_text_is_untouched() -> None:
    """Redaction leaves ordinary events alone (short secrets are not replaced verbatim)."""
    redactor = SecretRedactor(["abc"])
    event = {"event": "created abc12345", "sessionset": "workers", "count": 3, "token_file": "/run/token"}
    assert redactor(None, "info", dict(event)) == event


@pytest.mark.parametrize(
    "text",
    [
        "invalid bearer token",
        "Bearer realm is missing",
        "token: expired",
        "access token=invalid, try again",
        "no token set: set CANFAR_TOKEN or CANFAR_TOKEN_FILE (or pass --token-file)",
        "a registry-auth: required header",
    ],
)
def test_prose_about_credentials_keeps_its_words(text: str) -> None:
    """Server text that talks about tokens is not mangled: only values shaped like secrets are replaced."""
    assert SecretRedactor().redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bearer abc123def456", f"Bearer {REDACTED}"),
        ("bearer averyveryverylongtoken", f"bearer {REDACTED}"),
        ("token=0a1b2c3d4e5f", f"token={REDACTED}"),
        ("password: letmein", f"password: {REDACTED}"),  # passwords may be words
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {REDACTED}"),
    ],
)
def test_secret_values_are_still_replaced(text: str, expected: str) -> None:
    """Anything shaped like a token after Bearer, token= or a password key is still scrubbed."""
    assert SecretRedactor().redact_text(text) == expected
