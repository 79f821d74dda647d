from __future__ import annotations

from django.contrib import admin

from accounts.models import ApiToken, AuditLog, Membership, Organization, Quota


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
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
class AuditLogAdmin(admin.ModelAdmin):
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
        return request.method in ("GET", "HEAD")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ["organization", "user", "runs_per_month", "tokens_per_month", "spend_per_month_usd", "updated_at"]
    list_filter = ["organization"]
    autocomplete_fields = ["user", "organization"]
