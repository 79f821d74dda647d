"""Rebuild a run's conversation from its stored events, so another worker can resume it.

Events are the source of truth: each thought carries the tool calls the model asked for, each
call that started has a tool_start and each that finished a tool_end. What the replay finds
tells the loop where to pick up: calls asked for but not started run normally, a call started but
not finished is *uncertain* (it may or may not have had its effect), and a stored final answer
just needs the run finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agents.llm import ChatMessage, ToolCall
from agents.models import Run, RunEvent

Type = RunEvent.Type


@dataclass
class Replay:
    messages: list[ChatMessage]
    steps_done: int = 0
    final_answer: str | None = None
    # Calls of the last model response that have no result yet, in order.
    open_calls: list[ToolCall] = field(default_factory=list)
    # Of those, the ones whose tool_start was stored (they may have run), with that event's data.
    started: dict[str, dict] = field(default_factory=dict)


def initial_messages(run: Run) -> list[ChatMessage]:
    goal = run.goal
    if run.context not in (None, {}, [], ""):
        goal += "\n\nContext (JSON):\n" + json.dumps(run.context, indent=2, ensure_ascii=False, default=str)
    return [ChatMessage.user(goal)]


def replay(run: Run) -> Replay:
    state = Replay(messages=initial_messages(run))
    text: str | None = None
    calls: list[ToolCall] = []
    results: dict[str, ChatMessage] = {}

    def flush() -> None:
        if text is None:
            return
        state.messages.append(ChatMessage.assistant(text, tuple(calls)))
        for call in calls:
            if call.id in results:
                state.messages.append(results[call.id])

    for event in RunEvent.objects.filter(run=run).order_by("seq").only("type", "data"):
        data = event.data
        if event.type == Type.THOUGHT:
            flush()
            text, results = data.get("content", ""), {}
            calls = [ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"]) for c in data.get("calls", [])]
            state.steps_done = data.get("step", state.steps_done + 1)
            state.started = {}
        elif event.type == Type.TOOL_START:
            state.started[data["call_id"]] = data
        elif event.type == Type.TOOL_END:
            call = next((c for c in calls if c.id == data["call_id"]), None)
            if call is not None:
                results[call.id] = ChatMessage.tool(call=call, content=data["output"], is_error=data["is_error"])
        elif event.type == Type.FINAL_ANSWER:
            state.final_answer = data.get("content", "")
    flush()
    state.open_calls = [c for c in calls if c.id not in results]
    state.started = {k: v for k, v in state.started.items() if k not in results}
    return state
