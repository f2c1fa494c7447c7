"""How a headless command line plays out: its output, its run time and its exit code.

The command line is given as the service receives it (``cmd`` and the space-split ``args``), so
each case reads like what a user sends, and the expectation is what the platform would do.
"""

from __future__ import annotations

import pytest

from controller.simulator.workload import Outcome, outcome_of, session_environment

ENV = {"HOME": "/arc/home/me", "TEST": "test"}


def ran(output: str = "", *, code: int = 0, runtime: float = 0.0) -> Outcome:
    """What a program that ends looks like: everything written at the start."""
    return Outcome(runtime=runtime, exit_code=code, output=((0.0, output),) if output else ())


def forever(output: str = "") -> Outcome:
    return Outcome(runtime=None, output=((0.0, output),) if output else ())


NOT_FOUND = 'exec: "{}": executable file not found in $PATH'


@pytest.mark.parametrize(
    ("cmd", "args", "expected"),
    [
        # Programs people run, ending with their exit codes.
        ("true", None, ran()),
        ("true", "extra", ran()),
        ("/usr/bin/false", None, ran(code=1)),
        ("echo", "hello world", ran("hello world\n")),
        ("echo", "-n no newline", ran("no newline")),
        ("echo", "-e a\\tb", ran("a\tb\n")),
        ("printf", "%s=%d\\n a 1 b 2", Outcome(runtime=0.0, output=((0.0, "a=1\n"), (0.0, "b=2\n")))),
        ("printf", "%d x", Outcome(runtime=0.0, exit_code=1,
                                   output=((0.0, "printf: 'x': expected a numeric value\n"), (0.0, "0")))),
        ("env", None, ran("HOME=/arc/home/me\nTEST=test\n")),
        ("env", "-i A=1", ran("A=1\n")),
        ("env", "TEST=other printenv TEST", ran("other\n")),
        ("printenv", "HOME NOPE", ran("/arc/home/me\n", code=1)),
        ("sleep", "30", ran(runtime=30.0)),
        ("/bin/sleep", "2.5", ran(runtime=2.5)),
        ("sleep", "1m 30", ran(runtime=90.0)),
        ("sleep", "1h", ran(runtime=3600.0)),
        ("sleep", "infinity", forever()),
        ("sleep", None, ran("sleep: missing operand\nTry 'sleep --help' for more information.\n", code=1)),
        ("sleep", "abc", ran("sleep: invalid time interval 'abc'\nTry 'sleep --help' for more information.\n",
                             code=1)),
        ("sleep", "-1", ran("sleep: invalid time interval '-1'\nTry 'sleep --help' for more information.\n",
                            code=1)),
        # Shell scripts: the script is the single argument after -c, as the split args make it.
        ("sh", "-c true", ran()),
        ("bash", "-c false", ran(code=1)),
        ("sh", "-c exit${IFS}3", ran(code=3)),
        ("sh", "-c exit 3", ran()),  # the script is "exit" and "3" becomes $0: exit 0
        ("sh", "-c echo${IFS}$TEST;exit${IFS}300", ran("test\n", code=44)),
        ("sh", "-c false||echo${IFS}rescued", ran("rescued\n")),
        ("sh", "-c false&&echo${IFS}never", ran(code=1)),
        ("sh", "-ec false;echo${IFS}never", ran(code=1)),
        ("sh", "-c X=5;echo${IFS}$X${IFS}${Y:-none}", ran("5 none\n")),
        ("bash", "-c echo${IFS}$0-$1 me you", ran("me-you\n")),
        ("sh", "-c sleep${IFS}5;echo${IFS}done", Outcome(runtime=5.0, output=((5.0, "done\n"),))),
        ("sh", "-c 'sleep 5'", ran("5': 1: Syntax error: Unterminated quoted string\n", code=2)),
        ("bash", "-c 'unterminated", ran("bash: -c: line 1: unexpected EOF while looking for matching `''\n",
                                         code=2)),
        ("sh", "-c", ran("sh: -c: option requires an argument\n", code=2)),
        ("sh", None, ran()),  # no script and no stdin: sh reads end of file and exits 0
        # Python one-liners; a space would split the code, a tab does not.
        ("python", "-c print(6*7)", ran("42\n")),
        ("python3", "-c import\tsys;print(sys.argv[1:]);sys.exit(3) a b", ran("['a', 'b']\n", code=3)),
        ("python", "-c import\tos;print(os.environ['TEST'],os.getenv('NO','none'))", ran("test none\n")),
        ("python", "-c print(f'{2/3:.2f}');exit(1)", ran("0.67\n", code=1)),
        ("python", "-c import\ttime;time.sleep(4);print('late')", Outcome(runtime=4.0, output=((4.0, "late\n"),))),
        ("python", "-c print(1/0)", ran('Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
                                        "ZeroDivisionError: division by zero\n", code=1)),
        ("python", "-c raise\tSystemExit(5)", ran(code=5)),
        ("python", "-c import\tsys;sys.exit('bye')", ran("bye\n", code=1)),
        # What cannot start: cmd is one argv element, and builtins are no executables.
        ("sleep 5", None, Outcome(runtime=0.0, exit_code=128, error=NOT_FOUND.format("sleep 5"))),
        ("exit", "3", Outcome(runtime=0.0, exit_code=128, error=NOT_FOUND.format("exit"))),
        # Anything else runs until destroyed, after whatever came before it.
        (None, None, forever()),
        (None, "--serve", forever()),
        ("python", "train.py", forever()),
        ("python", "-c import\tnumpy", forever()),
        ("sh", "-c echo${IFS}start;./run.sh", forever("start\n")),
        ("sh", "-c ls|wc", forever()),
        ("sh", "run.sh", forever()),
    ],
)
def test_command_plays_out_as_on_the_platform(cmd: str | None, args: str | None, expected: Outcome) -> None:
    """Common programs end with their output and exit code; unknown ones run on."""
    assert outcome_of(cmd, args, ENV) == expected


