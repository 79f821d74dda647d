"""The whole stack: a signed webhook over HTTP to uvicorn, the run executed by the Celery worker,
and the worker's `automations.tick` (as beat sends it) settling a scheduled run and starting the
agent that follows."""

from __future__ import annotations

import html
import json
import re
import subprocess
import time

import httpx
import pytest
from django.template.loader import render_to_string

from agents import services as agent_services
from agents.models import Run
from automations import services, signing
from automations.models import ScheduleFiring, Trigger
from config.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _finished(run_id):
    run = Run.objects.get(id=run_id)
    return run if run.is_finished else None


def test_a_webhook_call_runs_the_agent_and_the_tick_starts_the_one_that_follows(live, organization, owner):
    calc = agent_services.agent_create(organization=organization, actor=owner, name="Calc", model="demo",
                                       system_prompt="Use the calculator for arithmetic.", tools=["calculator"])
    reporter = agent_services.agent_create(organization=organization, actor=owner, name="Reporter", model="demo",
                                           system_prompt="Report results.", tools=[])
    hook = services.trigger_create(organization=organization, agent=calc, actor=owner, kind=Trigger.Kind.WEBHOOK,
                                   name="Sums", goal_template="What is {{ payload.a }} * {{ payload.b }}?")
    services.trigger_create(organization=organization, agent=reporter, actor=owner, kind=Trigger.Kind.RUN_FINISHED,
                            name="Report sums", source_agent=calc, goal_template="Report: {{ run.answer }}")
    body = json.dumps({"a": 17, "b": 23}).encode()
    timestamp = str(int(time.time()))

    response = httpx.post(f"{live.url}/hooks/{hook.trigger.public_id}", content=body, timeout=10, headers={
        "Content-Type": "application/json", signing.TIMESTAMP_HEADER: timestamp,
        signing.SIGNATURE_HEADER: signing.sign(secret=hook.secret, timestamp=timestamp, body=body)})

    assert response.status_code == 202, response.text
    run = _wait(lambda: _finished(response.json()["run_id"]), "the webhook's run")
    assert run.status == "succeeded" and "391" in run.answer and run.context == {"a": 17, "b": 23}

    celery_app.send_task("automations.tick")

    follow_up = _wait(lambda: Run.objects.filter(agent=reporter).first(), "the follow-up run")
    assert "391" in follow_up.goal
    assert _wait(lambda: _finished(follow_up.id), "the follow-up to finish").status == "succeeded"


def test_the_worker_settles_a_scheduled_run_when_it_finishes(live, organization, owner):
    calc = agent_services.agent_create(organization=organization, actor=owner, name="Calc", model="demo",
                                       system_prompt="Use the calculator for arithmetic.", tools=["calculator"])
    schedule = services.schedule_create(organization=organization, agent=calc, actor=owner, name="Hourly sum",
                                        goal="What is 6 * 7?", cron="0 * * * *")
    firing = services.schedule_fire(schedule=schedule, actor=owner)
    _wait(lambda: _finished(firing.run_id), "the scheduled run")

    celery_app.send_task("automations.tick")

    settled = _wait(lambda: ScheduleFiring.objects.filter(id=firing.id, outcome="succeeded").first(),
                    "the firing to be settled")
    assert settled.finished_at is not None


def test_the_curl_example_on_the_trigger_page_works_as_printed(live, organization, owner):
    agent = agent_services.agent_create(organization=organization, actor=owner, name="Echo", model="demo",
                                        system_prompt="Answer briefly.", tools=[])
    created = services.trigger_create(organization=organization, agent=agent, actor=owner,
                                      kind=Trigger.Kind.WEBHOOK, name="Curl")
    page = render_to_string("automations/_curl.html", {
        "secret": created.secret, "webhook_url": f"{live.url}/hooks/{created.trigger.public_id}", "signing": signing})
    script = html.unescape(re.search(r"<pre[^>]*>(.*)</pre>", page, re.S).group(1))

    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr
    run = Run.objects.get(id=json.loads(result.stdout)["run_id"])
    assert run.context == {"order": 42, "customer": "ACME"}
    # Let the worker finish the run it was handed: truncating tables under a run still writing its
    # events deadlocks the test database's flush.
    deadline = time.monotonic() + 30
    while run.status not in Run.TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        run.refresh_from_db()
