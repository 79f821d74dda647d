"""API shapes for the catalog and connections. No serializer here has a field for `secret`:
credentials go in through ConnectionCreateSerializer.values and never come out."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.serializers import reject_null_characters
from integrations.catalog import AuthType, Category, Integration, Maturity
from integrations.models import Connection, ConnectionCall
from integrations.tools import SideEffect


class ScopeSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(help_text="What an agent holding this scope can do, in plain words.")
    write = serializers.BooleanField(help_text="Whether it allows changing things at the provider.")


class IntegrationToolSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    side_effect = serializers.ChoiceField(choices=SideEffect.choices)
    scopes = serializers.ListField(child=serializers.CharField(), help_text="Scopes a call needs.")


class CredentialFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    secret = serializers.BooleanField(help_text="Stored encrypted and never shown again.")
    required = serializers.BooleanField()
    help = serializers.CharField(allow_blank=True)
    kind = serializers.CharField(help_text="text, url, email, integer or password.")


class IntegrationSerializer(serializers.Serializer):
    """An Integration (a dataclass from the catalog), with its tools from the registry passed in
    the context as `tools` (slug -> list of Tool)."""

    slug = serializers.CharField()
    name = serializers.CharField()
    category = serializers.ChoiceField(choices=Category.choices)
    status = serializers.ChoiceField(choices=Maturity.choices)
    summary = serializers.CharField()
    auth_types = serializers.ListField(child=serializers.ChoiceField(choices=AuthType.choices))
    scopes = serializers.SerializerMethodField()
    tools = serializers.SerializerMethodField()
    setup_notes = serializers.CharField(allow_blank=True)
    oauth_ready = serializers.SerializerMethodField()
    credential_fields = serializers.SerializerMethodField()
    custom = serializers.SerializerMethodField()

    @extend_schema_field(ScopeSerializer(many=True))
    def get_scopes(self, integration: Integration) -> list[dict[str, Any]]:
        return [{"name": s.name, "description": s.description, "write": s.write} for s in integration.scopes]

    @extend_schema_field(IntegrationToolSerializer(many=True))
    def get_tools(self, integration: Integration) -> list[dict[str, Any]]:
        tools = (self.context.get("tools") or {}).get(integration.slug, [])
        return [{"name": t.name, "description": t.description, "side_effect": t.side_effect.value,
                 "scopes": list(t.scopes)} for t in tools]

    @extend_schema_field(serializers.BooleanField(help_text="OAuth is offered and its app is configured."))
    def get_oauth_ready(self, integration: Integration) -> bool:
        return integration.oauth_ready()

    @extend_schema_field(CredentialFieldSerializer(many=True))
    def get_credential_fields(self, integration: Integration) -> list[dict[str, Any]]:
        return [f.as_dict() for f in integration.credential_fields]

    @extend_schema_field(serializers.BooleanField(help_text="The organization's own (an OpenAPI document or MCP "
                                                            "server it registered)."))
    def get_custom(self, integration: Integration) -> bool:
        return integration.organization_id is not None


class ConnectionSerializer(serializers.ModelSerializer):
    owner = serializers.SerializerMethodField()
    organization_connection = serializers.SerializerMethodField()
    integration_name = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    # Declared so the schema's enum and blank values match what is returned.
    status = serializers.ChoiceField(choices=Connection.Status.choices, read_only=True)
    auth_type = serializers.ChoiceField(choices=AuthType.choices, read_only=True)

    class Meta:
        model = Connection
        # Never `secret`: credentials don't leave the server.
        fields = ["id", "integration", "integration_name", "name", "owner", "organization_connection", "auth_type",
                  "status", "scopes", "account", "options", "expires_at", "last_used_at", "last_checked_at",
                  "last_check_ok", "last_error", "created_by", "created_at", "revoked_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="Username; null for an organization "
                                                                          "connection."))
    def get_owner(self, connection: Connection) -> str | None:
        return connection.owner.get_username() if connection.owner_id else None

    @extend_schema_field(serializers.BooleanField())
    def get_organization_connection(self, connection: Connection) -> bool:
        return connection.owner_id is None

    @extend_schema_field(serializers.CharField())
    def get_integration_name(self, connection: Connection) -> str:
        names = self.context.get("integration_names") or {}
        return names.get(connection.integration, connection.integration)


class ConnectionCreateSerializer(serializers.Serializer):
    integration = serializers.CharField(max_length=100, help_text="Catalog slug, e.g. jira.")
    name = serializers.CharField(max_length=120, required=False, allow_blank=True, default="",
                                 help_text="Default: the integration and the account it belongs to.")
    values = serializers.DictField(
        child=serializers.JSONField(), default=dict,
        help_text="The integration's credential_fields by name (token, email, base URL, ...).",
    )
    scopes = serializers.ListField(child=serializers.CharField(max_length=100), required=False, allow_null=True,
                                   default=None, max_length=100, help_text="Default: every scope it offers.")
    organization = serializers.BooleanField(required=False, default=False,
                                            help_text="A shared organization connection (admins) instead of "
                                                      "your own.")

    def validate_values(self, value: dict) -> dict:
        reject_null_characters(value)
        for key, item in value.items():
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                raise serializers.ValidationError({key: ["Must be a string (or a whole number)."]})
        return value


class ConnectionCredentialsSerializer(serializers.Serializer):
    values = serializers.DictField(
        child=serializers.JSONField(),
        help_text="The integration's credential_fields by name. Secret fields are required (the old secret is "
                  "replaced whole); a non-secret one left out keeps its current value, one sent blank is cleared.",
    )

    validate_values = ConnectionCreateSerializer.validate_values


def credential_kind_errors(integration: Integration, values: dict[str, Any]) -> dict[str, list[str]]:
    """URL and email fields checked for their form before anything is sent to the provider."""
    from django.core.exceptions import ValidationError
    from django.core.validators import EmailValidator, URLValidator

    validators = {"url": (URLValidator(schemes=["http", "https"]), "Enter a valid URL (https://…)."),
                  "email": (EmailValidator(), "Enter a valid email address.")}
    errors: dict[str, list[str]] = {}
    for item in integration.credential_fields:
        value = values.get(item.name)
        if item.kind not in validators or not isinstance(value, str) or not value.strip():
            continue
        validator, message = validators[item.kind]
        try:
            validator(value.strip())
        except ValidationError:
            errors[item.name] = [message]
    return errors


class AuthorizeSerializer(serializers.Serializer):
    scopes = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=100,
                                   help_text="Agentry's scope names (see the integration's scopes).")
    organization = serializers.BooleanField(required=False, default=False,
                                            help_text="A shared organization connection (admins).")
    name = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")


class AuthorizeResponseSerializer(serializers.Serializer):
    authorize_url = serializers.URLField(help_text="Send the person here; the provider redirects back to "
                                                   "/integrations/oauth/callback, which stores the connection.")


class ConnectionCallSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConnectionCall
        fields = ["id", "tool", "outcome", "status_code", "duration_ms", "detail", "run", "created_at"]
        read_only_fields = fields
