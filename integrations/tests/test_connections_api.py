"""The connections REST API: connect with an API key, list, show, test, revoke, replace an API-key
connection's credentials, call history and starting OAuth. Credentials go in and never come out:
every answer is checked for the token and for the encrypted column."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from accounts.models import AuditLog
from agents import services as agent_services
from conftest import client_for
from integrations import calls, catalog, services
from integrations import tools as tool_registry
from integrations.http import error_message
from integrations.models import Connection, ConnectionCall, OAuthGrant
from integrations.tests import test_catalog as shared
from integrations.tests.test_catalog import (
    CHARTS,
    GOOD_TOKEN,
    OAUTH_TOKEN,
    REVOKED_AT_PROVIDER,
    WIDGETS,
    connect_widgets,
)
from integrations.tools import SideEffect, Tool, ToolError

pytestmark = pytest.mark.django_db

# The catalog tests' fixtures: test integrations (unique slugs) and the loopback token endpoint.
test_integrations = shared.test_integrations
token_server = shared.token_server


def assert_no_credentials(response, connection: Connection | None = None) -> None:
    text = json.dumps(response.json())
    assert GOOD_TOKEN not in text
    assert "secret" not in text
    if connection is not None:
        connection.refresh_from_db()
        if connection.secret:
            assert connection.secret not in text


@pytest.fixture
def admin(member_with_role):
    return member_with_role("admin", "ada")


# --------------------------------------------------------------------------- new credentials: shared helpers

NEW_TOKEN = "wdg_live_2b8e6d0c4a9f1e73"  # the token someone makes after the old one stopped working
COUNT_TOOL = "test_connui_widgets_count"


def _count_widgets(call) -> str:
    response = call.http.get(f"{call.api_url}/widgets")
    if not response.ok:
        raise ToolError(error_message(response, service="Widgets"))
    return response.text


@pytest.fixture
def rotating_widgets(test_integrations, token_server):
    """Widgets whose provider also accepts NEW_TOKEN, with a tool that calls the loopback warehouse
    (token_server) with the connection's token, so a test sees which token a call carried."""
    def identify(call) -> dict[str, Any]:
        token = call.credentials.get("token")
        if token not in (GOOD_TOKEN, NEW_TOKEN) or token in REVOKED_AT_PROVIDER:
            raise ToolError("Bad credentials (HTTP 401)")
        return {"login": "widget-bot" if token == GOOD_TOKEN else "widget-bot-2"}

    catalog.register(dataclasses.replace(catalog._INTEGRATIONS.pop(WIDGETS), identify=identify))
    tool_registry.register(Tool(
        name=COUNT_TOOL, description="Count the widgets in the warehouse.",
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
        side_effect=SideEffect.READ, timeout_seconds=5, func=_count_widgets, integration=WIDGETS,
        scopes=("widgets:read",)))
    token_server.script("/widgets", [(200, {}, {"count": 42})])
    yield token_server
    tool_registry._REGISTRY.pop(COUNT_TOOL, None)


def connect_warehouse(organization, actor, server, *, for_organization: bool = False) -> Connection:
    """A Widgets connection whose calls go to the loopback warehouse."""
    return services.connection_create(organization=organization, actor=actor, integration=WIDGETS,
                                      values={"token": GOOD_TOKEN, "api_url": server.url},
                                      for_organization=for_organization, name="Warehouse")


def stop_working(connection: Connection) -> None:
    """The provider revoked the old token and a call noticed."""
    REVOKED_AT_PROVIDER.add(GOOD_TOKEN)
    services.connection_mark_needs_reauth(connection_id=connection.id, reason="Bad credentials (HTTP 401)")


def agent_bound_to(connection: Connection, builder):
    return agent_services.agent_create(
        organization=connection.organization, actor=builder, name="Stock counter", system_prompt="Count.",
        model="demo", tools=[COUNT_TOOL],
        integrations={WIDGETS: {"connection": str(connection.id), "scopes": ["widgets:read"]}})


