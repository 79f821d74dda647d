from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from agents import services
from agents.models import Run

AGENT = {
    "name": "Calc",
    "description": "Does sums",
    "system_prompt": "Use the calculator.",
    "tools": ["calculator"],
    "max_steps": 5,
    "timeout_seconds": 60,
}


def _error(response) -> dict:
    body = response.json()
    assert set(body) >= {"error", "message", "details", "request_id"}, body
    assert body["request_id"] == response["X-Request-ID"]
    return body


@pytest.fixture
def agent(organization, owner):
    return services.agent_create(organization=organization, actor=owner, **(AGENT | {"model": "demo"}))


# ----------------------------------------------------------------------------- auth


def test_it_exchanges_a_password_for_a_token_that_works(owner, organization):
    client = APIClient()
    response = client.post("/api/auth/token", {"username": "olivia", "password": "correct horse battery staple"},
                           format="json")

    assert response.status_code == 201
    token = response.json()["token"]
    assert token.startswith("agt_")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/agents").status_code == 200


def test_tokens_are_stored_hashed(owner, organization):
    response = APIClient().post("/api/auth/token", {"username": "olivia", "password": "correct horse battery staple"},
                                format="json")
    from accounts.models import ApiToken

    stored = ApiToken.objects.get(id=response.json()["id"])
    assert response.json()["token"] not in (stored.key_hash, stored.hint)


def test_it_rejects_a_wrong_password_in_the_envelope(owner):
    response = APIClient().post("/api/auth/token", {"username": "olivia", "password": "nope"}, format="json")

    assert response.status_code == 401
    assert _error(response)["error"] == "authentication_failed"


def test_it_rejects_requests_without_credentials(db):
    response = APIClient().get("/api/agents")

    assert response.status_code == 401
    assert _error(response)["error"] == "not_authenticated"


def test_it_rejects_a_bogus_bearer_token(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer agt_not-a-real-token")

    assert client.get("/api/agents").status_code == 401


# ----------------------------------------------------------------------------- agents


def test_it_creates_an_agent_with_the_default_model(owner_api):
    response = owner_api.post("/api/agents", AGENT, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["model"] == "demo"
    assert body["model_label"] == "Offline demo model"
    assert body["tools"] == ["calculator"]
    assert body["created_by"] == "olivia"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tools": ["calculator", "rm_rf"]}, "tools"),
        ({"system_prompt": ""}, "system_prompt"),
        ({"system_prompt": "   "}, "system_prompt"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 10_000}, "max_steps"),
        ({"timeout_seconds": 1}, "timeout_seconds"),
        ({"name": ""}, "name"),
        ({"model": "gpt-nonexistent"}, "model"),
        ({"tools": "calculator"}, "tools"),
    ],
)
def test_it_rejects_bad_agent_input_with_field_errors(owner_api, change, field):
    response = owner_api.post("/api/agents", AGENT | change, format="json")

    assert response.status_code == 400
    body = _error(response)
    assert body["error"] == "validation_error"
    assert field in body["details"], body


def test_unknown_tool_errors_name_the_tool(owner_api):
    response = owner_api.post("/api/agents", AGENT | {"tools": ["rm_rf"]}, format="json")

    assert "rm_rf" in str(response.json()["details"]["tools"])


def test_it_rejects_malformed_json(owner_api):
    response = owner_api.generic("POST", "/api/agents", '{"name": "x",', content_type="application/json")

    assert response.status_code == 400
    assert _error(response)["error"] == "parse_error"


def test_it_lists_agents_with_pagination_search_and_ordering(owner_api, organization, owner):
    for name in ["Alpha", "Beta", "Gamma"]:
        services.agent_create(organization=organization, actor=owner, **(AGENT | {"name": name, "model": "demo"}))

    page = owner_api.get("/api/agents?page_size=2&ordering=name").json()
    assert page["count"] == 3
    assert [a["name"] for a in page["results"]] == ["Alpha", "Beta"]
    assert page["next"]

    found = owner_api.get("/api/agents?search=gam").json()
    assert [a["name"] for a in found["results"]] == ["Gamma"]


