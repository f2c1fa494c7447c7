"""A small POSIX shell for ``sh -c`` / ``bash -c`` scripts of simulated sessions.

It covers what batch scripts mostly do: commands separated by ``;``, newlines, ``&&`` and ``||``;
quoting (``'…'``, ``"…"``, backslash); ``$NAME``, ``${NAME}``, ``${NAME:-word}``, ``$?``, ``$#``,
``$0``…``$9``, ``$@``/``$*``; ``NAME=value`` assignments; the builtins ``exit``, ``export``,
``unset``, ``set -e``, ``cd``, ``:``, ``true``, ``false``, ``echo`` and ``printf``. Other commands
run through the workload's program table (``sleep``, ``env``, ``python -c`` …).

Anything beyond that (pipes, redirections, ``$(…)``, ``if``/``for``/``while``, background jobs) is
not modelled: such a script counts as an unknown program, which runs until destroyed. Unquoted
expansions are not field-split, a simplification that only shows with values holding spaces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller.simulator.process import Blocked, Exited, Process

#: Runs one non-builtin command: (process, argv, environment) -> exit status.
Execute = Callable[[Process, list[str], Mapping[str, str]], int]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
                       "case", "esac", "function", "select", "{", "}", "!", "[[", "]]"})
_UNSUPPORTED = frozenset("|&<>()`")


class Unsupported(Exception):  # a signal that the script is outside the model
    """The script uses shell syntax the model does not cover."""


class ShellSyntaxError(Exception):
    """A script no shell would run: it fails at once with status 2, as dash and bash do."""

    def __init__(self, problem: str, quote: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.quote = quote

    def message(self, shell: str) -> str:
        """The line dash (``sh``) or bash writes for this error."""
        if shell == "bash":
            if self.quote:
                return f"bash: -c: line 1: unexpected EOF while looking for matching `{self.quote}'\n"
            return f"bash: -c: line 1: syntax error near unexpected token `{self.problem}'\n"
        if self.quote:
            return f"{shell}: 1: Syntax error: Unterminated quoted string\n"
        return f'{shell}: 1: Syntax error: "{self.problem}" unexpected\n'


# A word is a list of parts: literal text, or a parameter to expand, unquoted ("var") or quoted
# ("qvar"), with its name and ``:-`` default (or None).
_Part = tuple[str, str, "str | None"]


@dataclass(slots=True)
class _Word:
    parts: list[_Part] = field(default_factory=list)
    quoted: bool = False

    def add(self, text: str) -> None:
        self.parts.append(("lit", text, None))


def parse(script: str) -> list[list[tuple[str, list[_Word]]]]:
    """The script as and-or lists: each a list of (operator before it, words) commands."""
    tokens = _tokenize(script)
    lists: list[list[tuple[str, list[_Word]]]] = []
    current: list[tuple[str, list[_Word]]] = []
    words: list[_Word] = []
    operator = ""
    for token in tokens:
        if isinstance(token, _Word):
            words.append(token)
            continue
        if token in ("&&", "||"):
            if not words:
                raise ShellSyntaxError(token)
            current.append((operator, words))
            words, operator = [], token
        else:  # ";" or newline
            if words:
                current.append((operator, words))
            elif operator:
                raise ShellSyntaxError(token)
            if current:
                lists.append(current)
            current, words, operator = [], [], ""
    if words:
        current.append((operator, words))
    elif operator:
        raise ShellSyntaxError("end of file")
    if current:
        lists.append(current)
    return lists


def _tokenize(script: str) -> list[_Word | str]:
    tokens: list[_Word | str] = []
    word: _Word | None = None
    index, length = 0, len(script)

    def finish() -> None:
        nonlocal word
        if word is not None:
            tokens.append(word)
            word = None

    while index < length:
        char = script[index]
        if char in " \t":
            finish()
            index += 1
        elif char in ";\n":
            finish()
            tokens.append(";")
            index += 1
        elif script.startswith("&&", index) or script.startswith("||", index):
            finish()
            tokens.append(script[index:index + 2])
            index += 2
        elif char == "#" and word is None:
            end = script.find("\n", index)
            index = length if end < 0 else end
        elif char in _UNSUPPORTED:
            raise Unsupported(f"{char!r} is not modelled")
        else:
            if word is None:
                word = _Word()
            index = _word_part(script, index, word)
    finish()
    return tokens


def _word_part(script: str, index: int, word: _Word) -> int:
    """Consume one quoted string, escape, expansion or literal character into ``word``."""
    char = script[index]
    if char == "'":
        end = script.find("'", index + 1)
        if end < 0:
            raise ShellSyntaxError("unterminated quoted string", quote="'")
        word.add(script[index + 1:end])
        word.quoted = True
        return end + 1
    if char == '"':
        word.quoted = True
        index += 1
        while True:
            if index >= len(script):
                raise ShellSyntaxError("unterminated quoted string", quote='"')
            char = script[index]
            if char == '"':
                return index + 1
            if char == "\\" and index + 1 < len(script) and script[index + 1] in '$`"\\\n':
                if script[index + 1] != "\n":
                    word.add(script[index + 1])
                index += 2
            elif char == "$":
                index = _expansion(script, index, word, quoted=True)
            elif char == "`":
                raise Unsupported("command substitution is not modelled")
            else:
                word.add(char)
                index += 1
    if char == "\\":
        if index + 1 < len(script) and script[index + 1] != "\n":
            word.add(script[index + 1])
        return index + 2
    if char == "$":
        return _expansion(script, index, word)
    word.add(char)
    return index + 1


def _expansion(script: str, index: int, word: _Word, *, quoted: bool = False) -> int:
    kind = "qvar" if quoted else "var"
    rest = script[index + 1:]
    if rest.startswith("{"):
        end = rest.find("}")
        if end < 0:
            raise Unsupported("bad substitution")
        inner = rest[1:end]
        name, sep, default = inner.partition(":-")
        if not (_NAME.fullmatch(name) or name in "?#@*" or name.isdigit()) or not name:
            raise Unsupported(f"${{{inner}}} is not modelled")
        word.parts.append((kind, name, default if sep else None))
        return index + 2 + end
    if rest[:1] == "(":
        raise Unsupported("command substitution is not modelled")
    match = _NAME.match(rest)
    if match:
        word.parts.append((kind, match.group(), None))
        return index + 1 + match.end()
    if rest[:1] and rest[0] in "?#@*$0123456789":
        word.parts.append((kind, rest[0], None))
        return index + 2
    word.add("$")
    return index + 1


@dataclass(slots=True)
class Shell:
    """One ``sh -c`` run: variables (the environment at start), positional parameters, last status."""

    process: Process
    execute: Execute
    name: str = "sh"
    positional: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    exported: set[str] = field(default_factory=set)
    status: int = 0
    errexit: bool = False

    def run(self, script: str) -> int:
        """Run ``script`` and return its exit status; ``Blocked`` if it reaches an unknown program.

        ``Unsupported`` propagates: the caller treats such a script as an unknown program.
        """
        try:
            lists = parse(script)
        except ShellSyntaxError as error:
            self.process.write(error.message(self.name))
            return 2
        self.exported = set(self.variables)
        self.variables.setdefault("IFS", " \t\n")
        try:
            for and_or in lists:
                ran_last = self._run_list(and_or)
                if self.errexit and self.status != 0 and ran_last:
                    return self.status
        except Exited as exited:
            return exited.status & 0xFF
        return self.status

    def _run_list(self, and_or: list[tuple[str, list[_Word]]]) -> bool:
        """Run an and-or list; whether its last command ran (``set -e`` only acts then)."""
        ran = False
        for operator, words in and_or:
            if (operator == "&&" and self.status != 0) or (operator == "||" and self.status == 0):
                ran = False
                continue
            self.status = self._run_command([field for word in words for field in self._expand(word)])
            ran = True
        return ran

    def _expand(self, word: _Word) -> list[str]:
        """The fields of one word: unquoted expansions are split on ``IFS`` (``echo${IFS}hi``)."""
        separators = self.variables.get("IFS", " \t\n")
        fields: list[str] = []
        current: list[str] = []
        keep = word.quoted  # a quoted word is a field even when it expands to nothing
        for kind, text, default in word.parts:
            if kind == "lit":
                current.append(text)
                keep = True
                continue
            value = self._parameter(text)
            if (value is None or value == "") and default is not None:
                value = default
            value = value or ""
            if kind == "qvar" or not separators:
                current.append(value)
                continue
            pieces = re.split("[" + re.escape(separators) + "]+", value)
            current.append(pieces[0])
            for piece in pieces[1:]:
                if "".join(current) or keep:
                    fields.append("".join(current))
                current, keep = [piece], False
            keep = keep or bool(pieces[-1])
        if "".join(current) or keep:
            fields.append("".join(current))
        return fields

    def _parameter(self, name: str) -> str | None:
        if name == "?":
            return str(self.status)
        if name == "#":
            return str(len(self.positional))
        if name in "@*":
            return " ".join(self.positional)
        if name == "$":
            return "1"
        if name.isdigit():
            position = int(name)
            if position == 0:
                return self.name
            return self.positional[position - 1] if position <= len(self.positional) else None
        return self.variables.get(name)

    def _run_command(self, argv: list[str]) -> int:
        assignments: dict[str, str] = {}
        while argv and "=" in argv[0] and _NAME.fullmatch(argv[0].split("=", 1)[0]):
            key, _, value = argv.pop(0).partition("=")
            assignments[key] = value
        if not argv:
            self.variables.update(assignments)
            return 0
        if argv[0] in _RESERVED:
            raise Blocked  # compound commands are outside the model: an unknown program
        builtin = _BUILTINS.get(argv[0])
        if builtin is not None:
            return builtin(self, argv[1:])
        env = {key: value for key, value in self.variables.items() if key in self.exported}
        env.update(assignments)
        return self.execute(self.process, argv, env)


def _exit(shell: Shell, args: list[str]) -> int:
    if not args:
        raise Exited(shell.status)
    if not re.fullmatch(r"\d+", args[0]):
        shell.process.write(f"{shell.name}: 1: exit: Illegal number: {args[0]}\n")
        raise Exited(2)
    raise Exited(int(args[0]))


def _export(shell: Shell, args: list[str]) -> int:
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep:
            shell.variables[key] = value
        shell.exported.add(key)
    return 0


def _unset(shell: Shell, args: list[str]) -> int:
    for name in args:
        shell.variables.pop(name, None)
        shell.exported.discard(name)
    return 0


def _set(shell: Shell, args: list[str]) -> int:
    for arg in args:
        if re.fullmatch(r"-e+", arg):
            shell.errexit = True
        elif re.fullmatch(r"\+e+", arg):
            shell.errexit = False
        else:
            raise Blocked  # other options (-x, -u, -o …) are outside the model
    return 0


_BUILTINS: dict[str, Callable[[Shell, list[str]], int]] = {
    "exit": _exit,
    "export": _export,
    "unset": _unset,
    "set": _set,
    "cd": lambda shell, args: 0,
    ":": lambda shell, args: 0,
}
