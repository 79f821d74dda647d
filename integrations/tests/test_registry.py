from __future__ import annotations

import threading

import jsonschema
import pytest

from integrations import tools
from integrations.tools import SideEffect, Tool, ToolError

BUILTINS = {"calculator", "current_time", "web_fetch"}

# Test-only tools live in the process-wide registry; register each once per process.
_SLOW = "test_registry_slow_tool"
_FAILING = "test_registry_failing_tool"
_BUGGY = "test_registry_buggy_tool"
_release_slow_tool = threading.Event()


def _register_once(name: str, func, *, timeout_seconds: float = 5) -> None:
    if tools.get(name) is None:
        tools.register(
            Tool(
                name=name,
                description=f"{name}: a tool that exists only in the registry tests.",
                input_schema={"type": "object", "properties": {}, "additionalProperties": False},
                side_effect=SideEffect.READ,
                timeout_seconds=timeout_seconds,
                func=func,
            )
        )


def _slow() -> str:
    _release_slow_tool.wait(timeout=10)
    return "finally"


def _failing() -> str:
    raise ToolError("the widget is out of stock")


def _buggy() -> str:
    return {}["missing"]


@pytest.fixture
def test_tools():
    _release_slow_tool.clear()
    _register_once(_SLOW, _slow, timeout_seconds=10)
    _register_once(_FAILING, _failing)
    _register_once(_BUGGY, _buggy)
    yield
    _release_slow_tool.set()  # don't leave a pool thread waiting


def test_the_registry_lists_the_three_builtin_tools_with_schemas():
    listed = {t.name: t for t in tools.all_tools()}

    assert BUILTINS <= set(listed)
    assert BUILTINS <= tools.names()
    for name in BUILTINS:
        found = tools.get(name)
        assert found is listed[name]
        assert found.side_effect == SideEffect.READ
        assert len(found.description) > 40
        schema = found.input_schema
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert "required" in schema
        assert set(schema["required"]) <= set(schema["properties"])
        as_dict = found.as_dict()
        assert as_dict["name"] == name
        assert as_dict["side_effect"] == "read"
        assert as_dict["input_schema"] == schema


def test_the_registry_lists_tools_sorted_by_name():
    listed = [t.name for t in tools.all_tools()]
    assert listed == sorted(listed)


def test_it_refuses_to_register_a_name_twice():
    existing = tools.get("calculator")

    with pytest.raises(ValueError, match="registered twice"):
        tools.register(existing)


def test_it_rejects_unknown_tools_as_error_results():
    result = tools.invoke("no_such_tool", {})

    assert result.is_error
    assert "unknown tool 'no_such_tool'" in result.output


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "'expression' is a required property"),
        ({"expression": 42}, "expression: 42 is not of type 'string'"),
        ({"expression": "1+1", "extra": True}, "'extra' was unexpected"),
        ("1+1", "is not of type 'object'"),
    ],
)
def test_it_rejects_invalid_arguments_as_error_results(arguments, problem):
    result = tools.invoke("calculator", arguments)

    assert result.is_error
    assert "invalid arguments for calculator" in result.output
    assert problem in result.output


def test_a_tool_error_becomes_an_error_result(test_tools):
    result = tools.invoke(_FAILING, {})

    assert result.is_error
    assert result.output == "Error: the widget is out of stock"


def test_an_unexpected_exception_in_a_tool_becomes_an_error_result(test_tools):
    result = tools.invoke(_BUGGY, {})

    assert result.is_error
    assert f"{_BUGGY} failed: KeyError" in result.output


def test_a_slow_tool_times_out_as_an_error_result(test_tools):
    result = tools.invoke(_SLOW, {}, timeout=0.05)

    assert result.is_error
    assert f"{_SLOW} timed out after 0.05 s" in result.output
    assert result.duration_ms < 5_000


def test_a_successful_call_reports_its_output_and_duration():
    result = tools.invoke("calculator", {"expression": "6 * 7"})

    assert result == tools.ToolResult(output="42", is_error=False, duration_ms=result.duration_ms)
    assert result.duration_ms >= 0
