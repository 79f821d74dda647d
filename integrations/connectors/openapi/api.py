"""REST API for registered HTTP APIs: GET/POST /api/http-apis, GET/PATCH/DELETE /api/http-apis/<id>.
Views parse, scope through the selectors, call one service and serialize."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from agents.api import OrganizationScoped
from integrations.connectors.openapi import selectors, services, tools
from integrations.models import HttpApi
from integrations.tools import SideEffect

UUID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DOCUMENT_SCHEMA = {
    "oneOf": [
        {"type": "object", "additionalProperties": True, "description": "The OpenAPI 3.0/3.1 document."},
        {"type": "string", "description": "The document as JSON or YAML text."},
    ],
}
AUTH_CONFIG_HELP = (
    "api_key: {\"in\": \"header\"|\"query\", \"name\": \"X-API-Key\", \"prefix\": \"Bearer \" (optional)}; "
    "oauth2: {\"authorize_url\", \"token_url\", \"client_id\", \"scopes\": [provider scope names]}; both may name a "
    "`check_operation` (a GET operation without arguments) that checks a new connection. Omitted: taken from the "
    "document's security scheme when it has one for this kind of auth."
)


@extend_schema_field(DOCUMENT_SCHEMA)
class DocumentField(serializers.JSONField):
    pass


class HttpApiOperationSerializer(serializers.Serializer):
    operation_id = serializers.CharField(source="operation.operation_id")
    method = serializers.CharField(source="operation.method")
    path = serializers.CharField(source="operation.path")
    summary = serializers.CharField(source="operation.summary")
    tool = serializers.CharField(help_text="The tool this operation becomes when enabled.")
    side_effect = serializers.ChoiceField(choices=SideEffect.choices)
    scopes = serializers.ListField(child=serializers.CharField(), help_text="Scopes a call needs.")
    enabled = serializers.BooleanField()
    supported = serializers.BooleanField(source="operation.supported")
    problem = serializers.CharField(source="operation.problem", help_text="Why it can't be offered; empty if it can.")
    deprecated = serializers.BooleanField(source="operation.deprecated")


class HttpApiSerializer(serializers.ModelSerializer):
    integration = serializers.CharField(source="integration_slug", read_only=True,
                                        help_text="The catalog integration: http-<slug>.")
    has_client_secret = serializers.SerializerMethodField()
    tools = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()
    auth_config = serializers.DictField(help_text=AUTH_CONFIG_HELP)

    class Meta:
        model = HttpApi
        fields = ["id", "slug", "integration", "name", "description", "base_url", "auth", "auth_config",
                  "has_client_secret", "operations", "tools", "created_by", "created_at", "updated_at"]
        read_only_fields = fields

    def get_has_client_secret(self, api: HttpApi) -> bool:
        return bool(api.secret)

    def get_tools(self, api: HttpApi) -> list[str]:
        return [tools.tool_name(api.slug, operation_id) for operation_id in api.operations]

    def get_created_by(self, api: HttpApi) -> str | None:
        return api.created_by.get_username() if api.created_by else None


class HttpApiDocumentSerializer(serializers.Serializer):
    openapi = serializers.CharField()
    title = serializers.CharField()
    version = serializers.CharField()
    servers = serializers.ListField(child=serializers.CharField())


class HttpApiDetailSerializer(HttpApiSerializer):
    document = serializers.SerializerMethodField()
    available_operations = serializers.SerializerMethodField()
    spec = DocumentField(read_only=True)

    class Meta(HttpApiSerializer.Meta):
        fields = [*HttpApiSerializer.Meta.fields, "document", "available_operations", "spec"]
        read_only_fields = fields

    def _document(self, api: HttpApi):
        cache = self.context.setdefault("documents", {})
        if api.id not in cache:
            cache[api.id] = selectors.http_api_document(api)
        return cache[api.id]

    @extend_schema_field(HttpApiDocumentSerializer(allow_null=True))
    def get_document(self, api: HttpApi) -> dict[str, Any] | None:
        document = self._document(api)
        if document is None:
            return None
        return {"openapi": document.openapi, "title": document.title, "version": document.version,
                "servers": list(document.servers)}

    @extend_schema_field(HttpApiOperationSerializer(many=True))
    def get_available_operations(self, api: HttpApi) -> list[dict[str, Any]]:
        rows = selectors.http_api_operations(api, self._document(api))
        return HttpApiOperationSerializer(rows, many=True).data


class HttpApiWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, max_length=services.MAX_DESCRIPTION)
    base_url = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                     help_text="Where calls go. Omitted: the document's first absolute server URL.")
    spec = DocumentField(help_text="The OpenAPI 3.0 or 3.1 document: the object, or its JSON or YAML text.")
    operations = serializers.ListField(child=serializers.CharField(max_length=100), required=False,
                                       max_length=1000, help_text="operationIds offered as tools.")
    auth = serializers.ChoiceField(choices=HttpApi.Auth.choices, required=False)
    auth_config = serializers.DictField(required=False, help_text=AUTH_CONFIG_HELP)
    client_secret = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=1000,
                                          trim_whitespace=False,
                                          help_text="OAuth 2.0 only. Write-only; blank on update keeps the stored one.")


class HttpApiCreateSerializer(HttpApiWriteSerializer):
    slug = serializers.CharField(required=False, allow_blank=True, max_length=services.SLUG_MAX,
                                 help_text="Lowercase letters, digits and hyphens; part of tool names; can't change. "
                                           "Omitted: made from the name.")


class HttpApiUpdateSerializer(HttpApiWriteSerializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for item in self.fields.values():
            item.required = False

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, dict) and "slug" in self.initial_data:
            raise serializers.ValidationError({"slug": ["The slug can't change: connections and agents refer to "
                                                        "the integration by it. Register the API again instead."]})
        return attrs


def _call(service, **kwargs):
    try:
        return service(**kwargs)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None


@extend_schema(tags=["integrations"])
class HttpApiViewSet(
    OrganizationScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """HTTP APIs an organization registered by their OpenAPI document. Each is the catalog
    integration `http-<slug>`; its enabled operations are tools named `http_<slug>_<operationId>`
    (read for GET/HEAD, write otherwise). Credentials are connections, never part of the API; the
    OAuth client secret is write-only. Deleting an API deletes the connections to it."""

    serializer_class = HttpApiSerializer
    role_perms = {
        "list": "integrations.view_httpapi", "retrieve": "integrations.view_httpapi",
        "create": "integrations.add_httpapi", "partial_update": "integrations.change_httpapi",
        "destroy": "integrations.delete_httpapi",
    }
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_regex = UUID_REGEX

    def get_queryset(self):
        return selectors.http_api_list(organization=self.organization)

    def get_object(self) -> HttpApi:
        api = selectors.http_api_get(organization=self.organization, api_id=self.kwargs["pk"])
        if api is None:
            raise NotFound("HTTP API not found.")
        return api

    def get_serializer_class(self):
        return {"create": HttpApiCreateSerializer, "partial_update": HttpApiUpdateSerializer,
                "retrieve": HttpApiDetailSerializer}.get(self.action, HttpApiSerializer)

    def _detail(self, api: HttpApi, code: int = status.HTTP_200_OK) -> Response:
        return Response(HttpApiDetailSerializer(api, context=self.get_serializer_context()).data, status=code)

    @extend_schema(request=HttpApiCreateSerializer, responses={201: HttpApiDetailSerializer},
                   summary="Register an API from its OpenAPI document")
    def create(self, request, *args, **kwargs):
        serializer = HttpApiCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api = _call(services.http_api_create, organization=self.organization, actor=request.user,
                    **serializer.validated_data)
        return self._detail(api, status.HTTP_201_CREATED)

    @extend_schema(request=HttpApiUpdateSerializer, responses={200: HttpApiDetailSerializer},
                   summary="Change an API: its document, enabled operations, base URL or auth")
    def partial_update(self, request, *args, **kwargs):
        api = self.get_object()
        serializer = HttpApiUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api = _call(services.http_api_update, http_api=api, actor=request.user, **serializer.validated_data)
        return self._detail(api)

    def perform_destroy(self, instance: HttpApi) -> None:
        services.http_api_delete(http_api=instance, actor=self.request.user)
