from __future__ import annotations

from celery import shared_task

from agents import loop, services


@shared_task(name="agents.execute_run", ignore_result=True)
def execute_run(run_id: str) -> None:
    loop.execute_run(run_id)


@shared_task(name="agents.runs_watchdog", ignore_result=True)
def runs_watchdog() -> dict[str, int]:
    return services.runs_watchdog()
