"""Scripted models plugged in through the normal provider boundary (AGENTRY_MODEL_PLUGINS).

Each behaves the same way every time, so loop tests can assert exact traces.
"""

from __future__ import annotations

import time
import uuid

from agents.llm.base import ChatMessage, ModelInfo, ModelResponse, ToolCall, ToolSpec, Usage
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


def register() -> None:
    register_provider(ModelInfo("scripted-loop", "scripted", "Scripted: loops forever"), LoopingModel())
    register_provider(ModelInfo("scripted-slow", "scripted", "Scripted: 0.5 s per step, loops"), LoopingModel(0.5))
    register_provider(ModelInfo("scripted-clumsy", "scripted", "Scripted: makes mistakes"), ClumsyModel())
