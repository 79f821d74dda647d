"""The run loop: think → call tool → observe → repeat.

Bounded by `max_steps` (model calls) and a wall-clock deadline, checks for cancellation before
every model call and every tool call, and persists one event row per thought, tool call, tool
result and final answer. Mistakes the model makes (unknown tool, bad arguments, a tool that
failed) become observations it sees; provider failures fail the run with the provider's message;
our own bugs fail the run as `internal_error` and re-raise so they show in the worker log.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections, connection
from django.utils import timezone

from agents import events, services
from agents.llm import ChatMessage, ModelError, ModelResponse, Provider, ToolSpec, get_provider
from agents.models import Run, RunEvent
from integrations import tools as tool_registry

logger = logging.getLogger(__name__)

Status = Run.Status
StopReason = Run.StopReason


class _Stop(Exception):
    """Ends the loop early with a terminal status (cancelled, timed out, max steps)."""

    def __init__(self, status: str, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass
class _Context:
    run: Run
    provider: Provider
    tool_specs: list[ToolSpec]
    deadline: datetime

    @property
    def config(self) -> dict:
        return self.run.config

    def remaining(self) -> float:
        return (self.deadline - timezone.now()).total_seconds()


def execute_run(run_id) -> None:
    """Claim a queued run and drive it to a terminal status. Safe to call twice for one run."""
    if not services.run_transition(run_id=run_id, to=Status.RUNNING, only_from=(Status.QUEUED,)):
        logger.info("run %s was not queued; another delivery got it or it was cancelled", run_id)
        return
    run = Run.objects.get(id=run_id)
    try:
        ctx = _prepare(run)
        answer = _loop(ctx, _initial_messages(run))
    except _Stop as stop:
        _finish(run, stop.status, stop.reason, error=stop.message)
    except ModelError as exc:
        events.record(run_id=run.id, type=RunEvent.Type.ERROR, data={"message": str(exc), "source": "model"})
        _finish(run, Status.FAILED, StopReason.MODEL_ERROR, error=str(exc))
    except Exception as exc:
        logger.exception("run %s crashed", run_id)
        close_old_connections()
        message = f"Internal error: {type(exc).__name__}: {exc}"
        events.record(run_id=run.id, type=RunEvent.Type.ERROR, data={"message": message, "source": "internal"})
        _finish(run, Status.FAILED, StopReason.INTERNAL_ERROR, error=message)
        raise
    else:
        _finish(run, Status.SUCCEEDED, StopReason.FINAL_ANSWER, answer=answer)


def _prepare(run: Run) -> _Context:
    config = run.config
    specs = []
    for name in config["tools"]:
        tool = tool_registry.get(name)
        if tool is not None:  # a tool removed since the agent was saved is simply not offered
            specs.append(ToolSpec(name=tool.name, description=tool.description, input_schema=tool.input_schema))
    return _Context(
        run=run,
        provider=get_provider(config["model"]),
        tool_specs=specs,
        deadline=run.started_at + timedelta(seconds=config["timeout_seconds"]),
    )


def _initial_messages(run: Run) -> list[ChatMessage]:
    goal = run.goal
    if run.context not in (None, {}, [], ""):
        goal += "\n\nContext (JSON):\n" + json.dumps(run.context, indent=2, ensure_ascii=False, default=str)
    return [ChatMessage.user(goal)]


def _checkpoint(ctx: _Context) -> None:
    """Before every model call and tool call: has someone cancelled, or has time run out?"""
    cancelled = Run.objects.filter(id=ctx.run.id, cancel_requested_at__isnull=False).exists()
    if cancelled:
        raise _Stop(Status.CANCELLED, StopReason.CANCELLED, "Cancelled by request.")
    if ctx.remaining() <= 0:
        raise _Stop(
            Status.TIMED_OUT, StopReason.TIMEOUT, f"Run exceeded its {ctx.config['timeout_seconds']} s deadline."
        )


def _loop(ctx: _Context, messages: list[ChatMessage]) -> str:
    max_steps = ctx.config["max_steps"]
    for step in range(1, max_steps + 1):
        _checkpoint(ctx)
        response = _think(ctx, messages, step)
        if not response.tool_calls:
            events.record(
                run_id=ctx.run.id, type=RunEvent.Type.FINAL_ANSWER, data={"content": response.text, "step": step}
            )
            return response.text
        messages.append(ChatMessage.assistant(response.text, response.tool_calls))
        for call in response.tool_calls:
            _checkpoint(ctx)
            messages.append(_act(ctx, call, step))
    raise _Stop(Status.FAILED, StopReason.MAX_STEPS, f"Stopped after {max_steps} steps without a final answer.")


def _release_connection() -> None:
    # Give the pooled DB connection back while we wait on the model or a tool: a worker thread
    # spends most of its life waiting, and holding a connection would cap concurrent runs at the
    # pool size. Inside an outer transaction (a caller's or a test's) the connection must stay.
    if not connection.in_atomic_block:
        connection.close()


def _think(ctx: _Context, messages: list[ChatMessage], step: int) -> ModelResponse:
    _release_connection()
    started = time.monotonic()
    try:
        response = ctx.provider.complete(
            model=ctx.config["model"],
            system=ctx.config["system_prompt"],
            messages=messages,
            tools=ctx.tool_specs,
            timeout=max(1.0, ctx.remaining()),
        )
    except ModelError:
        if ctx.remaining() <= 0:  # the provider gave up because our deadline cut it short
            raise _Stop(
                Status.TIMED_OUT, StopReason.TIMEOUT, f"Run exceeded its {ctx.config['timeout_seconds']} s deadline."
            ) from None
        raise
    duration_ms = int((time.monotonic() - started) * 1000)
    usage = response.usage
    services.run_add_usage(
        run_id=ctx.run.id,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
    )
    events.record(
        run_id=ctx.run.id,
        type=RunEvent.Type.THOUGHT,
        data={
            "content": response.text,
            "step": step,
            "duration_ms": duration_ms,
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": str(usage.cost_usd),
            },
        },
    )
    return response


def _act(ctx: _Context, call, step: int) -> ChatMessage:
    events.record(
        run_id=ctx.run.id,
        type=RunEvent.Type.TOOL_START,
        data={"tool": call.name, "call_id": call.id, "arguments": call.arguments, "step": step},
    )
    _release_connection()  # tools may wait on the network too
    if call.name not in ctx.config["tools"]:
        result = tool_registry.ToolResult(
            output=f"Error: tool {call.name!r} is not available to this agent. "
            f"Available: {', '.join(ctx.config['tools']) or 'none'}.",
            is_error=True,
            duration_ms=0,
        )
    else:
        result = tool_registry.invoke(call.name, call.arguments, timeout=ctx.remaining())
    events.record(
        run_id=ctx.run.id,
        type=RunEvent.Type.TOOL_END,
        data={
            "tool": call.name,
            "call_id": call.id,
            "output": result.output,
            "is_error": result.is_error,
            "duration_ms": result.duration_ms,
            "step": step,
        },
    )
    return ChatMessage.tool(call=call, content=result.output, is_error=result.is_error)


def _finish(run: Run, status: str, reason: str, *, answer: str = "", error: str = "") -> None:
    fields = {"stop_reason": reason}
    if answer:
        fields["answer"] = answer
    if error:
        fields["error"] = error
    services.run_transition(run_id=run.id, to=status, only_from=(Status.RUNNING,), **fields)
