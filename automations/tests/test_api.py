"""The REST API: schedules, triggers and the trigger event log, scoped to the caller's organization."""

from __future__ import annotations

import time

import pytest
from django_celery_beat.models import PeriodicTask

from agents.models import Run
from automations import signing
from automations.models import Schedule, Trigger, TriggerEvent


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"error", "message", "details", "request_id"}, body
    return body


@pytest.fixture
def schedule_data(agent) -> dict:
    return {"agent": str(agent.id), "name": "Standup notes", "goal": "Summarise yesterday.",
            "plain": {"frequency": "weekdays", "time": "09:00"}, "timezone": "Europe/Berlin"}


@pytest.fixture
def schedule(owner_api, schedule_data) -> dict:
    return owner_api.post("/api/schedules", schedule_data, format="json").json()


# ----------------------------------------------------------------------------- schedules


def test_it_creates_a_schedule_from_a_plain_form(owner_api, schedule_data, agent):
    response = owner_api.post("/api/schedules", schedule_data, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["cron"] == "0 9 * * 1-5"
    assert body["description"] == "Every weekday at 09:00"
    assert body["plain_form"] == {"frequency": "weekdays", "time": "09:00"}
    assert body["owner"] == "olivia" and body["agent_name"] == agent.name
    assert len(body["next_fire_times"]) == 5
    assert all(t.endswith(("+01:00", "+02:00")) and "T09:00:00" in t for t in body["next_fire_times"])
    assert PeriodicTask.objects.filter(id=Schedule.objects.get(id=body["id"]).periodic_task_id).exists()


@pytest.mark.parametrize("plain, cron", [
    ({"frequency": "daily", "time": "06:45"}, "45 6 * * *"),
    ({"frequency": "weekly", "time": "17:00", "weekday": "friday"}, "0 17 * * 5"),
    ({"frequency": "monthly", "time": "09:00", "day": 1}, "0 9 1 * *"),
])
def test_each_plain_form_compiles_to_cron(owner_api, schedule_data, plain, cron):
    response = owner_api.post("/api/schedules", schedule_data | {"plain": plain}, format="json")

    assert response.json()["cron"] == cron


def test_it_creates_a_schedule_from_a_cron_expression(owner_api, schedule_data):
    data = {k: v for k, v in schedule_data.items() if k != "plain"} | {"cron": "*/30  8-18 * * MON-FRI"}

    body = owner_api.post("/api/schedules", data, format="json").json()

    assert body["cron"] == "*/30 8-18 * * mon-fri"
    assert body["plain_form"] is None


@pytest.mark.parametrize("change, field", [
    ({"plain": None}, "cron"),
    ({"cron": "0 9 * * *"}, "plain"),
    ({"plain": None, "cron": "0 25 * * *"}, "cron"),
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"plain": {"frequency": "weekly", "time": "09:00"}}, "plain"),
    ({"plain": {"frequency": "monthly", "time": "09:00", "day": 31}}, "plain"),
    ({"plain": {"frequency": "daily", "time": "9am"}}, "plain"),
    ({"context": [1, 2]}, "context"),
    ({"goal": ""}, "goal"),
    ({"max_retries": 50}, "max_retries"),
    ({"agent": "00000000-0000-0000-0000-000000000000"}, "agent"),
])
def test_it_rejects_bad_schedules_with_field_errors(owner_api, schedule_data, change, field):
    data = schedule_data | change
    data = {k: v for k, v in data.items() if v is not None}

    body = _error(owner_api.post("/api/schedules", data, format="json"), 400)

    assert body["error"] == "validation_error"
    assert field in body["details"], body
    assert not Schedule.objects.exists()


def test_an_agent_of_another_organization_is_not_found(owner_api, schedule_data, make_agent, other_organization):
    theirs = make_agent("Theirs", other_organization)

    body = _error(owner_api.post("/api/schedules", schedule_data | {"agent": str(theirs.id)}, format="json"), 400)

    assert body["details"]["agent"] == ["Agent not found."]


