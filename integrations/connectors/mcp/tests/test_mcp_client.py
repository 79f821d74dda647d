"""The MCP client against servers built with the official SDK: a streamable-HTTP tracker that
demands a bearer token (uvicorn on loopback) and the same tracker as a local stdio process."""

from __future__ import annotations

import json
import socket

import pytest
from django.core import serializers as django_serializers
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts.models import AuditLog
from conftest import client_for
from integrations import calls, catalog, oauth
from integrations import tools as tool_registry
from integrations.catalog import AuthType
from integrations.connectors.mcp import client as mcp_client
from integrations.connectors.mcp import services
from integrations.connectors.mcp.tests.conftest import TOKEN
from integrations.connectors.mcp.tools import tool_name
from integrations.models import Connection, ConnectionCall, McpServer
from integrations.services import connection_create
from tests.fakes.mcp_servers import FakeMcpServer

pytestmark = [pytest.mark.django_db, pytest.mark.urls("integrations.connectors.mcp.tests.urls")]

READ_TOOL, WRITE_TOOL = "mcp_tracker_search_issues", "mcp_tracker_create_issue"


def register(organization, actor, fake, **extra) -> McpServer:
    return services.mcp_server_create(organization=organization, actor=actor, name="Tracker", url=fake.url,
                                      **({"token": TOKEN} | extra))


def call(organization, runner, name: str, arguments: dict, *, integrations: dict | None = None):
    tool = tool_registry.for_organization(organization.id)[name]
    config = {"tools": [name], "integrations": integrations or {}}
    return calls.call(config=config, organization_id=organization.id, runner_id=runner.id, run_id=None, tool=tool,
                      arguments=arguments, timeout=30)


def test_it_registers_a_server_with_a_token_and_offers_its_tools_with_scopes_and_side_effects(
        organization, admin, fake_mcp):
    server = register(organization, admin, fake_mcp)

    assert server.last_error == "" and server.refreshed_at is not None
    offered = tool_registry.for_organization(organization.id)
    read, write = offered[READ_TOOL], offered[WRITE_TOOL]
    assert (read.side_effect, read.scopes, read.integration) == ("read", ("tools:read",), "mcp-tracker")
    assert (write.side_effect, write.scopes) == ("write", ("tools:write",))
    assert read.input_schema["required"] == ["query"] and read.description.startswith("[MCP: Tracker] Search")
    integration = catalog.get("mcp-tracker", organization.id)
    assert (integration.name, integration.category, integration.status) == ("MCP: Tracker", "custom", "beta")
    assert integration.auth_types == (AuthType.API_KEY,) and integration.scope_names == ["tools:read", "tools:write"]
    # The token is the organization's (encrypted) connection; the server row never holds it.
    connection = Connection.objects.get(integration="mcp-tracker")
    assert connection.owner is None and connection.scopes == ["tools:read", "tools:write"]
    assert connection.account["server"] == "Fake issue tracker"
    assert TOKEN not in django_serializers.serialize("json", [server, connection])
    assert all(request.authorized for request in fake_mcp.requests)
    assert AuditLog.objects.filter(action="mcp_server.create", target_id=str(server.id)).exists()


def test_it_calls_the_read_tool_through_the_connection_and_records_the_call(organization, admin, fake_mcp):
    register(organization, admin, fake_mcp)
    connection = Connection.objects.get(integration="mcp-tracker")

    result, extra = call(organization, admin, READ_TOOL, {"query": "login"},
                         integrations={"mcp-tracker": {"connection": str(connection.id)}})

    assert not result.is_error, result.output
    assert json.loads(result.output) == [{"id": 1, "title": "Login page times out", "state": "open"}]
    assert fake_mcp.tool_calls[-1] == ("search_issues", {"query": "login", "state": "any"})
    assert extra["connection"]["id"] == str(connection.id)
    assert ConnectionCall.objects.get(connection=connection).outcome == "ok"


def test_it_refuses_the_write_tool_without_tools_write_before_any_request(organization, admin, fake_mcp):
    register(organization, admin, fake_mcp)
    full = Connection.objects.get(integration="mcp-tracker")
    read_only = connection_create(organization=organization, actor=admin, integration="mcp-tracker",
                                  values={"token": TOKEN}, scopes=["tools:read"], for_organization=True,
                                  name="Read-only token")
    requests_before = len(fake_mcp.requests)

    # The builder granted only tools:read...
    by_agent, _ = call(organization, admin, WRITE_TOOL, {"title": "Ship it"},
                       integrations={"mcp-tracker": {"connection": str(full.id), "scopes": ["tools:read"]}})
    # ...or the connection holds only tools:read.
    by_connection, _ = call(organization, admin, WRITE_TOOL, {"title": "Ship it"},
                            integrations={"mcp-tracker": {"connection": str(read_only.id)}})

    assert by_agent.is_error and "tools:write" in by_agent.output and "did not grant" in by_agent.output
    assert by_connection.is_error and "does not hold" in by_connection.output
    assert len(fake_mcp.requests) == requests_before and fake_mcp.tool_calls == []
    assert ConnectionCall.objects.filter(outcome="refused").count() == 2


