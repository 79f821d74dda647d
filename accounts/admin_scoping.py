"""The Django admin under the same role rules as the API and the UI.

A staff member sees, adds, changes and deletes only objects of organizations where their role
grants the matching permission (`<app>.view_<model>` and so on, edited per role in the admin's
Groups). Superusers see everything: they operate the installation itself.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet

from accounts.models import Organization
from accounts.roles import role_permissions


def organizations_allowing(request, perm: str) -> set | None:
    """Ids of the organizations where the user's role grants `perm`; None means all (superuser)."""
    user = request.user
    if user.is_superuser:
        return None
    if not hasattr(request, "_agentry_admin_memberships"):
        request._agentry_admin_memberships = list(user.memberships.values_list("organization_id", "role"))
    return {org for org, role in request._agentry_admin_memberships if perm in role_permissions.get(role)}


class OrganizationScopedAdmin(admin.ModelAdmin):
    organization_field = "organization"
    # Overrides of the permission each admin action needs, e.g. {"view": "agents.view_all_runs"}:
    # the admin lists every object of an organization, so it asks for the "all" permissions.
    perm_map: dict[str, str] = {}

    def perm_for(self, action: str) -> str:
        return self.perm_map.get(action) or f"{self.opts.app_label}.{action}_{self.opts.model_name}"

    def organization_id_of(self, obj) -> object:
        if self.organization_field == "id":
            return obj.pk
        return getattr(obj, f"{self.organization_field}_id")

    def allowed(self, request, perm: str, obj=None) -> bool:
        if not request.user.is_active or not request.user.is_staff:
            return False
        organizations = organizations_allowing(request, perm)
        if organizations is None:
            return True
        if obj is None:
            return bool(organizations)
        return self.organization_id_of(obj) in organizations

    def scope(self, request, queryset: QuerySet, perm: str) -> QuerySet:
        organizations = organizations_allowing(request, perm)
        if organizations is None:
            return queryset
        return queryset.filter(**{f"{self.organization_field}__in": organizations})

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        view = organizations_allowing(request, self.perm_for("view"))
        change = organizations_allowing(request, self.perm_for("change"))
        if view is None or change is None:
            return qs
        return qs.filter(**{f"{self.organization_field}__in": view | change})

    def has_module_permission(self, request) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self.allowed(request, self.perm_for("view"), obj) or self.allowed(request, self.perm_for("change"), obj)

    def has_add_permission(self, request) -> bool:
        return self.allowed(request, self.perm_for("add"))

    def has_change_permission(self, request, obj=None) -> bool:
        return self.allowed(request, self.perm_for("change"), obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.allowed(request, self.perm_for("delete"), obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == self.organization_field and db_field.related_model is Organization:
            organizations = organizations_allowing(request, self.perm_for("add")) or set()
            organizations |= organizations_allowing(request, self.perm_for("change")) or set()
            if not request.user.is_superuser:
                kwargs["queryset"] = Organization.objects.filter(id__in=organizations)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
