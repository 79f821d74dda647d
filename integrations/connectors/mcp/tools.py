"""Each registered MCP server as an integration ("MCP: <name>", slug mcp-<slug>) and its cached
tools as connector tools, so they go through the same connection binding, scope intersection,
approval rules and call history as native tools.

Scopes: `tools:read` covers the tools the server annotates readOnlyHint, `tools:write` the rest
(MCP says an unannotated tool may change things). Annotations come from the server and are only
hints, which is why they only ever narrow: a tool counts as read-only only when it says so.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from integrations import catalog
from integrations import tools as tool_registry
from integrations.catalog import AuthType, Category, CredentialField, Integration, Maturity, OAuthSpec, Scope
from integrations.connectors.mcp import client
from integrations.models import McpServer
from integrations.tools import SideEffect, Tool

TOOL_TIMEOUT = 60.0
CHECK_TIMEOUT = 20.0
READ, WRITE = "tools:read", "tools:write"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")
MAX_NAME = 64

AUTH_TYPES = {"none": AuthType.NONE, "api_key": AuthType.API_KEY, "oauth2": AuthType.OAUTH2}


def tool_name(slug: str, remote: str, taken: set[str] | None = None) -> str:
    """mcp_<slug>_<tool>, within Anthropic's ^[a-zA-Z0-9_-]{1,64}$; long or clashing names get a
    short hash of the server's own name so they stay distinct and stable across refreshes."""
    base = f"mcp_{slug}_{_UNSAFE.sub('_', remote).strip('_') or 'tool'}"
    if len(base) <= MAX_NAME and base not in (taken or set()):
        return base
    digest = hashlib.sha256(remote.encode()).hexdigest()[:8]
    return f"{base[:MAX_NAME - 9]}_{digest}"


def target_for(server: McpServer | dict[str, Any], credentials: dict[str, Any] | None = None) -> client.Target:
    get = server.get if isinstance(server, dict) else lambda key: getattr(server, key)
    credentials = credentials or {}
    return client.Target(label=f"the MCP server {get('name')}", url=get("url") or "", command=get("command") or "",
                         token=str(credentials.get("token") or credentials.get("access_token") or ""))


def _snapshot(server: McpServer) -> dict[str, Any]:
    # Tool functions outlive the row they were built from; they keep plain values, not the model.
    return {"name": server.name, "slug": server.slug, "url": server.url, "command": server.command}


def integration_for(server: McpServer) -> Integration:
    snapshot = _snapshot(server)
    auth = AUTH_TYPES.get(server.auth, AuthType.NONE)
    oauth = _oauth_spec(server.auth_config or {}) if auth == AuthType.OAUTH2 else None
    provider_scopes = tuple(str(s) for s in (server.auth_config or {}).get("scopes") or ()) if oauth else ()
    where = server.url if server.transport == McpServer.Transport.HTTP else f"the local command “{server.command}”"
    notes = {
        AuthType.NONE: "The server takes no credentials.",
        AuthType.API_KEY: "Paste the server's bearer token; it is sent as `Authorization: Bearer <token>` and "
                          "stored encrypted.",
        AuthType.OAUTH2: "Connect signs you in at the server's authorization server (OAuth 2.0 with PKCE).",
    }[auth]

    def identify(call: Any) -> dict[str, Any]:
        return client.identify(target_for(snapshot, call.credentials), timeout=min(CHECK_TIMEOUT, _left(call)))

    return Integration(
        slug=server.integration_slug,
        name=f"MCP: {server.name}",
        category=Category.CUSTOM,
        status=Maturity.BETA,
        summary=f"Tools of the MCP server at {where}, registered by an administrator of this organization.",
        auth_types=(auth,),
        scopes=(
            Scope(READ, "Call the server's tools that declare themselves read-only (readOnlyHint).",
                  provider_scopes=provider_scopes),
            Scope(WRITE, "Call its other tools, which may create, change or delete things.",
                  provider_scopes=provider_scopes, write=True),
        ),
        setup_notes=notes + " Tools appear after “Refresh tools” on the server's page lists them.",
        oauth=oauth,
        credential_fields=(CredentialField("token", "Bearer token", help="Sent as Authorization: Bearer."),)
        if auth == AuthType.API_KEY else (),
        auth_headers=lambda credentials, _options: (
            {"Authorization": f"Bearer {credentials.get('token') or credentials.get('access_token')}"}
            if credentials.get("token") or credentials.get("access_token") else {}),
        identify=identify,
        organization_id=server.organization_id,
    )


def _oauth_spec(config: dict[str, Any]) -> OAuthSpec:
    """Endpoints and client id from the registration. The client is public (PKCE, no secret): the
    McpServer row holds no secret, and MCP authorization servers register clients that way."""
    authorize, token, client_id = (str(config.get(k) or "") for k in ("authorize_url", "token_url", "client_id"))
    return OAuthSpec(
        authorize_url=lambda _app: authorize,
        token_url=lambda _app: token,
        client=lambda: {"client_id": client_id, "client_secret": ""},
    )


def _left(call: Any) -> float:
    http = getattr(call, "http", None)
    return max(1.0, http.remaining() - 0.5) if http is not None else TOOL_TIMEOUT


def tools_for(server: McpServer) -> list[Tool]:
    return [tool for _item, tool in listed_tools(server)]


def listed_tools(server: McpServer) -> list[tuple[dict[str, Any], Tool]]:
    """The cached list as (what the server said, the tool agents get) pairs."""
    snapshot = _snapshot(server)
    found: list[tuple[dict[str, Any], Tool]] = []
    taken: set[str] = set()
    for item in server.tools or []:
        if not isinstance(item, dict) or not item.get("name"):
            continue
        read_only = bool(item.get("read_only"))
        name = tool_name(server.slug, str(item["name"]), taken)
        taken.add(name)
        found.append((item, Tool(
            name=name,
            description=f"[MCP: {server.name}] {item.get('description') or item['name']}",
            input_schema=item.get("input_schema") or {"type": "object"},
            side_effect=SideEffect.READ if read_only else SideEffect.WRITE,
            timeout_seconds=TOOL_TIMEOUT,
            func=_caller(snapshot, str(item["name"])),
            integration=server.integration_slug,
            scopes=(READ,) if read_only else (WRITE,),
        )))
    return found


def _caller(snapshot: dict[str, Any], remote: str):
    def run(call: Any, /, **arguments: Any) -> str:
        # Positional-only `call`: an MCP tool may well have an argument named "call".
        try:
            return client.call_tool(target_for(snapshot, call.credentials), remote, arguments, timeout=_left(call))
        except client.McpUnauthorized:
            # An OAuth token that expired early: one refresh, one retry (as the outbound client does).
            if not call.credentials.get("refresh_token") or not call.http.auth or not call.http.auth.refresh():
                raise
        return client.call_tool(target_for(snapshot, call.credentials), remote, arguments, timeout=_left(call))

    run.__name__ = f"mcp_{snapshot['slug']}_call"
    return run


def _servers(organization_id: Any) -> list[McpServer]:
    from integrations.connectors.mcp.selectors import mcp_server_list

    return list(mcp_server_list(organization=organization_id))


def organization_integrations(organization_id: Any) -> list[Integration]:
    return [integration_for(server) for server in _servers(organization_id)]


def organization_tools(organization_id: Any) -> list[Tool]:
    return [tool for server in _servers(organization_id) for tool in tools_for(server)]


catalog.register_source(organization_integrations)
tool_registry.register_source(organization_tools)
