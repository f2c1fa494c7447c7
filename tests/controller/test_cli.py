"""The controller's own commands: validate, plan, status and run --once, in-process."""

from __future__ import annotations

import json

import pytest

from controller.cli import main
from tests.controller.conftest import TOKEN, manifest


@pytest.fixture
def env(monkeypatch, service, tmp_path):
    """Point the commands at the simulated service, with a private status file."""
    monkeypatch.setenv("CANFAR_URL", service.url)
    monkeypatch.setenv("CANFAR_TOKEN", TOKEN)
    monkeypatch.setenv("CANFAR_CONTROLLER_STATUS_FILE", str(tmp_path / "status.json"))
    monkeypatch.setenv("CANFAR_CONTROLLER_METRICS_PORT", "0")
    return service


def test_validate_accepts_a_good_directory(state, capsys):
    """validate exits 0 and names the sets it found."""
    (state / "w.yaml").write_text(manifest("workers", 2) + "---\n" + manifest("batch", 1))
    assert main(["validate", str(state)]) == 0
    assert "2 SessionSet(s) valid: batch, workers" in capsys.readouterr().out


def test_validate_reports_every_error_with_its_location(state, capsys):
    """validate exits 1 and prints file:line: field: message for each problem."""
    (state / "a.yaml").write_text(manifest("alpha", 2).replace("replicas: 2", "replicas: two"))
    (state / "b.yaml").write_text(manifest("beta", 1).replace("    ram: 1\n", "    ram: 1\n    disk: 5\n"))
    assert main(["validate", str(state)]) == 1
    err = capsys.readouterr().err
    assert f"{state}/a.yaml:6: spec.replicas: Input should be a valid integer" in err
    assert f"{state}/b.yaml:13: spec.template.disk: unknown field" in err
    assert "2 error(s)" in err


def test_validate_checks_names_against_the_prefix(state, capsys):
    """A set name too long for the given prefix fails validation."""
    (state / "a.yaml").write_text(manifest("w" * 45, 1))
    assert main(["validate", str(state), "--prefix", "cc"]) == 0
    assert main(["validate", str(state), "--prefix", "my-team-ctl"]) == 1
    assert "must be at most 40 characters" in capsys.readouterr().err


def test_plan_exit_codes_follow_what_would_change(env, state, capsys):
    """plan exits 2 with the creates listed, then 0 once a pass has converged."""
    (state / "w.yaml").write_text(manifest("workers", 2))
    assert main(["plan", "--state", str(state)]) == 2
    out = capsys.readouterr().out
    assert "create cc-workers-" in out and "slot 2" in out
    assert main(["run", "--state", str(state), "--once"]) == 0
    capsys.readouterr()
    assert main(["plan", "--state", str(state), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["changes"] is False


def test_plan_fails_with_exit_1_when_the_service_is_unreachable(monkeypatch, state, capsys):
    """plan exits 1, with the reason, when it cannot list sessions."""
    monkeypatch.setenv("CANFAR_URL", "http://127.0.0.1:9/skaha/v1")
    monkeypatch.setenv("CANFAR_TOKEN", TOKEN)
    monkeypatch.setenv("CANFAR_RETRIES", "0")
    (state / "w.yaml").write_text(manifest("workers", 2))
    assert main(["plan", "--state", str(state)]) == 1
    assert "canfar-controller: error:" in capsys.readouterr().err


def test_rejected_create_keeps_the_server_message_and_other_sets_carry_on(env, state, capsys):
    """A set whose image the service refuses shows the server's text; the other set is created."""
    (state / "good.yaml").write_text(manifest("good", 2))
    bad = manifest("bad", 1).replace("images.canfar.net/skaha/astroml:latest", "docker.io/library/python:3.12")
    (state / "bad.yaml").write_text(bad)
    assert main(["run", "--state", str(state), "--once"]) == 1  # a partial pass is not a success
    assert sorted(s["name"][-1] for s in env.live("cc-good-")) == ["1", "2"]
    capsys.readouterr()
    assert main(["status", "--state", str(state), "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["sets"]
    assert "must come from one of" in rows["bad"]["last_error"]
    assert rows["good"]["last_error"] is None and rows["good"]["desired"] == 2


def test_status_table_shows_invalid_sets(env, state, capsys):
    """status lists each set, and an invalid one with its first error."""
    (state / "good.yaml").write_text(manifest("good", 1))
    (state / "broken.yaml").write_text(manifest("broken", 1).replace("replicas: 1", "replicas: -3"))
    assert main(["status", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["SESSIONSET", "DESIRED", "RUNNING", "PENDING", "ENDED", "STATE"]
    assert "invalid:" in next(line for line in out.splitlines() if line.startswith("broken"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--once"], "no state directory"),
        (["run", "--once", "--state", "/nonexistent/dir"], "does not exist"),
        (["run", "--once", "--state", ".", "--prefix", "Bad_Prefix"], "prefix 'Bad_Prefix' must be a lowercase DNS label"),
        (["run", "--once", "--state", ".", "--interval", "0"], "interval"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(env, monkeypatch, argv, message, capsys):
    """Impossible settings exit 1 and say which setting is wrong."""
    monkeypatch.delenv("CANFAR_CONTROLLER_STATE", raising=False)
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_token_never_appears_in_status_or_output(env, state, tmp_path, capsys):
    """The bearer token is in no output and not in the status file."""
    (state / "w.yaml").write_text(manifest("workers", 1))
    main(["run", "--state", str(state), "--once"])
    main(["status", "--state", str(state), "-o", "json"])
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert TOKEN not in (tmp_path / "status.json").read_text()