def test_it_updates_part_of_an_agent(owner_api, agent):
    response = owner_api.patch(f"/api/agents/{agent.id}", {"max_steps": 7}, format="json")

    assert response.status_code == 200
    assert response.json()["max_steps"] == 7
    assert response.json()["name"] == "Calc"


def test_it_rejects_a_bad_partial_update(owner_api, agent):
    response = owner_api.patch(f"/api/agents/{agent.id}", {"tools": ["nope"]}, format="json")

    assert response.status_code == 400


def test_it_deletes_an_agent_and_keeps_its_runs(owner_api, agent, owner):
    run = services.run_start(agent=agent, goal="What is 1 + 1?", actor=owner)

    assert owner_api.delete(f"/api/agents/{agent.id}").status_code == 204
    assert owner_api.get(f"/api/agents/{agent.id}").status_code == 404
    assert owner_api.get(f"/api/runs/{run.id}").json()["agent_name"] == "Calc"


def test_another_organization_cannot_see_or_touch_an_agent(outsider_api, agent):
    assert outsider_api.get(f"/api/agents/{agent.id}").status_code == 404
    assert outsider_api.patch(f"/api/agents/{agent.id}", {"name": "x"}, format="json").status_code == 404
    assert outsider_api.delete(f"/api/agents/{agent.id}").status_code == 404
    assert outsider_api.post(f"/api/agents/{agent.id}/runs", {"goal": "hi"}, format="json").status_code == 404
    assert outsider_api.get("/api/agents").json()["count"] == 0


# ----------------------------------------------------------------------------- runs


