"""The fake GitHub, pointed at by settings, and connections to it made the way people make them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from integrations import calls, catalog, oauth
from integrations import tools as tool_registry
from integrations.models import Connection
from tests.fakes.github_server import FakeGitHub

REDIRECT_URI = "http://testserver/connections/oauth/callback"


@pytest.fixture
def github(settings) -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.INTEGRATION_APPS = {**settings.INTEGRATION_APPS, "github": {
        "client_id": fake.client_id, "client_secret": fake.client_secret, "api_url": fake.url, "auth_url": fake.url}}
    yield fake
    fake.stop()


def connect(fake: FakeGitHub, *, organization, user, scopes: list[str], for_organization: bool = False,
            login: str | None = None) -> Connection:
    """Connect GitHub over OAuth as `user` would: Connect, Authorize on GitHub, back to Agentry."""
    url = oauth.start(organization=organization, actor=user, integration=catalog.get("github"), scopes=scopes,
                      redirect_uri=REDIRECT_URI, for_organization=for_organization)
    back = fake.approve(url, login=login)
    return oauth.finish(actor=user, state=back["state"], code=back["code"])


def run_tool(name: str, arguments: dict[str, Any], *, organization, runner, scopes: list[str] | None = None,
             connection: str = calls.RUNNER) -> tuple[tool_registry.ToolResult, dict[str, Any]]:
    """One call the way the run loop makes it: bind to a connection, check scopes, call, record."""
    setting: dict[str, Any] = {"connection": connection}
    if scopes is not None:
        setting["scopes"] = scopes
    config = {"tools": [name], "integrations": {"github": setting}}
    return calls.call(config=config, organization_id=organization.id, runner_id=runner.id, run_id=None,
                      tool=tool_registry.get(name), arguments=arguments, timeout=30)
