"""Claude through the official `anthropic` SDK, behind the Provider boundary.

Everything Anthropic-shaped (wire dicts, SDK types, SDK exceptions) stays in this module; the loop
only sees ChatMessage / ModelResponse / ModelError.

Retries: the SDK already retries connection errors, timeouts, 408/409/429/5xx and 529 with
exponential backoff (honouring `retry-after`), `ANTHROPIC_MAX_RETRIES` times. We do not add a
second layer; whatever the SDK finally raises becomes a ModelError with the provider's own message.

The base URL comes from `ANTHROPIC_BASE_URL`, which the SDK reads itself (tests point it at a
loopback fake server).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

import anthropic
from django.conf import settings

from agents.llm import pricing
from agents.llm.base import ChatMessage, ModelError, ModelResponse, ToolCall, ToolSpec, Usage

logger = logging.getLogger(__name__)


class AnthropicProvider:
    _shared: tuple[tuple[str, int, str], AnthropicProvider] | None = None
    _shared_lock = threading.Lock()

    def __init__(self, client: anthropic.Anthropic | None = None) -> None:
        self.client = client or anthropic.Anthropic(
            api_key=settings.ANTHROPIC_API_KEY, max_retries=settings.ANTHROPIC_MAX_RETRIES
        )

    @classmethod
    def shared(cls) -> AnthropicProvider:
        """One provider (and so one HTTP connection pool) per process, shared by the worker's threads.

        It is rebuilt if the key, retry budget or base URL change, so tests that override settings
        never talk through a client configured for someone else.
        """
        key = (settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_MAX_RETRIES, os.environ.get("ANTHROPIC_BASE_URL", ""))
        current = cls._shared
        if current is not None and current[0] == key:
            return current[1]
        with cls._shared_lock:
            if cls._shared is None or cls._shared[0] != key:
                cls._shared = (key, cls())
            return cls._shared[1]

    @classmethod
    def reset_shared(cls) -> None:
        with cls._shared_lock:
            cls._shared = None

    def complete(
        self,
        *,
        model: str,
        system: str,
        messages: list[ChatMessage],
        tools: list[ToolSpec],
        timeout: float,
    ) -> ModelResponse:
        request: dict[str, Any] = {
            "model": model,
            "max_tokens": settings.ANTHROPIC_MAX_TOKENS,
            "messages": to_wire_messages(messages),
            "timeout": timeout,
        }
        # Omitted rather than sent empty: an empty system block or tool list is at best noise to the API.
        if system:
            request["system"] = system
        if tools:
            request["tools"] = [
                {"name": spec.name, "description": spec.description, "input_schema": spec.input_schema}
                for spec in tools
            ]
        try:
            message = self.client.messages.create(**request)
        except anthropic.APIStatusError as exc:
            raise ModelError(_status_error_message(exc)) from exc
        except anthropic.APITimeoutError as exc:
            raise ModelError(f"Anthropic API timed out after {timeout:g}s (retries exhausted).") from exc
        except anthropic.APIConnectionError as exc:
            raise ModelError(f"Could not reach the Anthropic API: {exc.message}") from exc
        except anthropic.APIResponseValidationError as exc:
            raise ModelError(f"Anthropic API returned an unexpected response: {exc.message}") from exc
        return from_wire_message(model, message)


def to_wire_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Our conversation in the Messages API shape.

    Tool observations travel as `tool_result` blocks in a user turn; consecutive user-side items
    (several tool results, or tool results followed by a user nudge) are merged into one user
    message so turns alternate and every result sits right after the assistant turn that asked.
    """
    wire: list[dict[str, Any]] = []

    def add_user_blocks(blocks: list[dict[str, Any]]) -> None:
        if wire and wire[-1]["role"] == "user":
            previous = wire[-1]["content"]
            if isinstance(previous, str):
                previous = [{"type": "text", "text": previous}]
            wire[-1]["content"] = [*previous, *blocks]
        else:
            wire.append({"role": "user", "content": blocks})

    for message in messages:
        if message.role == "user":
            if wire and wire[-1]["role"] == "user":
                add_user_blocks([{"type": "text", "text": message.content}])
            else:
                wire.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            content: list[dict[str, Any]] = []
            if message.content:
                content.append({"type": "text", "text": message.content})
            content += [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            ]
            # An assistant turn with neither text nor tool calls would be rejected as empty content;
            # it carries nothing, so leave it out.
            if content:
                wire.append({"role": "assistant", "content": content})
        elif message.role == "tool":
            add_user_blocks(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.tool_call_id,
                        "content": message.content,
                        "is_error": message.is_error,
                    }
                ]
            )
        else:  # pragma: no cover - Role is a closed Literal
            raise ValueError(f"Unknown message role {message.role!r}")
    return wire


def from_wire_message(model: str, message: Any) -> ModelResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_use":
            calls.append(ToolCall(id=block.id, name=block.name, arguments=_tool_arguments(block)))
        # Other block kinds (thinking, server tools) are not requested by us and carry nothing the loop uses.
    usage = getattr(message, "usage", None)
    input_tokens = int(getattr(usage, "input_tokens", 0) or 0)
    output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
    return ModelResponse(
        text="".join(texts),
        tool_calls=tuple(calls),
        usage=Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            # Priced by the model we asked for: the response echoes a dated id we may not know.
            cost_usd=pricing.cost_usd(model, input_tokens, output_tokens),
        ),
        stop_reason=getattr(message, "stop_reason", None) or "",
    )


def _tool_arguments(block: Any) -> dict[str, Any]:
    """The arguments of a tool_use block, always as a dict.

    The API promises an object, but a malformed block must not crash the run: the call is still
    returned so the loop validates it against the tool's JSON Schema and tells the model what was
    wrong. A JSON object sent as a string is decoded; anything else (missing, null, a list, a
    number) becomes `{}`, which the schema check reports as missing required properties.
    """
    raw = getattr(block, "input", None)
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            return decoded
    logger.warning("Tool call %s for %r had non-object input of type %s", block.id, block.name, type(raw).__name__)
    return {}


def _status_error_message(exc: anthropic.APIStatusError) -> str:
    kind = exc.type or "error"
    # A proxy or load balancer may answer with a non-JSON body; show that rather than nothing.
    raw_body = exc.body if isinstance(exc.body, str) else ""
    detail = exc.api_message or raw_body or exc.response.reason_phrase
    message = f"Anthropic API error {exc.status_code} {kind}: {str(detail)[:500]}"
    if exc.request_id:
        message += f" (request id {exc.request_id})"
    return message
