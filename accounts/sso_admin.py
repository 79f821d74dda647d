"""Identity providers in the Django admin: the same rules and audit as /settings/sso/, the client
secret never shown (blank keeps it). allauth's own SocialApp and SocialToken pages are removed:
IdentityProvider rows are the only SSO configuration, and tokens are not stored."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin

from accounts import sso
from accounts.admin_scoping import OrganizationScopedAdmin
from accounts.models import IdentityProvider


class IdentityProviderAdminForm(forms.ModelForm):
    client_secret = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Never shown. Leave blank to keep the stored secret.",
    )
    default_role = forms.ChoiceField(choices=sso.SSO_ROLE_CHOICES)
    server_url = forms.URLField(required=False, max_length=200, assume_scheme="https", label="Issuer URL")
    idp_metadata_url = forms.URLField(required=False, max_length=200, assume_scheme="https", label="Metadata URL")
    idp_sso_url = forms.URLField(required=False, max_length=200, assume_scheme="https", label="Single sign-on URL")

    class Meta:
        model = IdentityProvider
        fields = ["organization", "kind", "name", "slug", "enabled", "server_url", "client_id", "client_secret",
                  "idp_metadata_url", "idp_entity_id", "idp_sso_url", "idp_x509_cert", "role_claim", "role_mapping",
                  "default_role", "email_domains"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        values = {**data, "client_secret": data.get("client_secret") or None,
                  "role_mapping": data.get("role_mapping") or {}}
        if isinstance(values["role_mapping"], str):
            values["role_mapping"] = json.loads(values["role_mapping"] or "{}")
        instance = self.instance if self.instance.pk else None
        for field, problems in sso.identity_provider_errors(values, instance=instance).items():
            self.add_error(field if field in self.fields else None, problems)
        return data


@admin.register(IdentityProvider)
class IdentityProviderAdmin(OrganizationScopedAdmin):
    form = IdentityProviderAdminForm
    list_display = ["name", "kind", "slug", "organization", "enabled", "last_test_ok", "last_tested_at"]
    list_filter = ["kind", "enabled", "organization"]
    search_fields = ["name", "slug", "client_id", "idp_entity_id"]
    readonly_fields = ["last_tested_at", "last_test_ok", "last_test_message", "created_at"]
    actions = ["test_connection"]

    def get_readonly_fields(self, request, obj=None):
        # The slug is in the callback URL and in every linked account; the kind decides both.
        return [*self.readonly_fields, "organization", "kind", "slug"] if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        values = {field: data[field] for field in sso.EDITABLE_FIELDS if field in data}
        secret = data.get("client_secret") or None
        if change:
            saved = sso.identity_provider_update(provider=obj, actor=request.user, client_secret=secret, **values)
        else:
            saved = sso.identity_provider_create(organization=data["organization"], actor=request.user,
                                                 kind=data["kind"], slug=data["slug"], client_secret=secret, **values)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        sso.identity_provider_delete(provider=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for provider in queryset:
            self.delete_model(request, provider)

    @admin.action(description="Test the connection of the selected providers")
    def test_connection(self, request, queryset):
        for provider in queryset:
            checks = sso.identity_provider_test(provider=provider, actor=request.user)
            failed = [check for check in checks if not check.ok]
            level = "info" if not failed else "error"
            self.message_user(request, f"{provider.name}: {provider.last_test_message}", level=level)


def _drop_allauth_app_pages() -> None:
    from allauth.socialaccount.models import SocialApp, SocialToken

    for model in (SocialApp, SocialToken):
        if admin.site.is_registered(model):
            admin.site.unregister(model)


_drop_allauth_app_pages()
