"""The catalog: every integration an organization can connect, declared in code by its connector.

An integration says who it is (name, category, maturity), how one connects (OAuth 2.0, API key or
nothing), the scopes it can request with a plain explanation each, and how a connection is checked
(`identify`, which calls the provider and returns who the credentials belong to). Its tools are the
registry's tools whose `integration` names it. Organizations add their own integrations by
registering an OpenAPI document or an MCP server; those come from `register_source`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models

if TYPE_CHECKING:
    from integrations.calls import CallContext


class Category(models.TextChoices):
    DEVTOOLS = "devtools", "Developer tools"
    COMMUNICATION = "communication", "Communication"
    PRODUCTIVITY = "productivity", "Productivity"
    DATA = "data", "Data"
    CUSTOM = "custom", "Custom"


class Maturity(models.TextChoices):
    ACTIVE = "active", "Active"
    BETA = "beta", "Beta"


class AuthType(models.TextChoices):
    OAUTH2 = "oauth2", "OAuth 2.0"
    API_KEY = "api_key", "API key"
    NONE = "none", "None"


@dataclass(frozen=True)
class Scope:
    name: str
    description: str  # plain words: what an agent holding it can do
    # What to ask the provider for when a person grants this scope over OAuth.
    provider_scopes: tuple[str, ...] = ()
    write: bool = False


@dataclass(frozen=True)
class CredentialField:
    """One input of an API-key connection form (token, username, host, ...)."""

    name: str
    label: str
    secret: bool = True  # stored encrypted, never shown again; False: kept in the connection's settings
    required: bool = True
    help: str = ""
    kind: str = "text"  # text, url, email, integer, password

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "secret": self.secret, "required": self.required,
                "help": self.help, "kind": self.kind}


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str = ""
    expires_in: int | None = None
    provider_scopes: tuple[str, ...] | None = None  # None: the provider didn't say
    extra: dict[str, Any] = field(default_factory=dict)  # non-secret details (team id, cloud id...)


@dataclass(frozen=True)
class OAuthSpec:
    """Where a provider's authorization and token endpoints are, and its quirks."""

    authorize_url: Callable[[dict[str, str]], str]  # settings.INTEGRATION_APPS[slug] -> URL
    token_url: Callable[[dict[str, str]], str]
    scope_param: str = "scope"  # Slack asks for user scopes with "user_scope"
    scope_separator: str = " "
    extra_params: tuple[tuple[str, str], ...] = ()
    token_request: str = "form"  # form or json (Atlassian)
    # Turn the token endpoint's JSON into a TokenSet (Slack nests the user token).
    parse_token: Callable[[dict[str, Any]], TokenSet] | None = None
    # A connection made with OAuth can refresh; the app needs client credentials configured.
    client: Callable[[], dict[str, str]] | None = None


@dataclass(frozen=True)
class Integration:
    slug: str
    name: str
    category: str
    status: str
    summary: str
    auth_types: tuple[str, ...]
    scopes: tuple[Scope, ...] = ()
    setup_notes: str = ""
    oauth: OAuthSpec | None = None
    credential_fields: tuple[CredentialField, ...] = ()
    # Headers for a request with these credentials (Bearer token, Basic auth...).
    auth_headers: Callable[[dict[str, Any], dict[str, Any]], dict[str, str]] | None = None
    # Check a connection: call the provider, return who it is ({"login": "octocat", ...}); raise
    # ToolError with a clear message when the credentials don't work.
    identify: Callable[[CallContext], dict[str, Any]] | None = None
    organization_id: Any = None  # set for an organization's own integration (OpenAPI, MCP)
    icon: str = ""

    def scope(self, name: str) -> Scope | None:
        return next((s for s in self.scopes if s.name == name), None)

    @property
    def scope_names(self) -> list[str]:
        return [s.name for s in self.scopes]

    def app(self) -> dict[str, str]:
        """The OAuth app and API base URLs from settings (empty for custom integrations)."""
        return dict(settings.INTEGRATION_APPS.get(self.slug, {}))

    def oauth_ready(self) -> bool:
        if self.oauth is None or AuthType.OAUTH2 not in self.auth_types:
            return False
        client = self.oauth.client() if self.oauth.client else self.app()
        return bool(client.get("client_id"))

    def provider_scopes_for(self, names: list[str]) -> list[str]:
        wanted: list[str] = []
        for name in names:
            scope = self.scope(name)
            for item in scope.provider_scopes if scope else ():
                if item not in wanted:
                    wanted.append(item)
        return wanted

    def scopes_granted_by(self, provider_scopes: tuple[str, ...] | None, requested: list[str]) -> list[str]:
        """Our scopes a token holds: those requested whose provider scopes all came back. A
        provider that doesn't report scopes is taken at its word for what was requested."""
        if provider_scopes is None:
            return list(requested)
        held = set(provider_scopes)
        return [name for name in requested if set(getattr(self.scope(name), "provider_scopes", ())) <= held]


_INTEGRATIONS: dict[str, Integration] = {}
_SOURCES: list[Callable[[Any], list[Integration]]] = []


def register(integration: Integration) -> Integration:
    if integration.slug in _INTEGRATIONS:
        raise ValueError(f"integration {integration.slug!r} registered twice")
    if integration.category not in Category.values or integration.status not in Maturity.values:
        raise ValueError(f"integration {integration.slug!r}: unknown category or status")
    _INTEGRATIONS[integration.slug] = integration
    return integration


def register_source(source: Callable[[Any], list[Integration]]) -> None:
    _SOURCES.append(source)


def _load() -> None:
    from integrations import tools

    tools._load_builtins()  # connectors register their integrations when imported


def all_integrations(organization_id: Any = None) -> list[Integration]:
    _load()
    found = list(_INTEGRATIONS.values())
    if organization_id is not None:
        for source in _SOURCES:
            found.extend(source(organization_id))
    return sorted(found, key=lambda i: (i.organization_id is not None, i.name.lower()))


def get(slug: str, organization_id: Any = None) -> Integration | None:
    _load()
    if slug in _INTEGRATIONS:
        return _INTEGRATIONS[slug]
    if organization_id is None:
        return None
    return next((i for i in all_integrations(organization_id) if i.slug == slug), None)


def tools_of(integration: Integration) -> list:
    from integrations import tools

    available = tools.for_organization(integration.organization_id)
    return [t for t in available.values() if t.integration == integration.slug]
