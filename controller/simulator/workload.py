"""What a headless session's command does: what it prints, how long it runs, how it ends.

The simulator runs no containers. It reads the command line the way the real service builds it
and plays the common programs in simulated time, so a session ends as it would on the platform,
with its exit code, and its logs are the program's output:

- The server passes ``cmd`` as one argv element and splits ``args`` on single spaces with no
  quoting (``PostAction.getHeadlessImageBundle``: ``command: ["<cmd>"]``, ``args.split(" ")``).
  So ``cmd="sleep 5"`` cannot start (exit 128, ``executable file not found``), and
  ``args="-c 'echo hi'"`` reaches ``sh`` as ``-c``, ``'echo``, ``hi'``: an unterminated quote.
- Modelled programs: ``echo``, ``printf``, ``env``, ``printenv``, ``true``, ``false``,
  ``sleep N`` (s/m/h/d suffixes; ``infinity``), ``sh``/``bash``/``dash -c SCRIPT`` (see ``shell``:
  ``;``, ``&&``, ``||``, quoting, ``$VAR``, ``exit N``, ``export``, ``set -e``) and
  ``python``/``python3 -c CODE`` for simple one-liners (see ``pythonc``). A path such as
  ``/bin/sh`` names the same program.
- Anything else (``python train.py``, the image's entrypoint when there is no ``cmd``, syntax
  beyond the shell subset) runs until it is destroyed or its deadline passes; whatever a script
  printed before reaching it is in the logs.

``env`` prints the session's environment: ``PATH`` and ``HOSTNAME`` from the image and pod, the
user's ``env`` entries (``REPLICA_ID``/``REPLICA_COUNT`` among them when the client sends them),
then what ``launch-headless.yaml`` injects: ``skaha_hostname``, ``skaha_username``,
``skaha_sessionid``, ``HOME``, ``PWD`` and ``OMP_NUM_THREADS`` (``max(1, int(cores requested))``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from controller.simulator import pythonc, shell
from controller.simulator.process import Blocked, Process

#: The image's ``PATH`` (the usual Debian/Ubuntu default of the platform's images).
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where user homes live on the platform (``SKAHA_USER_HOME_DIR`` = home base + user).
HOME_BASE = "/arc/home"
#: Shell builtins and keywords: not executables, so a container cannot start with one as ``cmd``.
_NOT_EXECUTABLE = frozenset({"exit", "export", "cd", "source", ".", "set", "unset", "alias", "if",
                             "for", "while", "then", "do", "done", "fi", "eval", "exec"})
_SLEEP_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a container behaves once started: ``runtime`` None means it never exits on its own."""

    runtime: float | None
    exit_code: int = 0
    error: str = ""
    """Why the container could not start, as the kubelet would say."""
    output: tuple[tuple[float, str], ...] = ()
    """What the program wrote: (seconds after the container started, text)."""


FOREVER = Outcome(runtime=None)


def split_like_java(text: str, separator: str) -> list[str]:
    """Java's ``text.split(separator)`` for a plain one-character separator.

    Every separator splits (two in a row make an empty part) and trailing empty parts are
    dropped, so ``"A=".split("=")`` is ``["A"]``; an empty text gives ``[""]``.
    """
    parts = text.split(separator)
    if text:
        while parts and parts[-1] == "":
            parts.pop()
    return parts


def command_line(cmd: str | None, args: str | None) -> list[str] | None:
    """The container's argv as the server renders it; None when the image's entrypoint runs.

    ``args`` goes through ``split_like_java(args, " ")``: every single space separates, two
    spaces make an empty argument.
    """
    if cmd is None:
        return None
    return [cmd, *(split_like_java(args, " ") if args is not None else [])]


