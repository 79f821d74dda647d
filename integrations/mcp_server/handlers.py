"""The SDK's request handlers: who is calling comes from the endpoint, the work from `calls`."""

from __future__ import annotations

import time
from typing import Any

import anyio
import mcp_types as types
from django.conf import settings
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from agents.models import Run
from integrations.mcp_server.calls import (
    AGENT_TOOL,
    CALLER_KEY,
    POLL_SECONDS,
    RUN_URI,
    WAIT_DEFAULT,
    Caller,
    ToolRefused,
    agent_arguments,
    in_thread,
    invoke_read_tool,
    is_agent_tool,
    list_runs,
    list_tools,
    read_run,
    run_state,
    start_run,
)


def _caller(ctx: ServerRequestContext) -> Caller:
    caller = ctx.request.scope.get(CALLER_KEY) if ctx.request is not None else None
    if caller is None:  # only reachable by mounting the server without McpEndpoint
        raise MCPError(code=types.INVALID_REQUEST, message="Not authenticated.")
    return caller


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def _run_result(state: dict[str, Any], waited: int) -> types.CallToolResult:
    run_id, status = state["id"], state["status"]
    uri = f"{RUN_URI}{run_id}"
    if status == Run.Status.SUCCEEDED:
        text = state["answer"] or "(The run finished without an answer.)"
    elif status in Run.TERMINAL:
        verb = {Run.Status.CANCELLED: "was cancelled", Run.Status.TIMED_OUT: "timed out"}.get(status, status)
        text = f"The run {verb}: {state['error'] or state['stop_reason'] or 'no reason given'}"
    else:
        text = (f"The run is still {status.replace('_', ' ')} after {waited} s; it keeps going. "
                f"Read {uri} for its result later.")
    footer = f"Run {run_id} ({status}, {state['steps']} steps): {uri}"
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text), types.TextContent(type="text", text=footer),
                 types.ResourceLink(type="resource_link", uri=uri, name=f"run {run_id}", mime_type="application/json")],
        structured_content={"run_id": str(run_id), "status": status, "answer": state["answer"],
                            "error": state["error"], "uri": uri},
        is_error=status in Run.TERMINAL and status != Run.Status.SUCCEEDED,
    )


async def _call_agent(caller: Caller, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    errors = sorted(agent_arguments.iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join((f"{'/'.join(map(str, e.path))}: " if e.path else "") + e.message for e in errors[:5])
        return _error(f"Invalid arguments for {name}: {problems}")
    goal = arguments["goal"].strip()
    if not goal:
        return _error(f"Invalid arguments for {name}: goal: may not be blank")
    wait = arguments.get("wait_seconds", WAIT_DEFAULT)
    run_id = await in_thread(start_run, caller, name, goal)
    started = time.monotonic()
    while True:
        state = await in_thread(run_state, run_id)
        if state["status"] in Run.TERMINAL or time.monotonic() - started >= wait:
            return _run_result(state, wait)
        await anyio.sleep(POLL_SECONDS)


async def on_call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
    caller = _caller(ctx)
    arguments = params.arguments or {}
    try:
        if AGENT_TOOL.match(params.name) and await in_thread(is_agent_tool, caller, params.name):
            return await _call_agent(caller, params.name, arguments)
        result = await in_thread(invoke_read_tool, caller, params.name, arguments)
    except ToolRefused as exc:
        return _error(str(exc))
    return types.CallToolResult(content=[types.TextContent(type="text", text=result.output)], is_error=result.is_error)


async def on_list_tools(
    ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=await in_thread(list_tools, _caller(ctx)))


async def on_list_resources(
    ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=await in_thread(list_runs, _caller(ctx)))


async def on_list_resource_templates(
    ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
        uri_template=f"{RUN_URI}{{run_id}}", name="run", title="An Agentry run",
        description="A run's status, answer and step summary.", mime_type="application/json",
    )])


async def on_read_resource(
    ctx: ServerRequestContext, params: types.ReadResourceRequestParams
) -> types.ReadResourceResult:
    text = await in_thread(read_run, _caller(ctx), str(params.uri))
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=str(params.uri), mime_type="application/json", text=text)]
    )


server: Server = Server(
    "agentry",
    version=settings.SPECTACULAR_SETTINGS.get("VERSION", ""),
    title="Agentry",
    instructions="Agentry's agents are tools here: call one with a goal and get its answer. "
                 "Runs are resources (agentry://runs/<id>) with their status, answer and steps.",
    on_list_tools=on_list_tools,
    on_call_tool=on_call_tool,
    on_list_resources=on_list_resources,
    on_list_resource_templates=on_list_resource_templates,
    on_read_resource=on_read_resource,
)
