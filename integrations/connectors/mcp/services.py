"""Writes for registered MCP servers: register, change, refresh the tool list, delete.

A server's bearer token is never on the McpServer row: it is an organization connection of the
integration mcp-<slug> (encrypted like every credential), made here when an admin registers the
server with a token. Network calls (listing tools) happen outside the transactions that store
their outcome, except when registering with a token, where the token is checked before the
server, the connection and the tool list are stored together or not at all.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.audit import audit_record, diff_of
from accounts.models import Organization
from integrations import crypto
from integrations import services as connection_services
from integrations.connectors.mcp import client, selectors
from integrations.connectors.mcp.tools import CHECK_TIMEOUT, target_for
from integrations.models import Connection, McpServer
from integrations.tools import ToolError

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # no "_": it separates slug and tool in tool names
SLUG_MAX = 40
AUTHS = ("none", "api_key", "oauth2")
EDITABLE = ("name", "url", "command", "auth", "auth_config")
Transport = McpServer.Transport


def _default_slug(name: str) -> str:
    return slugify(name).replace("_", "-").strip("-")[:SLUG_MAX].strip("-") or "mcp"


def _check_url_field(url: str, errors: dict[str, list[str]], *, unchanged: bool = False) -> None:
    if not url:
        errors["url"] = ["Enter the server's streamable HTTP endpoint, e.g. https://mcp.example.com/mcp."]
        return
    if len(url) > 500:
        errors["url"] = ["Use at most 500 characters."]
        return
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        errors["url"] = ["Enter an http:// or https:// URL."]
        return
    if unchanged:
        return  # checked when it was set, and again before every connection
    try:
        client.check_url(url)
    except ToolError as exc:
        errors["url"] = [f"Agentry won't connect there: {exc}."]


def _clean_auth_config(auth: str, config: Any, errors: dict[str, list[str]]) -> dict[str, Any]:
    if auth != "oauth2":
        if config:
            errors["auth_config"] = ["Only OAuth 2.0 servers take settings here; leave it empty."]
        return {}
    if not isinstance(config, dict) or _without_nul(config) != config:
        errors["auth_config"] = ["Give authorize_url, token_url and client_id (and optionally scopes)."]
        return {}
    problems: list[str] = []
    cleaned: dict[str, Any] = {}
    for key in ("authorize_url", "token_url"):
        value = str(config.get(key) or "").strip()
        try:
            URLValidator(schemes=["http", "https"])(value)
        except ValidationError:
            problems.append(f"{key} must be an http(s) URL.")
        cleaned[key] = value
    cleaned["client_id"] = str(config.get("client_id") or "").strip()
    if not cleaned["client_id"] or len(cleaned["client_id"]) > 300:
        problems.append("client_id is required (the client registered at the authorization server).")
    scopes = config.get("scopes") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list) or not all(isinstance(s, str) and s and " " not in s for s in scopes):
        problems.append("scopes must be a list of the authorization server's scope names.")
        scopes = []
    cleaned["scopes"] = scopes
    unknown = sorted(set(config) - {"authorize_url", "token_url", "client_id", "scopes"})
    if unknown:
        problems.append(f"Unknown setting {', '.join(unknown)}; a client secret is never stored here (PKCE is used).")
    if problems:
        errors["auth_config"] = problems
    return cleaned


def _clean(*, instance: McpServer | None, organization: Organization, values: dict[str, Any]) -> dict[str, Any]:
    """Checked field values, or ValidationError by field."""
    errors: dict[str, list[str]] = {}
    name = str(values.get("name") or "").strip()
    if not name:
        errors["name"] = ["Give the server a name; agents and people see it as “MCP: <name>”."]
    elif len(name) > 120:
        errors["name"] = ["Use at most 120 characters."]
    transport = values.get("transport") or Transport.HTTP
    if transport not in Transport.values:
        errors["transport"] = [f"One of: {', '.join(Transport.values)}."]
    slug = values.get("slug")
    if instance is None:
        slug = str(slug or "").strip() or _default_slug(name)
        if len(slug) > SLUG_MAX or not SLUG.match(slug):
            errors["slug"] = [f"Lowercase letters, digits and single hyphens, at most {SLUG_MAX} characters."]
        elif McpServer.objects.filter(organization=organization, slug=slug).exists():
            errors["slug"] = [f"This organization already has an MCP server “{slug}”; choose another slug."]
    url = str(values.get("url") or "").strip()
    command = str(values.get("command") or "").strip()
    token = str(values.get("token") or "").strip()
    auth = values.get("auth") or ("api_key" if token else "none")
    if auth not in AUTHS:
        errors["auth"] = [f"One of: {', '.join(AUTHS)}."]
    if transport == Transport.HTTP:
        _check_url_field(url, errors, unchanged=instance is not None and url == instance.url)
        if command:
            errors["command"] = ["Only local (stdio) servers have a command."]
    elif transport == Transport.STDIO:
        if url:
            errors["url"] = ["A local (stdio) server has no URL."]
        if command not in settings.MCP_STDIO_SERVERS:
            allowed = ", ".join(sorted(settings.MCP_STDIO_SERVERS)) or "none are configured"
            errors["command"] = [f"Choose one of the local servers this installation allows ({allowed}); an "
                                 "operator adds them with AGENTRY_MCP_STDIO_SERVERS."]
        if auth != "none":
            errors["auth"] = ["A local (stdio) server takes no credentials."]
    if token and auth != "api_key":
        errors["token"] = ["A token is only for servers with bearer-token authentication (auth api_key)."]
    if len(token) > 4000:
        errors["token"] = ["That is too long to be a bearer token."]
    auth_config = _clean_auth_config(auth, values.get("auth_config"), errors)
    if errors:
        raise ValidationError(errors)
    return {"name": name, "slug": slug, "transport": transport, "url": url if transport == Transport.HTTP else "",
            "command": command if transport == Transport.STDIO else "", "auth": auth, "auth_config": auth_config,
            "token": token}


def _without_nul(value: Any) -> Any:
    """Postgres can't store NUL in text or JSON; a server's tool list or error message may have one."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _listed(tools: list[client.RemoteTool]) -> list[dict[str, Any]]:
    return [_without_nul(tool.as_dict()) for tool in tools]


