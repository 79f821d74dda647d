"""Internal triggers: a run finishing (or a schedule firing) starts another agent, with loop
protection."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import Run
from automations import services, signing
from automations.models import Trigger, TriggerEvent
from automations.tests.runs import finish


@pytest.fixture
def follow(organization, owner):
    def make(source, target, *, statuses=None, template="") -> Trigger:
        return services.trigger_create(
            organization=organization, agent=target, actor=owner, kind=Trigger.Kind.RUN_FINISHED,
            name=f"After {source.name}", source_agent=source, source_statuses=statuses, goal_template=template,
        ).trigger

    return make


def _tick() -> dict[str, int]:
    return services.automations_tick(now=timezone.now() + timedelta(seconds=1))


def _latest_run(agent) -> Run | None:
    return Run.objects.filter(agent=agent).order_by("-created_at").first()


def test_a_finished_run_starts_the_next_agent_with_its_result(make_agent, follow, owner):
    writer, reviewer = make_agent("Writer"), make_agent("Reviewer")
    follow(writer, reviewer, template="Review this {{ run.status }} draft: {{ run.answer }}")
    draft = agent_services.run_start(agent=writer, goal="Draft the memo.", actor=owner)
    finish(draft, Run.Status.SUCCEEDED, answer="Dear team, ...")

    assert _tick()["triggers_accepted"] == 1

    review = _latest_run(reviewer)
    assert review.goal == "Review this succeeded draft: Dear team, ..."
    assert review.created_by == owner
    assert review.context["source_run"]["id"] == str(draft.id)
    assert review.context["source_run"]["answer"] == "Dear team, ..."
    assert review.context["trigger_chain"] == [str(writer.id), str(reviewer.id)]
    event = TriggerEvent.objects.get()
    assert (event.outcome, event.source_run_id, event.run_id) == ("accepted", draft.id, review.id)
    assert _tick()["triggers_accepted"] == 0  # each finished run is handled once
    assert Run.objects.filter(agent=reviewer).count() == 1


def test_only_the_chosen_final_statuses_count(make_agent, follow, owner):
    worker, on_success, on_trouble = make_agent("Worker"), make_agent("Celebrate"), make_agent("Investigate")
    follow(worker, on_success)
    follow(worker, on_trouble, statuses=["failed", "timed_out"])
    finish(agent_services.run_start(agent=worker, goal="Try.", actor=owner), Run.Status.FAILED, error="Boom")

    _tick()

    assert _latest_run(on_success) is None
    assert "Boom" in _latest_run(on_trouble).context["source_run"]["error"]


def test_runs_that_finished_before_the_trigger_existed_do_not_start_anything(make_agent, follow, owner):
    source, target = make_agent("Source"), make_agent("Target")
    finish(agent_services.run_start(agent=source, goal="Old.", actor=owner), Run.Status.SUCCEEDED)
    follow(source, target)

    _tick()

    assert _latest_run(target) is None


def test_an_agent_is_never_started_twice_in_one_chain(make_agent, follow, owner):
    ping, pong = make_agent("Ping"), make_agent("Pong")
    follow(ping, pong)
    follow(pong, ping)
    finish(agent_services.run_start(agent=ping, goal="Serve.", actor=owner), Run.Status.SUCCEEDED)
    _tick()
    finish(_latest_run(pong), Run.Status.SUCCEEDED)

    counts = _tick()

    assert counts["triggers_rejected"] == 1
    assert Run.objects.count() == 2
    refusal = TriggerEvent.objects.get(reason="loop")
    assert refusal.outcome == "rejected" and refusal.run is None
    assert "Ping already ran earlier in this chain" in refusal.message
    assert _tick()["triggers_rejected"] == 0  # refused once, not on every tick


def test_chains_stop_after_five_hops(make_agent, follow, owner):
    agents = [make_agent(f"Step {i}") for i in range(7)]
    for source, target in zip(agents, agents[1:], strict=False):
        follow(source, target)
    run = agent_services.run_start(agent=agents[0], goal="Start.", actor=owner)

    for _ in range(6):
        finish(run, Run.Status.SUCCEEDED, answer="ok")
        _tick()
        run = Run.objects.order_by("-created_at").first()

    started = [a.name for a in agents if _latest_run(a)]
    assert started == [f"Step {i}" for i in range(6)]  # the origin and five hops
    refusal = TriggerEvent.objects.get(outcome="rejected")
    assert refusal.reason == "too_deep" and refusal.trigger.agent == agents[6]
    assert _latest_run(agents[5]).context["trigger_chain"] == [str(a.id) for a in agents[:6]]


def test_the_chain_comes_from_the_event_log_not_from_the_runs_context(make_agent, follow, organization, owner):
    # A webhook payload may carry anything, including a fake "trigger_chain".
    intake, triage = make_agent("Intake"), make_agent("Triage")
    follow(intake, triage)
    created = services.trigger_create(organization=organization, agent=intake, actor=owner,
                                      kind=Trigger.Kind.WEBHOOK, name="Inbox")
    body = json.dumps({"trigger_chain": [str(triage.id)] * 10}).encode()
    timestamp = str(int(time.time()))
    response = APIClient().generic("POST", f"/hooks/{created.trigger.public_id}", body,
                                   content_type="application/json",
                                   headers={signing.TIMESTAMP_HEADER: timestamp, signing.SIGNATURE_HEADER:
                                            signing.sign(secret=created.secret, timestamp=timestamp, body=body)})
    assert response.status_code == 202
    finish(Run.objects.get(id=response.json()["run_id"]), Run.Status.SUCCEEDED)

    _tick()

    assert _latest_run(triage).context["trigger_chain"] == [str(intake.id), str(triage.id)]


def test_a_disabled_trigger_ignores_runs_that_finish_while_it_is_off(make_agent, follow, owner):
    source, target = make_agent("Source"), make_agent("Target")
    trigger = follow(source, target)
    services.trigger_set_enabled(trigger=trigger, enabled=False, actor=owner)
    finish(agent_services.run_start(agent=source, goal="While off.", actor=owner), Run.Status.SUCCEEDED)
    _tick()
    services.trigger_set_enabled(trigger=trigger, enabled=True, actor=owner)
    _tick()
    assert _latest_run(target) is None

    finish(agent_services.run_start(agent=source, goal="While on.", actor=owner), Run.Status.SUCCEEDED)
    _tick()

    assert _latest_run(target).context["source_run"]["goal"] == "While on."


def test_an_agent_cannot_be_triggered_by_its_own_runs(make_agent, organization, owner):
    agent = make_agent("Narcissus")

    with pytest.raises(ValidationError) as caught:
        services.trigger_create(organization=organization, agent=agent, actor=owner,
                                kind=Trigger.Kind.RUN_FINISHED, name="Self", source_agent=agent)
    assert "loop" in caught.value.message_dict["source_agent"][0]


def test_a_schedule_firing_starts_other_agents(make_agent, organization, owner):
    reporter, archivist = make_agent("Reporter"), make_agent("Archivist")
    schedule = services.schedule_create(organization=organization, agent=reporter, actor=owner, name="Nightly",
                                        goal="Report.", cron="0 2 * * *", timezone="Asia/Tokyo")
    services.trigger_create(organization=organization, agent=archivist, actor=owner, name="Archive too",
                            kind=Trigger.Kind.SCHEDULE_FIRED, source_schedule=schedule,
                            goal_template="Archive what {{ schedule.name }} produces (run {{ schedule.run_id }}).")

    firing = services.schedule_fire_due(schedule_id=schedule.id, now=schedule.next_fire_at + timedelta(seconds=1))

    archive = _latest_run(archivist)
    assert archive.goal == f"Archive what Nightly produces (run {firing.run_id})."
    assert archive.context["trigger_chain"] == [str(reporter.id), str(archivist.id)]
    event = TriggerEvent.objects.get()
    assert (event.kind, event.schedule_firing_id, event.run_id) == ("schedule_fired", firing.id, archive.id)


def test_goal_templates_are_checked_when_saved(make_agent, organization, owner):
    agent = make_agent("Any")
    for template, message in (("{% load static %}", "Invalid block tag"), ("{% for x in y %}{% endfor %}", "'for'"),
                              ("{{ payload|ljust:'999999' }}", "Invalid filter"), ("x" * 5001, "too long")):
        with pytest.raises(ValidationError) as caught:
            services.trigger_create(organization=organization, agent=agent, actor=owner,
                                    kind=Trigger.Kind.WEBHOOK, name="T", goal_template=template)
        assert message in caught.value.message_dict["goal_template"][0]
