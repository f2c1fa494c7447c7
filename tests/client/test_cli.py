"""``canfar-controller sessions ...`` against the simulator: data on stdout, server messages on errors."""

from __future__ import annotations

import json
import socket
import webbrowser
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.simulator import ManualClock
from tests.client.conftest import IMAGE, NOTEBOOK_IMAGE, TOKEN


@pytest.fixture
def run(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI with the simulator's URL and token in the environment; returns (code, out, err)."""
    monkeypatch.setenv("CANFAR_URL", url)
    monkeypatch.setenv("CANFAR_TOKEN", TOKEN)
    monkeypatch.setenv("CANFAR_BACKOFF", "0.001")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["sessions", *argv])
        out, err = capsys.readouterr()
        assert TOKEN not in out + err
        return code, out, err

    return run


def _create(run: Any, *argv: str) -> list[str]:
    code, out, err = run("create", *argv, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def test_create_prints_the_new_ids(run: Any) -> None:
    """create prints one id per line and exits 0."""
    code, out, _ = run("create", "--name", "job", "--image", IMAGE, "--cmd", "sleep", "--args", "60",
                       "--env", "A=1", "--env", "B=2", "--replicas", "2")
    assert code == 0
    assert len(out.split()) == 2


def test_create_sends_every_option(run: Any, sim: Any) -> None:
    """--cores, --ram, --gpu, --kind, --cmd, --args and repeated --env all reach the service."""
    _create(run, "--name", "job", "--image", IMAGE, "--kind", "headless", "--cores", "2", "--ram", "8",
            "--gpu", "1", "--cmd", "python", "--args", "run.py fast", "--env", "A=1", "--env", "B=2")
    [request] = [r for r in sim.requests if r.method == "POST"]
    sent = {key: request.param(key) for key in ("name", "type", "cores", "ram", "gpus", "cmd", "args")}
    assert sent == {"name": "job", "type": "headless", "cores": "2", "ram": "8", "gpus": "1", "cmd": "python",
                    "args": "run.py fast"}
    assert set(request.params["env"]) == {"A=1", "B=2", "REPLICA_ID=1", "REPLICA_COUNT=1"}


def test_ps_json_lists_the_sessions(run: Any) -> None:
    """ps -o json is a JSON array with the wire field names."""
    ids = _create(run, "--name", "job", "--image", IMAGE)
    code, out, _ = run("ps", "-o", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(row["id"], row["name"], row["type"]) for row in rows] == [(ids[0], "job", "headless")]


def test_ps_text_is_a_table(run: Any) -> None:
    """ps without -o prints a header and one row per session."""
    _create(run, "--name", "job", "--image", IMAGE)
    code, out, _ = run("ps", "--kind", "headless")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "KIND", "STATUS", "IMAGE", "STARTED"]
    assert "job" in row.split()


def test_info_logs_and_events(run: Any, clock: ManualClock) -> None:
    """info, logs and events accept ids and print parseable JSON."""
    [session_id] = _create(run, "--name", "job", "--image", IMAGE, "--cmd", "true")
    clock.advance(60)
    for command in ("info", "logs", "events"):
        code, out, err = run(command, session_id, "-o", "json")
        assert code == 0, err
        data = json.loads(out)
        assert session_id in (data if isinstance(data, dict) else {row["id"]: row for row in data})


def test_events_text_is_a_table(run: Any, clock: ManualClock) -> None:
    """events prints the parsed event table."""
    [session_id] = _create(run, "--name", "job", "--image", IMAGE)
    clock.advance(60)
    code, out, _ = run("events", session_id)
    assert code == 0
    assert out.split()[:5] == ["TYPE", "REASON", "MESSAGE", "FIRST-TIME", "LAST-TIME"]


