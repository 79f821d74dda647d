"""Kill -9 a worker in the middle of runs: another worker finishes them, each step once."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid

import pytest
from django.conf import settings

from agents import services
from agents.models import Run, RunEvent
from config.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(predicate, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message)


def test_runs_survive_their_worker_being_killed(live, owner, organization):
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    agent = services.agent_create(
        organization=organization, actor=owner, name="Slow steps", system_prompt="Work.", model="scripted-steps-slow",
        tools=["calculator"], max_steps=10, timeout_seconds=120,
    )
    # Park the main worker so the runs land on the victim.
    celery_app.control.cancel_consumer(queue, destination=[live.worker_name], reply=True, timeout=5)
    victim_name = f"victim-{uuid.uuid4().hex[:6]}"
    victim = live.start_worker(victim_name)
    try:
        _wait(lambda: celery_app.control.ping(destination=[f"{victim_name}@{socket.gethostname()}"], timeout=1),
              60, "the victim worker did not start")
        runs = [services.run_start(agent=agent, goal=f"run {n}", actor=owner) for n in range(5)]
        _wait(lambda: all(RunEvent.objects.filter(run=r, type="tool_end").count() >= 1 for r in runs), 30,
              "the victim did not get going")

        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(10)
    finally:
        celery_app.control.add_consumer(queue, destination=[live.worker_name], reply=True, timeout=5)
        if victim.poll() is None:
            victim.kill()
    assert Run.objects.filter(id__in=[r.id for r in runs], status="running").count() == 5

    # The watchdog is what beat runs every few seconds; here the test drives it.
    def all_done():
        services.runs_watchdog()
        return not Run.objects.filter(id__in=[r.id for r in runs]).exclude(status="succeeded").exists()

    _wait(all_done, 60, "runs were not recovered")
    resumed_after = min(
        (e.created_at for e in RunEvent.objects.filter(run__in=runs, type="status", data__resumed=True)),
    )
    for run in Run.objects.filter(id__in=[r.id for r in runs]):
        assert run.attempts == 2
        thoughts = [e.data["step"] for e in RunEvent.objects.filter(run=run, type="thought").order_by("seq")]
        assert thoughts == sorted(set(thoughts)) == list(range(1, 7)), thoughts
        ends = list(RunEvent.objects.filter(run=run, type="tool_end").values_list("data__call_id", flat=True))
        assert len(ends) == len(set(ends)) == 5
        seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    assert resumed_after is not None
    print(f"kill to first resume: {time.monotonic() - killed_at:.1f} s (lease {settings.RUN_LEASE_SECONDS} s)")
