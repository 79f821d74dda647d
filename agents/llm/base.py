from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

Role = Literal["user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """One turn of the conversation.

    - user: `content` is the text.
    - assistant: `content` is its text (may be empty) and `tool_calls` what it asked for.
    - tool: the observation for `tool_call_id`; `is_error` marks a failed call the model should see.
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None
    is_error: bool = False

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str, tool_calls: tuple[ToolCall, ...] = ()) -> ChatMessage:
        return cls(role="assistant", content=content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, *, call: ToolCall, content: str, is_error: bool = False) -> ChatMessage:
        return cls(role="tool", content=content, tool_call_id=call.id, tool_name=call.name, is_error=is_error)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal("0")


@dataclass(frozen=True)
class ModelResponse:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = ""


@dataclass(frozen=True)
class ModelInfo:
    id: str
    provider: str
    label: str


class ModelError(Exception):
    """The provider failed and retries are spent (or the failure is not retryable).

    The message is the provider's own, kept on the failed run.
    """


class Provider(Protocol):
    def complete(
        self,
        *,
        model: str,
        system: str,
        messages: list[ChatMessage],
        tools: list[ToolSpec],
        timeout: float,
    ) -> ModelResponse: ...