def test_delete_prune_and_renew(run: Any, clock: ManualClock) -> None:
    """delete, prune and renew print the ids they acted on."""
    [done] = _create(run, "--name", "old-job", "--image", IMAGE, "--cmd", "true")
    [victim] = _create(run, "--name", "victim", "--image", IMAGE)
    [notebook] = _create(run, "--name", "nb", "--image", NOTEBOOK_IMAGE, "--kind", "notebook")
    clock.advance(60)
    assert run("prune", "old-") == (0, f"{done}\n", "")
    assert run("delete", victim) == (0, f"{victim}\n", "")
    assert run("renew", notebook, "-o", "json") == (0, json.dumps([notebook], indent=2) + "\n", "")


def test_open_opens_running_sessions_and_warns_about_others(
    run: Any, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open sends running sessions to the browser and warns on stderr about the rest."""
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    [notebook] = _create(run, "--name", "nb", "--image", NOTEBOOK_IMAGE, "--kind", "notebook")
    clock.advance(60)
    [pending] = _create(run, "--name", "nb2", "--image", NOTEBOOK_IMAGE, "--kind", "notebook")
    code, out, err = run("open", notebook, pending)
    assert (code, out) == (0, f"{notebook}\n")
    assert f"warning: session {pending} is Pending" in err
    assert len(opened) == 1


def test_stats(run: Any) -> None:
    """stats prints labelled figures, and -o json the typed model."""
    code, out, _ = run("stats")
    assert code == 0 and "CPU cores available" in out
    code, out, _ = run("stats", "-o", "json")
    assert code == 0 and json.loads(out)["cpu_cores_available"] > 0


def test_ram_is_shown_in_gib_everywhere(run: Any, clock: ManualClock) -> None:
    """--ram 8 is 8 GiB: info and stats show it so, though the service reports decimal GB (8.59, "8.59G")."""
    [session_id] = _create(run, "--name", "job", "--image", IMAGE, "--cores", "2", "--ram", "8", "--gpu", "1",
                           "--cmd", "sleep", "--args", "600")
    clock.advance(60)
    _, info, _ = run("info", session_id)
    _, stats, _ = run("stats")
    fields = dict(line.split(": ", 1) for line in info.splitlines())
    assert [fields[key] for key in ("requestedRAM", "requestedCPUCores", "requestedGPUCores", "ramInUse",
                                    "cpuCoresInUse")] == ["8 GiB", "2", "1", "0.8 GiB", "0.200"]
    figures = dict(line.split(":", 1) for line in stats.splitlines())
    assert [figures[key].strip() for key in ("RAM requested", "RAM available", "Max RAM per session")] == [
        "8 GiB", "238.42 GiB", "32 GiB"]  # the simulator's 256 GB cluster is 238.42 GiB


def test_server_errors_print_the_server_message_and_exit_1(run: Any) -> None:
    """A refused create exits 1 with the service's own text on stderr and nothing on stdout."""
    code, out, err = run("create", "--name", "job", "--image", "docker.io/python:3")
    assert (code, out) == (1, "")
    assert "must come from one of" in err and "HTTP 400" in err


def test_bad_names_exit_1_without_a_request(run: Any, sim: Any) -> None:
    """An invalid name is reported client-side and nothing is sent."""
    code, _, err = run("create", "--name", "Bad_Name", "--image", IMAGE)
    assert code == 1
    assert err == ("canfar-controller: error: invalid session spec: name: must be a lowercase DNS label: "
                   "letters a-z, digits and '-', starting and ending with a letter or digit\n")
    assert sim.requests == []


MANIFEST = """\
apiVersion: canfar.controller/v1alpha1
kind: SessionSet
metadata:
  name: job
spec:
  replicas: 1
  template:
{template}"""


@pytest.mark.parametrize(
    ("flags", "template", "field"),
    [
        (["--cmd", "sleep 10"], "    image: {image}\n    cmd: sleep 10\n", "cmd"),
        (["--cmd", "sleep", "--args", "a  b"], "    image: {image}\n    cmd: sleep\n    args: a  b\n", "args"),
        (["--args", "say 'hi'"], "    image: {image}\n    args: say 'hi'\n", "args"),
        (["--env", "A=x=y"], "    image: {image}\n    env: {{A: x=y}}\n", "env"),
        (["--env", "A=$HOME"], "    image: {image}\n    env: {{A: $HOME}}\n", "env"),
        (["--cores", "0"], "    image: {image}\n    cores: 0\n", "cores"),
        (["--ram", "600"], "    image: {image}\n    ram: 600\n", "ram"),
        (["--gpu", "0"], "    image: {image}\n    gpu: 0\n", "gpu"),
        (["--image-override", "python:3"], "    image: python:3\n", "image"),
        (["--kind", "notebook", "--cmd", "jupyter"], "    kind: notebook\n    image: {image}\n    cmd: jupyter\n", None),
    ],
    ids=["cmd-with-args", "double-space", "quotes", "env-equals", "env-dollar", "no-cores", "too-much-ram",
         "zero-gpus", "image-without-host", "cmd-on-notebook"],
)
def test_create_refuses_what_a_manifest_refuses_with_the_same_words(
    run: Any, sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], template: str,
    field: str | None,
) -> None:
    """The sessions CLI and manifests apply one set of rules: same refusal, same message, nothing sent."""
    image = IMAGE
    if flags[0] == "--image-override":
        image, flags = flags[1], flags[2:]
    code, out, err = run("create", "--name", "job", "--image", image, *flags)
    assert (code, out) == (1, "")
    assert sim.requests == []
    (tmp_path / "job.yaml").write_text(MANIFEST.format(template=template.format(image=IMAGE)))
    assert main(["validate", str(tmp_path)]) == 1
    manifest_error = capsys.readouterr().err.splitlines()[0]
    problem = manifest_error.split(f"spec.template.{field}: " if field else "spec.template: ", 1)[1]
    assert err.strip().endswith(problem)
    assert err.startswith("canfar-controller: error: invalid session spec: ")


