"""MCP server pages: the organization's registered servers, register one, its tools with
"Refresh tools", change it, delete it. Admins change them; every member can see them."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.roles import access_or_403
from config.ui import found_or_404, role_required
from integrations.connectors.mcp import selectors, services
from integrations.connectors.mcp.tools import listed_tools
from integrations.models import McpServer

AUTH_CHOICES = [("none", "None"), ("api_key", "Bearer token"), ("oauth2", "OAuth 2.0")]


class McpServerForm(forms.Form):
    """Register or change a server. The token is write-only (register only; afterwards it is the
    organization's connection). Fields of the other transport are ignored."""

    name = forms.CharField(max_length=120, help_text="People and agents see it as “MCP: <name>”.")
    slug = forms.CharField(max_length=40, required=False,
                           help_text="Names its tools (mcp_<slug>_…); lowercase letters, digits and hyphens. "
                                     "Empty: from the name. It can't change later.")
    transport = forms.ChoiceField(choices=McpServer.Transport.choices, initial=McpServer.Transport.HTTP,
                                  widget=forms.RadioSelect)
    url = forms.CharField(max_length=500, required=False, label="Endpoint URL",
                          widget=forms.URLInput(attrs={"placeholder": "https://mcp.example.com/mcp"}),
                          help_text="Streamable HTTP only: the server's MCP endpoint.")
    command = forms.ChoiceField(required=False, label="Local server",
                                help_text="stdio only: one of the local servers an operator allows "
                                          "(AGENTRY_MCP_STDIO_SERVERS).")
    auth = forms.ChoiceField(choices=AUTH_CHOICES, initial="none", label="Authentication")
    token = forms.CharField(required=False, max_length=4000, strip=True, label="Bearer token",
                            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                            help_text="Bearer token only. Checked with the server, then stored encrypted as the "
                                      "organization's connection; never shown again.")
    authorize_url = forms.CharField(required=False, max_length=500, label="Authorization URL",
                                    help_text="OAuth 2.0 only.")
    token_url = forms.CharField(required=False, max_length=500, label="Token URL", help_text="OAuth 2.0 only.")
    client_id = forms.CharField(required=False, max_length=300, label="Client ID",
                                help_text="OAuth 2.0 only: a public client (PKCE); no secret is stored.")
    scopes = forms.CharField(required=False, max_length=1000, label="OAuth scopes",
                             help_text="OAuth 2.0 only: the authorization server's scopes, space-separated.")

    def __init__(self, *args: Any, instance: McpServer | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None:
            config = instance.auth_config or {}
            kwargs.setdefault("initial", {
                "name": instance.name, "url": instance.url, "command": instance.command, "auth": instance.auth,
                "authorize_url": config.get("authorize_url", ""), "token_url": config.get("token_url", ""),
                "client_id": config.get("client_id", ""), "scopes": " ".join(config.get("scopes") or []),
            })
        super().__init__(*args, **kwargs)
        self.fields["command"].choices = [("", "—")] + [(name, name) for name in sorted(settings.MCP_STDIO_SERVERS)]
        if instance is not None:
            del self.fields["slug"], self.fields["transport"], self.fields["token"]
            if instance.transport == McpServer.Transport.STDIO:
                del self.fields["url"]
            else:
                del self.fields["command"]

    def service_values(self) -> dict[str, Any]:
        data = self.cleaned_data
        values = {key: data[key] for key in ("name", "slug", "transport", "url", "command", "auth", "token")
                  if key in data}
        transport = self.instance.transport if self.instance is not None else data.get("transport")
        if "url" in values and transport == McpServer.Transport.STDIO:
            values["url"] = ""
        if "command" in values and transport == McpServer.Transport.HTTP:
            values["command"] = ""
        if data.get("auth") == "oauth2":
            values["auth_config"] = {"authorize_url": data["authorize_url"], "token_url": data["token_url"],
                                     "client_id": data["client_id"], "scopes": data["scopes"].split()}
        else:
            values["auth_config"] = {}
        return values

    def add_service_errors(self, exc: ValidationError) -> None:
        for field, problems in exc.message_dict.items():
            self.add_error(field if field in self.fields else None, problems)


def _server_or_404(request: HttpRequest, server_id: uuid.UUID) -> McpServer:
    organization = access_or_403(request).organization
    return found_or_404(selectors.mcp_server_get(organization=organization, server_id=server_id),
                        "No such MCP server in this organization.")


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, template, {"organization": access_or_403(request).organization, "section": "integrations",
                                      **context}, status=status)


@login_required
@require_http_methods(["GET"])
@role_required("integrations.view_mcpserver")
def server_list(request: HttpRequest) -> HttpResponse:
    servers = selectors.mcp_server_list(organization=access_or_403(request).organization)
    return _page(request, "integrations/mcp_servers/list.html", {"servers": servers})


@login_required
@require_http_methods(["GET", "POST"])
@role_required("integrations.add_mcpserver")
def server_create(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    form = McpServerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            server = services.mcp_server_create(organization=access.organization, actor=request.user,
                                                **form.service_values())
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            if server.last_error:
                messages.warning(request, f"“{server.name}” registered, but its tools couldn't be listed: "
                                          f"{server.last_error}")
            else:
                messages.success(request, f"“{server.name}” registered with {len(server.tools)} "
                                          f"tool{'s' if len(server.tools) != 1 else ''}.")
            return redirect("mcp_servers:detail", server_id=server.id)
    return _page(request, "integrations/mcp_servers/form.html", {"form": form, "server": None},
                 status=400 if form.is_bound and form.errors else 200)


@login_required
@require_http_methods(["GET"])
@role_required("integrations.view_mcpserver")
def server_detail(request: HttpRequest, server_id: uuid.UUID) -> HttpResponse:
    server = _server_or_404(request, server_id)
    connections = selectors.mcp_server_connections(server=server).exclude(status="revoked")
    return _page(request, "integrations/mcp_servers/detail.html", {
        "server": server, "tools": listed_tools(server), "connections": connections,
        "stdio_missing": server.transport == McpServer.Transport.STDIO
        and server.command not in settings.MCP_STDIO_SERVERS,
    })


@login_required
@require_POST
@role_required("integrations.change_mcpserver")
def server_refresh(request: HttpRequest, server_id: uuid.UUID) -> HttpResponse:
    server = services.mcp_server_refresh(server=_server_or_404(request, server_id), actor=request.user)
    if server.last_error:
        messages.error(request, f"Couldn't list the tools of “{server.name}”: {server.last_error}. "
                                "The previous list is kept.")
    else:
        messages.success(request, f"Tools of “{server.name}” refreshed: {len(server.tools)}.")
    return redirect("mcp_servers:detail", server_id=server.id)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("integrations.change_mcpserver")
def server_edit(request: HttpRequest, server_id: uuid.UUID) -> HttpResponse:
    server = _server_or_404(request, server_id)
    form = McpServerForm(request.POST or None, instance=server)
    if request.method == "POST" and form.is_valid():
        try:
            server = services.mcp_server_update(server=server, actor=request.user, **form.service_values())
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"“{server.name}” saved.")
            return redirect("mcp_servers:detail", server_id=server.id)
    return _page(request, "integrations/mcp_servers/form.html", {"form": form, "server": server},
                 status=400 if form.is_bound and form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("integrations.delete_mcpserver")
def server_delete(request: HttpRequest, server_id: uuid.UUID) -> HttpResponse:
    server = _server_or_404(request, server_id)
    if request.method == "POST":
        name = server.name
        services.mcp_server_delete(server=server, actor=request.user)
        messages.success(request, f"“{name}” deleted; its connections were revoked.")
        return redirect("mcp_servers:list")
    connections = selectors.mcp_server_connections(server=server).exclude(status="revoked").count()
    return _page(request, "integrations/mcp_servers/confirm_delete.html",
                 {"server": server, "connections": connections, "tool_count": len(server.tools or [])})
