"""Reads of registered MCP servers, always within one organization."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from accounts.models import Organization
from integrations.models import Connection, McpServer


def mcp_server_list(*, organization: Organization | Any) -> QuerySet[McpServer]:
    organization_id = getattr(organization, "id", organization)
    return McpServer.objects.filter(organization_id=organization_id).order_by("name")


def mcp_server_get(*, organization: Organization, server_id: Any) -> McpServer | None:
    """The server, or None when it doesn't exist in this organization (another's is "not found")."""
    try:
        server_id = uuid.UUID(str(server_id))
    except ValueError:
        return None
    return McpServer.objects.filter(organization=organization, id=server_id).first()


def mcp_server_connections(*, server: McpServer) -> QuerySet[Connection]:
    return Connection.objects.filter(organization_id=server.organization_id, integration=server.integration_slug)


def connection_for_refresh(*, server: McpServer, actor: Any) -> Connection | None:
    """The credentials "Refresh tools" lists with: the organization's connection, else the
    person's own (a server may show different tools to different people; the shared view wins)."""
    usable = mcp_server_connections(server=server).filter(
        status__in=[Connection.Status.ACTIVE, Connection.Status.ERROR]).order_by("-created_at")
    found = usable.filter(owner__isnull=True).first()
    if found is None and getattr(actor, "is_authenticated", False):
        found = usable.filter(owner=actor).first()
    return found
