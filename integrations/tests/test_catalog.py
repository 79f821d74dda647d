"""The catalog: the REST list and detail with their filters, the grid page and an integration's page.

The integrations here are registered by the tests themselves (unique slugs, removed afterwards),
so the tests don't depend on which connectors are installed. Their `identify` is a plain function
standing in for "ask the provider who this is": it accepts one token and refuses the rest. The
OAuth one's token endpoint is a loopback server (tests/fakes/http_script.py). The fixtures are
shared with test_connections_api.py and test_connection_pages.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from integrations import catalog, services
from integrations import tools as tool_registry
from integrations.catalog import AuthType, Category, CredentialField, Integration, Maturity, OAuthSpec, Scope
from integrations.tools import SideEffect, Tool, ToolError
from tests.fakes.http_script import ScriptedHTTPServer

pytestmark = pytest.mark.django_db

WIDGETS = "test-connui-widgets"
CHARTS = "test-connui-charts"
GOOD_TOKEN = "wdg_live_7f3c9a1e5b2d4f60"
OAUTH_TOKEN = "cht_oauth_access_91c2e7d4a0b3"
REVOKED_AT_PROVIDER: set[str] = set()
_SERVER: dict[str, str] = {"url": "http://127.0.0.1:9"}


def _identify_widgets(call) -> dict[str, Any]:
    token = call.credentials.get("token")
    if token != GOOD_TOKEN or token in REVOKED_AT_PROVIDER:
        raise ToolError("Bad credentials (HTTP 401)")
    return {"login": "widget-bot"}


def _identify_charts(call) -> dict[str, Any]:
    if call.credentials.get("access_token") != OAUTH_TOKEN:
        raise ToolError("Bad credentials (HTTP 401)")
    return {"login": "chart-bot"}


def _tool(name: str, integration: str, side_effect: SideEffect, scopes: tuple[str, ...]) -> Tool:
    return Tool(name=name, description=f"{name}: a tool that exists only in these tests.",
                input_schema={"type": "object", "properties": {}, "additionalProperties": False},
                side_effect=side_effect, timeout_seconds=5, func=lambda call: "ok", integration=integration,
                scopes=scopes)


TOOLS = [
    _tool("test_connui_widgets_list", WIDGETS, SideEffect.READ, ("widgets:read",)),
    _tool("test_connui_widgets_create", WIDGETS, SideEffect.WRITE, ("widgets:write",)),
    _tool("test_connui_charts_read", CHARTS, SideEffect.READ, ("charts:read",)),
]


@pytest.fixture
def token_server():
    server = ScriptedHTTPServer().start()
    _SERVER["url"] = server.url
    yield server
    server.stop()


@pytest.fixture
def test_integrations(settings, token_server):
    """Widgets (API key, beta, productivity) and Charts (OAuth 2.0, active, data) with their tools."""
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    REVOKED_AT_PROVIDER.clear()
    widgets = catalog.register(Integration(
        slug=WIDGETS, name="Widgets", category=Category.PRODUCTIVITY, status=Maturity.BETA,
        summary="Count and create widgets in the widget warehouse.", auth_types=(AuthType.API_KEY,),
        scopes=(Scope("widgets:read", "See every widget and its stock level."),
                Scope("widgets:write", "Create widgets and change their stock.", write=True)),
        setup_notes="Create a token under Warehouse → Settings → Tokens.",
        credential_fields=(CredentialField("token", "Warehouse token", kind="password"),
                           CredentialField("api_url", "API URL", secret=False, required=False, kind="url")),
        auth_headers=lambda credentials, options: {"Authorization": f"Bearer {credentials.get('token', '')}"},
        identify=_identify_widgets,
    ))
    charts = catalog.register(Integration(
        slug=CHARTS, name="Charts", category=Category.DATA, status=Maturity.ACTIVE,
        summary="Read dashboards and their numbers.", auth_types=(AuthType.OAUTH2,),
        scopes=(Scope("charts:read", "Read dashboards.", provider_scopes=("read",)),
                Scope("charts:write", "Change dashboards.", provider_scopes=("write",), write=True)),
        oauth=OAuthSpec(authorize_url=lambda app: f"{_SERVER['url']}/authorize",
                        token_url=lambda app: f"{_SERVER['url']}/token",
                        client=lambda: {"client_id": "charts-client", "client_secret": "charts-secret"}),
        auth_headers=lambda credentials, options: {"Authorization": f"Bearer {credentials.get('access_token', '')}"},
        identify=_identify_charts,
    ))
    for item in TOOLS:
        tool_registry.register(item)
    yield {"widgets": widgets, "charts": charts}
    for slug in (WIDGETS, CHARTS):
        catalog._INTEGRATIONS.pop(slug, None)
    for item in TOOLS:
        tool_registry._REGISTRY.pop(item.name, None)


def connect_widgets(organization, actor, *, for_organization: bool = False, name: str = "", scopes=None):
    return services.connection_create(organization=organization, actor=actor, integration=WIDGETS,
                                      values={"token": GOOD_TOKEN}, scopes=scopes, name=name,
                                      for_organization=for_organization)


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --------------------------------------------------------------------------- REST


def _slugs(response) -> list[str]:
    return [item["slug"] for item in response.json() if item["slug"] in (WIDGETS, CHARTS)]


def test_it_lists_each_integration_with_its_scopes_tools_and_oauth_readiness(owner_api, test_integrations):
    response = owner_api.get("/api/integrations")

    assert response.status_code == 200
    listed = {item["slug"]: item for item in response.json()}
    widgets = listed[WIDGETS]
    assert widgets["name"] == "Widgets"
    assert widgets["category"] == "productivity"
    assert widgets["status"] == "beta"
    assert widgets["auth_types"] == ["api_key"]
    assert widgets["summary"].startswith("Count and create widgets")
    assert widgets["setup_notes"].startswith("Create a token")
    assert widgets["oauth_ready"] is False
    assert widgets["scopes"] == [
        {"name": "widgets:read", "description": "See every widget and its stock level.", "write": False},
        {"name": "widgets:write", "description": "Create widgets and change their stock.", "write": True},
    ]
    assert {t["name"]: (t["side_effect"], t["scopes"]) for t in widgets["tools"]} == {
        "test_connui_widgets_list": ("read", ["widgets:read"]),
        "test_connui_widgets_create": ("write", ["widgets:write"]),
    }
    assert [f["name"] for f in widgets["credential_fields"]] == ["token", "api_url"]
    assert listed[CHARTS]["oauth_ready"] is True


def test_it_filters_the_catalog_by_category_status_and_search(owner_api, test_integrations):
    assert _slugs(owner_api.get("/api/integrations?category=data")) == [CHARTS]
    assert _slugs(owner_api.get("/api/integrations?status=beta")) == [WIDGETS]
    assert _slugs(owner_api.get("/api/integrations?search=WAREHOUSE")) == [WIDGETS]
    assert _slugs(owner_api.get("/api/integrations?search=charts")) == [CHARTS]
    assert _slugs(owner_api.get("/api/integrations?category=data&status=beta")) == []
    assert _slugs(owner_api.get("/api/integrations?category=&status=&search=")) == [CHARTS, WIDGETS]


def test_it_refuses_an_unknown_category_or_status_with_the_error_envelope(owner_api, test_integrations):
    response = owner_api.get("/api/integrations?category=games&status=retired")

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert "category" in body["details"]
    assert "request_id" in body


def test_it_shows_one_integration_and_answers_404_for_an_unknown_one(member_api, test_integrations):
    response = member_api.get(f"/api/integrations/{WIDGETS}")
    assert response.status_code == 200
    assert response.json()["slug"] == WIDGETS

    missing = member_api.get("/api/integrations/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_the_tools_api_lists_the_organizations_own_tools_too(owner_api, outsider_api, organization, test_integrations):
    own = _tool("test_connui_org_only_tool", "test-connui-org", SideEffect.READ, ())

    def source(organization_id):
        return [own] if organization_id == organization.id else []

    tool_registry.register_source(source)
    try:
        mine = {t["name"]: t for t in owner_api.get("/api/tools").json()}
        theirs = {t["name"] for t in outsider_api.get("/api/tools").json()}
    finally:
        tool_registry._SOURCES.remove(source)

    assert "test_connui_org_only_tool" in mine
    assert "test_connui_org_only_tool" not in theirs
    assert mine["test_connui_widgets_list"]["integration"] == WIDGETS
    assert mine["test_connui_widgets_list"]["scopes"] == ["widgets:read"]
    assert "calculator" in mine


# --------------------------------------------------------------------------- pages


def test_the_catalog_page_shows_a_card_per_integration(owner, test_integrations):
    html = page_client(owner).get(reverse("integrations:catalog")).content.decode()

    assert f'data-slug="{WIDGETS}"' in html
    assert f'data-slug="{CHARTS}"' in html
    assert "Count and create widgets" in html
    assert "2 tools" in html
    assert "Beta" in html and "API key" in html and "OAuth 2.0" in html


def test_the_catalog_page_filters_by_search_category_and_status(owner, test_integrations):
    client = page_client(owner)

    searched = client.get(reverse("integrations:catalog"), {"q": "dashboards"}).content.decode()
    assert f'data-slug="{CHARTS}"' in searched and f'data-slug="{WIDGETS}"' not in searched

    by_category = client.get(reverse("integrations:catalog"), {"category": "productivity"}).content.decode()
    assert f'data-slug="{WIDGETS}"' in by_category and f'data-slug="{CHARTS}"' not in by_category

    by_status = client.get(reverse("integrations:catalog"), {"status": "active"}).content.decode()
    assert f'data-slug="{CHARTS}"' in by_status and f'data-slug="{WIDGETS}"' not in by_status

    fragment = client.get(reverse("integrations:catalog"), {"status": "beta"}, HTTP_HX_REQUEST="true")
    assert fragment.content.decode().startswith('<div id="catalog-results">')

    nothing = client.get(reverse("integrations:catalog"), {"q": "zzz-nothing-matches"}).content.decode()
    assert "No integrations match" in nothing


def test_the_catalog_page_marks_what_the_person_has_connected(owner, organization, test_integrations):
    client = page_client(owner)
    assert "✓ Connected" not in client.get(reverse("integrations:catalog"), {"q": "widget"}).content.decode()

    connect_widgets(organization, owner)

    assert "✓ Connected" in client.get(reverse("integrations:catalog"), {"q": "widget"}).content.decode()


def test_the_nav_links_to_the_catalog_for_every_role(member_with_role, test_integrations):
    viewer = member_with_role("viewer")
    response = page_client(viewer).get(reverse("integrations:catalog"))

    assert response.status_code == 200
    assert f'href="{reverse("integrations:catalog")}"' in response.content.decode()


def test_an_integrations_page_explains_scopes_and_tools_and_asks_for_the_key_in_a_password_field(
        owner, test_integrations):
    html = page_client(owner).get(reverse("integrations:integration-detail", args=[WIDGETS])).content.decode()

    assert "See every widget and its stock level." in html
    assert "test_connui_widgets_create" in html and "needs <code>widgets:write</code>" in html
    assert "Create a token under Warehouse" in html
    assert 'type="password" name="key-token"' in html
    assert "Organization connection (shared)" in html  # owners may share
    assert 'id="oauth-form"' not in html


def test_an_integrations_page_offers_no_sharing_to_a_builder(member, test_integrations):
    html = page_client(member).get(reverse("integrations:integration-detail", args=[WIDGETS])).content.decode()

    assert 'id="key-form"' in html
    assert "Organization connection (shared)" not in html


def test_an_integrations_page_tells_a_viewer_they_cannot_connect(member_with_role, test_integrations):
    viewer = member_with_role("viewer")
    html = page_client(viewer).get(reverse("integrations:integration-detail", args=[WIDGETS])).content.decode()

    assert 'id="connect-not-allowed"' in html
    assert 'id="key-form"' not in html


def test_an_integrations_page_says_which_settings_an_operator_must_set_when_oauth_is_not_configured(
        owner, test_integrations):
    unconfigured = catalog.register(Integration(
        slug="test-connui-noapp", name="No App", category=Category.DEVTOOLS, status=Maturity.BETA, summary="x",
        auth_types=(AuthType.OAUTH2,), scopes=(Scope("a:read", "Read a."),),
        oauth=OAuthSpec(authorize_url=lambda app: "https://example.com/a", token_url=lambda app: "https://example.com/t"),
    ))
    try:
        html = page_client(owner).get(reverse("integrations:integration-detail",
                                              args=[unconfigured.slug])).content.decode()
    finally:
        catalog._INTEGRATIONS.pop(unconfigured.slug, None)

    assert 'id="oauth-not-configured"' in html
    assert "AGENTRY_TEST_CONNUI_NOAPP_CLIENT_ID" in html and "AGENTRY_TEST_CONNUI_NOAPP_CLIENT_SECRET" in html
    assert "/integrations/oauth/callback" in html


def test_an_unknown_integrations_page_is_a_404(owner, test_integrations):
    assert page_client(owner).get(reverse("integrations:integration-detail", args=["nope"])).status_code == 404
