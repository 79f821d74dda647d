"""REST API for the catalog, connections and tools. Views parse, check access through a selector,
call one service and serialize. Credentials go in (POST /connections `values`) and never come out."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ANY_MEMBER
from accounts.roles import Access, Denied, access_for_request
from config.openapi import ApiSchema
from integrations import oauth, selectors, services, tools
from integrations.catalog import Category, Integration, Maturity
from integrations.models import Connection
from integrations.serializers import (
    AuthorizeResponseSerializer,
    AuthorizeSerializer,
    ConnectionCallSerializer,
    ConnectionCreateSerializer,
    ConnectionCredentialsSerializer,
    ConnectionSerializer,
    IntegrationSerializer,
    credential_kind_errors,
)
from integrations.serializers import (
    IntegrationToolSerializer as _IntegrationToolSerializer,
)

VIEW = "integrations.view_connection"


class ToolInfoSerializer(_IntegrationToolSerializer):
    input_schema = serializers.JSONField()
    timeout_seconds = serializers.FloatField()
    io_bound = serializers.BooleanField()
    idempotent = serializers.BooleanField()
    integration = serializers.CharField(allow_null=True, help_text="The integration whose connection it acts "
                                                                   "through; null for built-in tools.")


def _access(request) -> Access:
    access = access_for_request(request)
    if access is None:
        raise PermissionDenied("You are not a member of any organization.")
    return access


def _text_param(request, name: str) -> str:
    value = request.query_params.get(name, "")
    if "\x00" in value:  # Postgres can't compare text with U+0000 in it
        raise serializers.ValidationError({name: ["Null characters are not allowed."]})
    return value.strip()


def _choice_param(request, name: str, choices: list[str]) -> str:
    value = _text_param(request, name)
    if value and value not in choices:
        raise serializers.ValidationError({name: [f"One of: {', '.join(choices)}."]})
    return value


def api_error(exc: DjangoValidationError, *, nested: dict[str, str] | None = None) -> serializers.ValidationError:
    """A service's ValidationError as the API's 400. `nested` moves fields under a parent
    (credential fields under `values`)."""
    if not hasattr(exc, "error_dict"):
        return serializers.ValidationError({"non_field_errors": exc.messages})
    details: dict[str, Any] = {}
    for field, messages in exc.message_dict.items():
        parent = (nested or {}).get(field)
        if parent:
            details.setdefault(parent, {})[field] = messages
        else:
            details[field] = messages
    return serializers.ValidationError(details)


def credential_values_checked(integration: Integration | None, values: dict[str, Any]) -> dict[str, str]:
    """URL and email fields checked for their form (a 400 under `values`) before the service asks the
    provider; returns the `nested` for api_error that puts the service's field errors there too."""
    if integration is None:
        return {}
    malformed = credential_kind_errors(integration, values)
    if malformed:
        raise serializers.ValidationError({"values": malformed})
    return {f.name: "values" for f in integration.credential_fields} | {name: "values" for name in values}


def _tools_by_slug(organization) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for item in tools.for_organization(organization.id).values():
        if item.integration:
            grouped.setdefault(item.integration, []).append(item)
    return grouped


def _integration_or_404(access: Access, slug: str) -> Integration:
    found = selectors.integration_get(organization=access.organization, slug=slug)
    if found is None:
        raise NotFound("No such integration.")
    return found


def _connection_context(access: Access) -> dict[str, Any]:
    return {"integration_names": {i.slug: i.name for i in selectors.integration_list(organization=access.organization)}}


def callback_url(request) -> str:
    return request.build_absolute_uri(reverse("integrations:oauth-callback"))


def require_connect(access: Access, *, for_organization: bool) -> None:
    """Personal connections need add_connection; shared ones manage_org_connections."""
    if for_organization:
        access.require("integrations.manage_org_connections",
                       f"Permission denied: your role ({access.role_label}) can't create the organization's shared "
                       "connections; connect it for yourself instead.")
    else:
        access.require("integrations.add_connection")


# --------------------------------------------------------------------------- tools


@extend_schema(tags=["catalog"], responses=ToolInfoSerializer(many=True), summary="Tools agents can use")
class ToolListView(APIView):
    """Every tool an agent of your organization may pick: built-in, connector, OpenAPI and MCP tools."""

    schema = ApiSchema()
    role_perms = {"get": ANY_MEMBER}

    def get(self, request):
        organization = _access(request).organization
        return Response([tool.as_dict() for tool in tools.for_organization(organization.id).values()])


# --------------------------------------------------------------------------- catalog