def session_environment(user_env: Sequence[tuple[str, str]], *, session_id: str, name: str, user: str,
                        cores: float, skaha_host: str) -> dict[str, str]:
    """The environment of a headless container, in the order ``env`` lists it.

    User entries come first and the platform's after them (``launch-headless.yaml``), so a user
    ``HOME`` is overridden, as Kubernetes lets the later of two duplicate names win.
    """
    env = {"PATH": IMAGE_PATH, "HOSTNAME": name}
    for key, value in user_env:
        env[key] = value
    home = f"{HOME_BASE}/{user}"
    env.update({
        "skaha_hostname": skaha_host,
        "skaha_username": user,
        "skaha_sessionid": session_id,
        "HOME": home,
        "PWD": home,
        "OMP_NUM_THREADS": str(max(1, int(cores))),
    })
    return env


def outcome_of(cmd: str | None, args: str | None, env: Mapping[str, str] | None = None) -> Outcome:
    """Play ``cmd args`` in simulated time with ``env`` and say how it goes."""
    argv = command_line(cmd, args)
    if argv is None:
        return FOREVER
    program = argv[0]
    if not program or any(character.isspace() for character in program) or program in _NOT_EXECUTABLE:
        return Outcome(runtime=0.0, exit_code=128,
                       error=f'exec: "{program}": executable file not found in $PATH')
    process = Process()
    try:
        status = execute(process, argv, env or {})
    except Blocked:
        return Outcome(runtime=None, output=tuple(process.output))
    return Outcome(runtime=process.elapsed, exit_code=status & 0xFF, output=tuple(process.output))


def execute(process: Process, argv: list[str], env: Mapping[str, str]) -> int:
    """Run one program; its exit status, or ``Blocked`` for a program the model does not know."""
    program = _PROGRAMS.get(argv[0].rsplit("/", 1)[-1])
    if program is None:
        raise Blocked
    return program(process, argv[1:], env)


# -- the programs -------------------------------------------------------------------------------


def _echo(process: Process, args: list[str], env: Mapping[str, str]) -> int:
    """coreutils ``echo``: ``-n`` drops the newline, ``-e`` interprets backslash escapes."""
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        for flag in args.pop(0)[1:]:
            newline = newline and flag != "n"
            escapes = {"e": True, "E": False}.get(flag, escapes)
    text = " ".join(args)
    if escapes:
        text, stop = _unescape(text)
        newline = newline and not stop
    process.write(text + ("\n" if newline else ""))
    return 0


def _unescape(text: str) -> tuple[str, bool]:
    """Backslash escapes of ``echo -e``/``printf``; whether ``\\c`` asked to stop all output."""
    table = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
             '"': '"', "e": "\x1b"}
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            if following == "c":
                return "".join(out), True
            if following in table:
                out.append(table[following])
                index += 2
                continue
        out.append(char)
        index += 1
    return "".join(out), False


_CONVERSION = re.compile(r"%(%|[-+ 0#]*\d*(?:\.\d+)?[sdioxXeEfgGcb])")


def _printf(process: Process, args: list[str], env: Mapping[str, str]) -> int:
    """coreutils ``printf``: the format is reused until every argument is consumed."""
    if not args:
        process.write("printf: missing operand\nTry 'printf --help' for more information.\n")
        return 1
    form, values, status = args[0], args[1:], 0
    while True:
        text, consumed, failed = _format_once(process, form, values)
        process.write(text)
        status = status or failed
        values = values[consumed:]
        if not values or consumed == 0:
            return status


def _format_once(process: Process, form: str, values: list[str]) -> tuple[str, int, int]:
    """One pass of the format: the text, how many values it used, and 1 if a number was bad."""
    consumed, failed = 0, 0

    def convert(match: re.Match[str]) -> str:
        nonlocal consumed, failed
        spec = match.group(1)
        if spec == "%":
            return "%"
        value = values[consumed] if consumed < len(values) else ""
        consumed += 1
        kind = spec[-1]
        if kind == "b":
            return _unescape(value)[0]
        if kind in "sc":
            return ("%" + spec[:-1] + "s") % (value[:1] if kind == "c" else value)
        try:
            number: float = float(value or "0") if kind in "eEfgG" else int(value or "0", 0)
        except ValueError:
            process.write(f"printf: '{value}': expected a numeric value\n")
            failed, number = 1, 0
        return ("%" + spec) % number

    text = _CONVERSION.sub(convert, form)
    return _unescape(text)[0], consumed, failed


