from __future__ import annotations

from django.contrib import admin

from accounts import sso_admin  # noqa: F401 - registers IdentityProviderAdmin
from accounts.admin_scoping import OrganizationScopedAdmin
from accounts.models import ApiToken, AuditLog, Membership, Organization, Quota, Team, TeamMembership


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    organization_field = "id"
    # Creating organizations is the installation's business (superusers); admins change their own.
    perm_map = {"view": "accounts.view_membership", "add": "accounts.add_organization",
                "delete": "accounts.delete_organization"}
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]

    def save_model(self, request, obj, form, change):
        from django.core.exceptions import PermissionDenied

        from accounts.services import membership_add

        before = Membership.objects.filter(pk=obj.pk).values_list("role", flat=True).first() if change else None
        touches_owner = Membership.Role.OWNER in (before, obj.role)
        if touches_owner and not self.allowed(request, "accounts.manage_owners", obj):
            raise PermissionDenied("Only owners can grant or take away the Owner role.")
        # Through the service, so the role change is audited like one made in the app.
        obj.pk = membership_add(organization=obj.organization, user=obj.user, role=obj.role, actor=request.user).pk

    def delete_model(self, request, obj):
        from accounts.audit import audit_record

        audit_record(action="membership.remove", actor=request.user, organization_id=obj.organization_id,
                     target=obj.user, data={"role": obj.role, "via": "admin"})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            self.delete_model(request, membership)


@admin.register(ApiToken)
class ApiTokenAdmin(OrganizationScopedAdmin):
    # The admin shows every key of the organization, so it is for those who manage service keys.
    perm_map = {"view": "accounts.manage_service_keys", "change": "accounts.manage_service_keys",
                "delete": "accounts.manage_service_keys"}
    list_display = ["name", "kind", "user", "organization", "hint", "scope_list", "expires_at", "last_used_at",
                    "revoked_at"]
    list_filter = ["organization", "kind"]
    actions = ["revoke"]

    @admin.display(description="Scopes")
    def scope_list(self, token: ApiToken) -> str:
        return ", ".join(token.scopes)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        from accounts.services import api_token_revoke

        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token, actor=request.user)
        self.message_user(request, "Revoked.")
    search_fields = ["name", "user__username", "hint"]
    # The hash is useless to an operator and the secret is never stored; tokens are created via the API.
    readonly_fields = ["user", "organization", "hint", "kind", "created_at", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(AuditLog)
class AuditLogAdmin(OrganizationScopedAdmin):
    """Read-only; the database refuses changes anyway."""

    list_display = ["at", "actor_name", "action", "target_type", "target_label", "ip", "organization"]
    list_filter = ["action", "organization"]
    search_fields = ["actor_name", "action", "target_id", "target_label", "request_id"]
    date_hierarchy = "at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in AuditLog._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and self.has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Quota)
class QuotaAdmin(OrganizationScopedAdmin):
    list_display = ["organization", "user", "runs_per_month", "tokens_per_month", "spend_per_month_usd", "updated_at"]
    list_filter = ["organization"]
    autocomplete_fields = ["user", "organization"]


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "parent", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name", "description"]
    inlines = [TeamMembershipInline]
