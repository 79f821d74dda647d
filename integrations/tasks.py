from __future__ import annotations

from celery import shared_task

from integrations import services


@shared_task(name="integrations.connections_health_check", ignore_result=True)
def connections_health_check() -> dict[str, int]:
    return services.connections_health_check()
