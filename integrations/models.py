from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from accounts.models import Organization


class Connection(models.Model):
    """Credentials for one integration: a person's own (the agent acts as them) or, with no owner,
    the organization's (shared, managed by admins). `secret` is the Fernet-encrypted credentials
    (integrations.crypto); the key is never in the database, and a revoked connection has none."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ERROR = "error", "Error"
        NEEDS_REAUTH = "needs_reauth", "Needs re-authorization"
        REVOKED = "revoked", "Revoked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="connections")
    integration = models.CharField(max_length=100, help_text="Catalog slug, e.g. github or mcp-tracker.")
    name = models.CharField(max_length=120)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
                              related_name="connections", help_text="Empty: an organization connection.")
    auth_type = models.CharField(max_length=10)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    scopes = ArrayField(models.CharField(max_length=100), default=list, blank=True,
                        help_text="Scopes the credentials hold (Agentry's names).")
    secret = models.TextField(blank=True, default="", editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When the access token expires.")
    # Non-secret: who the credentials belong to ({"login": "octocat"}) and connection options
    # (`options`: base URL, mail host). Nothing in these two is ever a credential.
    account = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "integration", "status"])]
        permissions = [
            ("manage_org_connections", "Can create and manage the organization's shared connections"),
            ("view_all_connections", "Can see every connection in the organization"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(status="revoked") | Q(secret=""), name="connection_revoked_no_secret"),
            models.CheckConstraint(condition=Q(auth_type__in=["oauth2", "api_key", "none"]),
                                   name="connection_auth_type_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_organization(self) -> bool:
        return self.owner_id is None

    @property
    def usable(self) -> bool:
        return self.status in (self.Status.ACTIVE, self.Status.ERROR)


class ConnectionCall(models.Model):
    """One tool call made through a connection: the connection's history (no arguments or
    outputs; those are in the run trace)."""

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Error"
        REFUSED = "refused", "Refused"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="calls")
    run = models.ForeignKey("agents.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    tool = models.CharField(max_length=100)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    detail = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["connection", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.tool} {self.outcome}"


class OAuthGrant(models.Model):
    """A pending OAuth authorization: the single-use `state` and the PKCE verifier (encrypted),
    from the moment a person clicks Connect until the provider sends them back."""

    LIFETIME_SECONDS = 600

    state = models.CharField(max_length=100, unique=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    integration = models.CharField(max_length=100)
    scopes = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    for_organization = models.BooleanField(default=False)
    name = models.CharField(max_length=120, blank=True, default="")
    redirect_uri = models.URLField(max_length=500)
    secret = models.TextField(editable=False)  # encrypted {"code_verifier": ...}
    # Replacing a connection that needs re-authorization keeps its id, history and agent bindings.
    reconnect = models.ForeignKey(Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.integration} authorization for {self.user_id}"


class HttpApi(models.Model):
    """An organization's own API, registered by its OpenAPI document; chosen operations become tools
    of the integration `http-<slug>`. Credentials live in connections like any integration."""

    class Auth(models.TextChoices):
        NONE = "none", "None"
        API_KEY = "api_key", "API key"
        OAUTH2 = "oauth2", "OAuth 2.0"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="http_apis")
    slug = models.SlugField(max_length=40)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    base_url = models.URLField(max_length=500)
    spec = models.JSONField(help_text="The OpenAPI document (3.x), as registered.")
    operations = ArrayField(models.CharField(max_length=100), default=list, blank=True,
                            help_text="operationIds offered as tools.")
    auth = models.CharField(max_length=10, choices=Auth.choices, default=Auth.NONE)
    # API key: where the key goes ({"in": "header", "name": "X-API-Key"} or query); OAuth: endpoints,
    # client id and scopes. The OAuth client secret is in `secret`, encrypted.
    auth_config = models.JSONField(default=dict, blank=True)
    secret = models.TextField(blank=True, default="", editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "HTTP API"
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="http_api_slug_unique")]

    def __str__(self) -> str:
        return self.name

    @property
    def integration_slug(self) -> str:
        return f"http-{self.slug}"


class McpServer(models.Model):
    """An MCP server an organization admin registered. Its tools (cached in `tools`, refreshed on
    demand) become tools of the integration `mcp-<slug>`; a bearer token or OAuth grant for it is
    a connection like any other. stdio servers name an entry of settings.MCP_STDIO_SERVERS."""

    class Transport(models.TextChoices):
        HTTP = "http", "Streamable HTTP"
        STDIO = "stdio", "Local process (stdio)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="mcp_servers")
    slug = models.SlugField(max_length=40)
    name = models.CharField(max_length=120)
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.HTTP)
    url = models.URLField(max_length=500, blank=True, default="")
    command = models.CharField(max_length=100, blank=True, default="",
                               help_text="A name from AGENTRY_MCP_STDIO_SERVERS (stdio only).")
    auth = models.CharField(max_length=10, default="none", help_text="none, api_key (bearer token) or oauth2.")
    auth_config = models.JSONField(default=dict, blank=True)
    tools = models.JSONField(default=list, blank=True, help_text="The server's tools at the last refresh.")
    refreshed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="mcp_server_slug_unique"),
            models.CheckConstraint(
                condition=(Q(transport="http") & ~Q(url="")) | (Q(transport="stdio") & ~Q(command="")),
                name="mcp_server_transport_target",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def integration_slug(self) -> str:
        return f"mcp-{self.slug}"
