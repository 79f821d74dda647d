"""REST API for an organization's identity providers (single sign-on).

/api/identity-providers            GET list, POST create
/api/identity-providers/<id>       GET, PATCH, DELETE
/api/identity-providers/<id>/test  POST: fetch and check the provider's published configuration
The client secret is write-only: accepted on create and change, never returned.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from accounts import sso
from accounts.models import IdentityProvider
from accounts.roles import access_for_request
from config.openapi import ApiSchema

ROLES_TEXT = ", ".join(sso.SSO_ROLES)


class IdentityProviderSerializer(serializers.ModelSerializer):
    client_secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=500, trim_whitespace=False,
        help_text="Write-only. Required for OpenID Connect on create; omit it (or send \"\") to keep the stored one.",
    )
    has_client_secret = serializers.SerializerMethodField(help_text="Whether a client secret is stored.")
    role_mapping = serializers.DictField(
        child=serializers.ChoiceField(choices=sso.SSO_ROLE_CHOICES, error_messages={
            "invalid_choice": f"“{{input}}” is not a role single sign-on can grant; use one of {ROLES_TEXT}.",
        }),
        required=False,
        help_text="Claim value → role, e.g. {\"finance-admins\": \"admin\"}. When several of a person's values "
                  "match, the most privileged role wins (admin, builder, operator, auditor, viewer).",
    )
    default_role = serializers.ChoiceField(choices=sso.SSO_ROLE_CHOICES, required=False,
                                           help_text="The role of people none of whose claim values is mapped.")
    email_domains = serializers.ListField(
        child=serializers.CharField(max_length=253), required=False, max_length=sso.MAX_DOMAINS,
        help_text="People entering such an address on the sign-in page are sent to this provider, and only these "
                  "addresses may sign in through it. Empty: any address.",
    )
    sign_in_url = serializers.SerializerMethodField(help_text="Starts a sign-in through this provider.")
    callback_url = serializers.SerializerMethodField(
        help_text="Register at the provider: the OpenID Connect redirect URI, or the SAML ACS URL.")
    sp_entity_id = serializers.SerializerMethodField(
        help_text="SAML: our entity ID (also our SP metadata URL). Empty for OpenID Connect.")

    class Meta:
        model = IdentityProvider
        fields = ["id", "kind", "name", "slug", "enabled", "server_url", "client_id", "client_secret",
                  "has_client_secret", "idp_metadata_url", "idp_entity_id", "idp_sso_url", "idp_x509_cert",
                  "role_claim", "role_mapping", "default_role", "email_domains", "sign_in_url", "callback_url",
                  "sp_entity_id", "last_tested_at", "last_test_ok", "last_test_message", "created_at"]
        read_only_fields = ["id", "last_tested_at", "last_test_ok", "last_test_message", "created_at"]
        extra_kwargs = {
            "slug": {"help_text": "Part of the sign-in and callback URLs; can't change after creation."},
            "kind": {"help_text": "oidc (OpenID Connect) or saml (SAML 2.0); can't change after creation."},
        }

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_client_secret(self, provider: IdentityProvider) -> bool:
        return bool(provider.client_secret)

    def _urls(self, provider: IdentityProvider) -> dict[str, str]:
        return sso.provider_urls(provider, self.context.get("request"))

    def get_sign_in_url(self, provider: IdentityProvider) -> str:
        return self._urls(provider)["sign_in_url"]

    def get_callback_url(self, provider: IdentityProvider) -> str:
        return self._urls(provider)["callback_url"]

    def get_sp_entity_id(self, provider: IdentityProvider) -> str:
        return self._urls(provider)["sp_entity_id"]

    def validate(self, attrs: dict) -> dict:
        instance = self.instance
        values = {field: getattr(instance, field) for field in (*sso.EDITABLE_FIELDS, "kind", "slug")} \
            if instance is not None else {}
        values.update(attrs)
        values["client_secret"] = attrs.get("client_secret") or None
        errors = sso.identity_provider_errors(values, instance=instance)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


TestResultSerializer = inline_serializer("IdentityProviderTestResult", fields={
    "ok": serializers.BooleanField(help_text="Every check passed."),
    "message": serializers.CharField(help_text="A one-line summary, also stored as last_test_message."),
    "tested_at": serializers.DateTimeField(),
    "checks": inline_serializer("IdentityProviderCheck", fields={
        "name": serializers.CharField(), "ok": serializers.BooleanField(), "message": serializers.CharField(),
    }, many=True),
})


@extend_schema(tags=["sso"])
class IdentityProviderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                              mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Single sign-on for your organization: OpenID Connect (Okta, Azure AD / Entra ID, Google Workspace,
    Keycloak…) and SAML 2.0 identity providers, and how their claims map to roles. Owners and admins
    change them; auditors can read them."""

    schema = ApiSchema()
    serializer_class = IdentityProviderSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    role_perms = {
        "list": "accounts.view_identityprovider",
        "retrieve": "accounts.view_identityprovider",
        "create": "accounts.add_identityprovider",
        "partial_update": "accounts.change_identityprovider",
        # PUT isn't offered (http_method_names); this rule lets it reach DRF's 405 instead of a 403.
        "update": "accounts.change_identityprovider",
        "destroy": "accounts.delete_identityprovider",
        "test": "accounts.change_identityprovider",
    }

    def _organization(self):
        access = access_for_request(self.request)
        if access is None:
            raise PermissionDenied("You are not a member of any organization.")
        return access.organization

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return IdentityProvider.objects.none()
        return IdentityProvider.objects.filter(organization=self._organization()).order_by("name")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            provider = sso.identity_provider_create(
                organization=self._organization(), actor=request.user,
                kind=data.pop("kind", IdentityProvider.Kind.OIDC), slug=data.pop("slug"),
                client_secret=data.pop("client_secret", None) or None, **data,
            )
        except sso.ProviderInvalid as exc:
            raise serializers.ValidationError(exc.errors) from None
        return Response(self.get_serializer(provider).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        data.pop("kind", None)
        data.pop("slug", None)
        try:
            serializer.instance = sso.identity_provider_update(
                provider=serializer.instance, actor=self.request.user,
                client_secret=data.pop("client_secret", None) or None, **data,
            )
        except sso.ProviderInvalid as exc:
            raise serializers.ValidationError(exc.errors) from None

    def perform_destroy(self, instance):
        sso.identity_provider_delete(provider=instance, actor=self.request.user)

    @extend_schema(request=None, responses={200: TestResultSerializer},
                   summary="Test the connection: read and check the provider's published configuration")
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """OpenID Connect: the discovery document (issuer, endpoints, the code flow, ID token signing) and
        its signing keys. SAML: the metadata (entity ID, sign-on URL) and the signing certificate. The
        outcome is stored on the provider (last_test_*) and audited; a failed check is still a 200."""
        provider = self.get_object()
        checks = sso.identity_provider_test(provider=provider, actor=request.user)
        return Response({"ok": all(check.ok for check in checks), "message": provider.last_test_message,
                         "tested_at": provider.last_tested_at, "checks": [check.as_dict() for check in checks]})
