"""The run loop: think → call tool → observe → repeat.

Bounded by `max_steps` (model calls), a wall-clock deadline and optional token and cost budgets;
checks for cancellation and pause requests before every model call and every tool call; persists
one event row per thought, tool call, tool result and final answer. Mistakes the model makes
(unknown tool, bad arguments, a tool that failed) become observations it sees; provider failures
fail the run with the provider's message; our own bugs fail the run as `internal_error` and
re-raise so they show in the worker log.

Durability: the worker holds the run through a lease (agents/leases.py) and every write names its
fencing token. A run whose worker died is claimed by another worker, which rebuilds the
conversation from the stored events (agents/replay.py) and carries on. A tool call is recorded
before it starts and after it ends; a read call caught in between is simply repeated, a write
call is not repeated blindly: the run pauses for a person to decide.

Writes on the hot path are batched: a model response is stored with its first tool call (one
commit), and each write reports whether a cancel or pause was requested, so a tool step costs two
commits and no extra reads.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone

from agents import approvals, events, leases, services
from agents.leases import LeaseLost
from agents.llm import ChatMessage, ModelError, ModelResponse, Provider, ToolCall, ToolSpec, get_provider
from agents.models import Approval, Run, RunEvent
from agents.replay import replay
from integrations import calls as connector_calls
from integrations import tools as tool_registry
from integrations.tools import SideEffect

logger = logging.getLogger(__name__)

Status = Run.Status
StopReason = Run.StopReason
Type = RunEvent.Type


class _Stop(Exception):
    """Ends the loop early with a status (cancelled, timed out, max steps, budget, paused)."""

    def __init__(self, status: str, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass
class _Context:
    run: Run
    lease: leases.Lease
    provider: Provider
    tool_specs: list[ToolSpec]
    tools: dict[str, tool_registry.Tool] = field(default_factory=dict)
    cancel_requested: bool = False
    pause_requested: bool = False
    tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)

    @property
    def config(self) -> dict:
        return self.run.config

    def remaining(self) -> float:
        return (self.run.deadline_at - timezone.now()).total_seconds()

    def write(self, items: list[tuple[str, dict]], **kwargs) -> None:
        recorded = events.record_many(run_id=self.run.id, items=items, lease_token=self.lease.token, **kwargs)
        if recorded is None:
            raise LeaseLost(self.run.id)
        self.cancel_requested = recorded.cancel_requested
        self.pause_requested = recorded.pause_requested


def execute_run(run_id) -> None:
    """Claim a run (queued, or running with an expired lease) and drive it to a stop.
    Safe to call any number of times for one run: only one caller gets the lease."""
    lease = leases.claim(run_id)
    if lease is None:
        logger.info("run %s is not ours to take (finished, paused or leased)", run_id)
        return
    run = Run.objects.get(id=run_id)
    leases.keeper.hold(run.id, lease.token)
    try:
        _execute(run, lease)
    except LeaseLost:
        logger.warning("run %s: lease lost to another worker; stopped here", run_id)
    finally:
        leases.keeper.release(run.id)


def _execute(run: Run, lease: leases.Lease) -> None:
    data = {"status": Status.RUNNING}
    if lease.attempt > 1:
        data |= {"resumed": True, "attempt": lease.attempt, "takeover": lease.takeover}
    if events.record_many(run_id=run.id, items=[(Type.STATUS, data)], lease_token=lease.token) is None:
        raise LeaseLost(run.id)
    try:
        ctx = _prepare(run, lease)
        answer = _loop(ctx)
    except (_Stop, LeaseLost, ModelError, events.RunGone) as exc:
        _stopped(run, lease, exc)
    except (OperationalError, InterfaceError):
        # The database went away (restart, failover, network). Not the run's fault and nothing we
        # can record now: leave it; its lease expires and a worker resumes it from the stored events.
        logger.warning("run %s: database unavailable; leaving it for takeover after the lease", run.id,
                       exc_info=True)
        close_old_connections()
    except Exception as exc:
        logger.exception("run %s crashed", run.id)
        close_old_connections()
        message = f"Internal error: {type(exc).__name__}: {exc}"
        events.record(run_id=run.id, type=Type.ERROR, data={"message": message, "source": "internal"})
        _finish(run, lease, Status.FAILED, StopReason.INTERNAL_ERROR, error=message)
        raise
    else:
        _finish(run, lease, Status.SUCCEEDED, StopReason.FINAL_ANSWER, answer=answer)


def _stopped(run: Run, lease: leases.Lease, exc: Exception) -> None:
    if isinstance(exc, LeaseLost):
        raise exc
    if isinstance(exc, events.RunGone):
        # The run's row is gone (its organization or agent was deleted mid-run): nothing to finish.
        logger.warning("run %s was deleted while it ran", run.id)
    elif isinstance(exc, ModelError):
        events.record_many(run_id=run.id, items=[(Type.ERROR, {"message": str(exc), "source": "model"})],
                           lease_token=lease.token)
        _finish(run, lease, Status.FAILED, StopReason.MODEL_ERROR, error=str(exc))
    elif exc.status in (Status.PAUSED, Status.AWAITING_APPROVAL):
        services.run_transition(run_id=run.id, to=exc.status, only_from=(Status.RUNNING,),
                                lease_token=lease.token, pause_reason=exc.message, lease_holder="",
                                lease_expires_at=None)
    else:
        _finish(run, lease, exc.status, exc.reason, error=exc.message)


def _prepare(run: Run, lease: leases.Lease) -> _Context:
    config = run.config
    available = tool_registry.for_organization(run.organization_id)
    # A tool removed since the agent was saved (or an MCP server's tool gone) is simply not offered.
    chosen = {name: available[name] for name in config["tools"] if name in available}
    specs = [ToolSpec(name=t.name, description=t.description, input_schema=t.input_schema) for t in chosen.values()]
    return _Context(
        tools=chosen,
        run=run,
        lease=lease,
        provider=get_provider(config["model"]),
        tool_specs=specs,
        cancel_requested=run.cancel_requested_at is not None,
        tokens=run.input_tokens + run.output_tokens,
        cost=run.cost_usd,
    )


def _checkpoint(ctx: _Context) -> None:
    """Before every model call and tool call: cancelled, paused, out of time, or not ours?

    The cancel and pause flags come back from the run's latest write, which precedes every
    checkpoint; the lease from the heartbeat."""
    if leases.keeper.lost(ctx.run.id):
        raise LeaseLost(ctx.run.id)
    if ctx.cancel_requested:
        raise _Stop(Status.CANCELLED, StopReason.CANCELLED, "Cancelled by request.")
    if ctx.pause_requested:
        raise _Stop(Status.PAUSED, "", "Paused by request.")
    if ctx.remaining() <= 0:
        raise _Stop(
            Status.TIMED_OUT, StopReason.TIMEOUT, f"Run exceeded its {ctx.config['timeout_seconds']} s deadline."
        )


def _check_budgets(ctx: _Context) -> None:
    max_tokens = ctx.config.get("max_tokens")
    if max_tokens is not None and ctx.tokens >= max_tokens:
        raise _Stop(Status.FAILED, StopReason.MAX_TOKENS, f"Used {ctx.tokens} tokens of a {max_tokens} budget.")
    max_cost = ctx.config.get("max_cost_usd")
    if max_cost is not None and ctx.cost >= Decimal(max_cost):
        raise _Stop(Status.FAILED, StopReason.MAX_COST, f"Spent ${ctx.cost:.4f} of a ${Decimal(max_cost)} budget.")


def _loop(ctx: _Context) -> str:
    state = replay(ctx.run)
    if state.final_answer is not None:  # stored before a crash; only the status was missing
        return state.final_answer
    messages = state.messages
    for call in state.open_calls:  # a resumed run finishes the calls its last response asked for
        _checkpoint(ctx)
        messages.append(_act(ctx, call, state.steps_done, started=state.started.get(call.id)))
    max_steps = ctx.config["max_steps"]
    for step in range(state.steps_done + 1, max_steps + 1):
        _checkpoint(ctx)
        _check_budgets(ctx)
        response, thought = _think(ctx, messages, step)
        if not response.tool_calls:
            ctx.write([thought, (Type.FINAL_ANSWER, {"content": response.text, "step": step})], **_usage(ctx, response))
            return response.text
        messages.append(ChatMessage.assistant(response.text, response.tool_calls))
        first = response.tool_calls[0]
        if _policy(ctx, first) == "auto":
            # The thought and the first call it asks for are stored together, before the call runs.
            ctx.write([thought, _tool_start(first, step)], **_usage(ctx, response))
        else:
            ctx.write([thought], **_usage(ctx, response))
        for index, call in enumerate(response.tool_calls):
            _checkpoint(ctx)
            recorded_start = index == 0 and _policy(ctx, first) == "auto"
            messages.append(_act(ctx, call, step, started={} if recorded_start else None))
    raise _Stop(Status.FAILED, StopReason.MAX_STEPS, f"Stopped after {max_steps} steps without a final answer.")


def _release_connection() -> None:
    # Give the pooled DB connection back while we wait on the model or a tool: a worker thread
    # spends most of its life waiting, and holding a connection would cap concurrent runs at the
    # pool size. Inside an outer transaction (a caller's or a test's) the connection must stay.
    if not connection.in_atomic_block:
        connection.close()


def _usage(ctx: _Context, response: ModelResponse) -> dict:
    usage = response.usage
    ctx.tokens += usage.input_tokens + usage.output_tokens
    ctx.cost += usage.cost_usd
    return {"usage": events.Usage(usage.input_tokens, usage.output_tokens, usage.cost_usd), "step": True}


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
            # Kept so a resumed run can rebuild exactly what the model asked for.
            "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls],
        },
    )
    return response, thought


def _tool_start(call: ToolCall, step: int, **extra) -> tuple[str, dict]:
    return Type.TOOL_START, {"tool": call.name, "call_id": call.id, "arguments": call.arguments, "step": step} | extra


def _policy(ctx: _Context, call: ToolCall) -> str:
    """auto, ask or deny for this call. Unknown tools are "auto": the registry reports them."""
    tool = ctx.tools.get(call.name)
    if tool is None:
        return "auto"
    explicit = (ctx.config.get("tool_policies") or {}).get(call.name)
    policy = explicit or ("ask" if tool.side_effect == SideEffect.WRITE else "auto")
    if policy == "ask" and ctx.config.get("dry_run"):
        return "auto"  # nothing is executed in a dry run, so there is nothing to approve
    return policy


def _act(ctx: _Context, call: ToolCall, step: int, *, started: dict | None) -> ChatMessage:
    """Run one tool call. `started` is None for a call not yet recorded as started, {} for one just
    recorded, or the tool_start data of a call that was running when its worker died."""
    tool = ctx.tools.get(call.name)
    policy = _policy(ctx, call)
    arguments = call.arguments
    if started:
        # Caught mid-call by a crash: repeat a read; a write waits for a person's decision.
        uncertain = tool is not None and tool.side_effect == SideEffect.WRITE and not tool.idempotent
        if uncertain and not started.get("approved_retry"):
            raise _Stop(Status.PAUSED, "", f"uncertain_write:{call.id}")
        arguments = started.get("arguments", arguments)
        if not started.get("approved_retry"):
            ctx.write([_tool_start(call, step, arguments=arguments, retry=True)])
    elif policy == "deny":
        return _observe(ctx, call, step, tool_registry.ToolResult(
            output=f"Error: the tool {call.name!r} is not allowed for this agent (policy: deny).",
            is_error=True, duration_ms=0))
    elif policy == "ask":
        approval = approvals.for_call(ctx.run, call, step, write=ctx.write)
        if approval.status == Approval.Status.PENDING:
            raise _Stop(Status.AWAITING_APPROVAL, "", f"approval:{approval.id}")
        if approval.status != Approval.Status.APPROVED:
            who = approval.decided_by.username if approval.decided_by else "nobody"
            reason = "expired before anyone decided" if approval.status == Approval.Status.EXPIRED else (
                f"rejected by {who}" + (f": {approval.message}" if approval.message else ""))
            return _observe(ctx, call, step, tool_registry.ToolResult(
                output=f"Error: the call to {call.name} was not run; it was {reason.rstrip('.')}.", is_error=True,
                duration_ms=0))
        arguments = approval.effective_arguments
        ctx.write([_tool_start(call, step, arguments=arguments, approved_by=who_decided(approval))])
    elif started is None:
        ctx.write([_tool_start(call, step)])
    if tool is None or tool.io_bound:
        _release_connection()
    extra: dict = {}
    if tool is None:
        result = tool_registry.ToolResult(
            output=f"Error: tool {call.name!r} is not available to this agent. "
            f"Available: {', '.join(ctx.config['tools']) or 'none'}.",
            is_error=True,
            duration_ms=0,
        )
    elif ctx.config.get("dry_run") and tool is not None and tool.side_effect == SideEffect.WRITE:
        result = tool_registry.ToolResult(
            output=f"[simulated] Dry run: {call.name} was not executed. It would have been called with "
            f"{json.dumps(arguments, ensure_ascii=False)}.",
            is_error=False,
            duration_ms=0,
        )
        return _observe(ctx, call, step, result, simulated=True)
    elif tool.integration is not None:
        # Bound to a connection, scope-checked before any request, recorded in its history.
        result, extra = connector_calls.call(config=ctx.config, organization_id=ctx.run.organization_id,
                                             runner_id=ctx.run.created_by_id, run_id=ctx.run.id, tool=tool,
                                             arguments=arguments, timeout=ctx.remaining(), tools=ctx.tools)
    else:
        result = tool_registry.invoke(call.name, arguments, timeout=ctx.remaining(), tool=tool)
    return _observe(ctx, call, step, result, **extra)


def who_decided(approval: Approval) -> str:
    return approval.decided_by.username if approval.decided_by else "system"


def _observe(ctx: _Context, call: ToolCall, step: int, result: tool_registry.ToolResult, **extra) -> ChatMessage:
    data = {
        "tool": call.name,
        "call_id": call.id,
        "output": result.output,
        "is_error": result.is_error,
        "duration_ms": result.duration_ms,
        "step": step,
    } | extra
    ctx.write([(Type.TOOL_END, data)])
    return ChatMessage.tool(call=call, content=result.output, is_error=result.is_error)


def _finish(run: Run, lease: leases.Lease, status: str, reason: str, *, answer: str = "", error: str = "") -> None:
    fields = {"stop_reason": reason, "lease_holder": "", "lease_expires_at": None}
    if answer:
        fields["answer"] = answer
    if error:
        fields["error"] = error
    services.run_transition(run_id=run.id, to=status, only_from=(Status.RUNNING,), lease_token=lease.token, **fields)
