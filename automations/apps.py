from __future__ import annotations

from django.apps import AppConfig


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = "Automations"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from automations import models, services

        # A schedule also goes when its agent or owner is deleted (cascade); its beat entry must
        # go with it, or beat would keep waking a task for a schedule that no longer exists.
        post_delete.connect(services.on_schedule_deleted, sender=models.Schedule,
                            dispatch_uid="automations.schedule_deleted")