@pytest.mark.parametrize("command", ["info", "logs", "events", "delete", "open", "renew"])
def test_an_unknown_id_exits_1_and_sends_nothing(run: Any, sim: Any, command: str) -> None:
    """Every id-taking command checks first: an unknown id (or a name) is refused, and nothing is acted on."""
    [kept] = _create(run, "--name", "kept", "--image", IMAGE)
    code, out, err = run(command, kept, "nosuchid")
    assert (code, out) == (1, "")
    assert err == "canfar-controller: error: no session nosuchid (ids are in `sessions ps`)\n"
    assert [r.method for r in sim.requests][-1] == "GET" and len(sim.requests) == 2  # the create, one list
    assert [s["id"] for s in json.loads(run("ps", "-o", "json")[1])] == [kept]


def test_a_session_name_is_accepted_where_an_id_is(run: Any, clock: ManualClock) -> None:
    """The controller's logs show names: logs, info and delete take them; a name two sessions share is refused."""
    [job] = _create(run, "--name", "hello", "--image", IMAGE, "--cmd", "echo", "--args", "hi")
    clock.advance(60)
    assert run("logs", "hello") == (0, "hi\n", "")
    code, out, _ = run("info", "hello", "-o", "json")
    assert code == 0 and json.loads(out)[0]["id"] == job
    [twin] = _create(run, "--name", "hello", "--image", IMAGE)
    code, _, err = run("delete", "hello")
    assert code == 1 and f"2 sessions are named hello: {job} (Completed), {twin} (Pending); give an id" in err
    assert run("delete", twin) == (0, f"{twin}\n", "")
    assert run("delete", "hello") == (0, f"{job}\n", "")


@pytest.mark.parametrize("argv", [("ps", "--kind", "bogus"), ("ps", "--status", "Runing"), ("ps", "--view", "stats"),
                                  ("prune", "job-", "bogus"), ("prune", "job-", "headless", "Done")])
