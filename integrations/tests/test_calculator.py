from __future__ import annotations

import time

import pytest

from integrations import tools
from integrations.builtin.calculator import MAX_LENGTH, evaluate
from integrations.tools import ToolError


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("17*23", "391"),
        ("1 + 2", "3"),
        ("10 - 12", "-2"),
        ("7 // 2", "3"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("2 ^ 10", "1024"),
    ],
)
def test_it_does_basic_arithmetic(expression, expected):
    assert evaluate(expression) == expected


def test_it_follows_operator_precedence_and_parentheses():
    assert evaluate("2 + 3 * 4") == "14"
    assert evaluate("(2 + 3) * 4") == "20"
    assert evaluate("2 ** 3 ** 2") == "512"
    assert evaluate("2^3+1") == "9"  # ^ binds like power, not like Python's XOR


def test_it_handles_unary_minus():
    assert evaluate("-5 + 2") == "-3"
    assert evaluate("-(3 - 10)") == "7"
    assert evaluate("-2 ** 2") == "-4"
    assert evaluate("--4") == "4"


def test_it_formats_floats_compactly():
    assert evaluate("10 / 2") == "5"
    assert evaluate("1 / 3") == "0.333333333333"
    assert evaluate("0.1 + 0.2") == "0.3"
    assert evaluate("1e20 * 3") == "3e+20"
    assert evaluate("-0.0") == "0"


def test_it_keeps_big_integers_exact():
    assert evaluate("2 ** 100") == "1267650600228229401496703205376"


def test_it_knows_functions_and_constants():
    assert evaluate("sqrt(16) + abs(-3)") == "7"
    assert evaluate("round(2.567, 2)") == "2.57"
    assert evaluate("min(4, 2, 8) + max(1, 9)") == "11"
    assert evaluate("floor(2.7) + ceil(2.1)") == "5"
    assert evaluate("log(8, 2)") == "3"
    assert evaluate("exp(0) + cos(0) + sin(0) + tan(0)") == "2"
    assert evaluate("pi") == "3.14159265359"
    assert evaluate("log(e)") == "1"


@pytest.mark.parametrize("expression", ["1 / 0", "5 // 0", "5 % 0", "0 ** -1"])
def test_it_reports_division_by_zero(expression):
    with pytest.raises(ToolError, match="division by zero"):
        evaluate(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "().__class__",
        "(1).real",
        "x + 1",
        "open('/etc/passwd')",
        "'abc'",
        "[1, 2]",
        "[x for x in (1, 2)]",
        "(lambda: 1)()",
        "1 if 1 else 2",
        "1 < 2",
        "True + 1",
        "3 & 1",
        "round(x=1)",
    ],
)
def test_it_refuses_anything_but_arithmetic(expression):
    with pytest.raises(ToolError, match="not allowed"):
        evaluate(expression)


def test_it_refuses_huge_powers_before_computing_them():
    started = time.monotonic()
    with pytest.raises(ToolError, match="too large"):
        evaluate("9 ** 9 ** 9 ** 9")
    with pytest.raises(ToolError, match="too large"):
        evaluate("2 ** 100000000")
    with pytest.raises(ToolError, match="too large"):
        evaluate("(10 ** 3000) * (10 ** 3000)")
    assert time.monotonic() - started < 1


def test_it_refuses_rounding_to_absurd_precision():
    with pytest.raises(ToolError, match="digits"):
        evaluate("round(5, -10 ** 9)")


def test_it_refuses_results_that_are_not_real_numbers():
    with pytest.raises(ToolError, match="not a real number"):
        evaluate("(-8) ** 0.5")
    with pytest.raises(ToolError, match="math domain error"):
        evaluate("sqrt(-1)")
    with pytest.raises(ToolError, match="not a finite number"):
        evaluate("1e308 * 10")


def test_it_refuses_too_long_input():
    with pytest.raises(ToolError, match="too long"):
        evaluate("1+" * MAX_LENGTH + "1")


def test_it_refuses_deeply_nested_input():
    with pytest.raises(ToolError):
        evaluate("-" * 400 + "1")
    with pytest.raises(ToolError, match="could not parse"):
        evaluate("(" * 240 + "1" + ")" * 240)


def test_it_reports_syntax_errors():
    with pytest.raises(ToolError, match="could not parse"):
        evaluate("2 +* 3")


def test_it_is_registered_and_returns_results_through_invoke():
    result = tools.invoke("calculator", {"expression": "17*23"})
    assert (result.output, result.is_error) == ("391", False)

    refused = tools.invoke("calculator", {"expression": "__import__('os').system('true')"})
    assert refused.is_error
    assert "not allowed" in refused.output

    too_long = tools.invoke("calculator", {"expression": "1" * (MAX_LENGTH + 1)})
    assert too_long.is_error
    assert "expression" in too_long.output
