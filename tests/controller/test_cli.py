"""The controller's own commands: validate, plan, status and run --once, in-process."""

from __future__ import annotations

import argparse
import json
import re
import socket
import time
from pathlib import Path

import pytest

from controller.cli import main
from tests.controller.conftest import TOKEN, manifest, wait_until


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


def test_status_table_shows_what_the_daemon_recorded(env, state, capsys):
    """status lists each set as the last pass recorded it, an invalid one with its first error, then the pass."""
    (state / "good.yaml").write_text(manifest("good", 1))
    (state / "broken.yaml").write_text(manifest("broken", 1).replace("replicas: 1", "replicas: -3"))
    main(["run", "--state", str(state), "--once"])
    capsys.readouterr()
    assert main(["status", "--state", str(state)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SESSIONSET", "DESIRED", "READY", "RUNNING", "PENDING", "ENDED", "CONDITIONS", "STATE"]
    assert lines[1].startswith("broken") and "invalid:" in lines[1]
    assert lines[2].split()[:2] == ["good", "1"]
    assert lines[-1].startswith("last pass 1 at ") and "s ago): " in lines[-1]


def test_status_needs_no_server(env, state, capsys):
    """status reads the status file only: it sends nothing, and works with the service gone."""
    (state / "w.yaml").write_text(manifest("workers", 2))
    assert main(["run", "--state", str(state), "--once"]) == 0
    capsys.readouterr()
    seen = len(env.simulator.requests)
    assert main(["status", "--state", str(state), "--server", "http://127.0.0.1:9/skaha/v1", "-o", "json"]) == 0
    assert len(env.simulator.requests) == seen
    document = json.loads(capsys.readouterr().out)
    assert (document["pass_id"], document["result"], document["sets"]["workers"]["desired"]) == (1, "success", 2)


def test_status_without_a_status_file_says_so(env, state, capsys):
    """Before the daemon's first pass there is nothing to show: exit 1 and one line saying why."""
    (state / "w.yaml").write_text(manifest("workers", 2))
    assert main(["status", "--state", str(state)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("canfar-controller: error: no status file yet at ")
    assert "writes it after its first pass" in line


@pytest.mark.parametrize("command", ["plan", "status", "validate"])
@pytest.mark.parametrize(("make", "problem"), [
    (lambda path: None, "does not exist"),
    (lambda path: path.write_text("not a directory"), "is not a directory"),
])
def test_a_bad_state_directory_is_one_line_and_exit_1(env, tmp_path, capsys, command, make, problem):
    """plan, status and validate refuse a missing state directory, or a file, in one line."""
    path = tmp_path / "nowhere"
    make(path)
    argv = [command, str(path)] if command == "validate" else [command, "--state", str(path)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err == f"canfar-controller: error: state directory {path} {problem}\n"
    assert "nothing to do" not in captured.out


def test_plan_exits_1_when_a_manifest_is_invalid(env, state, capsys):
    """plan still shows what it would do for the good sets, lists the bad manifest, and exits 1."""
    (state / "good.yaml").write_text(manifest("good", 1))
    (state / "bad.yaml").write_text(manifest("bad", 1).replace("cmd: \"sleep\"", "cmd: \"sleep 10\""))
    assert main(["plan", "--state", str(state)]) == 1
    captured = capsys.readouterr()
    assert "create cc-good-" in captured.out
    assert "invalid: " in captured.out and "spec.template.cmd: must be a single executable" in captured.out
    assert captured.err.startswith("canfar-controller: error: 1 manifest error(s) in ")


def test_plan_help_lists_its_exit_codes(capsys):
    """plan --help ends with what each exit status means."""
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "exit status:" in out
    for code in ("0  nothing to do", "2  the next pass would create or destroy", "1  an error"):
        assert code in out


def test_every_flag_has_help(capsys):
    """Each option of each command (and subcommand) explains itself in --help."""
    from controller.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    missing = [f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
               for parser in parsers(build_parser()) for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert missing == []


def test_the_default_status_file_is_per_state_directory_server_and_prefix(
    service, state, tmp_path, monkeypatch, capsys
):
    """Without --status-file, run writes under $XDG_STATE_HOME per state dir, server and prefix, and status finds it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CANFAR_URL", service.url)
    monkeypatch.setenv("CANFAR_TOKEN", TOKEN)
    monkeypatch.setenv("CANFAR_CONTROLLER_METRICS_PORT", "0")
    monkeypatch.delenv("CANFAR_CONTROLLER_STATUS_FILE", raising=False)
    (state / "w.yaml").write_text(manifest("workers", 1))
    assert main(["run", "--state", str(state), "--once"]) == 0
    [written] = (tmp_path / "xdg" / "canfar-controller").glob("*/status.json")
    assert re.fullmatch(r"state-[0-9a-f]{8}", written.parent.name)
    assert main(["run", "--state", str(state), "--once", "--prefix", "other"]) == 0
    assert len(list((tmp_path / "xdg" / "canfar-controller").glob("*/status.json"))) == 2
    capsys.readouterr()
    assert main(["status", "--state", str(state), "-o", "json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["sets"]) == ["workers"]
    explicit = tmp_path / "mine.json"
    assert main(["run", "--state", str(state), "--once", "--status-file", str(explicit)]) == 0
    assert explicit.exists()
    assert len(list((tmp_path / "xdg" / "canfar-controller").glob("*/status.json"))) == 2


def test_a_busy_metrics_port_names_the_flag(env, state, capsys):
    """When the metrics port is taken, the error says which flag chooses another."""
    (state / "w.yaml").write_text(manifest("workers", 1))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["run", "--state", str(state), "--metrics-port", str(port)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"canfar-controller: error: cannot serve metrics on 127.0.0.1:{port}: ")
    assert "choose another --metrics-port" in line


def test_concurrency_is_a_flag_and_a_variable(env, state, monkeypatch, capsys):
    """--concurrency (or CANFAR_CONTROLLER_CONCURRENCY) is accepted within 1..128 and refused outside."""
    (state / "w.yaml").write_text(manifest("workers", 3))
    assert main(["run", "--state", str(state), "--once", "--concurrency", "2"]) == 0
    monkeypatch.setenv("CANFAR_CONTROLLER_CONCURRENCY", "129")
    assert main(["run", "--state", str(state), "--once"]) == 1
    assert "concurrency: Input should be less than or equal to 128" in capsys.readouterr().err
    assert main(["run", "--state", str(state), "--once", "--concurrency", "1"]) == 0


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


EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (["sessions", "create", "--image", "x"], "the following arguments are required: --name"),
        (["status", "-o", "yaml"], "argument -o/--output: invalid choice: 'yaml'"),
    ],
)
def test_usage_mistakes_use_the_same_error_prefix(argv, message, capsys):
    """argparse's own complaints read like every other error, and exit 2."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"canfar-controller: error: {message}")


def test_restart_runs_a_complete_set_afresh(env, state, capsys):
    """A batch set that finished is complete; `restart SET` makes the next pass run it again."""
    (state / "batch.yaml").write_text(manifest("batch", 2, cmd="true", args=None, policy="Never"))
    assert main(["run", "--state", str(state), "--once"]) == 0
    wait_until(lambda: [s["status"] for s in env.sessions()] == ["Completed", "Completed"], what="both jobs done")
    main(["run", "--state", str(state), "--once"])
    main(["run", "--state", str(state), "--once"])
    capsys.readouterr()
    assert main(["status", "--state", str(state), "-o", "json"]) == 0
    row = json.loads(capsys.readouterr().out)["sets"]["batch"]
    assert row["complete"] and {c["type"]: c["status"] for c in row["conditions"]}["Complete"] == "True"
    before = len(env.requests("POST"))
    assert main(["restart", "batch", "--state", str(state)]) == 0
    assert "restart of batch requested" in capsys.readouterr().out
    main(["run", "--state", str(state), "--once"])
    assert len(env.requests("POST")) == before + 2


def test_restart_of_an_unknown_set_is_refused(env, state, capsys):
    (state / "batch.yaml").write_text(manifest("batch", 1))
    assert main(["restart", "nosuch", "--state", str(state)]) == 1
    assert "no valid SessionSet named 'nosuch'" in capsys.readouterr().err


def test_status_names_an_unwritable_memory(env, state, tmp_path, capsys):
    """While the memory cannot be written, status says why, where, and that nothing is created."""
    from controller.statusfile import StatusDocument, write_status

    status_file = tmp_path / "status.json"
    write_status(status_file, StatusDocument(
        updated_at=time.time(), pass_id=3, result="partial", list_ok=True,
        memory_unwritable={"reason": "NoSpace", "path": "/var/lib/cc/status.memory.journal",
                           "message": "No space left on device", "since": 1.0}))
    assert main(["status", "--state", str(state), "--status-file", str(status_file)]) == 0
    out = capsys.readouterr().out
    assert ("MemoryUnwritable (NoSpace): /var/lib/cc/status.memory.journal: No space left on device; "
            "no session is created until the memory can be written") in out


def test_plan_and_run_once_destroy_nothing_when_the_list_repeats_rows(env, state, capsys):
    """Every row listed twice: plan shows nothing to do and a pass destroys nothing (one id, one session)."""
    (state / "w.yaml").write_text(manifest("workers", 2))
    assert main(["run", "--state", str(state), "--once"]) == 0
    ids = {s["id"] for s in env.live("cc-workers-")}
    env.simulator.inject_list_fault("repeated", count=None, keep=1.0)
    capsys.readouterr()
    assert main(["plan", "--state", str(state)]) == 0
    assert "destroy" not in capsys.readouterr().out
    assert main(["run", "--state", str(state), "--once"]) == 1  # a partial pass: the answer is suspect
    assert {s["id"] for s in env.live("cc-workers-")} == ids
    assert env.requests("DELETE") == []


def test_status_shows_an_autoscaled_set_its_signal_recommendation_and_count(env, state, tmp_path, capsys):
    """run --once reads a file signal; status shows the value, the recommendation and the count in force."""
    depth = tmp_path / "depth"
    depth.write_text("40\n")
    autoscaled = manifest("queue", 1).replace("  replicas: 1\n", "").replace(
        "spec:\n", f"spec:\n  autoscale: {{maxReplicas: 12, target: 5, signals: [{{file: {depth}}}],"
        " scaleUp: {maxStep: 3}}\n")
    (state / "q.yaml").write_text(autoscaled)
    assert main(["run", "--state", str(state), "--once"]) == 0
    assert sorted(s["name"][-1] for s in env.live("cc-queue-")) == ["1", "2", "3"]
    capsys.readouterr()
    assert main(["status", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert f"autoscale queue: file {depth} = 40; recommends 8, runs 3 (step limit: at most +3 per pass)" in out


def test_plan_reads_an_autoscaled_sets_signal(env, state, tmp_path, capsys):
    """plan reads the signals as they are now: 40 queued tasks, 5 per session, at most 3 more per pass."""
    depth = tmp_path / "depth"
    depth.write_text("40\n")
    autoscaled = manifest("queue", 1).replace("  replicas: 1\n", "").replace(
        "spec:\n", f"spec:\n  autoscale: {{maxReplicas: 12, target: 5, signals: [{{file: {depth}}}],"
        " scaleUp: {maxStep: 3}}\n")
    (state / "q.yaml").write_text(autoscaled)
    assert main(["plan", "--state", str(state)]) == 2
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("create cc-queue-")] and "slot 3" in out
    assert "slot 4" not in out


def test_the_terminating_limit_comes_from_the_flag_or_the_environment(tmp_path, monkeypatch):
    """--terminating-limit reaches the planner; CANFAR_CONTROLLER_TERMINATING_LIMIT is its environment twin."""
    from controller.cli import build_parser
    from controller.cli.controller import plan_options, settings_from
    from controller.errors import ConfigError

    parser = build_parser()
    monkeypatch.setenv("CANFAR_CONTROLLER_TERMINATING_LIMIT", "900")
    args = parser.parse_args(["run", "--state", str(tmp_path)])
    assert plan_options(settings_from(args)).terminating_limit == 900
    args = parser.parse_args(["run", "--state", str(tmp_path), "--terminating-limit", "120"])
    assert plan_options(settings_from(args)).terminating_limit == 120
    with pytest.raises(ConfigError, match="terminating_limit"):
        settings_from(parser.parse_args(["run", "--state", str(tmp_path), "--terminating-limit", "0"]))