def test_a_wrong_token_gets_a_clear_error_when_registering_and_when_calling(organization, admin, fake_mcp):
    with pytest.raises(ValidationError) as refused:
        register(organization, admin, fake_mcp, token="not-the-token")
    assert "did not accept this token" in refused.value.message_dict["token"][0]
    assert "HTTP 401" in refused.value.message_dict["token"][0]
    assert not McpServer.objects.exists() and not Connection.objects.exists()

    register(organization, admin, fake_mcp)
    connection = Connection.objects.get(integration="mcp-tracker")
    fake_mcp.token = "rotated-at-the-server"  # the stored token stops working
    result, _ = call(organization, admin, READ_TOOL, {"query": "login"},
                     integrations={"mcp-tracker": {"connection": str(connection.id)}})
    assert result.is_error
    assert "the MCP server Tracker refused the token (HTTP 401)" in result.output
    assert TOKEN not in result.output


def test_refresh_lists_a_tool_the_server_gained(organization, admin, fake_mcp):
    server = register(organization, admin, fake_mcp)
    assert "mcp_tracker_close_issue" not in tool_registry.for_organization(organization.id)
    fake_mcp.add_close_tool()

    response = client_for(admin, organization).post(f"/api/mcp-servers/{server.id}/refresh")

    assert response.status_code == 200, response.content
    listed = {tool["name"]: tool for tool in response.json()["tools"]}
    assert set(listed) == {READ_TOOL, WRITE_TOOL, "mcp_tracker_close_issue"}
    assert listed["mcp_tracker_close_issue"]["side_effect"] == "write"
    assert listed["mcp_tracker_close_issue"]["scopes"] == ["tools:write"]
    assert "mcp_tracker_close_issue" in tool_registry.for_organization(organization.id)
    entry = AuditLog.objects.filter(action="mcp_server.refresh").order_by("-id").first()
    assert entry.data["added"] == ["close_issue"]


