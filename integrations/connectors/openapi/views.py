"""Pages for registered HTTP APIs under /integrations/http-apis/: the list, registering one (upload
or paste its OpenAPI document), its detail page with the checklist of operations offered as
tools, editing and deleting. Reads go through the selectors, writes through the services."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.roles import access_or_403
from config.ui import found_or_404, role_required
from integrations.connectors.openapi import selectors, services
from integrations.connectors.openapi.forms import HttpApiForm
from integrations.models import Connection, HttpApi


def _api_or_404(request: HttpRequest, http_api_id: uuid.UUID) -> HttpApi:
    organization = access_or_403(request).organization
    return found_or_404(selectors.http_api_get(organization=organization, api_id=http_api_id),
                        "No such HTTP API in this organization.")


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, f"integrations/http_apis/{template}",
                  {"organization": access_or_403(request).organization, **context}, status=status)


def _errors(exc: ValidationError) -> dict[str, list[str]]:
    return exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}


@login_required
@require_GET
@role_required("integrations.view_httpapi")
def api_list(request: HttpRequest) -> HttpResponse:
    organization = access_or_403(request).organization
    return _page(request, "list.html", {"apis": selectors.http_api_list(organization=organization)})


@login_required
@require_http_methods(["GET", "POST"])
@role_required("integrations.add_httpapi")
def api_create(request: HttpRequest) -> HttpResponse:
    organization = access_or_403(request).organization
    form = HttpApiForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            api = services.http_api_create(organization=organization, actor=request.user, **form.service_values())
        except ValidationError as exc:
            form.add_service_errors(_errors(exc))
        else:
            messages.success(request, f"“{api.name}” registered. Tick the operations agents may call.")
            return redirect("http_apis:detail", http_api_id=api.id)
    return _page(request, "form.html", {"form": form, "api": None},
                 status=400 if form.is_bound and form.errors else 200)


def _detail(request: HttpRequest, api: HttpApi, *, errors: list[str] | None = None, status: int = 200) -> HttpResponse:
    document = selectors.http_api_document(api)
    rows = selectors.http_api_operations(api, document)
    connections = Connection.objects.filter(organization_id=api.organization_id, integration=api.integration_slug)
    return _page(request, "detail.html", {
        "api": api, "document": document, "rows": rows, "operation_errors": errors or [],
        "can_change": access_or_403(request).can("integrations.change_httpapi"),
        "enabled_count": sum(1 for r in rows if r.enabled),
        "supported_count": sum(1 for r in rows if r.operation.supported),
        "connection_count": connections.exclude(status=Connection.Status.REVOKED).count(),
    }, status=status)


@login_required
@require_GET
@role_required("integrations.view_httpapi")
def api_detail(request: HttpRequest, http_api_id: uuid.UUID) -> HttpResponse:
    return _detail(request, _api_or_404(request, http_api_id))


@login_required
@require_POST
@role_required("integrations.change_httpapi")
def api_operations(request: HttpRequest, http_api_id: uuid.UUID) -> HttpResponse:
    api = _api_or_404(request, http_api_id)
    wanted = request.POST.getlist("operations")
    try:
        api = services.http_api_update(http_api=api, actor=request.user, operations=wanted)
    except ValidationError as exc:
        problems = [m for messages_ in _errors(exc).values() for m in messages_]
        return _detail(request, api, errors=problems, status=400)
    count = len(api.operations)
    messages.success(request, f"{count} operation{'s' if count != 1 else ''} of “{api.name}” offered as tools.")
    return redirect("http_apis:detail", http_api_id=api.id)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("integrations.change_httpapi")
def api_edit(request: HttpRequest, http_api_id: uuid.UUID) -> HttpResponse:
    api = _api_or_404(request, http_api_id)
    form = HttpApiForm(request.POST or None, request.FILES or None, instance=api,
                       document=selectors.http_api_document(api))
    if request.method == "POST" and form.is_valid():
        try:
            before = set(api.operations)
            api = services.http_api_update(http_api=api, actor=request.user, **form.service_values())
        except ValidationError as exc:
            form.add_service_errors(_errors(exc))
        else:
            dropped = sorted(before - set(api.operations))
            note = f" The new document no longer offers {', '.join(dropped)}." if dropped else ""
            messages.success(request, f"“{api.name}” saved.{note}")
            return redirect("http_apis:detail", http_api_id=api.id)
    return _page(request, "form.html", {"form": form, "api": api},
                 status=400 if form.is_bound and form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("integrations.delete_httpapi")
def api_delete(request: HttpRequest, http_api_id: uuid.UUID) -> HttpResponse:
    api = _api_or_404(request, http_api_id)
    if request.method == "POST":
        name = api.name
        services.http_api_delete(http_api=api, actor=request.user)
        messages.success(request, f"“{name}” deleted, with its tools and connections.")
        return redirect("http_apis:list")
    connections = Connection.objects.filter(organization_id=api.organization_id, integration=api.integration_slug)
    return _page(request, "confirm_delete.html", {"api": api, "connection_count": connections.count()})