def call_count_tool(agent, runner) -> tuple[tool_registry.ToolResult, dict[str, Any]]:
    """One connector call as the run loop makes it (integrations.calls.call)."""
    return calls.call(config={"tools": list(agent.tools), "integrations": dict(agent.integrations)},
                      organization_id=agent.organization_id, runner_id=runner.pk, run_id=None,
                      tool=tool_registry.get(COUNT_TOOL), arguments={}, timeout=5)


def assert_reauthorize_audited_without(connection: Connection, *secrets: str) -> None:
    [entry] = AuditLog.objects.filter(action="connection.reauthorize", target_id=str(connection.id))
    assert entry.data == {"integration": WIDGETS, "method": "api_key"}
    text = json.dumps([entry.data, entry.diff, entry.target_label])
    for secret in secrets:
        assert secret not in text


@pytest.fixture
def operator(member_with_role):
    return member_with_role("operator", "otto")


# --------------------------------------------------------------------------- create


def test_it_connects_with_an_api_key_and_answers_without_the_key(member_api, member, test_integrations):
    response = member_api.post("/api/connections", {
        "integration": WIDGETS, "values": {"token": GOOD_TOKEN, "api_url": "https://warehouse.example.com/api"},
        "scopes": ["widgets:read"],
    }, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    connection = Connection.objects.get(id=body["id"])
    assert body["name"] == "Widgets (widget-bot)"
    assert body["owner"] == member.username and body["organization_connection"] is False
    assert body["status"] == "active" and body["scopes"] == ["widgets:read"]
    assert body["account"] == {"login": "widget-bot"}
    assert body["options"] == {"api_url": "https://warehouse.example.com/api"}
    assert body["last_check_ok"] is True
    assert connection.secret and GOOD_TOKEN not in connection.secret  # encrypted at rest
    assert_no_credentials(response, connection)


def test_it_answers_400_with_field_errors_when_the_key_is_missing_or_refused(member_api, test_integrations):
    missing = member_api.post("/api/connections", {"integration": WIDGETS, "values": {}}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"] == "validation_error"
    assert missing.json()["details"]["values"]["token"] == ["This field is required."]

    refused = member_api.post("/api/connections", {"integration": WIDGETS, "values": {"token": "wrong-token-123"}},
                              format="json")
    assert refused.status_code == 400
    assert "did not accept these credentials" in refused.json()["details"]["credentials"][0]
    assert "wrong-token-123" not in json.dumps(refused.json())

    stray = member_api.post("/api/connections", {"integration": WIDGETS, "values": {"token": GOOD_TOKEN, "pin": "1"}},
                            format="json")
    assert stray.status_code == 400 and "pin" in stray.json()["details"]["values"]

    scopes = member_api.post("/api/connections", {"integration": WIDGETS, "values": {"token": GOOD_TOKEN},
                                                  "scopes": ["widgets:admin"]}, format="json")
    assert scopes.status_code == 400 and "scopes" in scopes.json()["details"]

    unknown = member_api.post("/api/connections", {"integration": "nope", "values": {}}, format="json")
    assert unknown.status_code == 400 and "integration" in unknown.json()["details"]

    url = member_api.post("/api/connections", {"integration": WIDGETS,
                                               "values": {"token": GOOD_TOKEN, "api_url": "warehouse"}}, format="json")
    assert url.status_code == 400 and "api_url" in url.json()["details"]["values"]

    shape = member_api.post("/api/connections", {"integration": WIDGETS, "values": {"token": ["a"]}}, format="json")
    assert shape.status_code == 400

    assert not Connection.objects.exists()


def test_only_admins_create_organization_connections(member_api, admin, organization, test_integrations):
    body = {"integration": WIDGETS, "values": {"token": GOOD_TOKEN}, "organization": True}

    refused = member_api.post("/api/connections", body, format="json")
    assert refused.status_code == 403
    assert not Connection.objects.exists()

    created = client_for(admin, organization).post("/api/connections", body, format="json")
    assert created.status_code == 201
    assert created.json()["owner"] is None and created.json()["organization_connection"] is True


def test_a_viewer_cannot_connect(member_with_role, organization, test_integrations):
    viewer = client_for(member_with_role("viewer"), organization)

    response = viewer.post("/api/connections", {"integration": WIDGETS, "values": {"token": GOOD_TOKEN}},
                           format="json")

    assert response.status_code == 403


# --------------------------------------------------------------------------- read


def test_the_list_holds_my_connections_and_the_organizations_but_not_other_peoples(
        member, member_api, owner, admin, organization, test_integrations):
    mine = connect_widgets(organization, member, name="mine")
    shared = connect_widgets(organization, owner, for_organization=True, name="shared")
    theirs = connect_widgets(organization, owner, name="the owner's")

    response = member_api.get("/api/connections")
    assert response.status_code == 200
    assert {c["name"] for c in response.json()["results"]} == {"mine", "shared"}
    assert_no_credentials(response, mine)

    everyone = client_for(admin, organization).get("/api/connections").json()["results"]
    assert {c["name"] for c in everyone} == {"mine", "shared", "the owner's"}

    assert member_api.get(f"/api/connections/{theirs.id}").status_code == 404
    detail = member_api.get(f"/api/connections/{shared.id}")
    assert detail.status_code == 200 and detail.json()["integration_name"] == "Widgets"
    assert_no_credentials(detail, shared)


def test_the_list_filters_by_status_integration_and_owner(member, member_api, owner, organization, test_integrations):
    active = connect_widgets(organization, member, name="active one")
    revoked = connect_widgets(organization, member, name="revoked one")
    services.connection_revoke(connection=revoked, actor=member)
    connect_widgets(organization, owner, for_organization=True, name="shared")

    def names(query: str) -> set[str]:
        response = member_api.get(f"/api/connections?{query}")
        assert response.status_code == 200, response.json()
        return {c["name"] for c in response.json()["results"]}

    assert names("status=revoked") == {"revoked one"}
    assert names("status=active&owner=mine") == {active.name}
    assert names("owner=organization") == {"shared"}
    assert names(f"integration={WIDGETS}") == {"active one", "revoked one", "shared"}
    assert names(f"integration={CHARTS}") == set()
    bad = member_api.get("/api/connections?status=sleeping")
    assert bad.status_code == 400 and "status" in bad.json()["details"]


def test_another_organization_cannot_see_or_touch_a_connection(outsider_api, owner, organization, test_integrations):
    shared = connect_widgets(organization, owner, for_organization=True)

    for method, path in (("get", ""), ("post", "/test"), ("post", "/revoke"), ("get", "/calls")):
        response = getattr(outsider_api, method)(f"/api/connections/{shared.id}{path}")
        assert response.status_code == 404, (method, path)
    assert outsider_api.get("/api/connections").json()["results"] == []
    shared.refresh_from_db()
    assert shared.status == Connection.Status.ACTIVE and shared.secret


# --------------------------------------------------------------------------- test and revoke


def test_testing_a_connection_records_what_the_provider_said(member, member_api, organization, test_integrations):
    connection = connect_widgets(organization, member)

    ok = member_api.post(f"/api/connections/{connection.id}/test")
    assert ok.status_code == 200 and ok.json()["last_check_ok"] is True

    REVOKED_AT_PROVIDER.add(GOOD_TOKEN)
    failed = member_api.post(f"/api/connections/{connection.id}/test")
    assert failed.status_code == 200
    assert failed.json()["last_check_ok"] is False
    assert failed.json()["status"] == "error"
    assert "Bad credentials" in failed.json()["last_error"]
    assert_no_credentials(failed, connection)


def test_a_member_can_neither_test_nor_revoke_an_organization_connection_but_an_admin_can(
        member_api, owner, admin, organization, test_integrations):
    shared = connect_widgets(organization, owner, for_organization=True)

    assert member_api.post(f"/api/connections/{shared.id}/test").status_code == 403
    refused = member_api.post(f"/api/connections/{shared.id}/revoke")
    assert refused.status_code == 403
    assert "only organization admins" in refused.json()["message"]
    shared.refresh_from_db()
    assert shared.status == Connection.Status.ACTIVE

    revoked = client_for(admin, organization).post(f"/api/connections/{shared.id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    shared.refresh_from_db()
    assert shared.secret == "" and shared.revoked_at is not None


def test_only_an_admin_revokes_someone_elses_personal_connection(member, operator, admin, organization,
                                                                 test_integrations):
    personal = connect_widgets(organization, member)

    assert client_for(operator, organization).post(f"/api/connections/{personal.id}/revoke").status_code == 404
    admin_api = client_for(admin, organization)
    assert admin_api.get(f"/api/connections/{personal.id}").status_code == 200  # admins see everyone's
    assert admin_api.post(f"/api/connections/{personal.id}/test").status_code == 403  # using it stays the owner's
    response = admin_api.post(f"/api/connections/{personal.id}/revoke")

    assert response.status_code == 200, response.content
    personal.refresh_from_db()
    assert personal.status == Connection.Status.REVOKED and personal.secret == ""


def test_the_owner_revokes_their_own_connection_and_a_second_revoke_changes_nothing(
        operator, organization, test_integrations):
    api = client_for(operator, organization)
    connection = connect_widgets(organization, operator)

    first = api.post(f"/api/connections/{connection.id}/revoke")
    second = api.post(f"/api/connections/{connection.id}/revoke")

    assert first.status_code == 200 and second.status_code == 200
    assert second.json()["revoked_at"] == first.json()["revoked_at"]
    assert api.post(f"/api/connections/{connection.id}/test").status_code == 400  # nothing left to test


def test_the_call_history_is_paginated_newest_first(member, member_api, organization, test_integrations):
    connection = connect_widgets(organization, member)
    for index in range(25):
        services.connection_call_record(connection_id=connection.id, run_id=None, tool="test_connui_widgets_list",
                                        outcome=ConnectionCall.Outcome.OK, status_code=200, duration_ms=index)

    first = member_api.get(f"/api/connections/{connection.id}/calls").json()
    second = member_api.get(f"/api/connections/{connection.id}/calls?page=2").json()

    assert first["count"] == 25 and len(first["results"]) == 20 and len(second["results"]) == 5
    assert first["results"][0]["duration_ms"] == 24
    assert set(first["results"][0]) == {"id", "tool", "outcome", "status_code", "duration_ms", "detail", "run",
                                        "created_at"}


# --------------------------------------------------------------------------- OAuth


def test_authorize_returns_the_providers_url_with_a_single_use_state_and_pkce(
        member, member_api, test_integrations, token_server):
    response = member_api.post(f"/api/integrations/{CHARTS}/authorize", {"scopes": ["charts:read"]}, format="json")

    assert response.status_code == 200, response.json()
    url = urlparse(response.json()["authorize_url"])
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{token_server.url}/authorize"
    assert query["client_id"] == ["charts-client"]
    assert query["scope"] == ["read"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"][0].endswith("/integrations/oauth/callback")
    grant = OAuthGrant.objects.get(state=query["state"][0])
    assert grant.user == member and grant.scopes == ["charts:read"] and not grant.for_organization


def test_authorize_refuses_bad_scopes_api_key_integrations_and_sharing_without_admin_rights(
        member_api, test_integrations):
    no_scopes = member_api.post(f"/api/integrations/{CHARTS}/authorize", {"scopes": []}, format="json")
    assert no_scopes.status_code == 400 and "scopes" in no_scopes.json()["details"]

    unknown = member_api.post(f"/api/integrations/{CHARTS}/authorize", {"scopes": ["charts:admin"]}, format="json")
    assert unknown.status_code == 400

    key_only = member_api.post(f"/api/integrations/{WIDGETS}/authorize", {"scopes": ["widgets:read"]}, format="json")
    assert key_only.status_code == 400 and "integration" in key_only.json()["details"]

    shared = member_api.post(f"/api/integrations/{CHARTS}/authorize", {"scopes": ["charts:read"],
                                                                      "organization": True}, format="json")
    assert shared.status_code == 403

    assert member_api.post("/api/integrations/nope/authorize", {"scopes": ["x"]}, format="json").status_code == 404
    assert not OAuthGrant.objects.exists()


# --------------------------------------------------------------------------- new credentials


def test_a_connection_that_needs_reauthorization_gets_new_credentials_and_its_agent_works_again(
        member, member_api, organization, rotating_widgets):
    connection = connect_warehouse(organization, member, rotating_widgets)
    agent = agent_bound_to(connection, member)
    assert call_count_tool(agent, member)[0].is_error is False
    stop_working(connection)
    refused, _ = call_count_tool(agent, member)
    assert refused.is_error and "needs re-authorization" in refused.output
    history = ConnectionCall.objects.filter(connection=connection).count()
    old_secret = Connection.objects.get(id=connection.id).secret

    response = member_api.post(f"/api/connections/{connection.id}/credentials", {"values": {"token": NEW_TOKEN}},
                               format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["id"] == str(connection.id)
    assert body["status"] == "active" and body["last_error"] == "" and body["last_check_ok"] is True
    assert body["account"] == {"login": "widget-bot-2"}
    assert body["options"] == {"api_url": rotating_widgets.url}  # left out: kept
    assert NEW_TOKEN not in json.dumps(body)
    assert_no_credentials(response, connection)
    connection.refresh_from_db()
    assert connection.secret != old_secret and NEW_TOKEN not in connection.secret
    assert connection.last_checked_at is not None and connection.expires_at is None
    assert Connection.objects.count() == 1
    assert ConnectionCall.objects.filter(connection=connection).count() == history
    assert_reauthorize_audited_without(connection, NEW_TOKEN, GOOD_TOKEN, connection.secret)

    result, extra = call_count_tool(agent, member)
    assert result.is_error is False and '"count": 42' in result.output
    assert extra["connection"]["id"] == str(connection.id)
    assert rotating_widgets.seen("/widgets")[-1].headers["authorization"] == f"Bearer {NEW_TOKEN}"
    assert ConnectionCall.objects.filter(connection=connection).count() == history + 1


def test_refused_new_credentials_are_a_400_and_change_nothing(member, member_api, organization, rotating_widgets):
    connection = connect_warehouse(organization, member, rotating_widgets)
    stop_working(connection)
    before = Connection.objects.get(id=connection.id)
    url = f"/api/connections/{connection.id}/credentials"

    refused = member_api.post(url, {"values": {"token": "wdg_wrong_5555555555"}}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"] == "validation_error"
    assert "did not accept these credentials: Bad credentials (HTTP 401)" in refused.json()["details"]["credentials"][0]
    assert "wdg_wrong_5555555555" not in json.dumps(refused.json())

    old_again = member_api.post(url, {"values": {"token": GOOD_TOKEN}}, format="json")  # revoked at the provider
    assert old_again.status_code == 400 and "credentials" in old_again.json()["details"]

    missing = member_api.post(url, {"values": {"api_url": "https://warehouse.example.com"}}, format="json")
    assert missing.status_code == 400
    assert missing.json()["details"]["values"]["token"] == ["This field is required."]

    stray = member_api.post(url, {"values": {"token": NEW_TOKEN, "pin": "1"}}, format="json")
    assert stray.status_code == 400 and "pin" in stray.json()["details"]["values"]

    bad_url = member_api.post(url, {"values": {"token": NEW_TOKEN, "api_url": "warehouse"}}, format="json")
    assert bad_url.status_code == 400 and "api_url" in bad_url.json()["details"]["values"]

    assert member_api.post(url, {}, format="json").status_code == 400
    assert member_api.post(url, {"values": {"token": ["a"]}}, format="json").status_code == 400

    after = Connection.objects.get(id=connection.id)
    assert after.secret == before.secret
    assert (after.status, after.options, after.account, after.last_error) == (
        Connection.Status.NEEDS_REAUTH, before.options, before.account, before.last_error)
    assert not AuditLog.objects.filter(action="connection.reauthorize").exists()


def test_a_setting_sent_blank_is_cleared_and_one_left_out_is_kept(member, member_api, organization,
                                                                 rotating_widgets):
    connection = connect_warehouse(organization, member, rotating_widgets)
    url = f"/api/connections/{connection.id}/credentials"

    kept = member_api.post(url, {"values": {"token": NEW_TOKEN}}, format="json")
    assert kept.status_code == 200 and kept.json()["options"] == {"api_url": rotating_widgets.url}

    cleared = member_api.post(url, {"values": {"token": NEW_TOKEN, "api_url": ""}}, format="json")
    assert cleared.status_code == 200 and cleared.json()["options"] == {}


def test_oauth_and_revoked_connections_cannot_be_given_new_credentials(member, member_api, organization,
                                                                       rotating_widgets):
    from integrations.catalog import TokenSet

    grant = OAuthGrant.objects.create(organization=organization, user=member, integration=CHARTS,
                                      scopes=["charts:read"], state="state-for-this-test", secret="",
                                      redirect_uri="https://agentry.example.com/integrations/oauth/callback")
    oauth_connection = services.connection_from_tokens(grant=grant, tokens=TokenSet(access_token=OAUTH_TOKEN),
                                                       actor=member)
    revoked = connect_warehouse(organization, member, rotating_widgets)
    services.connection_revoke(connection=revoked, actor=member)

    oauth = member_api.post(f"/api/connections/{oauth_connection.id}/credentials",
                            {"values": {"access_token": NEW_TOKEN}}, format="json")
    assert oauth.status_code == 400 and "use Reconnect" in oauth.json()["details"]["connection"][0]

    gone = member_api.post(f"/api/connections/{revoked.id}/credentials", {"values": {"token": NEW_TOKEN}},
                           format="json")
    assert gone.status_code == 400
    assert "can't be brought back; connect again" in gone.json()["details"]["connection"][0]

    revoked.refresh_from_db()
    assert revoked.status == Connection.Status.REVOKED and revoked.secret == ""
    oauth_connection.refresh_from_db()
    assert oauth_connection.status == Connection.Status.ACTIVE


def test_only_the_owner_or_for_a_shared_one_an_admin_gives_a_connection_new_credentials(
        member, member_api, owner, admin, outsider_api, organization, rotating_widgets):
    shared = connect_warehouse(organization, owner, rotating_widgets, for_organization=True)
    theirs = connect_warehouse(organization, owner, rotating_widgets)
    stop_working(shared)
    body = {"values": {"token": NEW_TOKEN}}

    refused = member_api.post(f"/api/connections/{shared.id}/credentials", body, format="json")
    assert refused.status_code == 403 and "only organization admins" in refused.json()["message"]
    assert member_api.post(f"/api/connections/{theirs.id}/credentials", body, format="json").status_code == 404
    assert outsider_api.post(f"/api/connections/{shared.id}/credentials", body, format="json").status_code == 404
    # Admins see a person's own connection, but using or re-keying it stays with its owner.
    admin_api = client_for(admin, organization)
    assert admin_api.post(f"/api/connections/{theirs.id}/credentials", body, format="json").status_code == 403
    for connection in (shared, theirs):
        before = connection.secret
        connection.refresh_from_db()
        assert connection.secret == before

    response = admin_api.post(f"/api/connections/{shared.id}/credentials", body, format="json")
    assert response.status_code == 200 and response.json()["status"] == "active"
    assert response.json()["organization_connection"] is True
