"""``python -c CODE`` for simple one-liners: printing, arithmetic, the environment, exit codes.

The code is parsed with ``ast`` and evaluated by a small interpreter, never by ``exec``: literals,
names assigned earlier, arithmetic and comparisons, f-strings, ``print(…, sep=, end=, file=)``,
``import sys, os, time``, ``sys.argv``, ``os.environ[…]``/``.get``/``os.getenv``, a few builtins
(``str int float len abs min max round sum``), ``time.sleep(N)``, ``sys.exit``/``exit``/``quit``
and ``raise SystemExit(N)``. A syntax error or an exception in that subset ends the process with
status 1 and Python's own message. Code beyond the subset (other modules, loops, definitions…)
counts as an unknown program, which runs until destroyed.
"""

from __future__ import annotations

import ast
import builtins
import operator
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from controller.simulator.process import Blocked, Exited, Process

_MODULES = frozenset({"sys", "os", "time"})
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_BUILTINS: dict[str, Callable[..., Any]] = {
    "str": str, "int": int, "float": float, "len": len, "abs": abs, "min": min, "max": max,
    "round": round, "sum": sum, "bool": bool,
}
_EXCEPTIONS: dict[str, type[Exception]] = {
    name: getattr(builtins, name) for name in ("ValueError", "RuntimeError", "KeyError", "TypeError", "Exception")}
#: The biggest string or number a one-liner may build: beyond it the model gives up (runs forever).
_MAX_SIZE = 1_000_000


class Unsupported(Exception):  # a signal that the code is outside the model
    """The code uses Python the model does not cover."""


class _Raised(Exception):  # carries a Python exception raised by the user's code
    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def run(process: Process, code: str, argv: list[str], env: Mapping[str, str]) -> int:
    """Run ``python -c code`` with ``sys.argv == argv``; the exit status, ``Blocked`` beyond the model."""
    try:
        tree = ast.parse(code, filename="<string>")
    except SyntaxError as error:
        process.write("".join(traceback.format_exception_only(type(error), error)))
        return 1
    except (ValueError, RecursionError, MemoryError):  # null bytes, absurd nesting: beyond the model
        raise Blocked from None
    interpreter = _Interpreter(process, argv, env)
    try:
        for statement in tree.body:
            interpreter.statement(statement)
    except Exited as exited:
        return exited.status
    except (Unsupported, RecursionError, MemoryError):
        raise Blocked from None
    except _Raised as raised:
        failure = raised.error
        process.write("Traceback (most recent call last):\n"
                      '  File "<string>", line 1, in <module>\n'
                      + "".join(traceback.format_exception_only(type(failure), failure)))
        return 1
    return 0


