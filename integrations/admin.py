"""Connections, their call history and the organizations' registered APIs and MCP servers in the
admin, under the same role rules as the pages. Nothing here shows or accepts a credential: the
encrypted `secret` columns are left out, and connections are created only through the product
(which checks the credentials with the provider first), never typed in here."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin_scoping import OrganizationScopedAdmin
from accounts.audit import audit_record
from integrations import services
from integrations.models import Connection, ConnectionCall, HttpApi, McpServer

ALL_CONNECTIONS = "integrations.view_all_connections"
MANAGE = "integrations.manage_org_connections"


def _fields_except(model, *excluded: str) -> list[str]:
    return [f.name for f in model._meta.fields if f.name not in excluded]


@admin.register(Connection)
class ConnectionAdmin(OrganizationScopedAdmin):
    # The admin lists every connection of an organization: it asks for the "all" permission.
    perm_map = {"view": ALL_CONNECTIONS, "change": MANAGE, "delete": MANAGE, "add": MANAGE}
    list_display = ["name", "integration", "organization", "owner_label", "status", "auth_type", "scope_list",
                    "last_used_at", "last_checked_at", "last_check_ok"]
    list_filter = ["status", "integration", "auth_type", "organization"]
    search_fields = ["name", "integration", "owner__username"]
    list_select_related = ["owner", "organization"]
    fields = ["id", "organization", "integration", "name", "owner", "auth_type", "status", "scopes", "account",
              "options", "expires_at", "last_used_at", "last_checked_at", "last_check_ok", "last_error",
              "created_by", "created_at", "updated_at", "revoked_at", "revoked_by"]
    actions = ["test_connections", "revoke_connections"]

    @admin.display(description="Owner")
    def owner_label(self, connection: Connection) -> str:
        return connection.owner.get_username() if connection.owner_id else "Organization"

    @admin.display(description="Scopes")
    def scope_list(self, connection: Connection) -> str:
        return ", ".join(connection.scopes) or "—"

    def get_readonly_fields(self, request, obj=None):
        # Only the name is editable: status goes through Test/Revoke, scopes come from the grant.
        return [name for name in self.fields if name != "name"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Revoking keeps the record and its history; deleting would hide what agents used.
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(action="connection.update", actor=request.user, organization_id=obj.organization_id, target=obj,
                     data={"via": "admin", "fields": sorted(form.changed_data)})

    def has_manage_permission(self, request) -> bool:
        return self.allowed(request, MANAGE)

    def _shared_only(self, request, queryset):
        """Admin actions act on organization connections; personal ones belong to their owners."""
        scoped = self.scope(request, queryset, MANAGE)
        skipped = queryset.exclude(id__in=scoped.values("id")).count() + scoped.filter(owner__isnull=False).count()
        if skipped:
            self.message_user(request, f"Skipped {skipped} connection(s): personal connections are their owners' to "
                                       "test and revoke.", messages.WARNING)
        return scoped.filter(owner__isnull=True)

    @admin.action(description="Test the selected organization connections", permissions=["manage"])
    def test_connections(self, request, queryset):
        for connection in self._shared_only(request, queryset):
            try:
                connection = services.connection_test(connection=connection, actor=request.user)
            except ValidationError as exc:
                self.message_user(request, f"{connection.name}: {' '.join(exc.messages)}", messages.WARNING)
                continue
            if connection.last_check_ok:
                self.message_user(request, f"{connection.name}: ok.", messages.SUCCESS)
            else:
                self.message_user(request, f"{connection.name}: {connection.last_error}", messages.WARNING)

    @admin.action(description="Revoke the selected organization connections", permissions=["manage"])
    def revoke_connections(self, request, queryset):
        done = 0
        for connection in self._shared_only(request, queryset):
            services.connection_revoke(connection=connection, actor=request.user)
            done += 1
        if done:
            self.message_user(request, f"Revoked {done} connection(s).", messages.SUCCESS)


@admin.register(ConnectionCall)
class ConnectionCallAdmin(OrganizationScopedAdmin):
    organization_field = "connection__organization"
    perm_map = {"view": ALL_CONNECTIONS, "change": ALL_CONNECTIONS}
    list_display = ["tool", "connection_link", "outcome", "status_code", "duration_ms", "run", "created_at"]
    list_filter = ["outcome", "tool"]
    search_fields = ["tool", "detail", "connection__name"]
    list_select_related = ["connection"]
    date_hierarchy = "created_at"

    def organization_id_of(self, obj) -> object:
        return obj.connection.organization_id

    @admin.display(description="Connection")
    def connection_link(self, call: ConnectionCall) -> str:
        url = reverse("admin:integrations_connection_change", args=[call.connection_id])
        return format_html('<a href="{}">{}</a>', url, call.connection.name)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ConnectionCall._meta.fields]

    # The call history is a record: read-only.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and self.has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class _RegisteredAdmin(OrganizationScopedAdmin):
    """HTTP APIs and MCP servers are registered on their pages, which validate the document or URL
    and the address guard; here their names can be fixed and the audited delete is available."""

    editable: tuple[str, ...] = ("name",)

    def get_readonly_fields(self, request, obj=None):
        return [name for name in self.get_fields(request, obj) if name not in self.editable]

    def has_add_permission(self, request) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(action=f"{obj._meta.model_name}.update", actor=request.user, organization_id=obj.organization_id,
                     target=obj, data={"via": "admin", "fields": sorted(form.changed_data)})

    def delete_model(self, request, obj):
        audit_record(action=f"{obj._meta.model_name}.delete", actor=request.user, organization_id=obj.organization_id,
                     target=obj, data={"via": "admin"})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(HttpApi)
class HttpApiAdmin(_RegisteredAdmin):
    editable = ("name", "description")
    list_display = ["name", "slug", "organization", "base_url", "auth", "operation_count", "updated_at"]
    list_filter = ["auth", "organization"]
    search_fields = ["name", "slug", "base_url"]
    fields = _fields_except(HttpApi, "secret")

    @admin.display(description="Operations")
    def operation_count(self, api: HttpApi) -> int:
        return len(api.operations)


@admin.register(McpServer)
class McpServerAdmin(_RegisteredAdmin):
    list_display = ["name", "slug", "organization", "transport", "url", "command", "auth", "tool_count", "refreshed_at"]
    list_filter = ["transport", "auth", "organization"]
    search_fields = ["name", "slug", "url"]
    fields = _fields_except(McpServer)

    @admin.display(description="Tools")
    def tool_count(self, server: McpServer) -> int:
        return len(server.tools or [])