INTEGRATION_PARAMS = [
    OpenApiParameter("category", str, enum=Category.values),
    OpenApiParameter("status", str, enum=Maturity.values),
    OpenApiParameter("search", str, description="Case-insensitive match on name or summary."),
]


@extend_schema(tags=["integrations"])
class IntegrationListView(APIView):
    schema = ApiSchema()
    role_perms = {"get": VIEW}

    @extend_schema(parameters=INTEGRATION_PARAMS, responses=IntegrationSerializer(many=True),
                   summary="The integration catalog")
    def get(self, request):
        access = _access(request)
        found = selectors.integration_list(
            organization=access.organization,
            category=_choice_param(request, "category", Category.values),
            status=_choice_param(request, "status", Maturity.values),
            search=_text_param(request, "search"),
        )
        context = {"tools": _tools_by_slug(access.organization)}
        return Response(IntegrationSerializer(found, many=True, context=context).data)


@extend_schema(tags=["integrations"])
class IntegrationDetailView(APIView):
    schema = ApiSchema()
    role_perms = {"get": VIEW}

    @extend_schema(responses=IntegrationSerializer, summary="One integration: scopes, tools, setup notes")
    def get(self, request, slug: str):
        access = _access(request)
        integration = _integration_or_404(access, slug)
        return Response(IntegrationSerializer(integration, context={"tools": _tools_by_slug(access.organization)}).data)


@extend_schema(tags=["integrations"])
class IntegrationAuthorizeView(APIView):
    """Start an OAuth connection: returns the provider's authorization URL. The person opens it in a
    browser signed in to Agentry; the provider sends them back to the callback, which stores the
    connection (single-use state, PKCE)."""

    schema = ApiSchema()
    role_perms = {"post": "integrations.add_connection"}

    @extend_schema(request=AuthorizeSerializer, responses={200: AuthorizeResponseSerializer},
                   summary="Start connecting with OAuth")
    def post(self, request, slug: str):
        access = _access(request)
        integration = _integration_or_404(access, slug)
        serializer = AuthorizeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        require_connect(access, for_organization=data["organization"])
        try:
            url = oauth.start(organization=access.organization, actor=request.user, integration=integration,
                              scopes=data["scopes"], redirect_uri=callback_url(request),
                              for_organization=data["organization"], name=data["name"])
        except DjangoValidationError as exc:
            raise api_error(exc) from None
        return Response({"authorize_url": url})


# --------------------------------------------------------------------------- connections


CONNECTION_PARAMS = [
    OpenApiParameter("status", str, enum=Connection.Status.values),
    OpenApiParameter("integration", str, description="Catalog slug."),
    OpenApiParameter("owner", str, enum=list(selectors.OWNER_FILTERS),
                     description="mine, organization (shared), or others (needs view_all_connections)."),
]


@extend_schema(tags=["connections"])
class ConnectionListView(generics.ListAPIView):
    """Your own connections and the organization's shared ones (everyone's with
    integrations.view_all_connections), newest first. Never includes credentials."""

    schema = ApiSchema()
    serializer_class = ConnectionSerializer
    role_perms = {"get": VIEW, "post": "integrations.add_connection"}

    def get_queryset(self):
        access = _access(self.request)
        return selectors.connection_list(
            viewer=access,
            status=_choice_param(self.request, "status", Connection.Status.values),
            integration=_text_param(self.request, "integration"),
            owner=_choice_param(self.request, "owner", list(selectors.OWNER_FILTERS)),
        )

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):
            return context
        return context | _connection_context(_access(self.request))

    @extend_schema(parameters=CONNECTION_PARAMS, summary="List connections")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=ConnectionCreateSerializer, responses={201: ConnectionSerializer},
                   summary="Connect with an API key (checked with the provider before it is saved)")
    def post(self, request, *args, **kwargs):
        access = _access(request)
        serializer = ConnectionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        require_connect(access, for_organization=data["organization"])
        integration = selectors.integration_get(organization=access.organization, slug=data["integration"])
        fields = credential_values_checked(integration, data["values"])
        try:
            connection = services.connection_create(
                organization=access.organization, actor=request.user, integration=data["integration"],
                values=data["values"], scopes=data["scopes"], name=data["name"], for_organization=data["organization"],
            )
        except DjangoValidationError as exc:
            raise api_error(exc, nested=fields) from None
        return Response(ConnectionSerializer(connection, context=_connection_context(access)).data,
                        status=status.HTTP_201_CREATED)