def test_the_session_environment_follows_launch_headless() -> None:
    """User entries come first; the platform's injected variables follow and win over a user's HOME."""
    env = session_environment([("REPLICA_ID", "1"), ("HOME", "/tmp")], session_id="abc12345", name="job",
                              user="me", cores=2.5, skaha_host="canfar.example")
    assert list(env) == ["PATH", "HOSTNAME", "REPLICA_ID", "HOME", "skaha_hostname", "skaha_username",
                         "skaha_sessionid", "PWD", "OMP_NUM_THREADS"]
    assert env["HOME"] == env["PWD"] == "/arc/home/me"
    assert (env["HOSTNAME"], env["skaha_sessionid"], env["OMP_NUM_THREADS"]) == ("job", "abc12345", "2")


def test_python_code_split_by_spaces_is_a_syntax_error() -> None:
    """``-c import sys;…`` reaches Python as the code ``import``: it fails like on the platform."""
    outcome = outcome_of("python", "-c import sys;print(1)", ENV)
    assert outcome.exit_code == 1 and "SyntaxError" in outcome.output[0][1]


def test_output_is_bounded() -> None:
    """A one-liner that would print more than the model keeps runs on instead of filling memory."""
    assert outcome_of("python", "-c print('x'*10**9)", ENV).runtime is None


@pytest.mark.parametrize(("cmd", "args"), [
    ("python", "-c " + "1+" * 50_000 + "1"),
    ("printf", "%c%5c%-3s|"),
    ("sh", "-c " + "${A:-" * 200),
])
def test_odd_command_lines_never_break_the_model(cmd: str, args: str) -> None:
    """Whatever arrives, the model answers with an outcome (the create is never a simulator crash)."""
    assert isinstance(outcome_of(cmd, args, ENV), Outcome)
