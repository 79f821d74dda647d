"""The run loop: think → call tool → observe → repeat.

Bounded by `max_steps` (model calls) and a wall-clock deadline, checks for cancellation before
every model call and every tool call, and persists one event row per thought, tool call, tool
result and final answer. Mistakes the model makes (unknown tool, bad arguments, a tool that
failed) become observations it sees; provider failures fail the run with the provider's message;
our own bugs fail the run as `internal_error` and re-raise so they show in the worker log.

Writes on the hot path are batched: a model response is stored together with its first tool
call (thought + tool_start, one commit), and each write reports whether a cancel was requested,
so a tool step costs two commits and no extra reads.
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
from agents.llm import ChatMessage, ModelError, ModelResponse, Provider, ToolCall, ToolSpec, get_provider
from agents.models import Run, RunEvent
from integrations import tools as tool_registry

logger = logging.getLogger(__name__)

Status = Run.Status
StopReason = Run.StopReason
Type = RunEvent.Type


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
    cancel_requested: bool = False

    @property
    def config(self) -> dict:
        return self.run.config

    def remaining(self) -> float:
        return (self.deadline - timezone.now()).total_seconds()

    def write(self, items: list[tuple[str, dict]], **kwargs) -> None:
        recorded = events.record_many(run_id=self.run.id, items=items, **kwargs)
        self.cancel_requested = recorded.cancel_requested


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
    except LookupError:
        # The run's row is gone (its organization or agent was deleted mid-run): nothing to finish.
        logger.warning("run %s was deleted while it ran", run_id)
    except ModelError as exc:
        events.record(run_id=run.id, type=Type.ERROR, data={"message": str(exc), "source": "model"})
        _finish(run, Status.FAILED, StopReason.MODEL_ERROR, error=str(exc))
    except Exception as exc:
        logger.exception("run %s crashed", run_id)
        close_old_connections()
        message = f"Internal error: {type(exc).__name__}: {exc}"
        events.record(run_id=run.id, type=Type.ERROR, data={"message": message, "source": "internal"})
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
        cancel_requested=run.cancel_requested_at is not None,
    )


def _initial_messages(run: Run) -> list[ChatMessage]:
    goal = run.goal
    if run.context not in (None, {}, [], ""):
        goal += "\n\nContext (JSON):\n" + json.dumps(run.context, indent=2, ensure_ascii=False, default=str)
    return [ChatMessage.user(goal)]


def _checkpoint(ctx: _Context) -> None:
    """Before every model call and tool call: has someone cancelled, or has time run out?

    The cancel flag comes back from the run's latest write, which precedes every checkpoint."""
    if ctx.cancel_requested:
        raise _Stop(Status.CANCELLED, StopReason.CANCELLED, "Cancelled by request.")
    if ctx.remaining() <= 0:
        raise _Stop(
            Status.TIMED_OUT, StopReason.TIMEOUT, f"Run exceeded its {ctx.config['timeout_seconds']} s deadline."
        )


def _loop(ctx: _Context, messages: list[ChatMessage]) -> str:
    max_steps = ctx.config["max_steps"]
    for step in range(1, max_steps + 1):
        _checkpoint(ctx)
        response, thought = _think(ctx, messages, step)
        if not response.tool_calls:
            ctx.write([thought, (Type.FINAL_ANSWER, {"content": response.text, "step": step})], **_usage(response))
            return response.text
        messages.append(ChatMessage.assistant(response.text, response.tool_calls))
        for index, call in enumerate(response.tool_calls):
            if index == 0:
                # The thought and the first call it asks for are stored together, before the call runs.
                ctx.write([thought, _tool_start(call, step)], **_usage(response))
            else:
                ctx.write([_tool_start(call, step)])
            _checkpoint(ctx)
            messages.append(_act(ctx, call, step))
    raise _Stop(Status.FAILED, StopReason.MAX_STEPS, f"Stopped after {max_steps} steps without a final answer.")


def _release_connection() -> None:
    # Give the pooled DB connection back while we wait on the model or a tool: a worker thread
    # spends most of its life waiting, and holding a connection would cap concurrent runs at the
    # pool size. Inside an outer transaction (a caller's or a test's) the connection must stay.
    if not connection.in_atomic_block:
        connection.close()


def _usage(response: ModelResponse) -> dict:
    usage = response.usage
    return {
        "usage": events.Usage(usage.input_tokens, usage.output_tokens, usage.cost_usd),
        "step": True,
    }


def _think(ctx: _Context, messages: list[ChatMessage], step: int) -> tuple[ModelResponse, tuple[str, dict]]:
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
    usage = response.usage
    thought = (
        Type.THOUGHT,
        {
            "content": response.text,
            "step": step,
            "duration_ms": int((time.monotonic() - started) * 1000),
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": str(usage.cost_usd),
            },
        },
    )
    return response, thought


def _tool_start(call: ToolCall, step: int) -> tuple[str, dict]:
    return Type.TOOL_START, {"tool": call.name, "call_id": call.id, "arguments": call.arguments, "step": step}


def _act(ctx: _Context, call: ToolCall, step: int) -> ChatMessage:
    tool = tool_registry.get(call.name)
    if tool is None or tool.io_bound:
        _release_connection()
    if call.name not in ctx.config["tools"]:
        result = tool_registry.ToolResult(
            output=f"Error: tool {call.name!r} is not available to this agent. "
            f"Available: {', '.join(ctx.config['tools']) or 'none'}.",
            is_error=True,
            duration_ms=0,
        )
    else:
        result = tool_registry.invoke(call.name, call.arguments, timeout=ctx.remaining())
    ctx.write(
        [
            (
                Type.TOOL_END,
                {
                    "tool": call.name,
                    "call_id": call.id,
                    "output": result.output,
                    "is_error": result.is_error,
                    "duration_ms": result.duration_ms,
                    "step": step,
                },
            )
        ]
    )
    return ChatMessage.tool(call=call, content=result.output, is_error=result.is_error)


def _finish(run: Run, status: str, reason: str, *, answer: str = "", error: str = "") -> None:
    fields = {"stop_reason": reason}
    if answer:
        fields["answer"] = answer
    if error:
        fields["error"] = error
    services.run_transition(run_id=run.id, to=status, only_from=(Status.RUNNING,), **fields)