class _Interpreter:
    def __init__(self, process: Process, argv: list[str], env: Mapping[str, str]) -> None:
        self.process = process
        self.argv = argv
        self.env = dict(env)
        self.names: dict[str, Any] = {}
        self.modules: set[str] = set()

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in _MODULES or alias.asname:
                    raise Unsupported(alias.name)
                self.modules.add(alias.name)
        elif isinstance(node, ast.Expr):
            self.expression(node.value)
        elif isinstance(node, ast.Assign) and all(isinstance(target, ast.Name) for target in node.targets):
            value = self.expression(node.value)
            for target in node.targets:
                self.names[target.id] = value  # type: ignore[attr-defined]
        elif isinstance(node, ast.Raise) and node.exc is None:
            raise _Raised(RuntimeError("No active exception to reraise"))
        elif isinstance(node, ast.Raise) and node.cause is None:
            assert node.exc is not None
            self._raise(node.exc)
        elif isinstance(node, ast.Pass):
            pass
        else:
            raise Unsupported(type(node).__name__)

    def _raise(self, node: ast.expr) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            args = [self.expression(arg) for arg in node.args]
            if node.func.id == "SystemExit":
                self._exit(args[0] if args else None)
            exception = _EXCEPTIONS.get(node.func.id)
            if exception is not None:
                raise _Raised(exception(*args))
        raise Unsupported("raise")

    def _exit(self, value: Any) -> None:
        """``sys.exit(value)``: None is 0, an int is the status, anything else is printed and 1."""
        if value is None:
            raise Exited(0)
        if isinstance(value, int) and not isinstance(value, bool):
            raise Exited(value & 0xFF)
        self.process.write(f"{value}\n")
        raise Exited(1)

    def expression(self, node: ast.expr) -> Any:
        value = self._evaluate(node)
        if (isinstance(value, str | list | tuple) and len(value) > _MAX_SIZE) or (
                isinstance(value, int) and value.bit_length() > 64 * 1024):
            raise Unsupported("too big")
        return value

    def _evaluate(self, node: ast.expr) -> Any:  # one case per node type
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            raise _Raised(NameError(f"name '{node.id}' is not defined"))
        if isinstance(node, ast.JoinedStr):
            return "".join(self._formatted(value) for value in node.values)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self.expression(node.left), self.expression(node.right)
            if isinstance(node.op, ast.Pow) and isinstance(right, int) and abs(right) > 10_000:
                raise Unsupported("too big")
            if isinstance(node.op, ast.Mult) and isinstance(left, str | list) and isinstance(right, int) \
                    and len(left) * right > _MAX_SIZE:
                raise Unsupported("too big")
            return self._guard(lambda: _BINARY[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp):
            operand = self.expression(node.operand)
            if isinstance(node.op, ast.USub):
                return self._guard(lambda: -operand)
            if isinstance(node.op, ast.UAdd):
                return self._guard(lambda: +operand)
            if isinstance(node.op, ast.Not):
                return not operand
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            left, right = self.expression(node.left), self.expression(node.comparators[0])
            return self._guard(lambda: _COMPARE[type(node.ops[0])](left, right))
        if isinstance(node, ast.BoolOp):
            result: Any = None
            for value in node.values:
                result = self.expression(value)
                if bool(result) == isinstance(node.op, ast.Or):
                    return result
            return result
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.expression(item) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Subscript):
            container = self.expression(node.value)
            key = self._slice(node.slice) if isinstance(node.slice, ast.Slice) else self.expression(node.slice)
            return self._guard(lambda: container[key])
        if isinstance(node, ast.Call):
            return self._call(node)
        raise Unsupported(type(node).__name__)

    def _slice(self, node: ast.Slice) -> slice:
        parts = [None if part is None else self.expression(part) for part in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def _formatted(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return str(node.value)
        if isinstance(node, ast.FormattedValue) and node.conversion in (-1, ord("s"), ord("r")):
            value = self.expression(node.value)
            if node.conversion == ord("r"):
                value = repr(value)
            spec = self._formatted_spec(node.format_spec)
            return str(self._guard(lambda: format(value, spec)))
        raise Unsupported("f-string")

    def _formatted_spec(self, node: ast.expr | None) -> str:
        if node is None:
            return ""
        if isinstance(node, ast.JoinedStr):
            return "".join(self._formatted(value) for value in node.values)
        raise Unsupported("format spec")

    def _attribute(self, node: ast.Attribute) -> Any:
        if isinstance(node.value, ast.Name) and node.value.id in self.modules:
            module, name = node.value.id, node.attr
            if (module, name) == ("sys", "argv"):
                return list(self.argv)
            if (module, name) == ("os", "environ"):
                return dict(self.env)
        raise Unsupported("attribute")

    def _call(self, node: ast.Call) -> Any:
        function = node.func
        args = [self.expression(arg) for arg in node.args if not isinstance(arg, ast.Starred)]
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise Unsupported("*args")
        keywords = {keyword.arg: keyword.value for keyword in node.keywords}
        if None in keywords:
            raise Unsupported("**kwargs")
        if isinstance(function, ast.Name) and function.id not in self.names:
            if function.id == "print":
                self._print(args, keywords)  # type: ignore[arg-type]
                return None
            if function.id in ("exit", "quit") and not keywords:
                self._exit(args[0] if args else None)
            if function.id in _BUILTINS and not keywords:
                return self._guard(lambda: _BUILTINS[function.id](*args))
        if isinstance(function, ast.Attribute) and not keywords:
            target = function.value
            if isinstance(target, ast.Name) and target.id in self.modules:
                call = (target.id, function.attr)
                if call == ("sys", "exit"):
                    self._exit(args[0] if args else None)
                if call == ("os", "getenv") and 1 <= len(args) <= 2:
                    return self.env.get(args[0], args[1] if len(args) == 2 else None)
                if call == ("time", "sleep") and len(args) == 1 and isinstance(args[0], int | float):
                    if args[0] < 0:
                        raise _Raised(ValueError("sleep length must be non-negative"))
                    self.process.sleep(float(args[0]))
                    return None
            owner = self.expression(target)
            if isinstance(owner, dict) and function.attr == "get" and 1 <= len(args) <= 2:
                return owner.get(*args)
            if isinstance(owner, str) and function.attr in ("upper", "lower", "strip", "split", "join",
                                                             "replace", "startswith", "endswith", "format"):
                return self._guard(lambda: getattr(owner, function.attr)(*args))
        raise Unsupported("call")

    def _print(self, args: list[Any], keywords: dict[str, ast.expr]) -> None:
        options = {"sep": " ", "end": "\n"}
        for name, value in keywords.items():
            if name in options:
                given = self.expression(value)
                options[name] = options[name] if given is None else given
            elif name == "file":
                if not (isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
                        and value.value.id == "sys" and "sys" in self.modules
                        and value.attr in ("stdout", "stderr")):
                    raise Unsupported("print file")
            elif name != "flush":
                raise _Raised(TypeError(f"'{name}' is an invalid keyword argument for print()"))
        self.process.write(str(options["sep"]).join(str(arg) for arg in args) + str(options["end"]))

    @staticmethod
    def _guard(compute: Callable[[], Any]) -> Any:
        """Run one operation, turning a Python error into the user's traceback."""
        try:
            return compute()
        except (ArithmeticError, LookupError, TypeError, ValueError) as error:
            raise _Raised(error) from None
