"""The MCP server's work, synchronous and ORM-bound: the handlers run these in worker threads."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from django.conf import settings
from django.db import connections
from django.utils.text import slugify
from mcp.shared.exceptions import MCPError

from accounts import audit, quotas
from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.audit import RequestInfo
from accounts.roles import Access, Denied, access_for
from agents import selectors as agent_selectors
from agents import services as agent_services
from agents.models import Agent, Run
from config import ratelimit
from integrations import tools

RUN_URI = "agentry://runs/"
CALLER_KEY = "agentry.mcp.caller"  # where in the ASGI scope the endpoint hands the handlers the caller
AGENT_TOOL = re.compile(r"^agent_(?:[a-z0-9_]*_)?([0-9a-f]{8})$")

WAIT_DEFAULT = 60
WAIT_MAX = 300
POLL_SECONDS = 0.3
RESOURCE_LIMIT = 50
EVENT_LIMIT = 200
EVENT_CHARS = 500

AGENT_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "goal": {"type": "string", "minLength": 1, "maxLength": 20_000, "description": "What the agent should do."},
        "wait_seconds": {
            "type": "integer", "minimum": 1, "maximum": WAIT_MAX, "default": WAIT_DEFAULT,
            "description": "How long to wait for the answer. A run still going then keeps running; "
                           "read its resource later.",
        },
    },
    "required": ["goal"],
    "additionalProperties": False,
}
agent_arguments = jsonschema.Draft202012Validator(AGENT_INPUT_SCHEMA)


@dataclass
class Caller:
    """Who is calling: the key's user in the key's organization, narrowed by the key's scopes."""

    access: Access
    scopes: frozenset[str]
    request: RequestInfo

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            has = ", ".join(sorted(self.scopes)) or "none"
            raise ToolRefused(f"This API key lacks the '{scope}' scope (it has: {has}).")


class ToolRefused(Exception):
    """A call we won't make, told to the client as an error result its model can read."""


# --------------------------------------------------------------------------- in worker threads


async def in_thread(func, *args):
    """Runs `func` in a worker thread (the ORM is synchronous) and gives its connection back."""

    def call():
        try:
            return func(*args)
        finally:
            connections.close_all()  # only this thread's: back to the pool, not left open in an idle thread

    return await anyio.to_thread.run_sync(call)


def _rate_limit(token) -> ratelimit.Decision | None:
    # The key's bucket is the one the REST API counts it in: MCP is no way around the limit.
    if not settings.RATE_LIMIT_ENABLED:
        return None
    limit, burst = settings.RATE_LIMIT_ORGANIZATIONS.get(token.organization.slug, settings.RATE_LIMIT_DEFAULT)
    return ratelimit.hit(ratelimit.Identity("token", str(token.id), limit, burst))


def authenticate(raw: str, request: RequestInfo) -> tuple[Caller | None, ratelimit.Decision | None]:
    token = account_selectors.api_token_lookup(raw=raw)
    if token is None:
        return None, None
    access = access_for(user=token.user, organization=token.organization)
    if access is None:
        return None, None
    if account_selectors.api_token_is_stale(token):
        account_services.api_token_touch(token=token)
    caller = Caller(access=access, scopes=frozenset(token.scopes), request=request)
    return caller, _rate_limit(token)


# --------------------------------------------------------------------------- tools


def agent_tool_name(agent) -> str:
    """`agent_<slug of the name>_<first 8 hex of the id>`: at most 64 characters of [a-z0-9_]."""
    slug = slugify(agent.name).replace("-", "_")[:49].strip("_")
    return f"agent_{slug}_{agent.id.hex[:8]}" if slug else f"agent_{agent.id.hex[:8]}"


def _agent_description(agent) -> str:
    base = agent.description.strip() or f"Run the Agentry agent “{agent.name}” on a goal and return its answer."
    return f"{base}\n\nStarts a run and waits up to wait_seconds for its answer; the run is agentry://runs/<id>."


def _read_tools() -> list:
    return [t for t in tools.all_tools()
            if t.side_effect == tools.SideEffect.READ and getattr(t, "integration", None) is None]


def _can_run_agents(caller: Caller) -> bool:
    return "run" in caller.scopes and caller.access.can("agents.run_agent")


def list_tools(caller: Caller) -> list[types.Tool]:
    found: list[types.Tool] = []
    if _can_run_agents(caller):
        agents = agent_selectors.agent_list(organization=caller.access.organization, viewer=caller.access,
                                            ordering="name")
        for agent in agents:
            found.append(types.Tool(
                name=agent_tool_name(agent), title=agent.name, description=_agent_description(agent),
                input_schema=AGENT_INPUT_SCHEMA,
                annotations=types.ToolAnnotations(title=agent.name, read_only_hint=False, idempotent_hint=False,
                                                  open_world_hint=True),
            ))
    if "read" in caller.scopes:
        for tool in _read_tools():
            found.append(types.Tool(
                name=tool.name, title=tool.name, description=tool.description, input_schema=tool.input_schema,
                annotations=types.ToolAnnotations(read_only_hint=True, destructive_hint=False),
            ))
    return found