def test_it_starts_a_run(owner_api, agent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner_api.post(f"/api/agents/{agent.id}/runs", {"goal": "What is 17 * 23?",
                                                                    "context": {"who": "me"}}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["context"] == {"who": "me"}
    assert body["usage"] == {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    assert len(callbacks) >= 1  # the Celery enqueue waits for the commit


@pytest.mark.parametrize("payload", [{}, {"goal": ""}, {"goal": "x", "context": [1, 2]}, {"goal": "x", "context": "s"}])
def test_it_rejects_bad_run_input(owner_api, agent, payload):
    response = owner_api.post(f"/api/agents/{agent.id}/runs", payload, format="json")

    assert response.status_code == 400
    assert _error(response)["error"] == "validation_error"


def test_it_lists_and_filters_runs(owner_api, agent, owner):
    first = services.run_start(agent=agent, goal="one", actor=owner)
    services.run_start(agent=agent, goal="two", actor=owner)
    services.run_cancel(run=first, actor=owner)

    assert owner_api.get("/api/runs").json()["count"] == 2
    cancelled = owner_api.get("/api/runs?status=cancelled").json()["results"]
    assert [r["goal"] for r in cancelled] == ["one"]
    assert owner_api.get(f"/api/runs?agent={agent.id}").json()["count"] == 2
    assert owner_api.get(f"/api/runs?agent={uuid.uuid4()}").json()["count"] == 0
    assert owner_api.get(f"/api/agents/{agent.id}/runs").json()["count"] == 2


@pytest.mark.parametrize("query", ["status=bogus", "agent=not-a-uuid"])
def test_it_rejects_bad_run_filters(owner_api, query):
    assert owner_api.get(f"/api/runs?{query}").status_code == 400


def test_it_cancels_a_queued_run_and_refuses_a_second_cancel(owner_api, agent, owner):
    run = services.run_start(agent=agent, goal="x", actor=owner)

    response = owner_api.post(f"/api/runs/{run.id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["stop_reason"] == "cancelled"

    again = owner_api.post(f"/api/runs/{run.id}/cancel")
    assert again.status_code == 409
    assert _error(again)["error"] == "conflict"


def test_it_returns_events_after_a_sequence_number(owner_api, agent, owner):
    run = services.run_start(agent=agent, goal="x", actor=owner)
    services.run_cancel(run=run, actor=owner)

    events = owner_api.get(f"/api/runs/{run.id}/events").json()
    assert [(e["seq"], e["type"]) for e in events] == [(1, "status"), (2, "status")]
    assert events[1]["data"] == {"status": "cancelled", "stop_reason": "cancelled", "by": "olivia"}
    assert [e["seq"] for e in owner_api.get(f"/api/runs/{run.id}/events?after=1").json()] == [2]
    assert owner_api.get(f"/api/runs/{run.id}/events?after=x").status_code == 400


def test_another_organization_cannot_see_a_run(outsider_api, agent, owner):
    run = services.run_start(agent=agent, goal="x", actor=owner)

    assert outsider_api.get(f"/api/runs/{run.id}").status_code == 404
    assert outsider_api.get(f"/api/runs/{run.id}/events").status_code == 404
    assert outsider_api.post(f"/api/runs/{run.id}/cancel").status_code == 404
    assert outsider_api.get("/api/runs").json()["count"] == 0
    assert Run.objects.get(id=run.id).status == "queued"


# ----------------------------------------------------------------------------- catalog and errors


def test_it_lists_models_with_the_demo_model_labelled(owner_api, settings):
    settings.ANTHROPIC_API_KEY = None
    models = owner_api.get("/api/models").json()

    assert {"id": "demo", "provider": "demo", "label": "Offline demo model"} in models
    assert not any(m["provider"] == "anthropic" for m in models)


def test_it_lists_claude_models_when_a_key_is_set(owner_api, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-test"

    providers = {m["provider"] for m in owner_api.get("/api/models").json()}
    assert "anthropic" in providers


def test_it_lists_tools_with_their_schemas(owner_api):
    tools = {t["name"]: t for t in owner_api.get("/api/tools").json()}

    assert {"calculator", "current_time", "web_fetch"} <= set(tools)
    assert tools["calculator"]["side_effect"] == "read"
    assert tools["calculator"]["input_schema"]["type"] == "object"


def test_unknown_api_paths_get_the_envelope(owner_api):
    response = owner_api.get("/api/nope")

    assert response.status_code == 404
    assert _error(response)["error"] == "not_found"


def test_it_serves_the_openapi_schema(owner_api):
    response = owner_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/agents/{id}/runs" in paths
    assert "/api/runs/{id}/cancel" in paths
    assert "/api/runs/{id}/events" in paths


def test_a_token_stops_working_when_its_owner_leaves_the_organization(member_api, member, organization):
    assert member_api.get("/api/agents").status_code == 200

    member.memberships.filter(organization=organization).delete()

    assert member_api.get("/api/agents").status_code == 401


@pytest.mark.parametrize("action", ["pause", "resume", "retry"])
def test_steering_a_run_in_the_wrong_state_is_a_conflict(owner_api, agent, owner, action):
    run = services.run_start(agent=agent, goal="x", actor=owner)
    services.run_cancel(run=run, actor=owner)

    response = owner_api.post(f"/api/runs/{run.id}/{action}")

    assert response.status_code == 409
    assert _error(response)["error"] == "conflict"


def test_pause_resume_and_rerun_through_the_api(owner_api, agent, owner):
    run = services.run_start(agent=agent, goal="x", actor=owner)

    assert owner_api.post(f"/api/runs/{run.id}/pause").json()["status"] == "paused"
    assert owner_api.post(f"/api/runs/{run.id}/resume").json()["status"] == "queued"
    again = owner_api.post(f"/api/runs/{run.id}/rerun")
    assert again.status_code == 201 and again.json()["goal"] == "x" and again.json()["id"] != str(run.id)


def test_uncertain_write_decisions_are_validated(owner_api, agent, owner):
    run = services.run_start(agent=agent, goal="x", actor=owner)

    url = f"/api/runs/{run.id}/uncertain-write"
    assert owner_api.post(url, {"decision": "maybe"}, format="json").status_code == 400
    assert owner_api.post(url, {"decision": "skip"}, format="json").status_code == 409


def test_runs_can_carry_their_own_budgets(owner_api, agent):
    body = owner_api.post(f"/api/agents/{agent.id}/runs", {"goal": "x", "max_tokens": 500, "max_cost_usd": "0.25",
                                                           "max_steps": 3}, format="json").json()

    assert body["limits"] == {"max_steps": 3, "timeout_seconds": 60, "max_tokens": 500, "max_cost_usd": "0.2500"}
