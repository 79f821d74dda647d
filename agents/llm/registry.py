"""Which models exist with the current configuration, and which provider serves each."""

from __future__ import annotations

from django.conf import settings

from agents.llm.base import ModelInfo, Provider

DEMO_MODEL = ModelInfo(id="demo", provider="demo", label="Offline demo model")

# Tests and benchmarks plug scripted models in through the same boundary.
_extra_providers: dict[str, tuple[ModelInfo, Provider]] = {}


def register_provider(info: ModelInfo, provider: Provider) -> None:
    _extra_providers[info.id] = (info, provider)


def available_models() -> list[ModelInfo]:
    models = [DEMO_MODEL]
    if settings.ANTHROPIC_API_KEY:
        models += [ModelInfo(id=m, provider="anthropic", label=f"Claude ({m})") for m in settings.ANTHROPIC_MODELS]
    models += [info for info, _ in _extra_providers.values()]
    return models


def is_available(model_id: str) -> bool:
    return any(m.id == model_id for m in available_models())


def model_label(model_id: str) -> str:
    for m in available_models():
        if m.id == model_id:
            return m.label
    return model_id


def get_provider(model_id: str) -> Provider:
    from agents.llm.base import ModelError

    if model_id in _extra_providers:
        return _extra_providers[model_id][1]
    if model_id == DEMO_MODEL.id:
        from agents.llm.demo import DemoProvider

        return DemoProvider()
    if model_id.startswith("claude"):
        if not settings.ANTHROPIC_API_KEY:
            raise ModelError(f"Model {model_id!r} needs ANTHROPIC_API_KEY, which is not set.")
        from agents.llm.anthropic import AnthropicProvider

        return AnthropicProvider.shared()
    raise ModelError(f"Unknown model {model_id!r}.")