def mcp_server_create(
    *,
    organization: Organization,
    actor: AbstractBaseUser,
    name: str,
    slug: str = "",
    transport: str = Transport.HTTP,
    url: str = "",
    command: str = "",
    auth: str | None = None,
    token: str = "",
    auth_config: dict[str, Any] | None = None,
) -> McpServer:
    """Register a server and list its tools once. Without a token, a server that can't be listed
    is still registered, with the reason in `last_error`. With a token, the token must work: it
    becomes the organization's connection, or nothing is stored."""
    values = _clean(instance=None, organization=organization, values={
        "name": name, "slug": slug, "transport": transport, "url": url, "command": command, "auth": auth,
        "token": token, "auth_config": auth_config})
    token = values.pop("token")
    listed: list[client.RemoteTool] | None = None
    if token:
        try:
            listed = client.list_tools(target_for(values, {"token": token}), timeout=CHECK_TIMEOUT)
        except client.McpUnauthorized as exc:
            raise ValidationError({"token": [f"The server did not accept this token: {exc}."]}) from None
        except client.McpFailure as exc:
            raise ValidationError({"url": [f"Agentry could not check the token with the server: {exc}. Nothing "
                                           "was saved."]}) from None
    try:
        with transaction.atomic():
            server = McpServer.objects.create(organization=organization, created_by=actor, **values)
            audit_record(action="mcp_server.create", actor=actor, organization=organization, target=server,
                         data={"transport": server.transport, "url": server.url, "command": server.command,
                               "auth": server.auth, "with_token": bool(token)})
            if token and listed is not None:
                try:
                    connection_services.connection_create(
                        organization=organization, actor=actor, integration=server.integration_slug,
                        values={"token": token}, for_organization=True, name=f"{server.name} (organization token)")
                except ValidationError as exc:
                    raise ValidationError({("token" if key in ("credentials", "token") else key): problems
                                           for key, problems in exc.message_dict.items()}) from None
                return _store(server, actor=actor, listed=listed, error="")
    except IntegrityError:
        raise ValidationError({"slug": ["This organization already has an MCP server with this slug."]}) from None
    return mcp_server_refresh(server=server, actor=actor)


