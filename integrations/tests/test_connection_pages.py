"""The connection pages: connect with an API key or OAuth (start and callback), the connections
list and a connection's page, Test, Revoke with its confirmation, Reconnect, Replace credentials, and the agent
builder's connection settings with the agent page's warnings. No page ever shows a credential."""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from agents import services as agent_services
from agents.models import Agent
from integrations import services
from integrations.models import Connection, ConnectionCall, HttpApi, McpServer, OAuthGrant
from integrations.tests import test_catalog as shared
from integrations.tests import test_connections_api as rekey
from integrations.tests.test_catalog import (
    CHARTS,
    GOOD_TOKEN,
    OAUTH_TOKEN,
    WIDGETS,
    connect_widgets,
    page_client,
)

pytestmark = pytest.mark.django_db

# The catalog tests' fixtures: test integrations (unique slugs) and the loopback token endpoint.
test_integrations = shared.test_integrations
token_server = shared.token_server
rotating_widgets = rekey.rotating_widgets

LIST_TOOL = "test_connui_widgets_list"
CREATE_TOOL = "test_connui_widgets_create"


@pytest.fixture
def admin(member_with_role):
    return member_with_role("admin", "ada")


def assert_no_credentials(html: str, *connections: Connection) -> None:
    assert GOOD_TOKEN not in html
    assert OAUTH_TOKEN not in html
    for connection in connections:
        connection.refresh_from_db()
        if connection.secret:
            assert connection.secret not in html
            assert connection.secret[:40] not in html


