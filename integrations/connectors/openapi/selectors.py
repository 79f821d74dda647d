"""Reads of registered HTTP APIs, always within one organization (another organization's API is
simply not found)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from accounts.models import Organization
from integrations.connectors.openapi import spec as openapi_spec
from integrations.connectors.openapi import tools
from integrations.connectors.openapi.spec import Document, Operation, SpecError
from integrations.models import HttpApi


def http_api_list(*, organization: Organization, search: str = "") -> QuerySet[HttpApi]:
    found = HttpApi.objects.filter(organization=organization).select_related("created_by").order_by("name", "slug")
    if search:
        found = found.filter(name__icontains=search) | found.filter(slug__icontains=search)
    return found


def http_api_get(*, organization: Organization, api_id: Any) -> HttpApi | None:
    try:
        api_id = uuid.UUID(str(api_id))
    except ValueError:
        return None
    return HttpApi.objects.filter(organization=organization, id=api_id).select_related("created_by").first()


@dataclass(frozen=True)
class OperationRow:
    """One operation of a registered API as the pages and the API show it."""

    operation: Operation
    tool: str
    enabled: bool
    scopes: tuple[str, ...]

    @property
    def side_effect(self) -> str:
        return "read" if self.operation.is_read else "write"


def http_api_document(api: HttpApi) -> Document | None:
    try:
        return openapi_spec.parse(api.spec)
    except SpecError:
        return None


def http_api_operations(api: HttpApi, document: Document | None = None) -> list[OperationRow]:
    """Every operation of the API's document, in document order, with the tool it becomes."""
    document = document or http_api_document(api)
    if document is None:
        return []
    _scopes, needs = tools.scopes_for(api, document)
    enabled = set(api.operations)
    return [OperationRow(operation=o, tool=tools.tool_name(api.slug, o.operation_id),
                         enabled=o.operation_id in enabled and o.supported, scopes=needs.get(o.operation_id, ()))
            for o in document.operations]