def mcp_server_update(
    *,
    server: McpServer,
    actor: AbstractBaseUser,
    name: str | None = None,
    url: str | None = None,
    command: str | None = None,
    auth: str | None = None,
    auth_config: dict[str, Any] | None = None,
) -> McpServer:
    """Change a server (its slug and transport are fixed: tool names and connections hang on them).
    A new URL or command lists the tools again. Tokens are changed on the Connections page."""
    changes = {"name": name, "url": url, "command": command, "auth": auth, "auth_config": auth_config}
    changes = {key: value for key, value in changes.items() if value is not None}
    with transaction.atomic():
        server = McpServer.objects.select_for_update().get(id=server.id)
        before = {field: getattr(server, field) for field in EDITABLE}
        values = _clean(instance=server, organization=server.organization,
                        values={**before, "transport": server.transport, **changes})
        for field in EDITABLE:
            setattr(server, field, values[field])
        after = {field: getattr(server, field) for field in EDITABLE}
        diff = diff_of(before, after)
        if not diff:
            return server
        server.save()
        audit_record(action="mcp_server.update", actor=actor, organization_id=server.organization_id,
                     target=server, diff=diff)
    if "url" in diff or "command" in diff:
        return mcp_server_refresh(server=server, actor=actor)
    return server


def mcp_server_refresh(*, server: McpServer, actor: AbstractBaseUser | None) -> McpServer:
    """List the server's tools again. A failure keeps the last good list and records why; the
    listing itself runs outside any transaction (it may take seconds)."""
    connection = selectors.connection_for_refresh(server=server, actor=actor) if server.auth != "none" else None
    error = ""
    listed: list[client.RemoteTool] | None = None
    try:
        credentials = crypto.decrypt(connection.secret) if connection is not None else {}
        listed = _list_with(server, connection, credentials)
    except crypto.CredentialsUnreadable as exc:
        error = f"the connection {connection.name!r} can't be used: {exc}" if connection else str(exc)
    except client.McpFailure as exc:
        error = str(exc)
    with transaction.atomic():
        server = McpServer.objects.select_for_update().get(id=server.id)
        return _store(server, actor=actor, listed=listed, error=error)


def _list_with(server: McpServer, connection: Connection | None,
               credentials: dict[str, Any]) -> list[client.RemoteTool]:
    try:
        return client.list_tools(target_for(server, credentials), timeout=CHECK_TIMEOUT)
    except client.McpUnauthorized:
        if connection is None or not credentials.get("refresh_token"):
            raise
    fresh = connection_services.connection_refresh(connection_id=connection.id)
    if fresh is None:
        raise client.McpUnauthorized(f"the MCP server {server.name} refused the connection {connection.name!r} "
                                     "and its token could not be refreshed; reconnect it")
    return client.list_tools(target_for(server, fresh), timeout=CHECK_TIMEOUT)


def _store(server: McpServer, *, actor: Any, listed: list[client.RemoteTool] | None, error: str) -> McpServer:
    before = {tool.get("name") for tool in server.tools or [] if isinstance(tool, dict)}
    if listed is not None:
        server.tools = _listed(listed)
        server.refreshed_at = timezone.now()
    server.last_error = _without_nul(error)[:1000]
    server.save(update_fields=["tools", "refreshed_at", "last_error", "updated_at"])
    after = {tool["name"] for tool in server.tools or [] if isinstance(tool, dict) and "name" in tool}
    audit_record(action="mcp_server.refresh", actor=actor, organization_id=server.organization_id, target=server,
                 data={"ok": not error, "tools": len(after), "added": sorted(after - before),
                       "removed": sorted(before - after), "error": server.last_error[:300]})
    return server


def mcp_server_delete(*, server: McpServer, actor: AbstractBaseUser) -> None:
    """Delete a server; its connections are revoked (their credentials deleted) since nothing can
    use them any more. Agents that picked its tools simply aren't offered them."""
    with transaction.atomic():
        server = McpServer.objects.select_for_update().get(id=server.id)
        revoked = 0
        for connection in selectors.mcp_server_connections(server=server).exclude(status=Connection.Status.REVOKED):
            connection_services.connection_revoke(connection=connection, actor=actor)
            revoked += 1
        audit_record(action="mcp_server.delete", actor=actor, organization_id=server.organization_id, target=server,
                     data={"slug": server.slug, "connections_revoked": revoked})
        server.delete()