def test_a_second_schedule_with_the_same_name_is_a_conflict(owner_api, schedule_data, schedule):
    body = _error(owner_api.post("/api/schedules", schedule_data, format="json"), 409)

    assert body["error"] == "conflict" and "Standup notes" in body["message"]


def test_editing_the_time_zone_moves_the_fire_times(owner_api, schedule):
    response = owner_api.patch(f"/api/schedules/{schedule['id']}", {"timezone": "America/New_York"}, format="json")

    assert response.status_code == 200, response.content
    assert all(t.endswith(("-05:00", "-04:00")) for t in response.json()["next_fire_times"])
    task = PeriodicTask.objects.select_related("crontab").get(agent_schedule__id=schedule["id"])
    assert str(task.crontab.timezone) == "America/New_York"


def test_disabling_leaves_no_fire_times(owner_api, schedule):
    body = owner_api.patch(f"/api/schedules/{schedule['id']}", {"enabled": False}, format="json").json()

    assert body["enabled"] is False and body["next_fire_times"] == []


def test_renaming_onto_another_schedules_name_is_a_conflict(owner_api, schedule_data, schedule):
    other = owner_api.post("/api/schedules", schedule_data | {"name": "Other"}, format="json").json()

    _error(owner_api.patch(f"/api/schedules/{other['id']}", {"name": "Standup notes"}, format="json"), 409)


def test_run_now_starts_a_run_and_lists_the_firing(owner_api, schedule, owner):
    response = owner_api.post(f"/api/schedules/{schedule['id']}/fire")

    assert response.status_code == 201
    run = Run.objects.get(id=response.json()["run"])
    assert run.goal == "Summarise yesterday." and run.created_by == owner
    firings = owner_api.get(f"/api/schedules/{schedule['id']}/firings").json()
    assert [f["origin"] for f in firings["results"]] == ["manual"]


def test_deleting_a_schedule_removes_its_beat_entry(owner_api, schedule):
    assert owner_api.delete(f"/api/schedules/{schedule['id']}").status_code == 204

    assert not PeriodicTask.objects.filter(task="automations.fire_schedule").exists()


def test_schedules_are_listed_and_filtered_by_agent(owner_api, schedule_data, schedule, make_agent):
    other = make_agent("Other")
    owner_api.post("/api/schedules", schedule_data | {"agent": str(other.id)}, format="json")

    assert owner_api.get("/api/schedules").json()["count"] == 2
    assert [s["agent"] for s in owner_api.get(f"/api/schedules?agent={other.id}").json()["results"]] == [str(other.id)]
    _error(owner_api.get("/api/schedules?agent=nope"), 400)


def test_other_organizations_cannot_see_or_touch_a_schedule(outsider_api, schedule):
    url = f"/api/schedules/{schedule['id']}"

    assert outsider_api.get("/api/schedules").json()["count"] == 0
    for response in (outsider_api.get(url), outsider_api.patch(url, {"name": "Mine"}, format="json"),
                     outsider_api.delete(url), outsider_api.post(f"{url}/fire"), outsider_api.get(f"{url}/firings")):
        assert _error(response, 404)["error"] == "not_found"
    assert Schedule.objects.get(id=schedule["id"]).name == "Standup notes"


# ----------------------------------------------------------------------------- triggers


@pytest.fixture
def webhook(owner_api, agent) -> dict:
    return owner_api.post("/api/triggers", {"kind": "webhook", "agent": str(agent.id), "name": "Orders",
                                            "goal_template": "Order {{ payload.id }}"}, format="json").json()


def test_a_webhook_trigger_shows_its_secret_once(owner_api, webhook):
    assert webhook["secret"].startswith("whsec_")
    assert webhook["webhook_url"].startswith("http://testserver/hooks/")
    assert webhook["signing"]["signature_header"] == "X-Agentry-Signature"
    assert webhook["secret_hint"] == webhook["secret"][:10]

    again = owner_api.get(f"/api/triggers/{webhook['id']}").json()
    listed = owner_api.get("/api/triggers").json()["results"][0]
    assert "secret" not in again and "secret" not in listed
    assert again["webhook_url"] == webhook["webhook_url"]


