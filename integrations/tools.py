"""The tool registry: every tool an agent can call, declared explicitly.

A tool has a name, a description the model reads, a JSON-Schema input, a side-effect class and a
timeout. `invoke()` validates arguments before the call and turns the tool's own failures into
an observation for the model (`ToolResult.is_error`); bugs in the registry itself raise.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
from django.db import models


class SideEffect(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"


class ToolError(Exception):
    """Raised by a tool for a failure the model should see and may recover from."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    side_effect: SideEffect
    timeout_seconds: float
    func: Callable[..., str]
    # Waits on the network or disk. The run loop hands its database connection back before
    # calling such a tool; a pure computation keeps it (handing back costs a pool round trip).
    io_bound: bool = True
    # A write tool that passes an idempotency key to the service it calls (so a repeat is harmless)
    # may be repeated after a crash instead of pausing the run for a person.
    idempotent: bool = False
    # Connector tools: the catalog integration whose connection they act through, and the scopes a
    # call needs. Their func takes a CallContext (integrations.calls) as its first argument.
    integration: str | None = None
    scopes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "side_effect": self.side_effect.value,
            "timeout_seconds": self.timeout_seconds,
            "io_bound": self.io_bound,
            "idempotent": self.idempotent,
            "integration": self.integration,
            "scopes": list(self.scopes),
        }


@dataclass(frozen=True)
class ToolResult:
    output: str
    is_error: bool
    duration_ms: int


_REGISTRY: dict[str, Tool] = {}

# Tool calls run in their own threads so a hung tool can't outlive its timeout inside the loop.
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="tool")


def register(tool: Tool) -> Tool:
    if tool.name in _REGISTRY:
        raise ValueError(f"tool {tool.name!r} registered twice")
    jsonschema.Draft202012Validator.check_schema(tool.input_schema)
    _REGISTRY[tool.name] = tool
    return tool


def tool(
    *,
    name: str,
    description: str,
    input_schema: dict[str, Any],
    side_effect: SideEffect,
    timeout_seconds: float,
    io_bound: bool = True,
    idempotent: bool = False,
    integration: str | None = None,
    scopes: tuple[str, ...] = (),
) -> Callable[[Callable[..., str]], Tool]:
    def decorate(func: Callable[..., str]) -> Tool:
        return register(
            Tool(
                name=name,
                description=description,
                input_schema=input_schema,
                side_effect=side_effect,
                timeout_seconds=timeout_seconds,
                func=func,
                io_bound=io_bound,
                idempotent=idempotent,
                integration=integration,
                scopes=tuple(scopes),
            )
        )

    return decorate


# Tools that exist per organization (operations of a registered OpenAPI document, tools of a
# registered MCP server): callables organization_id -> list[Tool], added by their modules.
_SOURCES: list[Callable[[Any], list[Tool]]] = []


def register_source(source: Callable[[Any], list[Tool]]) -> None:
    _SOURCES.append(source)


def _load_builtins() -> None:
    # Importing the modules registers their tools.
    from integrations import connectors  # noqa: F401
    from integrations.builtin import calculator, current_time, web_fetch  # noqa: F401


def for_organization(organization_id: Any) -> dict[str, Tool]:
    """Every tool an agent of this organization may pick: the static registry plus the
    organization's own (OpenAPI operations, MCP server tools)."""
    _load_builtins()
    found = dict(_REGISTRY)
    if organization_id is not None:
        for source in _SOURCES:
            for item in source(organization_id):
                found.setdefault(item.name, item)
    return dict(sorted(found.items()))


def all_tools() -> list[Tool]:
    _load_builtins()
    return sorted(_REGISTRY.values(), key=lambda t: t.name)


def get(name: str) -> Tool | None:
    _load_builtins()
    return _REGISTRY.get(name)


def names() -> set[str]:
    _load_builtins()
    return set(_REGISTRY)


def validation_error(tool: Tool, arguments: Any) -> str | None:
    validator = jsonschema.Draft202012Validator(tool.input_schema)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    if not errors:
        return None
    return "; ".join(
        (f"{'/'.join(str(p) for p in e.path)}: " if e.path else "") + e.message for e in errors[:5]
    )


def invoke(
    name: str, arguments: Any, *, timeout: float | None = None, tool: Tool | None = None, context: Any = None
) -> ToolResult:
    """Run a tool the model asked for. Unknown tools, bad arguments, tool errors and timeouts
    come back as error results for the model; anything else is our bug and raises.

    `tool` is the resolved tool when the caller already has it (organization tools aren't in the
    static registry); `context` is the CallContext a connector tool takes first."""
    started = time.monotonic()

    def result(output: str, is_error: bool) -> ToolResult:
        return ToolResult(output=output, is_error=is_error, duration_ms=int((time.monotonic() - started) * 1000))

    found = tool or get(name)
    if found is None:
        return result(f"Error: unknown tool {name!r}. Available tools are listed in your tool definitions.", True)
    problem = validation_error(found, arguments)
    if problem is not None:
        return result(f"Error: invalid arguments for {name}: {problem}", True)
    limit = found.timeout_seconds if timeout is None else max(0.01, min(found.timeout_seconds, timeout))
    if found.integration is not None:
        if context is None:
            raise TypeError(f"connector tool {name!r} needs a connection context")
        future = _executor.submit(found.func, context, **arguments)
    else:
        future = _executor.submit(found.func, **arguments)
    try:
        output = future.result(timeout=limit)
    except concurrent.futures.TimeoutError:
        future.cancel()
        return result(f"Error: {name} timed out after {limit:g} s.", True)
    except ToolError as exc:
        return result(f"Error: {exc}", True)
    except Exception as exc:  # noqa: BLE001 - a tool that raised is an observation, not a crash
        return result(f"Error: {name} failed: {type(exc).__name__}: {exc}", True)
    return result(str(output), False)