def test_filters_are_checked(run: Any, sim: Any, argv: tuple[str, ...]) -> None:
    """A kind, status or view the service does not know is refused (exit 2), not answered with an empty table."""
    with pytest.raises(SystemExit) as caught:
        run(*argv)
    assert caught.value.code == 2
    assert sim.requests == []


def test_partial_failures_keep_the_successes_on_stdout(run: Any, sim: Any) -> None:
    """A many-id call with one failure prints the successes as JSON, the failure on stderr, and exits 1."""
    first, second = _create(run, "--name", "job", "--image", IMAGE, "--replicas", "2")
    sim.inject_fault(method="DELETE", path=f"/session/{second}", status=500, count=None)
    code, out, err = run("delete", first, second, "-o", "json")
    assert code == 1
    data = json.loads(out)
    assert list(data["results"]) == [first]
    assert data["errors"][second]["status"] == 500
    assert second in err


def test_server_and_token_file_flags(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--server and --token-file work without any CANFAR_ variable."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    assert main(["sessions", "ps", "--server", url, "--token-file", str(token_file), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_the_token_file_flag_beats_the_token_variable(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An explicit --token-file is used even when a (stale) CANFAR_TOKEN is set."""
    monkeypatch.setenv("CANFAR_TOKEN", "stale-token-000000")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    assert main(["sessions", "stats", "--server", url, "--token-file", str(token_file)]) == 0


def test_a_missing_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --server or CANFAR_URL the command says how to give one and exits 1."""
    assert main(["sessions", "ps"]) == 1
    assert "CANFAR_URL" in capsys.readouterr().err


def test_401_is_reported(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rejected token exits 1 with HTTP 401, and the token is not printed."""
    monkeypatch.setenv("CANFAR_TOKEN", "not-the-right-token-42")
    assert main(["sessions", "ps", "--server", url]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "not-the-right-token-42" not in err


def test_sessions_without_a_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """`sessions` alone shows its subcommands and exits 2."""
    assert main(["sessions"]) == 2
    assert "prune" in capsys.readouterr().err


def test_no_token_gets_a_hint(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """With no credential configured, a 401 says that no token is set and how to set one."""
    assert main(["sessions", "ps", "--server", url]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("canfar-controller: error: fetch failed (HTTP 401): ")
    assert "; no token set: set CANFAR_TOKEN or CANFAR_TOKEN_FILE (or pass --token-file)" in line


def test_a_server_url_without_the_api_version_gets_a_hint(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base URL missing /v1 gives a 404 that suggests the URL with /v1."""
    monkeypatch.setenv("CANFAR_TOKEN", TOKEN)
    unversioned = url.removesuffix("/v1")
    assert main(["sessions", "ps", "--server", unversioned]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "(HTTP 404)" in line
    assert line.endswith(f"; the server URL {unversioned} has no API version: did you mean {unversioned}/v1?")


def test_a_real_404_gets_no_version_hint(run: Any, sim: Any) -> None:
    """With /v1 in the URL, a session's 404 is the server's message alone."""
    [job] = _create(run, "--name", "job", "--image", IMAGE)
    sim.inject_fault(method="GET", path=f"/session/{job}", status=404, count=None)
    code, _, err = run("info", job)
    assert code == 1 and "(HTTP 404)" in err and "API version" not in err


def test_a_host_only_url_gets_the_skaha_path_as_a_hint(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CANFAR's API is under /skaha/v1: a bare host is pointed there, not at /v1."""
    monkeypatch.setenv("CANFAR_TOKEN", TOKEN)
    host = url.removesuffix("/skaha/v1")
    assert main(["sessions", "ps", "--server", host + "/"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(f"; the server URL {host} has no API version: did you mean {host}/skaha/v1?")


def test_a_refused_connection_names_the_url_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: one line, saying which URL could not be reached (no retry chatter before it)."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/skaha/v1"
    assert main(["sessions", "ps", "--server", dead]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("canfar-controller: error: fetch failed (no response): ")
    assert line.endswith(f"; cannot connect to {dead}") and line.count(dead) == 1