def _env(process: Process, args: list[str], env: Mapping[str, str]) -> int:
    """``env [-i] [-u NAME] [NAME=VALUE]… [COMMAND [ARG]…]``: print or change the environment."""
    environment = dict(env)
    while args:
        if args[0] in ("-i", "--ignore-environment", "-"):
            environment.clear()
        elif args[0] in ("-u", "--unset") and len(args) > 1:
            environment.pop(args.pop(1), None)
        elif "=" in args[0] and not args[0].startswith("="):
            key, _, value = args[0].partition("=")
            environment[key] = value
        elif args[0] == "--":
            args.pop(0)
            break
        else:
            break
        args.pop(0)
    if not args:
        process.write("".join(f"{key}={value}\n" for key, value in environment.items()))
        return 0
    if args[0].rsplit("/", 1)[-1] in _NOT_EXECUTABLE:
        process.write(f"env: '{args[0]}': No such file or directory\n")
        return 127
    return execute(process, args, environment)


def _printenv(process: Process, args: list[str], env: Mapping[str, str]) -> int:
    if not args:
        process.write("".join(f"{key}={value}\n" for key, value in env.items()))
        return 0
    found = [env[name] for name in args if name in env]
    process.write("".join(f"{value}\n" for value in found))
    return 0 if len(found) == len(args) else 1


def _sleep(process: Process, args: list[str], env: Mapping[str, str]) -> int:
    """coreutils ``sleep``: the sum of its operands, each a number with an optional s/m/h/d unit."""
    if not args:
        process.write("sleep: missing operand\nTry 'sleep --help' for more information.\n")
        return 1
    total = 0.0
    for operand in args:
        seconds = _duration(operand)
        if seconds is None:
            process.write(f"sleep: invalid time interval '{operand}'\n"
                          "Try 'sleep --help' for more information.\n")
            return 1
        total += seconds
    process.sleep(total)
    return 0


def _duration(text: str) -> float | None:
    match = re.fullmatch(r"(inf|infinity|\d+\.?\d*|\.\d+)([smhd]?)", text.strip().lower())
    if match is None:
        return None
    number = math.inf if match.group(1).startswith("inf") else float(match.group(1))
    return number * _SLEEP_UNITS[match.group(2)]


def _shell(process: Process, args: list[str], env: Mapping[str, str], *, flavour: str) -> int:
    """``sh -c SCRIPT [NAME [ARG]…]``; a script file is an unknown program; no arguments reads EOF."""
    errexit = False
    while args and re.fullmatch(r"-[ce]+", args[0]):
        flags = args.pop(0)
        errexit = errexit or "e" in flags
        if "c" in flags:
            if not args:
                process.write(f"{flavour}: -c: option requires an argument\n")
                return 2
            script = args.pop(0)
            name = args.pop(0) if args else flavour
            sub = shell.Shell(process, execute, name=name, positional=args, variables=dict(env),
                              errexit=errexit)
            try:
                return sub.run(script)
            except shell.Unsupported:
                raise Blocked from None
    if args:
        raise Blocked  # a script file, or options the model does not know
    return 0


def _python(process: Process, args: list[str], env: Mapping[str, str]) -> int:
    """``python -c CODE [ARG]…``; scripts and modules are unknown programs; no arguments reads EOF."""
    if not args:
        return 0
    if args[0] != "-c":
        raise Blocked
    if len(args) < 2:
        process.write("Argument expected for the -c option\n")
        return 2
    return pythonc.run(process, args[1], ["-c", *args[2:]], env)


_PROGRAMS: dict[str, Callable[[Process, list[str], Mapping[str, str]], int]] = {
    "echo": _echo,
    "printf": _printf,
    "env": _env,
    "printenv": _printenv,
    "true": lambda process, args, env: 0,
    "false": lambda process, args, env: 1,
    "sleep": _sleep,
    "sh": lambda process, args, env: _shell(process, args, env, flavour="sh"),
    "dash": lambda process, args, env: _shell(process, args, env, flavour="dash"),
    "bash": lambda process, args, env: _shell(process, args, env, flavour="bash"),
    "python": _python,
    "python3": _python,
}