def flashed(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --------------------------------------------------------------------------- connect with an API key


def test_a_person_connects_with_an_api_key_from_the_integrations_page(member, test_integrations):
    client = page_client(member)

    response = client.post(reverse("integrations:integration-connect", args=[WIDGETS]), {
        "key-token": GOOD_TOKEN, "key-name": "My widgets", "key-scopes": ["widgets:read", "widgets:write"],
    })

    connection = Connection.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("integrations:connection-detail", args=[connection.id])
    assert connection.owner == member and connection.name == "My widgets"
    assert connection.scopes == ["widgets:read", "widgets:write"]
    page = client.get(response["Location"])
    html = page.content.decode()
    assert "Connected “My widgets”" in html
    assert "widget-bot" in html
    assert_no_credentials(html, connection)


def test_a_refused_key_shows_the_reason_on_the_form_and_is_not_echoed_back(member, test_integrations):
    client = page_client(member)

    response = client.post(reverse("integrations:integration-connect", args=[WIDGETS]), {
        "key-token": "wdg_wrong_0000000000", "key-scopes": ["widgets:read"],
    })

    html = response.content.decode()
    assert response.status_code == 400
    assert "did not accept these credentials: Bad credentials (HTTP 401)" in html
    assert "wdg_wrong_0000000000" not in html
    assert not Connection.objects.exists()

    missing = client.post(reverse("integrations:integration-connect", args=[WIDGETS]), {"key-scopes": ["widgets:read"]})
    assert missing.status_code == 400
    assert "This field is required." in missing.content.decode()

    bad_url = client.post(reverse("integrations:integration-connect", args=[WIDGETS]),
                          {"key-token": GOOD_TOKEN, "key-api_url": "not a url"})
    assert bad_url.status_code == 400 and "Enter a valid URL." in bad_url.content.decode()
    assert not Connection.objects.exists()


def test_only_admins_may_connect_for_the_organization(member, admin, test_integrations):
    data = {"key-token": GOOD_TOKEN, "key-scopes": ["widgets:read"], "key-owner": "organization"}

    page_client(member).post(reverse("integrations:integration-connect", args=[WIDGETS]), data)
    assert Connection.objects.get().owner == member  # a builder's form has no owner choice: it is theirs

    response = page_client(admin).post(reverse("integrations:integration-connect", args=[WIDGETS]), data)
    assert response.status_code == 302
    assert Connection.objects.filter(owner__isnull=True).count() == 1


def test_a_viewer_cannot_connect(member_with_role, test_integrations):
    response = page_client(member_with_role("viewer")).post(
        reverse("integrations:integration-connect", args=[WIDGETS]), {"key-token": GOOD_TOKEN})

    assert response.status_code == 403
    assert not Connection.objects.exists()


# --------------------------------------------------------------------------- OAuth


def provider_url(response) -> str:
    """Where the page that hands over to the provider navigates (a page, not a 302: the CSP's
    form-action 'self' would block a redirect to another origin after a form post)."""
    assert response.status_code == 200, response.content.decode()[:2000]
    assert response["Cache-Control"] == "no-store"
    found = re.search(r'href="([^"]+)" id="oauth-continue"', response.content.decode())
    assert found, response.content.decode()[:2000]
    url = html_lib.unescape(found.group(1))
    assert f'content="0;url={html_lib.escape(url)}"' in response.content.decode()
    return url


def _start(client, scopes=("charts:read",), **extra) -> tuple[str, str]:
    response = client.post(reverse("integrations:integration-authorize", args=[CHARTS]),
                           {"oauth-scopes": list(scopes), **extra})
    url = provider_url(response)
    return url, parse_qs(urlparse(url).query)["state"][0]


def test_connecting_with_oauth_goes_to_the_provider_and_the_callback_stores_the_connection(
        member, test_integrations, token_server):
    client = page_client(member)
    url, state = _start(client)
    location = urlparse(url)
    challenge = parse_qs(location.query)["code_challenge"][0]
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{token_server.url}/authorize"
    token_server.script("/token", [(200, {}, {"access_token": OAUTH_TOKEN, "token_type": "bearer",
                                              "scope": "read", "refresh_token": "cht_refresh_5e6f7a8b9c0d"})])

    back = client.get(reverse("integrations:oauth-callback"), {"state": state, "code": "code-123"})

    connection = Connection.objects.get()
    assert back.status_code == 302
    assert back["Location"] == reverse("integrations:connection-detail", args=[connection.id])
    assert connection.auth_type == "oauth2" and connection.owner == member
    assert connection.scopes == ["charts:read"] and connection.account == {"login": "chart-bot"}
    sent = parse_qs(token_server.seen("/token")[0].body.decode())
    assert sent["code"] == ["code-123"]
    verifier = sent["code_verifier"][0]
    assert base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode() == challenge
    html = client.get(back["Location"]).content.decode()
    assert "Connected “Charts (chart-bot)”" in html
    assert "cht_refresh_5e6f7a8b9c0d" not in html
    assert_no_credentials(html, connection)

    replay = client.get(reverse("integrations:oauth-callback"), {"state": state, "code": "code-123"})
    assert replay.status_code == 400
    assert Connection.objects.count() == 1


def test_a_state_that_isnt_yours_is_an_error_and_nothing_is_stored(member, owner, test_integrations, token_server):
    _, state = _start(page_client(owner))
    token_server.script("/token", [(200, {}, {"access_token": OAUTH_TOKEN, "scope": "read"})])

    response = page_client(member).get(reverse("integrations:oauth-callback"), {"state": state, "code": "stolen"})

    assert response.status_code == 400
    assert "match a connection you started" in response.content.decode()
    assert not Connection.objects.exists()
    assert token_server.seen("/token") == []
    assert OAuthGrant.objects.get(state=state).used_at is None  # the owner can still finish theirs


def test_a_refusal_at_the_provider_is_shown_and_nothing_is_stored(member, test_integrations, token_server):
    client = page_client(member)
    _, state = _start(client)

    response = client.get(reverse("integrations:oauth-callback"), {"state": state, "error": "access_denied"})

    assert response.status_code == 400
    assert "did not authorize the connection: access_denied" in response.content.decode()
    assert not Connection.objects.exists()


def test_an_unknown_state_or_a_failed_token_exchange_is_an_error_page(member, test_integrations, token_server):
    client = page_client(member)
    assert client.get(reverse("integrations:oauth-callback"), {"state": "made-up", "code": "x"}).status_code == 400
    assert client.get(reverse("integrations:oauth-callback")).status_code == 400

    _, state = _start(client)
    token_server.script("/token", [(400, {}, {"error": "invalid_grant", "error_description": "bad verifier"})])
    response = client.get(reverse("integrations:oauth-callback"), {"state": state, "code": "x"})
    assert response.status_code == 400
    assert "bad verifier" in response.content.decode()
    assert not Connection.objects.exists()


def test_starting_oauth_without_a_scope_shows_the_form_again(member, test_integrations):
    response = page_client(member).post(reverse("integrations:integration-authorize", args=[CHARTS]), {})

    assert response.status_code == 400
    assert "Choose at least one scope." in response.content.decode()
    assert not OAuthGrant.objects.exists()


def _oauth_connection_needing_reauthorization(client, token_server) -> Connection:
    _, state = _start(client)
    token_server.script("/token", [(200, {}, {"access_token": OAUTH_TOKEN, "scope": "read"})])
    client.get(reverse("integrations:oauth-callback"), {"state": state, "code": "first"})
    connection = Connection.objects.get()
    services.connection_mark_needs_reauth(connection_id=connection.id, reason="the token was revoked (HTTP 401)")
    return connection


def test_reconnecting_a_connection_that_needs_reauthorization_keeps_it(member, test_integrations, token_server):
    client = page_client(member)
    connection = _oauth_connection_needing_reauthorization(client, token_server)

    page = client.get(reverse("integrations:connection-detail", args=[connection.id])).content.decode()
    assert 'id="reconnect-connection"' in page and 'id="needs-reauth"' in page
    response = client.post(reverse("integrations:connection-reconnect", args=[connection.id]))
    state = parse_qs(urlparse(provider_url(response)).query)["state"][0]
    assert OAuthGrant.objects.get(state=state).reconnect_id == connection.id
    back = client.get(reverse("integrations:oauth-callback"), {"state": state, "code": "second"})

    assert back["Location"] == reverse("integrations:connection-detail", args=[connection.id])
    assert Connection.objects.count() == 1
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE


# --------------------------------------------------------------------------- the connection pages


def test_the_connections_page_lists_mine_and_the_organizations_without_credentials(
        member, owner, organization, test_integrations):
    mine = connect_widgets(organization, member, name="mine")
    shared = connect_widgets(organization, owner, for_organization=True, name="Shared warehouse")
    connect_widgets(organization, owner, name="Olivias own warehouse")
    client = page_client(member)

    html = client.get(reverse("integrations:connection-list")).content.decode()

    assert "mine" in html and "Shared warehouse" in html and "Olivias own warehouse" not in html
    assert "Organization" in html and "not checked" not in html
    assert_no_credentials(html, mine, shared)
    services.connection_revoke(connection=mine, actor=member)
    filtered = client.get(reverse("integrations:connection-list"), {"status": "revoked"}).content.decode()
    assert "mine" in filtered and "Shared warehouse" not in filtered


def test_a_connections_page_shows_its_calls_and_the_agents_that_use_it(member, organization, test_integrations):
    connection = connect_widgets(organization, member, name="Warehouse")
    runner_agent = agent_services.agent_create(organization=organization, actor=member, name="Stock checker",
                                               system_prompt="x", model="demo", tools=[LIST_TOOL])
    agent_services.agent_create(organization=organization, actor=member, name="Calculator only", system_prompt="x",
                                model="demo", tools=["calculator"])
    run = agent_services.run_start(agent=runner_agent, goal="count", actor=member)
    services.connection_call_record(connection_id=connection.id, run_id=run.id, tool=LIST_TOOL,
                                    outcome=ConnectionCall.Outcome.OK, status_code=200, duration_ms=87)
    services.connection_call_record(connection_id=connection.id, run_id=run.id, tool=CREATE_TOOL,
                                    outcome=ConnectionCall.Outcome.REFUSED, status_code=None, duration_ms=1,
                                    detail="Refused: needs widgets:write")

    html = page_client(member).get(reverse("integrations:connection-detail", args=[connection.id])).content.decode()

    assert "87 ms" in html and "Refused: needs widgets:write" in html
    assert reverse("agents:run-detail", args=[run.id]) in html
    assert "Stock checker" in html and "Calculator only" not in html
    assert 'id="test-connection"' in html and 'id="revoke-connection"' in html
    assert_no_credentials(html, connection)


def test_the_test_button_reports_the_result(member, organization, test_integrations):
    connection = connect_widgets(organization, member)

    response = page_client(member).post(reverse("integrations:connection-test", args=[connection.id]))

    assert response.status_code == 302
    assert any("Test passed" in m for m in flashed(response))


def test_revoking_asks_for_confirmation_then_deletes_the_credentials(member, organization, test_integrations):
    connection = connect_widgets(organization, member, name="Warehouse")
    agent_services.agent_create(organization=organization, actor=member, name="Stock checker", system_prompt="x",
                                model="demo", tools=[LIST_TOOL])
    client = page_client(member)

    confirm = client.get(reverse("integrations:connection-revoke", args=[connection.id]))
    assert confirm.status_code == 200
    assert "Are you sure?" in confirm.content.decode() and "Stock checker" in confirm.content.decode()
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE  # looking is not revoking

    response = client.post(reverse("integrations:connection-revoke", args=[connection.id]))

    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.status == Connection.Status.REVOKED and connection.secret == ""
    html = client.get(response["Location"]).content.decode()
    assert 'id="revoked"' in html and 'id="revoke-connection"' not in html


def test_a_member_cannot_revoke_an_organization_connection_or_someone_elses(member, owner, admin, organization,
                                                                            test_integrations):
    shared = connect_widgets(organization, owner, for_organization=True)
    theirs = connect_widgets(organization, owner)
    client = page_client(member)

    assert client.get(reverse("integrations:connection-revoke", args=[shared.id])).status_code == 403
    assert client.post(reverse("integrations:connection-revoke", args=[shared.id])).status_code == 403
    assert client.post(reverse("integrations:connection-revoke", args=[theirs.id])).status_code == 404
    assert client.post(reverse("integrations:connection-test", args=[shared.id])).status_code == 403
    page = client.get(reverse("integrations:connection-detail", args=[shared.id])).content.decode()
    assert 'id="revoke-connection"' not in page and 'id="test-connection"' not in page
    for connection in (shared, theirs):
        connection.refresh_from_db()
        assert connection.status == Connection.Status.ACTIVE

    assert page_client(admin).post(reverse("integrations:connection-revoke", args=[shared.id])).status_code == 302
    shared.refresh_from_db()
    assert shared.status == Connection.Status.REVOKED
    # An admin may also cut off a person's own connection (someone leaving, a leaked token).
    assert page_client(admin).post(reverse("integrations:connection-revoke", args=[theirs.id])).status_code == 302
    theirs.refresh_from_db()
    assert theirs.status == Connection.Status.REVOKED


def test_another_organization_gets_404_for_a_connection(outsider, owner, organization, test_integrations):
    shared = connect_widgets(organization, owner, for_organization=True)
    client = page_client(outsider)

    for name in ("connection-detail", "connection-revoke"):
        assert client.get(reverse(f"integrations:{name}", args=[shared.id])).status_code == 404
    for name in ("connection-test", "connection-revoke", "connection-reconnect"):
        assert client.post(reverse(f"integrations:{name}", args=[shared.id])).status_code == 404


# --------------------------------------------------------------------------- replace credentials


def test_an_admin_gives_a_shared_connection_new_credentials_and_its_agent_works_again(
        member, admin, organization, rotating_widgets):
    connection = rekey.connect_warehouse(organization, admin, rotating_widgets, for_organization=True)
    agent = rekey.agent_bound_to(connection, member)
    services.connection_call_record(connection_id=connection.id, run_id=None, tool=rekey.COUNT_TOOL,
                                    outcome=ConnectionCall.Outcome.OK, status_code=200, duration_ms=31)
    rekey.stop_working(connection)
    assert "needs re-authorization" in rekey.call_count_tool(agent, member)[0].output
    client = page_client(admin)
    detail_url = reverse("integrations:connection-detail", args=[connection.id])
    url = reverse("integrations:connection-credentials", args=[connection.id])

    page = client.get(detail_url).content.decode()
    assert 'id="replace-credentials"' in page and f'href="{url}"' in page and 'id="needs-reauth"' in page
    form = client.get(url)
    html = form.content.decode()
    assert form.status_code == 200
    assert re.search(r'<input type="password" name="token"[^>]*required', html)
    assert 'name="token" value' not in html  # never pre-filled
    assert f'name="api_url" value="{rotating_widgets.url}"' in html
    assert_no_credentials(html, connection)

    response = client.post(url, {"token": rekey.NEW_TOKEN, "api_url": rotating_widgets.url})

    assert response.status_code == 302 and response["Location"] == detail_url
    assert any("New credentials saved for “Warehouse”" in m for m in flashed(response))
    assert Connection.objects.count() == 1
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE and connection.last_error == ""
    assert connection.account == {"login": "widget-bot-2"} and connection.options == {"api_url": rotating_widgets.url}
    html = client.get(detail_url).content.decode()
    assert 'id="needs-reauth"' not in html and "31 ms" in html and "Stock counter" in html
    assert rekey.NEW_TOKEN not in html
    assert_no_credentials(html, connection)
    rekey.assert_reauthorize_audited_without(connection, rekey.NEW_TOKEN, connection.secret)
    result, _ = rekey.call_count_tool(agent, member)
    assert result.is_error is False
    assert rotating_widgets.seen("/widgets")[-1].headers["authorization"] == f"Bearer {rekey.NEW_TOKEN}"


def test_refused_new_credentials_show_the_reason_on_the_form_and_change_nothing(member, organization,
                                                                               rotating_widgets):
    connection = rekey.connect_warehouse(organization, member, rotating_widgets)
    rekey.stop_working(connection)
    secret = Connection.objects.get(id=connection.id).secret
    client = page_client(member)
    url = reverse("integrations:connection-credentials", args=[connection.id])

    refused = client.post(url, {"token": "wdg_wrong_7777777777", "api_url": rotating_widgets.url})
    html = refused.content.decode()
    assert refused.status_code == 400
    assert "Nothing was changed." in html
    assert "did not accept these credentials: Bad credentials (HTTP 401)" in html
    assert "wdg_wrong_7777777777" not in html

    missing = client.post(url, {"api_url": rotating_widgets.url})
    assert missing.status_code == 400
    assert re.search(r'<p class="field-error" id="id_token_error">This field is required.</p>',
                     missing.content.decode())

    bad_url = client.post(url, {"token": rekey.NEW_TOKEN, "api_url": "not a url"})
    assert bad_url.status_code == 400 and "Enter a valid URL." in bad_url.content.decode()
    assert rekey.NEW_TOKEN not in bad_url.content.decode()

    connection.refresh_from_db()
    assert connection.secret == secret and connection.status == Connection.Status.NEEDS_REAUTH
    assert connection.options == {"api_url": rotating_widgets.url}


def test_oauth_and_revoked_connections_offer_no_new_credentials(member, test_integrations, token_server):
    client = page_client(member)
    oauth_connection = _oauth_connection_needing_reauthorization(client, token_server)
    revoked = connect_widgets(oauth_connection.organization, member)
    services.connection_revoke(connection=revoked, actor=member)

    for connection, reason in ((oauth_connection, "use Reconnect"), (revoked, "can't be brought back")):
        page = client.get(reverse("integrations:connection-detail", args=[connection.id])).content.decode()
        assert 'id="replace-credentials"' not in page
        url = reverse("integrations:connection-credentials", args=[connection.id])
        for response in (client.get(url), client.post(url, {"token": GOOD_TOKEN})):
            assert response.status_code == 302
            assert response["Location"] == reverse("integrations:connection-detail", args=[connection.id])
            assert any(reason in m for m in flashed(response))
    oauth_connection.refresh_from_db()
    revoked.refresh_from_db()
    assert oauth_connection.status == Connection.Status.NEEDS_REAUTH
    assert revoked.status == Connection.Status.REVOKED and revoked.secret == ""


def test_reconnect_sends_an_api_key_connection_to_its_new_credentials_form(member, organization, test_integrations):
    connection = connect_widgets(organization, member)

    response = page_client(member).post(reverse("integrations:connection-reconnect", args=[connection.id]))

    assert response.status_code == 302
    assert response["Location"] == reverse("integrations:connection-credentials", args=[connection.id])


def test_a_member_cannot_give_new_credentials_to_a_shared_or_someone_elses_connection(
        member, owner, outsider, organization, rotating_widgets):
    shared = rekey.connect_warehouse(organization, owner, rotating_widgets, for_organization=True)
    theirs = rekey.connect_warehouse(organization, owner, rotating_widgets)
    client = page_client(member)
    data = {"token": rekey.NEW_TOKEN, "api_url": rotating_widgets.url}

    page = client.get(reverse("integrations:connection-detail", args=[shared.id])).content.decode()
    assert 'id="replace-credentials"' not in page
    shared_url = reverse("integrations:connection-credentials", args=[shared.id])
    assert client.get(shared_url).status_code == 403
    assert client.post(shared_url, data).status_code == 403
    assert client.post(reverse("integrations:connection-credentials", args=[theirs.id]), data).status_code == 404
    assert page_client(outsider).post(shared_url, data).status_code == 404
    for connection in (shared, theirs):
        secret = connection.secret
        connection.refresh_from_db()
        assert connection.secret == secret and connection.account == {"login": "widget-bot"}

    assert page_client(owner).post(shared_url, data).status_code == 302  # owners manage shared connections


# --------------------------------------------------------------------------- the agent builder


def agent_data(**overrides) -> dict:
    data = {"name": "Stock checker", "system_prompt": "Check the stock.", "model": "demo", "tools": [LIST_TOOL],
            "max_steps": "5", "timeout_seconds": "60", "approval_timeout_seconds": "3600",
            "approval_expiry_outcome": "reject"}
    data.update(overrides)
    return data


def test_the_builder_lists_connector_tools_by_integration_with_a_connection_choice(
        member, owner, organization, test_integrations):
    connect_widgets(organization, owner, for_organization=True, name="Shared warehouse")
    connect_widgets(organization, member, name="My warehouse")
    connect_widgets(organization, owner, name="Olivias warehouse")

    html = page_client(member).get(reverse("agents:agent-create")).content.decode()

    assert '<p class="tool-group-label">Widgets</p>' in html and '<p class="tool-group-label">Built-in</p>' in html
    assert f'data-integration="{WIDGETS}" data-scopes="widgets:read"' in html
    assert 'name="integration-test-connui-widgets-connection"' in html
    assert "The person running the agent" in html
    assert "Organization: Shared warehouse" in html
    assert "My warehouse, only works when you (max) run it" in html
    assert "Olivias warehouse" not in html


def test_the_builder_saves_the_connection_and_scopes_of_each_integration(member, owner, organization,
                                                                         test_integrations):
    shared = connect_widgets(organization, owner, for_organization=True)

    response = page_client(member).post(reverse("agents:agent-create"), agent_data(**{
        f"integration-{WIDGETS}-connection": str(shared.id), f"integration-{WIDGETS}-scopes": ["widgets:read"],
        f"integration-{CHARTS}-connection": "runner",  # charts tools aren't chosen: ignored
    }))

    assert response.status_code == 302, response.content.decode()[:3000]
    agent = Agent.objects.get()
    assert agent.integrations == {WIDGETS: {"connection": str(shared.id), "scopes": ["widgets:read"]}}
    edit = page_client(member).get(reverse("agents:agent-edit", args=[agent.id])).content.decode()
    assert f'<option value="{shared.id}" selected>' in edit


def test_the_builder_defaults_to_the_person_running_the_agent(member, test_integrations):
    response = page_client(member).post(reverse("agents:agent-create"), agent_data(**{
        f"integration-{WIDGETS}-scopes": ["widgets:read"]}))

    assert response.status_code == 302
    assert Agent.objects.get().integrations == {WIDGETS: {"connection": "runner", "scopes": ["widgets:read"]}}


def test_the_builder_rejects_another_organizations_connection(member, outsider, other_organization,
                                                             test_integrations):
    foreign = connect_widgets(other_organization, outsider, for_organization=True)

    response = page_client(member).post(reverse("agents:agent-create"), agent_data(**{
        f"integration-{WIDGETS}-connection": str(foreign.id), f"integration-{WIDGETS}-scopes": ["widgets:read"]}))

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Agent.objects.exists()


def test_the_rule_itself_refuses_foreign_revoked_and_other_peoples_connections(
        member, owner, outsider, organization, other_organization, test_integrations):
    from django.core.exceptions import ValidationError

    from integrations.selectors import agent_integrations_clean

    foreign = connect_widgets(other_organization, outsider, for_organization=True)
    revoked = connect_widgets(organization, owner, for_organization=True)
    services.connection_revoke(connection=revoked, actor=owner)
    olivias = connect_widgets(organization, owner)

    def problem(value: dict, tools=(LIST_TOOL,), current=None) -> dict:
        with pytest.raises(ValidationError) as caught:
            agent_integrations_clean(organization=organization, tools=list(tools), value=value, actor=member,
                                     current=current)
        return caught.value.message_dict

    key = f"integrations.{WIDGETS}.connection"
    assert "No Widgets connection" in problem({WIDGETS: {"connection": str(foreign.id)}})[key][0]
    assert "was revoked" in problem({WIDGETS: {"connection": str(revoked.id)}})[key][0]
    assert "olivia's personal connection" in problem({WIDGETS: {"connection": str(olivias.id)}})[key][0]
    assert "No Widgets connection" in problem({WIDGETS: {"connection": "not-a-uuid"}})[key][0]
    scopes = problem({WIDGETS: {"scopes": ["widgets:admin"]}})[f"integrations.{WIDGETS}.scopes"][0]
    assert "has no scope widgets:admin" in scopes
    missing = problem({WIDGETS: {"scopes": ["widgets:read"]}}, tools=(LIST_TOOL, CREATE_TOOL))
    assert "test_connui_widgets_create needs widgets:write" in missing[f"integrations.{WIDGETS}.scopes"][0]
    assert "Unknown integration" in problem({"nope": {}})["integrations.nope"][0]
    assert "integrations" in problem(["not", "an", "object"])  # type: ignore[arg-type]

    # Kept as it was when someone else edits the agent; defaults filled in; unused settings dropped.
    kept = agent_integrations_clean(organization=organization, tools=[LIST_TOOL], actor=member,
                                    value={WIDGETS: {"connection": str(olivias.id)}, CHARTS: {"connection": "runner"}},
                                    current={WIDGETS: {"connection": str(olivias.id), "scopes": ["widgets:read"]}})
    assert kept == {WIDGETS: {"connection": str(olivias.id), "scopes": ["widgets:read"]}}


def test_the_builder_shows_a_missing_scope_next_to_its_integration(member, test_integrations):
    response = page_client(member).post(reverse("agents:agent-create"), agent_data(**{
        "tools": [LIST_TOOL, CREATE_TOOL], f"integration-{WIDGETS}-scopes": ["widgets:read"]}))

    html = response.content.decode()
    assert response.status_code == 200
    assert "test_connui_widgets_create needs widgets:write" in html
    assert not Agent.objects.exists()


# --------------------------------------------------------------------------- the agent's page


def test_the_agent_page_warns_when_its_connection_is_revoked(member, owner, organization, test_integrations):
    shared = connect_widgets(organization, owner, for_organization=True, name="Shared warehouse")
    agent = agent_services.agent_create(
        organization=organization, actor=member, name="Stock checker", system_prompt="x", model="demo",
        tools=[LIST_TOOL], integrations={WIDGETS: {"connection": str(shared.id), "scopes": ["widgets:read"]}})
    client = page_client(member)
    page = client.get(reverse("agents:agent-detail", args=[agent.id])).content.decode()
    assert 'id="connection-warnings"' not in page

    services.connection_revoke(connection=shared, actor=owner)
    html = client.get(reverse("agents:agent-detail", args=[agent.id])).content.decode()

    assert 'id="connection-warnings"' in html
    assert "“Shared warehouse” this agent uses was revoked" in html
    assert "organization connection “Shared warehouse”" in html


def test_the_agent_page_warns_a_runner_who_has_no_connection_of_their_own(member, organization, test_integrations):
    agent = agent_services.agent_create(organization=organization, actor=member, name="Stock checker",
                                        system_prompt="x", model="demo", tools=[LIST_TOOL])
    client = page_client(member)

    html = client.get(reverse("agents:agent-detail", args=[agent.id])).content.decode()
    assert "you have none" in html
    assert reverse("integrations:integration-detail", args=[WIDGETS]) in html

    connection = connect_widgets(organization, member)
    assert "you have none" not in client.get(reverse("agents:agent-detail", args=[agent.id])).content.decode()

    services.connection_mark_needs_reauth(connection_id=connection.id, reason="HTTP 401")
    assert "needs re-authorization" in client.get(reverse("agents:agent-detail", args=[agent.id])).content.decode()


def test_an_admin_sees_everyones_connections_and_a_builder_only_their_own(member, owner, admin, organization,
                                                                         test_integrations):
    connect_widgets(organization, member, name="Max warehouse")

    url = reverse("integrations:connection-list")
    admin_html = page_client(admin).get(url).content.decode()
    owner_html = page_client(owner).get(url, {"owner": "others"}).content.decode()
    builder_html = page_client(member).get(url, {"owner": "others"}).content.decode()

    assert "Max warehouse" in admin_html
    assert "Max warehouse" in owner_html
    assert "Max warehouse" not in builder_html


# --------------------------------------------------------------------------- the Django admin


def test_the_admin_shows_connections_and_their_calls_without_credentials(admin, member, organization,
                                                                       test_integrations):
    admin.is_staff = True
    admin.save(update_fields=["is_staff"])
    shared = connect_widgets(organization, admin, for_organization=True, name="Shared warehouse")
    personal = connect_widgets(organization, member, name="Max warehouse")
    services.connection_call_record(connection_id=shared.id, run_id=None, tool=LIST_TOOL,
                                    outcome=ConnectionCall.Outcome.OK, status_code=200, duration_ms=5)
    client = page_client(admin)

    listing = client.get(reverse("admin:integrations_connection_changelist"))
    change = client.get(reverse("admin:integrations_connection_change", args=[shared.id]))
    calls = client.get(reverse("admin:integrations_connectioncall_changelist"))

    assert listing.status_code == change.status_code == calls.status_code == 200
    assert "Shared warehouse" in listing.content.decode() and "Max warehouse" in listing.content.decode()
    assert 'name="name"' in change.content.decode() and 'name="secret"' not in change.content.decode()
    assert LIST_TOOL in calls.content.decode()
    assert_no_credentials(listing.content.decode() + change.content.decode(), shared, personal)
    assert client.get(reverse("admin:integrations_connection_add")).status_code == 403
    server = McpServer.objects.create(organization=organization, slug="tracker", name="Tracker",
                                      url="https://mcp.example.com/mcp")
    api = HttpApi.objects.create(organization=organization, slug="billing", name="Billing",
                                 base_url="https://billing.example.com", spec={"openapi": "3.1.0"},
                                 secret="gAAAA-not-shown")
    for name, row in (("httpapi", api), ("mcpserver", server)):
        assert client.get(reverse(f"admin:integrations_{name}_changelist")).status_code == 200
        page = client.get(reverse(f"admin:integrations_{name}_change", args=[row.id]))
        assert page.status_code == 200 and "gAAAA-not-shown" not in page.content.decode()

    # The revoke action acts on organization connections only: personal ones are their owners'.
    client.post(reverse("admin:integrations_connection_changelist"),
                {"action": "revoke_connections", "_selected_action": [str(shared.id), str(personal.id)]})
    shared.refresh_from_db()
    personal.refresh_from_db()
    assert shared.status == Connection.Status.REVOKED and shared.secret == ""
    assert personal.status == Connection.Status.ACTIVE


def test_the_admin_is_closed_to_staff_without_the_role(member, organization, test_integrations):
    member.is_staff = True
    member.save(update_fields=["is_staff"])
    connect_widgets(organization, member)

    response = page_client(member).get(reverse("admin:integrations_connection_changelist"))

    assert response.status_code == 403
