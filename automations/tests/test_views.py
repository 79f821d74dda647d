"""The server-rendered pages, through Django's test client against the real database."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from agents.models import Run
from automations import services, signing
from automations.models import Schedule, Trigger


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def schedule(organization, owner, agent) -> Schedule:
    return services.schedule_create(organization=organization, agent=agent, actor=owner, name="Weekly digest",
                                    goal="Write the digest.", cron="0 8 * * 1", timezone="Europe/Berlin")


def _schedule_form(agent, **overrides) -> dict:
    return {"name": "Morning", "agent": str(agent.id), "mode": "plain", "frequency": "weekdays", "time": "09:00",
            "weekday": "monday", "day": "1", "cron": "", "timezone": "Europe/Berlin", "goal": "Say good morning.",
            "context": "", "enabled": "on", "max_retries": "3"} | overrides


def _fire_times(html: str) -> list[str]:
    block = html.split('id="next-fire-times"', 1)[1].split("</ol>", 1)[0]
    return re.findall(r'<time datetime="([^"]+)"', block)


# ----------------------------------------------------------------------------- schedules


def test_the_schedule_list_invites_to_create_one(browser, agent):
    html = browser.get(reverse("automations:schedule-list")).content.decode()

    assert "No schedules yet" in html and reverse("automations:schedule-create") in html


def test_a_schedule_created_in_words_shows_its_next_five_fire_times(browser, agent):
    response = browser.post(reverse("automations:schedule-create") + f"?agent={agent.id}", _schedule_form(agent))

    schedule = Schedule.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/automations/schedules/{schedule.id}/"
    assert (schedule.cron, schedule.description) == ("0 9 * * 1-5", "Every weekday at 09:00")
    html = browser.get(response["Location"]).content.decode()
    times = _fire_times(html)
    assert len(times) == 5 and all("T09:00:00+0" in t for t in times)
    assert "Every weekday at 09:00" in html and "Europe/Berlin" in html


def test_a_bad_cron_expression_is_explained_next_to_the_field(browser, agent):
    response = browser.post(reverse("automations:schedule-create"), _schedule_form(agent, mode="cron", cron="0 9 *"))

    assert response.status_code == 200
    assert "A cron expression has 5 fields" in response.content.decode()
    assert not Schedule.objects.exists()


def test_a_duplicate_name_is_explained_on_the_name_field(browser, agent, schedule):
    response = browser.post(reverse("automations:schedule-create"), _schedule_form(agent, name="Weekly digest"))

    assert "already has a schedule named" in response.content.decode()


def test_editing_shows_a_preset_schedule_in_words_and_saves_changes(browser, schedule, agent):
    url = reverse("automations:schedule-edit", args=[schedule.id])
    html = browser.get(url).content.decode()
    assert 'value="plain" checked' in html.replace("\n", " ") or re.search(r'value="plain"[^>]*checked', html)
    assert re.search(r'<option value="monday" selected>', html)

    response = browser.post(url, _schedule_form(agent, name="Weekly digest", frequency="weekly", weekday="friday",
                                                time="16:30"))

    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.cron == "30 16 * * 5"


def test_the_preview_shows_fire_times_for_what_the_form_says(browser):
    url = reverse("automations:schedule-preview")

    good = browser.get(url, {"mode": "plain", "frequency": "monthly", "day": "1", "time": "09:00",
                             "timezone": "Asia/Tokyo"}).content.decode()
    bad = browser.get(url, {"mode": "cron", "cron": "99 * * * *", "timezone": "UTC"}).content.decode()

    assert len(_fire_times(good)) == 5 and "Monthly on the 1st at 09:00" in good
    assert all(t.endswith("T09:00:00+09:00") for t in _fire_times(good)) and "09:00 JST" in good
    assert "minute: 99 is outside 0-59" in bad


def test_run_now_toggle_and_delete_from_the_schedule_page(browser, schedule, owner):
    fired = browser.post(reverse("automations:schedule-fire", args=[schedule.id]))
    run = Run.objects.get()
    assert fired["Location"] == f"/runs/{run.id}/" and run.created_by == owner

    browser.post(reverse("automations:schedule-toggle", args=[schedule.id]))
    schedule.refresh_from_db()
    assert not schedule.enabled
    detail = browser.get(reverse("automations:schedule-detail", args=[schedule.id])).content.decode()
    assert "Disabled: it won" in detail

    confirm = browser.get(reverse("automations:schedule-delete", args=[schedule.id])).content.decode()
    assert "Are you sure?" in confirm and "1 firing" in confirm
    browser.post(reverse("automations:schedule-delete", args=[schedule.id]))
    assert not Schedule.objects.exists()


def test_another_organizations_schedule_is_not_found(client, outsider, schedule):
    client.force_login(outsider)

    for name in ("schedule-detail", "schedule-edit", "schedule-delete"):
        assert client.get(reverse(f"automations:{name}", args=[schedule.id])).status_code == 404
    assert client.post(reverse("automations:schedule-fire", args=[schedule.id])).status_code == 404
    assert not Run.objects.exists()


# ----------------------------------------------------------------------------- triggers


def test_a_new_webhook_shows_its_secret_once_with_a_curl_example(browser, agent):
    response = browser.post(reverse("automations:trigger-create"), {
        "kind": "webhook", "name": "Tickets", "agent": str(agent.id), "goal_template": "", "enabled": "on"})

    trigger = Trigger.objects.get()
    html = response.content.decode()
    secret = re.search(r'id="webhook-secret" value="(whsec_[^"]+)"', html).group(1)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert "shown only this once" in html
    assert f"SECRET='{secret}'" in html and "openssl dgst -sha256 -hmac" in html
    assert f"http://testserver/hooks/{trigger.public_id}" in html

    detail = browser.get(reverse("automations:trigger-detail", args=[trigger.id])).content.decode()
    assert secret not in detail and trigger.secret_hint in detail
    assert "X-Agentry-Signature" in detail and "No calls yet" in detail


def test_the_trigger_page_shows_its_event_log(browser, organization, owner, agent):
    created = services.trigger_create(organization=organization, agent=agent, actor=owner, kind="webhook",
                                      name="Tickets")
    body, timestamp = b'{"ticket": 9}', str(int(time.time()))
    for secret in (created.secret, "whsec_wrong"):
        browser.generic("POST", f"/hooks/{created.trigger.public_id}", body, content_type="application/json",
                        headers={signing.TIMESTAMP_HEADER: timestamp,
                                 signing.SIGNATURE_HEADER: signing.sign(secret=secret, timestamp=timestamp, body=body)})

    html = browser.get(reverse("automations:trigger-detail", args=[created.trigger.id])).content.decode()

    assert "202 accepted" in html and "401 bad_signature" in html
    assert "1 accepted, 1 rejected" in html
    log = browser.get(reverse("automations:event-list") + "?outcome=rejected").content.decode()
    assert "401 bad_signature" in log and "202 accepted" not in log


def test_rotating_shows_the_new_secret_once(browser, organization, owner, agent):
    created = services.trigger_create(organization=organization, agent=agent, actor=owner, kind="webhook",
                                      name="Tickets")

    html = browser.post(reverse("automations:trigger-rotate", args=[created.trigger.id])).content.decode()

    new = re.search(r'id="webhook-secret" value="(whsec_[^"]+)"', html).group(1)
    assert new != created.secret and "The old secret no longer works" in html


def test_a_run_finished_trigger_is_created_from_the_form(browser, agent, make_agent):
    source = make_agent("Collector")

    response = browser.post(reverse("automations:trigger-create"), {
        "kind": "run_finished", "name": "After collecting", "agent": str(agent.id), "source_agent": str(source.id),
        "source_statuses": ["succeeded", "failed"], "goal_template": "Summarise: {{ run.answer }}", "enabled": "on"})

    trigger = Trigger.objects.get()
    assert response.status_code == 302
    assert (trigger.source_agent, trigger.source_statuses) == (source, ["failed", "succeeded"])
    html = browser.get(response["Location"]).content.decode()
    assert "Collector" in html and "Summarise: {{ run.answer }}" in html


def test_a_loop_is_refused_on_the_form(browser, agent):
    response = browser.post(reverse("automations:trigger-create"), {
        "kind": "run_finished", "name": "Self", "agent": str(agent.id), "source_agent": str(agent.id),
        "source_statuses": ["succeeded"], "goal_template": "", "enabled": "on"})

    assert response.status_code == 200 and "that is a loop" in response.content.decode()
    assert not Trigger.objects.exists()


def test_deleting_a_trigger_asks_first(browser, organization, owner, agent):
    trigger = services.trigger_create(organization=organization, agent=agent, actor=owner, kind="webhook",
                                      name="Tickets").trigger

    assert "Calls to its URL will get 404" in browser.get(
        reverse("automations:trigger-delete", args=[trigger.id])).content.decode()
    browser.post(reverse("automations:trigger-delete", args=[trigger.id]))
    assert not Trigger.objects.exists()


def test_the_agent_page_lists_its_schedules_and_triggers(browser, schedule, organization, owner, agent, make_agent):
    services.trigger_create(organization=organization, agent=agent, actor=owner, kind="webhook", name="Tickets")
    services.trigger_create(organization=organization, agent=make_agent("Follower"), actor=owner,
                            kind="run_finished", name="Then", source_agent=agent)

    html = browser.get(reverse("agents:agent-detail", args=[agent.id])).content.decode()

    section = html.split('id="automations"', 1)[1]
    assert "Weekly digest" in section and "Tickets" in section
    assert "When this agent's runs finish they start" in section and "Follower" in section
    assert f"/automations/schedules/new?agent={agent.id}" in section