def _agent_for_tool(caller: Caller, name: str):
    """The visible agent this tool name stands for, or None (another organization's looks the same)."""
    match = AGENT_TOOL.match(name)
    if match is None:
        return None
    prefix = match.group(1)
    # The id's first 8 hex digits as a range: an index scan, not a text match on every id.
    low, high = uuid.UUID(prefix + "0" * 24), uuid.UUID(prefix + "f" * 24)
    candidates = Agent.objects.filter(agent_selectors.agent_visible_q(caller.access),
                                      organization=caller.access.organization, id__gte=low, id__lte=high)
    return next((agent for agent in candidates if agent_tool_name(agent) == name), None)


def is_agent_tool(caller: Caller, name: str) -> bool:
    return _agent_for_tool(caller, name) is not None


def start_run(caller: Caller, name: str, goal: str) -> uuid.UUID:
    """The same checks as POST /api/agents/<id>/runs: the key's scope, the role, the quota."""
    agent = _agent_for_tool(caller, name)
    if agent is None:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")
    caller.require_scope("run")
    try:
        caller.access.require("agents.run_agent")
    except Denied as exc:
        raise ToolRefused(exc.message) from None
    try:
        quotas.check_run_allowed(organization=agent.organization, user=caller.access.user)
    except quotas.QuotaExceeded as exc:
        raise ToolRefused(str(exc)) from None
    # run_start audits the run: with the MCP request's address, user agent and id, as through Django.
    with audit.request_context(caller.request):
        return agent_services.run_start(agent=agent, goal=goal, actor=caller.access.user).id


def run_state(run_id: uuid.UUID) -> dict[str, Any]:
    return Run.objects.filter(id=run_id).values("id", "status", "stop_reason", "answer", "error", "steps").get()


def invoke_read_tool(caller: Caller, name: str, arguments: dict[str, Any]):
    if name not in {t.name for t in _read_tools()}:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")
    caller.require_scope("read")
    return tools.invoke(name, arguments)


# --------------------------------------------------------------------------- runs as resources


def _require_run_reading(caller: Caller) -> None:
    if "read" not in caller.scopes:
        raise MCPError(code=types.INVALID_REQUEST, message="This API key lacks the 'read' scope.")
    try:
        caller.access.require("agents.view_run")
    except Denied as exc:
        raise MCPError(code=types.INVALID_REQUEST, message=exc.message) from None


def _run_label(run) -> str:
    name = run.agent.name if run.agent is not None else run.config.get("name", "deleted agent")
    return f"{name} — {run.status}"


def list_runs(caller: Caller) -> list[types.Resource]:
    _require_run_reading(caller)
    runs = agent_selectors.run_list(organization=caller.access.organization, viewer=caller.access)[:RESOURCE_LIMIT]
    return [
        types.Resource(uri=f"{RUN_URI}{run.id}", name=_run_label(run), title=_run_label(run),
                       description=_clip(run.goal, 200), mime_type="application/json")
        for run in runs
    ]


def _clip(text: str, limit: int = EVENT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _event_summary(event) -> dict[str, Any]:
    data = event.data or {}
    content = next((data[key] for key in ("content", "output", "message", "error") if data.get(key)), None)
    if content is None and "arguments" in data:
        content = json.dumps(data["arguments"], ensure_ascii=False)
    if content is None:
        content = data.get("status", "")
    return {
        "seq": event.seq, "type": event.type, "tool": data.get("tool"),
        "is_error": bool(data.get("is_error", event.type == "error")), "content": _clip(str(content)),
    }


def read_run(caller: Caller, uri: str) -> str:
    _require_run_reading(caller)
    try:
        run_id = uuid.UUID(uri.removeprefix(RUN_URI)) if uri.startswith(RUN_URI) else None
    except ValueError:
        run_id = None
    run = run_id and agent_selectors.run_get(organization=caller.access.organization, viewer=caller.access,
                                             run_id=run_id)
    if run is None:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Resource not found: {uri}")
    return json.dumps({
        "id": str(run.id),
        "uri": f"{RUN_URI}{run.id}",
        "agent": {"id": str(run.agent_id) if run.agent_id else None,
                  "name": run.agent.name if run.agent is not None else run.config.get("name")},
        "status": run.status,
        "stop_reason": run.stop_reason or None,
        "goal": run.goal,
        "answer": run.answer,
        "error": run.error,
        "steps": run.steps,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "events": [_event_summary(event) for event in agent_selectors.run_events(run=run, limit=EVENT_LIMIT)],
    }, ensure_ascii=False)
