"""Django admin: schedules and triggers saved through the services; the event log read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django_celery_beat.models import PeriodicTask

from automations import services
from automations.models import Schedule, ScheduleFiring, Trigger, TriggerEvent


@pytest.fixture
def admin_client(client, owner):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client.force_login(owner)
    return client


INLINE = {"firings-TOTAL_FORMS": "0", "firings-INITIAL_FORMS": "0", "firings-MIN_NUM_FORMS": "0",
          "firings-MAX_NUM_FORMS": "1000"}


def _schedule_form(organization, agent, owner, **overrides) -> dict:
    return {"organization": str(organization.id), "agent": str(agent.id), "owner": str(owner.id),
            "name": "From admin", "cron": "0 6 * * *", "timezone": "Europe/Berlin", "goal": "Go.", "context": "null",
            "enabled": "on", "max_retries": "3"} | INLINE | overrides


def test_a_schedule_added_in_admin_gets_its_beat_entry(admin_client, organization, agent, owner):
    response = admin_client.post("/admin/automations/schedule/add/", _schedule_form(organization, agent, owner))

    assert response.status_code == 302, response.content.decode()[:3000]
    schedule = Schedule.objects.get()
    assert schedule.description == "Every day at 06:00"
    assert PeriodicTask.objects.get(id=schedule.periodic_task_id).crontab.hour == "6"
    page = admin_client.get(f"/admin/automations/schedule/{schedule.id}/change/").content.decode()
    assert "Next 5 fire times" in page


def test_admin_shows_schedule_mistakes_on_the_form(admin_client, organization, agent, owner):
    response = admin_client.post("/admin/automations/schedule/add/",
                                 _schedule_form(organization, agent, owner, cron="every morning"))

    assert response.status_code == 200
    assert "A cron expression has 5 fields" in response.content.decode()
    assert not Schedule.objects.exists()


def test_admin_edits_and_deletes_go_through_the_services(admin_client, organization, agent, owner):
    schedule = services.schedule_create(organization=organization, agent=agent, actor=owner, name="S", goal="Go.",
                                        cron="0 9 * * *")

    admin_client.post(f"/admin/automations/schedule/{schedule.id}/change/",
                      _schedule_form(organization, agent, owner, name="S", cron="15 10 * * *"))
    assert PeriodicTask.objects.get(id=schedule.periodic_task_id).crontab.minute == "15"

    admin_client.post(f"/admin/automations/schedule/{schedule.id}/delete/", {"post": "yes"})
    assert not Schedule.objects.exists() and not PeriodicTask.objects.filter(task="automations.fire_schedule").exists()


def test_a_webhook_added_in_admin_shows_its_secret_once(admin_client, organization, agent, owner):
    response = admin_client.post("/admin/automations/trigger/add/", {
        "organization": str(organization.id), "agent": str(agent.id), "owner": str(owner.id), "name": "Hook",
        "kind": "webhook", "enabled": "on", "goal_template": "Handle {{ payload|json }}", "source_statuses": ""})

    assert response.status_code == 302, response.content.decode()[:3000]
    trigger = Trigger.objects.get()
    (message,) = [str(m) for m in get_messages(response.wsgi_request) if "secret" in str(m)]
    assert "shown once" in message and trigger.public_id


def test_admin_refuses_a_trigger_that_would_loop(admin_client, organization, agent, owner):
    response = admin_client.post("/admin/automations/trigger/add/", {
        "organization": str(organization.id), "agent": str(agent.id), "owner": str(owner.id), "name": "Loop",
        "kind": "run_finished", "source_agent": str(agent.id), "source_statuses": "succeeded", "enabled": "on",
        "goal_template": "Again"})

    assert response.status_code == 200 and "that is a loop" in response.content.decode()


def test_every_automation_page_in_admin_opens(admin_client, organization, agent, owner):
    schedule = services.schedule_create(organization=organization, agent=agent, actor=owner, name="S", goal="Go.",
                                        cron="0 9 * * *")
    firing = services.schedule_fire(schedule=schedule, actor=owner)
    trigger = services.trigger_create(organization=organization, agent=agent, actor=owner, kind="webhook",
                                      name="Hook").trigger
    services.webhook_receive(public_id=trigger.public_id, body=b"{}", declared_length=2, content_type="text/plain",
                             timestamp=None, signature=None, remote_addr="10.0.0.1")
    event = TriggerEvent.objects.get()

    for path in ("schedule/", "schedulefiring/", "trigger/", "triggerevent/", f"schedulefiring/{firing.id}/change/",
                 f"trigger/{trigger.id}/change/", f"triggerevent/{event.id}/change/"):
        assert admin_client.get(f"/admin/automations/{path}").status_code == 200, path
    assert ScheduleFiring.objects.count() == 1


def test_the_event_log_is_read_only_in_admin(admin_client, organization, agent, owner):
    trigger = services.trigger_create(organization=organization, agent=agent, actor=owner, kind="webhook",
                                      name="Hook").trigger
    services.webhook_receive(public_id=trigger.public_id, body=b"{}", declared_length=2, content_type="text/plain",
                             timestamp=None, signature=None, remote_addr=None)
    event = TriggerEvent.objects.get()

    admin_client.post(f"/admin/automations/triggerevent/{event.id}/change/", {"reason": "accepted"})
    assert admin_client.get("/admin/automations/triggerevent/add/").status_code == 403
    event.refresh_from_db()
    assert event.reason == "unsupported_media_type"
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
