"""The one LLM boundary. Our own dataclasses cross it; provider dicts never leave a provider module."""

from __future__ import annotations

from agents.llm.base import (
    ChatMessage,
    ModelError,
    ModelInfo,
    ModelResponse,
    Provider,
    ToolCall,
    ToolSpec,
    Usage,
)
from agents.llm.registry import available_models, get_provider, is_available

__all__ = [
    "ChatMessage",
    "ModelError",
    "ModelInfo",
    "ModelResponse",
    "Provider",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "available_models",
    "get_provider",
    "is_available",
]
