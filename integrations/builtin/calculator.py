"""`calculator`: arithmetic the model can trust, evaluated without eval().

The expression is parsed with `ast` and walked node by node; anything that isn't a number, an
arithmetic operator or one of a handful of math functions is refused. Integers stay exact, but
their size is capped so `9**9**9` can't pin a worker thread or exhaust memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from integrations.tools import SideEffect, ToolError, tool

MAX_LENGTH = 500
MAX_DEPTH = 100
# About 3,000 decimal digits: plenty for real arithmetic, well under Python's int->str limit (4,300 digits).
MAX_INT_BITS = 10_000
MAX_ROUND_DIGITS = 100

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}

_OPERATOR_SYMBOLS: dict[type[ast.AST], str] = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Not: "not",
}

_DESCRIPTIONS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.Compare: "a comparison",
    ast.BoolOp: "a boolean operator",
    ast.IfExp: "a conditional expression",
    ast.NamedExpr: "assignment",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.JoinedStr: "an f-string",
    ast.Starred: "a star argument",
}

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _round(value: Number, digits: Number | None = None) -> Number:
    if digits is None:
        return round(value)
    if not isinstance(digits, int):
        raise ToolError("round() digits must be an integer")
    # round(5, -10**9) would compute 10**(10**9) internally.
    if abs(digits) > MAX_ROUND_DIGITS:
        raise ToolError(f"round() digits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}")
    return round(value, digits)


def _log(value: Number, base: Number | None = None) -> float:
    return math.log(value) if base is None else math.log(value, base)


# name -> (function, minimum arguments, maximum arguments or None for any number)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (lambda *args: min(args), 1, None),
    "max": (lambda *args: max(args), 1, None),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "log": (_log, 1, 2),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
}


def _too_large() -> ToolError:
    return ToolError(f"result is too large (integers are limited to {MAX_INT_BITS} bits, about 3000 digits)")


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise ToolError("result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_large()
    return value


def _power(base: Number, exponent: Number) -> Number:
    # Refuse before computing: the size of base**exponent is known from the logarithm, and
    # computing a billion-digit integer first and checking afterwards is the attack itself.
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise _too_large()
    return base**exponent


def _describe(node: ast.AST) -> str:
    return _DESCRIPTIONS.get(type(node), f"{type(node).__name__} syntax")


def _evaluate(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise ToolError("expression is nested too deeply")
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        # bool is an int subclass; True + True is not arithmetic anyone means.
        if type(node.value) in (int, float):
            return _checked(node.value)
        kind = "strings" if isinstance(node.value, str | bytes) else f"{type(node.value).__name__} values"
        raise ToolError(f"{kind} are not allowed; only numbers")
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"name {node.id!r} is not allowed; the only constants are pi and e")
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return _checked(-_evaluate(node.operand, depth + 1))
        if isinstance(node.op, ast.UAdd):
            return _checked(+_evaluate(node.operand, depth + 1))
        raise ToolError(f"operator {_OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)} is not allowed")
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            return _checked(_power(_evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)))
        apply = _BINARY.get(type(node.op))
        if apply is None:
            symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise ToolError(f"operator {symbol} is not allowed")
        return _checked(apply(_evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)))
    if isinstance(node, ast.Call):
        return _call(node, depth)
    raise ToolError(f"{_describe(node)} is not allowed")


def _call(node: ast.Call, depth: int) -> Number:
    if not isinstance(node.func, ast.Name):
        raise ToolError(f"calling {_describe(node.func)} is not allowed; only the listed functions can be called")
    name = node.func.id
    if name not in _FUNCTIONS:
        raise ToolError(f"function {name!r} is not allowed; available: {', '.join(_FUNCTIONS)}")
    if node.keywords:
        raise ToolError("keyword arguments are not allowed")
    if any(isinstance(arg, ast.Starred) for arg in node.args):
        raise ToolError("star arguments are not allowed")
    func, minimum, maximum = _FUNCTIONS[name]
    count = len(node.args)
    if count < minimum or (maximum is not None and count > maximum):
        if maximum is None:
            expected = f"{minimum} or more"
        else:
            expected = str(minimum) if minimum == maximum else f"{minimum} to {maximum}"
        raise ToolError(f"{name}() takes {expected} argument(s), got {count}")
    args = [_evaluate(arg, depth + 1) for arg in node.args]
    return _checked(func(*args))


def _format(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ToolError("result is not a finite number")
    # 10/2 reads better as "5"; beyond 1e15 a float no longer holds every integer exactly.
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


def evaluate(expression: str) -> str:
    """Evaluate `expression` and return the result as a compact string, or raise ToolError."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression is too long ({len(expression)} characters; the limit is {MAX_LENGTH})")
    # `^` is power here, as on a calculator, not Python's XOR. Rewriting the text (rather than
    # treating the XOR node as power) keeps math precedence: 2^3+1 is 9, -2^2 is -4.
    source = expression.strip().replace("^", "**")
    if not source:
        raise ToolError("expression is empty")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"could not parse expression: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ToolError("could not parse expression") from None
    try:
        return _format(_evaluate(tree))
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("result is too large") from None
    except ValueError as exc:
        raise ToolError(f"math error: {exc}") from None
    except TypeError as exc:
        raise ToolError(f"invalid operands: {exc}") from None


@tool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression and return the exact result. Use it for any calculation instead of "
        "doing arithmetic yourself. Supports numbers (integers are exact, up to about 3000 digits), "
        "+ - * / // (floor division) % (remainder) ** (power; ^ also means power), parentheses, unary minus, "
        "the functions sqrt, abs, round(x[, digits]), min, max, floor, ceil, log(x[, base]) (natural log by "
        "default), exp, sin, cos, tan (radians), and the constants pi and e. Nothing else is allowed: no "
        "variables, strings or other functions. Floats are shown with up to 12 significant digits. "
        'Example: {"expression": "(17 * 23 + 4) / 5"}.'
    ),
    input_schema={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_LENGTH,
                "description": 'The arithmetic expression, e.g. "2^10 + sqrt(16) * (3 - 1)".',
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=5,
    io_bound=False,
)
def calculator(expression: str) -> str:
    return evaluate(expression)
