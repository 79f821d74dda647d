from __future__ import annotations

from celery import shared_task

from automations import services


@shared_task(name="automations.fire_schedule", ignore_result=True)
def fire_schedule(schedule_id: str) -> None:
    services.schedule_fire_due(schedule_id=schedule_id)


@shared_task(name="automations.tick", ignore_result=True)
def tick() -> dict[str, int]:
    return services.automations_tick()
