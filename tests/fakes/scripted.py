"""Scripted models plugged in through the normal provider boundary (AGENTRY_MODEL_PLUGINS).

Each behaves the same way every time, so loop tests can assert exact traces.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from agents.llm.base import ChatMessage, ModelError, ModelInfo, ModelResponse, ToolCall, ToolSpec, Usage
from agents.llm.registry import register_provider


def _call(name: str, arguments: dict) -> ToolCall:
    return ToolCall(id=f"call_{uuid.uuid4().hex[:10]}", name=name, arguments=arguments)


class LoopingModel:
    """Never answers: always asks for the calculator again. Ends only by max_steps, deadline or cancel."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def complete(self, *, model: str, system: str, messages: list[ChatMessage], tools: list[ToolSpec],
                 timeout: float) -> ModelResponse:
        if self.delay:
            time.sleep(min(self.delay, timeout))
        turn = sum(1 for m in messages if m.role == "assistant") + 1
        return ModelResponse(
            text=f"Step {turn}: computing again.",
            tool_calls=(_call("calculator", {"expression": f"{turn} + {turn}"}),),
            usage=Usage(input_tokens=10, output_tokens=5),
            stop_reason="tool_use",
        )


class ClumsyModel:
    """Makes every mistake a model can make, then answers with what it observed."""

    def complete(self, *, model: str, system: str, messages: list[ChatMessage], tools: list[ToolSpec],
                 timeout: float) -> ModelResponse:
        observations = [m for m in messages if m.role == "tool"]
        script = [
            _call("no_such_tool", {}),
            _call("calculator", {"expr": "1+1"}),
            _call("calculator", {"expression": "1/0"}),
            _call("calculator", {"expression": "6*7"}),
        ]
        if len(observations) < len(script):
            return ModelResponse(text="Trying something.", tool_calls=(script[len(observations)],),
                                 usage=Usage(input_tokens=3, output_tokens=2), stop_reason="tool_use")
        summary = " | ".join(("ERR " if m.is_error else "OK ") + m.content for m in observations)
        return ModelResponse(text=f"Observed: {summary}", usage=Usage(input_tokens=3, output_tokens=2))



class StepsModel:
    """Asks for the calculator `steps` times (one call per response), then answers."""

    def __init__(self, steps: int = 5, delay: float = 0.0, tool: str = "calculator") -> None:
        self.steps, self.delay, self.tool = steps, delay, tool

    def complete(self, *, model: str, system: str, messages: list[ChatMessage], tools: list[ToolSpec],
                 timeout: float) -> ModelResponse:
        if self.delay:
            time.sleep(min(self.delay, timeout))
        done = sum(1 for m in messages if m.role == "tool")
        if done < self.steps:
            arguments = {"expression": f"{done} + 1"} if self.tool == "calculator" else {"text": f"note {done}"}
            return ModelResponse(text=f"Step {done + 1}.", tool_calls=(_call(self.tool, arguments),),
                                 usage=Usage(input_tokens=10, output_tokens=5, cost_usd=Decimal("0.01")),
                                 stop_reason="tool_use")
        return ModelResponse(text=f"Finished {done} steps.", usage=Usage(input_tokens=10, output_tokens=5,
                                                                           cost_usd=Decimal("0.01")))


class FlakyModel:
    """Fails every other call with a provider error, so retrying a run makes progress."""

    def __init__(self) -> None:
        self.calls = 0
        self.inner = StepsModel(steps=2)

    def complete(self, **kwargs) -> ModelResponse:
        self.calls += 1
        if self.calls % 2 == 1:
            raise ModelError("Scripted provider error 529: overloaded")
        return self.inner.complete(**kwargs)


# A write tool for durability tests: it records what it did, so a test can count executions.
NOTES: list[str] = []


def _append_note(text: str) -> str:
    NOTES.append(text)
    return f"noted: {text}"


class GoalScriptModel:
    """Calls the tools the goal lists, one per response, then answers with what it observed.

    The goal is JSON: {"calls": [{"tool": "name", "arguments": {...}}, ...]}. Lets a test drive any
    tool (connector tools included) through the real loop without a model deciding."""

    def complete(self, *, model: str, system: str, messages: list[ChatMessage], tools: list[ToolSpec],
                 timeout: float) -> ModelResponse:
        import json

        script = json.loads(messages[0].content)["calls"]
        observations = [m for m in messages if m.role == "tool"]
        if len(observations) < len(script):
            step = script[len(observations)]
            return ModelResponse(text=f"Calling {step['tool']}.", tool_calls=(_call(step["tool"], step["arguments"]),),
                                 usage=Usage(input_tokens=3, output_tokens=2), stop_reason="tool_use")
        summary = " | ".join(("ERR " if m.is_error else "OK ") + m.content for m in observations)
        return ModelResponse(text=f"Observed: {summary}", usage=Usage(input_tokens=3, output_tokens=2))


def register() -> None:
    register_provider(ModelInfo("scripted-goal", "scripted", "Scripted: calls the tools its goal lists"),
                      GoalScriptModel())
    register_provider(ModelInfo("scripted-loop", "scripted", "Scripted: loops forever"), LoopingModel())
    register_provider(ModelInfo("scripted-slow", "scripted", "Scripted: 0.5 s per step, loops"), LoopingModel(0.5))
    register_provider(ModelInfo("scripted-clumsy", "scripted", "Scripted: makes mistakes"), ClumsyModel())
    register_provider(ModelInfo("scripted-steps", "scripted", "Scripted: 5 steps, $0.01 each"), StepsModel(5))
    register_provider(ModelInfo("scripted-steps-slow", "scripted", "Scripted: 5 steps, 0.4 s each"),
                      StepsModel(5, delay=0.4))
    register_provider(ModelInfo("scripted-notes", "scripted", "Scripted: writes 2 notes"),
                      StepsModel(2, tool="append_note"))
    register_provider(ModelInfo("scripted-flaky", "scripted", "Scripted: fails every other call"), FlakyModel())
    from integrations import tools

    if tools.get("append_note") is None:
        tools.register(tools.Tool(
            name="append_note", description="Append a note (test-only write tool).",
            input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
                          "additionalProperties": False},
            side_effect=tools.SideEffect.WRITE, timeout_seconds=5, func=_append_note, io_bound=False,
        ))