class _ConnectionView(APIView):
    schema = ApiSchema()

    def connection(self, request, connection_id) -> tuple[Access, Connection]:
        access = _access(request)
        found = selectors.connection_get(viewer=access, connection_id=connection_id)
        if found is None:
            raise NotFound("No such connection.")
        return access, found

    def respond(self, access: Access, connection: Connection) -> Response:
        return Response(ConnectionSerializer(connection, context=_connection_context(access)).data)

    def require_change(self, access: Access, connection: Connection, verb: str) -> None:
        if not selectors.connection_can_change(viewer=access, connection=connection):
            raise Denied(selectors.connection_act_refusal(viewer=access, connection=connection, verb=verb),
                         perm="integrations.manage_org_connections" if connection.owner_id is None
                         else "integrations.change_connection")


@extend_schema(tags=["connections"])
class ConnectionDetailView(_ConnectionView):
    role_perms = {"get": VIEW}

    @extend_schema(responses=ConnectionSerializer, summary="One connection (status, scopes, account; no credentials)")
    def get(self, request, connection_id):
        return self.respond(*self.connection(request, connection_id))


@extend_schema(tags=["connections"])
class ConnectionTestView(_ConnectionView):
    """Call the provider with the stored credentials; the answer records the outcome in
    last_check_ok / last_error / status. Personal connections: their owner (change_connection);
    organization connections: integrations.manage_org_connections."""

    role_perms = {"post": VIEW}

    @extend_schema(request=None, responses={200: ConnectionSerializer}, summary="Test a connection")
    def post(self, request, connection_id):
        access, connection = self.connection(request, connection_id)
        self.require_change(access, connection, "test")
        try:
            connection = services.connection_test(connection=connection, actor=request.user)
        except DjangoValidationError as exc:
            raise api_error(exc) from None
        return self.respond(access, connection)


@extend_schema(tags=["connections"])
class ConnectionCredentialsView(_ConnectionView):
    """Give an API-key connection new credentials (a rotated token, a changed password). They are
    checked with the provider first: refused ones change nothing. The connection keeps its id, call
    history and the agents bound to it, and turns active. Secret fields are required; a setting
    (non-secret field) left out keeps its value, one sent blank is cleared. OAuth connections use
    Reconnect; revoked ones can't be brought back. Personal connections: their owner
    (change_connection); organization connections: integrations.manage_org_connections."""

    role_perms = {"post": VIEW}

    @extend_schema(request=ConnectionCredentialsSerializer, responses={200: ConnectionSerializer},
                   summary="Replace an API-key connection's credentials")
    def post(self, request, connection_id):
        access, connection = self.connection(request, connection_id)
        self.require_change(access, connection, "give new credentials to")
        serializer = ConnectionCredentialsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data["values"]
        integration = selectors.integration_get(organization=access.organization, slug=connection.integration)
        refusal = services.credentials_replace_refusal(connection)
        if refusal:  # before the values: their form doesn't matter for a connection that can't take them
            raise serializers.ValidationError({"connection": [refusal]})
        fields = credential_values_checked(integration, values)
        try:
            connection = services.connection_replace_credentials(connection=connection, actor=request.user,
                                                                 values=values)
        except DjangoValidationError as exc:
            raise api_error(exc, nested=fields) from None
        return self.respond(access, connection)


@extend_schema(tags=["connections"])
class ConnectionRevokeView(_ConnectionView):
    """Delete the credentials and mark the connection revoked (kept, with its history, so agents
    that use it explain their refusals). Revoking a revoked connection changes nothing.
    Personal connections: their owner (delete_connection); organization connections:
    integrations.manage_org_connections."""

    role_perms = {"post": VIEW}

    @extend_schema(request=None, responses={200: ConnectionSerializer}, summary="Revoke a connection")
    def post(self, request, connection_id):
        access, connection = self.connection(request, connection_id)
        if not selectors.connection_can_delete(viewer=access, connection=connection):
            raise Denied(selectors.connection_act_refusal(viewer=access, connection=connection, verb="revoke"),
                         perm="integrations.manage_org_connections" if connection.owner_id is None
                         else "integrations.delete_connection")
        connection = services.connection_revoke(connection=connection, actor=request.user)
        return self.respond(access, connection)


@extend_schema(tags=["connections"])
class ConnectionCallsView(generics.ListAPIView):
    """The connection's call history, newest first: tool, outcome, HTTP status, latency, run."""

    schema = ApiSchema()
    serializer_class = ConnectionCallSerializer
    role_perms = {"get": VIEW}

    def get_queryset(self):
        access = _access(self.request)
        found = selectors.connection_get(viewer=access, connection_id=self.kwargs["connection_id"])
        if found is None:
            raise NotFound("No such connection.")
        return selectors.connection_calls(connection=found)

    @extend_schema(summary="A connection's recent calls")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
