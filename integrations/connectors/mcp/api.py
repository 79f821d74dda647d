"""REST API for an organization's MCP servers.

/api/mcp-servers                 GET list (view_mcpserver), POST register (add_mcpserver)
/api/mcp-servers/<id>            GET (view_mcpserver), PATCH (change_mcpserver), DELETE (delete_mcpserver)
/api/mcp-servers/<id>/refresh    POST: list the server's tools again (change_mcpserver)
A bearer token is write-only: accepted on register, stored as an organization connection, never returned.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from accounts.roles import access_for_request
from config.openapi import ApiSchema
from integrations.connectors.mcp import selectors, services
from integrations.connectors.mcp.tools import listed_tools
from integrations.models import McpServer

UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class McpToolSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The tool's name for agents (mcp_<slug>_<tool>).")
    mcp_name = serializers.CharField(help_text="The tool's name on the MCP server.")
    description = serializers.CharField()
    input_schema = serializers.JSONField()
    side_effect = serializers.CharField(help_text="read when the server annotates it readOnlyHint, else write.")
    scopes = serializers.ListField(child=serializers.CharField())
    schema_replaced = serializers.BooleanField(
        help_text="The server's inputSchema was not valid JSON Schema; agents see {\"type\": \"object\"}.")


class McpServerSerializer(serializers.ModelSerializer):
    token = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=4000, trim_whitespace=True,
        help_text="Write-only, register only. A bearer token for the server (auth api_key); it becomes the "
                  "organization's connection of this integration and is never returned.")
    auth_config = serializers.JSONField(required=False, help_text=(
        "OAuth 2.0 only: {\"authorize_url\", \"token_url\", \"client_id\", \"scopes\": [...]}. A public client "
        "(PKCE, no secret)."))
    integration = serializers.CharField(source="integration_slug", read_only=True,
                                        help_text="The catalog slug of this server's integration (mcp-<slug>).")
    tools = serializers.SerializerMethodField()

    class Meta:
        model = McpServer
        fields = ["id", "name", "slug", "transport", "url", "command", "auth", "auth_config", "token", "integration",
                  "tools", "refreshed_at", "last_error", "created_at", "updated_at"]
        read_only_fields = ["id", "refreshed_at", "last_error", "created_at", "updated_at"]
        extra_kwargs = {
            "slug": {"required": False, "validators": [],
                     "help_text": "Names its integration (mcp-<slug>) and tools; can't change. "
                                  "Default: from the name."},
            "transport": {"help_text": "http (streamable HTTP, by URL) or stdio (a local server the operator "
                                       "allows in AGENTRY_MCP_STDIO_SERVERS); can't change."},
            "url": {"help_text": "The streamable HTTP endpoint (http transport)."},
            "command": {"help_text": "The name of an allowed local server (stdio transport)."},
            "auth": {"help_text": "none, api_key (a bearer token) or oauth2. "
                                  "Default: api_key with a token, else none."},
        }

    @extend_schema_field(McpToolSerializer(many=True))
    def get_tools(self, server: McpServer) -> list[dict[str, Any]]:
        listed = []
        for item, tool in listed_tools(server):
            listed.append({"name": tool.name, "mcp_name": item.get("name"), "description": item.get("description", ""),
                           "input_schema": tool.input_schema, "side_effect": tool.side_effect.value,
                           "scopes": list(tool.scopes), "schema_replaced": bool(item.get("schema_replaced"))})
        return listed

    def validate(self, attrs: dict) -> dict:
        # The service checks everything (it knows the allow-list and the address guard); here only
        # what can't change once registered.
        instance = self.instance
        if instance is not None:
            errors = {}
            for field in ("slug", "transport"):
                if field in attrs and attrs[field] != getattr(instance, field):
                    errors[field] = [f"The {field} of a registered server can't change; register a new one."]
            if attrs.get("token"):
                errors["token"] = ["Change the token on the Connections page (integration "
                                   f"{instance.integration_slug})."]
            if errors:
                raise serializers.ValidationError(errors)
        return attrs


def _field_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


@extend_schema(tags=["integrations"])
class McpServerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                       mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """MCP servers registered by your organization's admins. Each becomes the integration
    "MCP: <name>" whose tools (listed from the server, refreshed on demand) agents can use like
    any connector's: read tools need the scope tools:read, the others tools:write."""

    schema = ApiSchema()
    serializer_class = McpServerSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_regex = UUID_PATTERN
    role_perms = {
        "list": "integrations.view_mcpserver",
        "retrieve": "integrations.view_mcpserver",
        "create": "integrations.add_mcpserver",
        "partial_update": "integrations.change_mcpserver",
        # PUT isn't offered (http_method_names); this rule lets it reach DRF's 405 instead of a 403.
        "update": "integrations.change_mcpserver",
        "destroy": "integrations.delete_mcpserver",
        "refresh": "integrations.change_mcpserver",
    }

    def _organization(self):
        access = access_for_request(self.request)
        if access is None:
            raise PermissionDenied("You are not a member of any organization.")
        return access.organization

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return McpServer.objects.none()
        return selectors.mcp_server_list(organization=self._organization())

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            server = services.mcp_server_create(organization=self._organization(), actor=request.user, **data)
        except DjangoValidationError as exc:
            raise _field_errors(exc) from None
        return Response(self.get_serializer(server).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        data = {key: value for key, value in serializer.validated_data.items()
                if key in ("name", "url", "command", "auth", "auth_config")}
        try:
            serializer.instance = services.mcp_server_update(server=serializer.instance, actor=self.request.user,
                                                             **data)
        except DjangoValidationError as exc:
            raise _field_errors(exc) from None

    def perform_destroy(self, instance):
        services.mcp_server_delete(server=instance, actor=self.request.user)

    @extend_schema(request=None, responses={200: McpServerSerializer},
                   summary="List the server's tools again")
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        """Connects to the server (with the organization's connection, else yours) and stores its
        tool list. A failure is a 200 too: the old list stays and `last_error` says why."""
        server = services.mcp_server_refresh(server=self.get_object(), actor=request.user)
        return Response(self.get_serializer(server).data)