def test_the_secret_from_the_api_signs_calls(webhook):
    from rest_framework.test import APIClient

    body, timestamp = b'{"id": 7}', str(int(time.time()))
    response = APIClient().generic("POST", webhook["webhook_url"], body, content_type="application/json", headers={
        signing.TIMESTAMP_HEADER: timestamp,
        signing.SIGNATURE_HEADER: signing.sign(secret=webhook["secret"], timestamp=timestamp, body=body)})

    assert response.status_code == 202
    assert Run.objects.get(id=response.json()["run_id"]).goal == "Order 7"


def test_rotating_returns_a_new_secret(owner_api, webhook):
    body = owner_api.post(f"/api/triggers/{webhook['id']}/rotate-secret").json()

    assert body["secret"].startswith("whsec_") and body["secret"] != webhook["secret"]
    assert body["secret_hint"] == body["secret"][:10]


def test_an_internal_trigger_has_no_url_or_secret_and_cannot_rotate(owner_api, agent, make_agent):
    source = make_agent("Source")

    response = owner_api.post("/api/triggers", {"kind": "run_finished", "agent": str(agent.id), "name": "Next",
                                                "source_agent": str(source.id)}, format="json")

    body = response.json()
    assert response.status_code == 201, body
    assert (body["secret"], body["webhook_url"], body["source_statuses"]) == (None, None, ["succeeded"])
    assert "{{ run.answer }}" in body["goal_template"]
    _error(owner_api.post(f"/api/triggers/{body['id']}/rotate-secret"), 409)


@pytest.mark.parametrize("data, field", [
    ({"kind": "run_finished"}, "source_agent"),
    ({"kind": "run_finished", "source_agent": "self"}, "source_agent"),
    ({"kind": "run_finished", "source_agent": "other", "source_statuses": ["running"]}, "source_statuses"),
    ({"kind": "schedule_fired"}, "source_schedule"),
    ({"kind": "carrier_pigeon"}, "kind"),
    ({"kind": "webhook", "goal_template": "{% include 'secrets.txt' %}"}, "goal_template"),
    ({"kind": "webhook", "name": ""}, "name"),
])
def test_it_rejects_bad_triggers_with_field_errors(owner_api, agent, make_agent, data, field):
    other = make_agent("Other")
    data = {"agent": str(agent.id), "name": "T"} | data
    if data.get("source_agent") in ("self", "other"):
        data["source_agent"] = str(agent.id if data["source_agent"] == "self" else other.id)

    body = _error(owner_api.post("/api/triggers", data, format="json"), 400)

    assert field in body["details"], body
    assert not Trigger.objects.exists()


def test_a_trigger_source_from_another_organization_is_not_found(owner_api, agent, make_agent, other_organization):
    theirs = make_agent("Theirs", other_organization)

    body = _error(owner_api.post("/api/triggers", {"kind": "run_finished", "agent": str(agent.id), "name": "T",
                                                   "source_agent": str(theirs.id)}, format="json"), 400)
    assert body["details"]["source_agent"] == ["Agent not found."]


def test_a_triggers_kind_cannot_change(owner_api, webhook):
    body = _error(owner_api.patch(f"/api/triggers/{webhook['id']}", {"kind": "run_finished"}, format="json"), 400)

    assert "kind" in body["details"]


def test_a_second_trigger_with_the_same_name_is_a_conflict(owner_api, webhook, agent):
    _error(owner_api.post("/api/triggers", {"kind": "webhook", "agent": str(agent.id), "name": "Orders"},
                          format="json"), 409)


def test_other_organizations_cannot_see_or_touch_a_trigger(outsider_api, webhook):
    url = f"/api/triggers/{webhook['id']}"

    assert outsider_api.get("/api/triggers").json()["count"] == 0
    for response in (outsider_api.get(url), outsider_api.patch(url, {"enabled": False}, format="json"),
                     outsider_api.delete(url), outsider_api.post(f"{url}/rotate-secret"),
                     outsider_api.get(f"{url}/events")):
        _error(response, 404)
    assert Trigger.objects.get(id=webhook["id"]).enabled


