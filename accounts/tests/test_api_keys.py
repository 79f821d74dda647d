from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import ApiToken, AuditLog
from agents import services

AGENT = {"name": "Calc", "system_prompt": "x", "tools": ["calculator"]}


def _client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def agent(organization, owner):
    return services.agent_create(organization=organization, actor=owner, name="Calc", system_prompt="x",
                                 model="demo", tools=["calculator"])


def _key(owner, organization, scopes, **kwargs) -> APIClient:
    _, raw = account_services.api_token_create(user=owner, organization=organization, scopes=scopes, **kwargs)
    return _client(raw)


def test_a_read_key_reads_but_cannot_write(owner, organization, agent):
    client = _key(owner, organization, ["read"])

    assert client.get("/api/agents").status_code == 200
    refused = client.post("/api/agents", AGENT, format="json")
    assert refused.status_code == 403
    assert "lacks the 'manage' scope" in refused.json()["message"]
    assert client.post(f"/api/agents/{agent.id}/runs", {"goal": "x"}, format="json").status_code == 403


def test_a_run_key_runs_and_steers_but_cannot_change_agents(owner, organization, agent):
    client = _key(owner, organization, ["read", "run"])

    run = client.post(f"/api/agents/{agent.id}/runs", {"goal": "x"}, format="json")
    assert run.status_code == 201
    assert client.post(f"/api/runs/{run.json()['id']}/cancel").status_code == 200
    assert client.patch(f"/api/agents/{agent.id}", {"name": "y"}, format="json").status_code == 403


def test_a_manage_key_changes_agents(owner, organization):
    assert _key(owner, organization, ["manage"]).post("/api/agents", AGENT, format="json").status_code == 201


def test_an_expired_key_stops_working(owner, organization):
    token, raw = account_services.api_token_create(user=owner, organization=organization,
                                                   expires_at=timezone.now() + timedelta(seconds=60))
    assert _client(raw).get("/api/agents").status_code == 200

    ApiToken.objects.filter(id=token.id).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert _client(raw).get("/api/agents").status_code == 401


def test_keys_are_created_shown_once_listed_and_revoked(owner_api):
    created = owner_api.post("/api/keys", {"name": "CI", "scopes": ["read"]}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["token"].startswith("agt_") and body["key"]["scopes"] == ["read"]

    listed = owner_api.get("/api/keys").json()["results"]
    assert body["token"] not in str(listed)
    key_id = body["key"]["id"]
    assert _client(body["token"]).get("/api/agents").status_code == 200

    assert owner_api.delete(f"/api/keys/{key_id}").status_code == 204
    assert _client(body["token"]).get("/api/agents").status_code == 401
    assert AuditLog.objects.filter(action="api_key.revoke", target_id=key_id).exists()


@pytest.mark.parametrize("payload", [{"name": "x", "scopes": []}, {"name": "x", "scopes": ["admin"]},
                                     {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, {}])
def test_bad_key_requests_get_field_errors(owner_api, payload):
    response = owner_api.post("/api/keys", payload, format="json")

    assert response.status_code == 400 and response.json()["error"] == "validation_error"


def test_only_owners_and_admins_create_and_see_service_keys(owner_api, member_api):
    assert member_api.post("/api/keys", {"name": "svc", "kind": "service"}, format="json").status_code == 403
    created = owner_api.post("/api/keys", {"name": "svc", "kind": "service"}, format="json").json()

    assert created["key"]["kind"] == "service"
    assert created["key"]["id"] in [k["id"] for k in owner_api.get("/api/keys").json()["results"]]
    assert created["key"]["id"] not in [k["id"] for k in member_api.get("/api/keys").json()["results"]]
    assert member_api.delete(f"/api/keys/{created['key']['id']}").status_code == 404


def test_another_organization_cannot_see_or_revoke_keys(owner_api, outsider_api):
    created = owner_api.post("/api/keys", {"name": "mine"}, format="json").json()

    assert outsider_api.get(f"/api/keys/{created['key']['id']}").status_code == 404
    assert outsider_api.delete(f"/api/keys/{created['key']['id']}").status_code == 404
