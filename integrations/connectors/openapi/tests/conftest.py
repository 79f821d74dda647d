"""The fake pet store API, registered the way an admin registers it, and calls made the way the
run loop makes them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from integrations import calls
from integrations import tools as tool_registry
from integrations.connectors.openapi import services
from integrations.models import HttpApi
from tests.fakes.openapi_server import FakeApiServer, document

ALL_OPERATIONS = ["whoAmI", "listPets", "createPets", "showPetById", "deletePet"]


@pytest.fixture
def allow_loopback(settings) -> None:
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture
def fake(allow_loopback) -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


def register(organization, actor, url: str, *, key_in: str = "header", key_name: str = "X-API-Key",
             **overrides: Any) -> HttpApi:
    """The pet store at `url`, every operation offered, keys checked with whoAmI."""
    values: dict[str, Any] = {
        "name": "Petstore", "slug": "petstore", "spec": document(url, key_in=key_in, key_name=key_name),
        "operations": ALL_OPERATIONS, "auth": "api_key",
        "auth_config": {"in": key_in, "name": key_name, "check_operation": "whoAmI"},
    }
    return services.http_api_create(organization=organization, actor=actor, **(values | overrides))


@pytest.fixture
def petstore(organization, owner, fake) -> HttpApi:
    return register(organization, owner, fake.url)


def run_tool(name: str, arguments: dict[str, Any], *, organization, runner, integration: str = "http-petstore",
             connection: str = calls.RUNNER, scopes: list[str] | None = None,
             ) -> tuple[tool_registry.ToolResult, dict[str, Any]]:
    """One call the way the run loop makes it: bind to a connection, check scopes, call, record."""
    setting: dict[str, Any] = {"connection": connection}
    if scopes is not None:
        setting["scopes"] = scopes
    config = {"tools": [name], "integrations": {integration: setting}}
    tool = tool_registry.for_organization(organization.id)[name]
    return calls.call(config=config, organization_id=organization.id, runner_id=runner.id, run_id=None, tool=tool,
                      arguments=arguments, timeout=30)
