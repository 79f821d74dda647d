"""Scripted models for the benchmarks, plugged in through the normal provider boundary.

The goal carries the script: "steps=N" makes the model ask for N calculator calls (one per
model call) and then answer, so a run with N tool steps makes N + 1 model calls.
"""

from __future__ import annotations

import os
import re
import time

from agents.llm.base import ChatMessage, ModelInfo, ModelResponse, ToolCall, ToolSpec, Usage
from agents.llm.registry import register_provider

_STEPS = re.compile(r"steps=(\d+)")


def steps_in(goal: str) -> int:
    match = _STEPS.search(goal)
    return int(match.group(1)) if match else 1


class ScriptedToolModel:
    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency

    def complete(self, *, model: str, system: str, messages: list[ChatMessage], tools: list[ToolSpec],
                 timeout: float) -> ModelResponse:
        if self.latency:
            time.sleep(self.latency)
        done = sum(1 for m in messages if m.role == "tool")
        if done < steps_in(messages[0].content):
            call = ToolCall(id=f"call_{done}", name="calculator", arguments={"expression": f"{done} + 1"})
            return ModelResponse(text="", tool_calls=(call,), usage=Usage(input_tokens=10, output_tokens=5))
        return ModelResponse(text=f"Done after {done} steps.", usage=Usage(input_tokens=10, output_tokens=5))


def register() -> None:
    latency = float(os.environ.get("AGENTRY_BENCH_MODEL_LATENCY", "2.0"))
    register_provider(ModelInfo("bench-zero", "bench", "Bench: zero latency"), ScriptedToolModel(0.0))
    register_provider(ModelInfo("bench-latency", "bench", f"Bench: {latency:g} s latency"), ScriptedToolModel(latency))