def test_a_server_that_cannot_be_listed_is_registered_with_the_reason(organization, admin, fake_mcp, owner_api):
    fake_mcp.stop()

    response = owner_api.post("/api/mcp-servers", {"name": "Tracker", "url": fake_mcp.url}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["tools"] == [] and body["refreshed_at"] is None
    assert body["last_error"].startswith("could not reach the MCP server Tracker at http://127.0.0.1:")
    assert body["auth"] == "none" and "token" not in body


def test_it_lists_and_calls_an_allowed_stdio_server(organization, admin, stdio_allowed):
    server = services.mcp_server_create(organization=organization, actor=admin, name="Local tracker",
                                        slug="local", transport="stdio", command="tracker")

    assert server.last_error == ""
    assert [tool["name"] for tool in server.tools] == ["search_issues", "create_issue"]
    assert catalog.get("mcp-local", organization.id).auth_types == (AuthType.NONE,)
    result, _ = call(organization, admin, "mcp_local_search_issues", {"query": "export", "state": "closed"})
    assert not result.is_error, result.output
    assert json.loads(result.output)[0]["title"] == "Export drops the last row"


def test_a_stdio_server_must_be_on_the_allow_list(organization, admin, owner_api, stdio_allowed):
    for command in ("shell", "/bin/sh", f"{stdio_allowed['tracker'][0]}"):
        response = owner_api.post("/api/mcp-servers", {"name": "Local", "transport": "stdio", "command": command},
                                  format="json")
        assert response.status_code == 400, response.content
        assert "allows (tracker)" in response.json()["details"]["command"][0]
    assert not McpServer.objects.exists()
    with pytest.raises(mcp_client.McpFailure, match="not a local MCP server this installation allows"):
        mcp_client.list_tools(mcp_client.Target(label="x", command="shell"), timeout=5)


def test_a_loopback_url_is_refused_unless_the_operator_allows_it(organization, admin, owner_api, fake_mcp, settings):
    server = register(organization, admin, fake_mcp)
    connection = Connection.objects.get(integration="mcp-tracker")
    settings.INTEGRATIONS_ALLOWED_HOSTS = []
    requests_before = len(fake_mcp.requests)

    response = owner_api.post("/api/mcp-servers", {"name": "Sneaky", "url": fake_mcp.url}, format="json")
    result, _ = call(organization, admin, READ_TOOL, {"query": "login"},
                     integrations={"mcp-tracker": {"connection": str(connection.id)}})
    refreshed = owner_api.post(f"/api/mcp-servers/{server.id}/refresh").json()

    assert response.status_code == 400
    assert "127.0.0.1 is a loopback address" in response.json()["details"]["url"][0]
    assert "AGENTRY_INTEGRATIONS_ALLOWED_HOSTS" in response.json()["details"]["url"][0]
    assert result.is_error and "loopback address" in result.output
    assert "loopback address" in refreshed["last_error"] and len(refreshed["tools"]) == 2  # the old list stays
    assert len(fake_mcp.requests) == requests_before


def test_only_admins_register_change_and_delete_servers(organization, admin, member, member_with_role, fake_mcp):
    server = register(organization, admin, fake_mcp)
    builder, viewer = client_for(member, organization), client_for(member_with_role("viewer"), organization)
    payload = {"name": "Another", "url": fake_mcp.url}

    assert viewer.get("/api/mcp-servers").status_code == 200
    assert viewer.get(f"/api/mcp-servers/{server.id}").json()["integration"] == "mcp-tracker"
    assert builder.post("/api/mcp-servers", payload, format="json").status_code == 403
    assert builder.patch(f"/api/mcp-servers/{server.id}", {"name": "X"}, format="json").status_code == 403
    assert builder.post(f"/api/mcp-servers/{server.id}/refresh").status_code == 403
    assert builder.delete(f"/api/mcp-servers/{server.id}").status_code == 403

    api = client_for(admin, organization)
    assert api.post("/api/mcp-servers", payload, format="json").status_code == 201
    changed = api.patch(f"/api/mcp-servers/{server.id}", {"name": "Issues", "slug": "other"}, format="json")
    assert changed.status_code == 400 and "can't change" in changed.json()["details"]["slug"][0]
    assert api.patch(f"/api/mcp-servers/{server.id}", {"name": "Issues"}, format="json").json()["name"] == "Issues"
    assert api.delete(f"/api/mcp-servers/{server.id}").status_code == 204
    assert Connection.objects.get(integration="mcp-tracker").status == "revoked"


def test_another_organizations_servers_are_invisible(organization, admin, outsider, other_organization,
                                                       outsider_api, fake_mcp):
    server = register(organization, admin, fake_mcp)

    assert outsider_api.get("/api/mcp-servers").json()["results"] == []
    for response in (outsider_api.get(f"/api/mcp-servers/{server.id}"),
                     outsider_api.patch(f"/api/mcp-servers/{server.id}", {"name": "Mine"}, format="json"),
                     outsider_api.post(f"/api/mcp-servers/{server.id}/refresh"),
                     outsider_api.delete(f"/api/mcp-servers/{server.id}")):
        assert response.status_code == 404
    assert catalog.get("mcp-tracker", other_organization.id) is None
    assert READ_TOOL not in tool_registry.for_organization(other_organization.id)
    browser = Client()
    browser.force_login(outsider)
    assert browser.get(reverse("mcp_servers:detail", args=[server.id])).status_code == 404
    server.refresh_from_db()
    assert server.name == "Tracker"


def test_the_pages_register_show_refresh_edit_and_delete_a_server(organization, owner, member, fake_mcp):
    builder = Client()
    builder.force_login(member)
    assert builder.get(reverse("mcp_servers:create")).status_code == 403
    browser = Client()
    browser.force_login(owner)
    assert "No MCP server yet" in browser.get(reverse("mcp_servers:list")).content.decode()
    assert 'name="token"' in browser.get(reverse("mcp_servers:create")).content.decode()

    bad = browser.post(reverse("mcp_servers:create"), {"name": "Tracker", "transport": "http", "url": fake_mcp.url,
                                                       "auth": "api_key", "token": "wrong"})
    assert bad.status_code == 400 and "did not accept this token" in bad.content.decode()
    created = browser.post(reverse("mcp_servers:create"), {"name": "Tracker", "transport": "http",
                                                           "url": fake_mcp.url, "auth": "api_key", "token": TOKEN})
    server = McpServer.objects.get()
    assert created.status_code == 302 and created["Location"] == reverse("mcp_servers:detail", args=[server.id])
    page = browser.get(created["Location"]).content.decode()
    assert READ_TOOL in page and WRITE_TOOL in page and 'id="refresh-tools"' in page and TOKEN not in page
    # The catalog shows it like any integration, with its tools.
    listing = client_for(owner, organization).get("/api/integrations?category=custom").json()
    entry = next(item for item in listing if item["slug"] == "mcp-tracker")
    assert entry["name"] == "MCP: Tracker"
    catalog_page = browser.get(reverse("integrations:integration-detail", args=["mcp-tracker"])).content.decode()
    assert "MCP: Tracker" in catalog_page and READ_TOOL in catalog_page

    fake_mcp.add_close_tool()
    refreshed = browser.post(reverse("mcp_servers:refresh", args=[server.id]), follow=True)
    assert "mcp_tracker_close_issue" in refreshed.content.decode()

    form = browser.get(reverse("mcp_servers:edit", args=[server.id])).content.decode()
    assert fake_mcp.url in form and 'name="token"' not in form and 'name="slug"' not in form
    edited = browser.post(reverse("mcp_servers:edit", args=[server.id]), {"name": "Issues", "url": fake_mcp.url,
                                                                          "auth": "api_key"})
    assert edited.status_code == 302 and McpServer.objects.get().name == "Issues"

    confirm = browser.get(reverse("mcp_servers:delete", args=[server.id])).content.decode()
    assert "Are you sure?" in confirm and "1 connection is revoked" in confirm
    assert browser.post(reverse("mcp_servers:delete", args=[server.id])).status_code == 302
    assert not McpServer.objects.exists()


def test_tool_names_schemas_and_oauth_are_made_safe(organization, admin, settings):
    assert tool_name("tracker", "search issues/v2") == "mcp_tracker_search_issues_v2"
    long = tool_name("a-very-long-server-slug-for-testing", "x" * 80)
    assert len(long) == 64 and long == tool_name("a-very-long-server-slug-for-testing", "x" * 80)
    assert tool_name("t", "a.b", taken={"mcp_t_a_b"}) != "mcp_t_a_b"
    broken = mcp_client._remote_tool(mcp_client.types.Tool(name="odd", input_schema={"type": "object",
                                                                                       "properties": 5}))
    assert broken.schema_replaced and broken.input_schema == {"type": "object"} and not broken.read_only

    # OAuth: endpoints and a public client from the registration; PKCE as for every connector.
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["mcp.example.com"]
    with pytest.raises(ValidationError) as refused:
        services.mcp_server_create(organization=organization, actor=admin, name="Docs", transport="http",
                                   url="http://127.0.0.1:9/mcp", auth="oauth2",
                                   auth_config={"authorize_url": "nope", "client_secret": "x"})
    assert set(refused.value.message_dict) == {"url", "auth_config"}
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    server = services.mcp_server_create(
        organization=organization, actor=admin, name="Docs", url="http://127.0.0.1:9/mcp", auth="oauth2",
        auth_config={"authorize_url": "https://auth.example.com/authorize", "token_url": "https://auth.example.com/token",
                     "client_id": "agentry", "scopes": ["docs.read"]})
    assert server.last_error.startswith("could not reach")
    url = oauth.start(organization=organization, actor=admin, integration=catalog.get("mcp-docs", organization.id),
                      scopes=["tools:read"], redirect_uri="https://agentry.example.com/callback")
    assert url.startswith("https://auth.example.com/authorize?") and "client_id=agentry" in url
    assert "code_challenge_method=S256" in url and "scope=docs.read" in url


def test_the_sdk_connects_to_the_address_the_guard_vetted(settings, monkeypatch):
    """DNS rebinding: the name answers loopback (allowed) to our check and an address we never
    vetted afterwards; every request of the session still goes to the vetted address."""
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["mcp.tracker.test"]
    fake = FakeMcpServer(extra_hosts=("mcp.tracker.test",)).start()
    answers: list[str] = []
    real = socket.getaddrinfo

    def rebinding_dns(host, port, *args, **kwargs):
        if host != "mcp.tracker.test":
            return real(host, port, *args, **kwargs)
        answers.append(host)
        address = "127.0.0.1" if len(answers) == 1 else "192.0.2.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    try:
        target = mcp_client.Target(label="the tracker", url=f"http://mcp.tracker.test:{fake.port}/mcp")
        output = mcp_client.call_tool(target, "search_issues", {"query": "export"}, timeout=10)
    finally:
        fake.stop()

    assert "Export drops the last row" in output
    assert answers == ["mcp.tracker.test"]  # resolved once, by the guard
    assert {request.host for request in fake.requests} == {f"mcp.tracker.test:{fake.port}"}
