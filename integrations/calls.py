"""A connector tool call: bind the run to a connection, enforce scopes, call, record.

The agent's access is the intersection of the scopes its builder selected and the scopes the
connection holds. Everything that can refuse a call (no connection, revoked, needs
re-authorization, another person's connection, a missing scope) is decided here, before any
network request, and comes back to the model as a refusal it can read. Credentials are decrypted
only into the CallContext handed to the tool; nothing here logs, stores or returns them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import close_old_connections
from django.db import connection as db_connection
from django.utils import timezone

from integrations import catalog, crypto
from integrations import tools as tool_registry
from integrations.catalog import AuthType, Integration
from integrations.http import Outbound
from integrations.models import Connection, ConnectionCall

RUNNER = "runner"
REFRESH_MARGIN = timedelta(seconds=60)


class Refused(Exception):
    def __init__(self, message: str, *, connection: Connection | None = None) -> None:
        super().__init__(message)
        self.connection = connection


@dataclass
class CallContext:
    """What a connector tool gets besides its arguments."""

    integration: Integration
    connection: Connection | None
    credentials: dict[str, Any]
    scopes: frozenset[str]
    http: Outbound
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return str(self.options.get("api_url") or self.integration.app().get("api_url") or "").rstrip("/")

    def credentials_rejected(self, reason: str) -> None:
        """For connectors whose provider refuses credentials without an HTTP 401 (Slack's
        `invalid_auth`, a mail server's failed login): mark the connection as needing
        re-authorization and notify its owner, as a failed refresh does. A connection already
        marked keeps its first reason, and its owner gets one notice."""
        if self.connection is None:  # checking credentials before a connection exists
            return
        from integrations import services

        try:
            services.connection_mark_needs_reauth(connection_id=self.connection.id, reason=reason)
        finally:
            # Tools run in their own thread, which would otherwise keep its database connection.
            if not db_connection.in_atomic_block:
                close_old_connections()

    def require(self, scope: str) -> None:
        """For tools whose needed scope depends on the arguments: refuse before calling out."""
        if scope not in self.scopes:
            raise tool_registry.ToolError(
                f"refused: this call needs the scope {scope!r}, which this agent doesn't hold")


class ConnectionAuth:
    """Credentials as headers, and one refresh after a 401 (or before an expired token is used)."""

    def __init__(self, integration: Integration, connection_id: Any, credentials: dict[str, Any],
                 options: dict[str, Any]) -> None:
        self.integration = integration
        self.connection_id = connection_id
        self.credentials = credentials
        self.options = options

    def headers(self) -> dict[str, str]:
        if self.integration.auth_headers is None:
            return {}
        return self.integration.auth_headers(self.credentials, self.options)

    def refresh(self) -> bool:
        from integrations import services

        try:
            fresh = services.connection_refresh(connection_id=self.connection_id) if self.connection_id else None
        finally:
            # Called from a tool thread, which keeps its database connection otherwise.
            if not db_connection.in_atomic_block:
                close_old_connections()
        if fresh is None:
            return False
        self.credentials.clear()
        self.credentials.update(fresh)
        return True


def context_for(*, integration: Integration, connection: Connection | None, credentials: dict[str, Any],
                scopes: set[str] | frozenset[str], options: dict[str, Any] | None = None,
                deadline: float | None = None) -> CallContext:
    options = dict(options if options is not None else (connection.options if connection else {}))
    auth = ConnectionAuth(integration, connection.id if connection else None, credentials, options)
    return CallContext(integration=integration, connection=connection, credentials=credentials,
                       scopes=frozenset(scopes), http=Outbound(auth=auth, deadline=deadline), options=options)


def builder_scopes(config: dict, integration: Integration, organization_id: Any,
                   tools: dict[str, tool_registry.Tool] | None = None) -> set[str]:
    """The scopes the agent's builder selected; by default those its chosen tools need. `tools` is
    the run's resolved tools when the caller has them (the loop does), saving a lookup per call."""
    setting = (config.get("integrations") or {}).get(integration.slug) or {}
    if setting.get("scopes") is not None:
        return set(setting["scopes"])
    available = tools if tools is not None else tool_registry.for_organization(organization_id)
    return {s for name in config.get("tools", []) if (t := available.get(name)) and t.integration == integration.slug
            for s in t.scopes}


def bind(*, config: dict, organization_id: Any, runner_id: Any, tool: tool_registry.Tool,
         deadline: float | None = None, tools: dict[str, tool_registry.Tool] | None = None) -> CallContext:
    integration = catalog.get(tool.integration, organization_id)
    if integration is None:
        raise Refused(f"the integration {tool.integration!r} is no longer available in this organization")
    choice = ((config.get("integrations") or {}).get(integration.slug) or {}).get("connection") or RUNNER
    allowed = builder_scopes(config, integration, organization_id, tools)
    if integration.auth_types == (AuthType.NONE,):
        _check_scopes(tool, integration, allowed, held=set(integration.scope_names), connection=None)
        return context_for(integration=integration, connection=None, credentials={}, scopes=allowed, deadline=deadline)
    connection = _connection(integration, choice, organization_id, runner_id)
    if connection.status == Connection.Status.REVOKED:
        when = timezone.localtime(connection.revoked_at).strftime("%Y-%m-%d %H:%M") if connection.revoked_at else ""
        revoked = f"was revoked on {when}" if when else "was revoked"
        raise Refused(f"the {integration.name} connection {connection.name!r} {revoked}; "
                      "nothing was sent. Someone must connect it again (Integrations → "
                      f"{integration.name} → Connect) and pick it for this agent", connection=connection)
    if connection.status == Connection.Status.NEEDS_REAUTH:
        raise Refused(f"the {integration.name} connection {connection.name!r} needs re-authorization "
                      f"({connection.last_error or 'its credentials stopped working'}); nothing was sent. Its owner "
                      "must reconnect it on the Connections page", connection=connection)
    _check_scopes(tool, integration, allowed, held=set(connection.scopes), connection=connection)
    try:
        credentials = crypto.decrypt(connection.secret)
    except crypto.CredentialsUnreadable as exc:
        raise Refused(f"the {integration.name} connection {connection.name!r} can't be used: {exc}",
                      connection=connection) from None
    context = context_for(integration=integration, connection=connection, credentials=credentials,
                          scopes=allowed & set(connection.scopes), deadline=deadline)
    if (connection.expires_at is not None and connection.expires_at - REFRESH_MARGIN <= timezone.now()
            and credentials.get("refresh_token")):
        if not context.http.auth.refresh():
            connection.refresh_from_db()
            raise Refused(f"the {integration.name} connection {connection.name!r} expired and could not be "
                          f"refreshed ({connection.last_error}); its owner must reconnect it", connection=connection)
    return context


def _connection(integration: Integration, choice: str, organization_id: Any, runner_id: Any) -> Connection:
    mine = Connection.objects.filter(organization_id=organization_id, integration=integration.slug)
    if choice == RUNNER:
        if runner_id is None:
            raise Refused(f"this agent acts through the {integration.name} connection of the person running it, "
                          "and nobody started this run")
        yours = mine.filter(owner_id=runner_id)
        found = yours.exclude(status=Connection.Status.REVOKED).order_by("-created_at").first()
        if found is None:  # a revoked one still explains the refusal better than "none"
            found = yours.order_by("-revoked_at").first()
        if found is None:
            raise Refused(f"the person running this agent has no {integration.name} connection; nothing was sent. "
                          f"They can connect one under Integrations → {integration.name} → Connect")
        return found
    try:
        found = mine.select_related("owner").filter(id=choice).first()
    except Exception:  # noqa: BLE001 - a malformed id in an old snapshot is just "gone"
        found = None
    if found is None:
        raise Refused(f"the {integration.name} connection chosen for this agent no longer exists; "
                      "its builder must pick another one")
    if found.owner_id is not None and found.owner_id != runner_id:
        raise Refused(f"this agent uses {found.owner.username}'s personal {integration.name} connection, which only "
                      "they can use; nothing was sent. Its builder can switch it to an organization connection or to "
                      "\"the person running the agent\"", connection=found)
    return found


def _check_scopes(tool: tool_registry.Tool, integration: Integration, allowed: set[str], *, held: set[str],
                  connection: Connection | None) -> None:
    not_selected = [s for s in tool.scopes if s not in allowed]
    not_held = [s for s in tool.scopes if s not in held]
    if not_selected:
        raise Refused(f"{tool.name} needs the {integration.name} scope {', '.join(not_selected)}, which this agent's "
                      "builder did not grant it; nothing was sent", connection=connection)
    if not_held:
        raise Refused(f"{tool.name} needs the {integration.name} scope {', '.join(not_held)}, which the connection "
                      f"{connection.name if connection else ''!r} does not hold; nothing was sent. Reconnect it with "
                      "that scope to allow this", connection=connection)


def call(*, config: dict, organization_id: Any, runner_id: Any, run_id: Any, tool: tool_registry.Tool,
         arguments: dict, timeout: float | None, tools: dict[str, tool_registry.Tool] | None = None,
         ) -> tuple[tool_registry.ToolResult, dict[str, Any]]:
    """Run one connector tool call and record it in the connection's history. Returns the result
    for the model and what the trace should say about the connection."""
    started = time.monotonic()
    extra: dict[str, Any] = {"integration": tool.integration}
    deadline = None if timeout is None else started + max(0.01, min(timeout, tool.timeout_seconds))
    try:
        context = bind(config=config, organization_id=organization_id, runner_id=runner_id, tool=tool,
                       deadline=deadline, tools=tools)
    except Refused as refusal:
        result = tool_registry.ToolResult(output=f"Refused: {refusal}", is_error=True,
                                          duration_ms=int((time.monotonic() - started) * 1000))
        if refusal.connection is not None:
            extra["connection"] = _describe(refusal.connection)
            _record(refusal.connection, run_id, tool, ConnectionCall.Outcome.REFUSED, None, result)
        return result, extra | {"refused": True}
    result = tool_registry.invoke(tool.name, arguments, timeout=timeout, tool=tool, context=context)
    result = _scrub(result, context.credentials)
    if context.connection is not None:
        extra["connection"] = _describe(context.connection)
        outcome = ConnectionCall.Outcome.ERROR if result.is_error else ConnectionCall.Outcome.OK
        _record(context.connection, run_id, tool, outcome, context.http.last_status, result)
    return result, extra


def _describe(connection: Connection) -> dict[str, Any]:
    return {"id": str(connection.id), "name": connection.name,
            "owner": "organization" if connection.owner_id is None else "personal"}


def _record(connection: Connection, run_id: Any, tool: tool_registry.Tool, outcome: str, status: int | None,
            result: tool_registry.ToolResult) -> None:
    from integrations import services

    services.connection_call_record(
        connection_id=connection.id, run_id=run_id, tool=tool.name, outcome=outcome, status_code=status,
        duration_ms=result.duration_ms, detail=result.output[:500] if result.is_error else "",
    )


def _scrub(result: tool_registry.ToolResult, credentials: dict[str, Any]) -> tool_registry.ToolResult:
    """Belt and braces: should a provider echo a credential back, the model still doesn't see it."""
    output = result.output
    for value in credentials.values():
        if isinstance(value, str) and len(value) >= 8 and value in output:
            output = output.replace(value, "[credential removed]")
    if output == result.output:
        return result
    return tool_registry.ToolResult(output=output, is_error=result.is_error, duration_ms=result.duration_ms)