# ----------------------------------------------------------------------------- the event log


def _call(webhook: dict, *, good: bool) -> None:
    from rest_framework.test import APIClient

    body, timestamp = b'{"id": 1}', str(int(time.time()))
    secret = webhook["secret"] if good else "whsec_wrong"
    APIClient().generic("POST", webhook["webhook_url"], body, content_type="application/json", headers={
        signing.TIMESTAMP_HEADER: timestamp,
        signing.SIGNATURE_HEADER: signing.sign(secret=secret, timestamp=timestamp, body=body)})


def test_the_event_log_lists_calls_with_their_outcome_and_run(owner_api, webhook, make_agent, agent):
    _call(webhook, good=True)
    _call(webhook, good=False)

    events = owner_api.get("/api/trigger-events").json()["results"]

    assert [(e["outcome"], e["reason"], e["status_code"]) for e in events] == [
        ("rejected", "bad_signature", 401), ("accepted", "accepted", 202)]
    assert events[1]["run"] and events[1]["run_status"] == "queued"
    assert events[1]["trigger"] == webhook["id"] and events[1]["trigger_name"] == "Orders"
    assert owner_api.get(f"/api/trigger-events/{events[0]['id']}").json()["reason"] == "bad_signature"
    assert owner_api.get(f"/api/triggers/{webhook['id']}/events").json()["count"] == 2
    trigger = owner_api.get(f"/api/triggers/{webhook['id']}").json()
    assert (trigger["accepted_count"], trigger["rejected_count"]) == (1, 1)


def test_the_event_log_filters_by_trigger_outcome_and_time(owner_api, webhook, agent):
    other = owner_api.post("/api/triggers", {"kind": "webhook", "agent": str(agent.id), "name": "Other"},
                           format="json").json()
    _call(webhook, good=True)
    _call(webhook, good=False)
    _call(other, good=True)

    def count(query: str) -> int:
        response = owner_api.get(f"/api/trigger-events?{query}")
        assert response.status_code == 200, response.content
        return response.json()["count"]

    assert count(f"trigger={webhook['id']}") == 2
    assert count("outcome=accepted") == 2
    assert count(f"trigger={webhook['id']}&outcome=rejected") == 1
    assert count("since=2000-01-01") == 3
    assert count("since=2999-01-01T00:00:00Z") == 0
    for bad in ("since=yesterday", "outcome=maybe", "trigger=42"):
        _error(owner_api.get(f"/api/trigger-events?{bad}"), 400)


def test_other_organizations_do_not_see_the_event_log(outsider_api, webhook):
    _call(webhook, good=True)
    event = TriggerEvent.objects.get()

    assert outsider_api.get("/api/trigger-events").json()["count"] == 0
    _error(outsider_api.get(f"/api/trigger-events/{event.id}"), 404)


def test_deleting_a_trigger_keeps_its_event_log(owner_api, webhook):
    _call(webhook, good=True)

    assert owner_api.delete(f"/api/triggers/{webhook['id']}").status_code == 204

    (event,) = owner_api.get("/api/trigger-events").json()["results"]
    assert (event["trigger"], event["trigger_name"]) == (None, "Orders")


def test_everything_is_in_the_openapi_schema(owner_api):
    paths = owner_api.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    for path in ("/api/schedules", "/api/schedules/{id}", "/api/schedules/{id}/fire", "/api/schedules/{id}/firings",
                 "/api/triggers", "/api/triggers/{id}", "/api/triggers/{id}/rotate-secret",
                 "/api/triggers/{id}/events", "/api/trigger-events", "/api/trigger-events/{id}",
                 "/hooks/{public_id}"):
        assert path in paths, path
    hook = paths["/hooks/{public_id}"]["post"]
    assert {p["name"] for p in hook["parameters"]} >= {"X-Agentry-Timestamp", "X-Agentry-Signature"}
    assert {"202", "400", "401", "403", "404", "413", "415"} <= set(hook["responses"])
