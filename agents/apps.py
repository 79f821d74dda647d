from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from django.conf import settings
        from django.utils.module_loading import import_string

        for path in settings.MODEL_PLUGINS:
            import_string(path)()
