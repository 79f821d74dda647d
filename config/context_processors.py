from __future__ import annotations

from django.conf import settings


def agentry(request) -> dict:
    return {"ANTHROPIC_ENABLED": bool(settings.ANTHROPIC_API_KEY), "DEFAULT_MODEL": settings.DEFAULT_MODEL}
