from __future__ import annotations

from django.contrib.auth import authenticate
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import audit, quotas, selectors, services
from accounts.models import ApiToken, AuditLog, Membership
from config.openapi import ApiSchema, ErrorEnvelopeSerializer


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})
    organization = serializers.SlugField(required=False, help_text="Organization slug; default: your first.")
    name = serializers.CharField(required=False, max_length=100, default="API token")


@extend_schema(
    tags=["auth"],
    request=TokenRequestSerializer,
    responses={
        201: inline_serializer(
            "TokenCreated",
            fields={
                "id": serializers.UUIDField(),
                "token": serializers.CharField(help_text="Shown once; send as `Authorization: Bearer <token>`."),
                "name": serializers.CharField(),
                "organization": serializers.SlugField(),
                "created_at": serializers.DateTimeField(),
            },
        ),
        401: OpenApiResponse(ErrorEnvelopeSerializer, description="Wrong username or password, or not a member "
                                                                  "of that organization."),
    },
    auth=[],
    summary="Exchange a username and password for a personal API token",
)
class TokenView(APIView):
    schema = ApiSchema()
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get_authenticate_header(self, request) -> str:
        # Wrong credentials are a 401, which needs a challenge header.
        return 'Bearer realm="api"'

    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None:
            raise AuthenticationFailed("Invalid username or password.")
        membership = selectors.membership_for(user=user)
        if "organization" in data:
            membership = selectors.membership_for_slug(user=user, slug=data["organization"])
        if membership is None:
            raise AuthenticationFailed("You are not a member of that organization.")
        token, raw = services.api_token_create(user=user, organization=membership.organization, name=data["name"])
        return Response(
            {
                "id": token.id,
                "token": raw,
                "name": token.name,
                "organization": membership.organization.slug,
                "created_at": token.created_at,
            },
            status=status.HTTP_201_CREATED,
        )


class AuditLogSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = AuditLog
        fields = ["id", "at", "actor", "action", "target_type", "target_id", "target_label", "ip", "user_agent",
                  "request_id", "diff", "data"]
        read_only_fields = fields


AUDIT_PARAMS = [
    OpenApiParameter("actor", str, description="Username of the actor."),
    OpenApiParameter("action", str, description="Action or action prefix, e.g. `run.` or `agent.update`."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="Entries at or after this time (ISO 8601)."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Entries before this time."),
    OpenApiParameter("target", str, description="Id of the target object."),
]


class AuditLogView(generics.ListAPIView):
    """Read-only: the audit log of your organization, newest first. Owners and admins only."""

    schema = ApiSchema()
    serializer_class = AuditLogSerializer

    def _filters(self) -> dict:
        params = self.request.query_params
        parsed = {}
        for name in ("since", "until"):
            raw = params.get(name)
            if raw:
                value = parse_datetime(raw)
                if value is None:
                    raise serializers.ValidationError({name: ["Use an ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z."]})
                parsed[name] = value
        for name in ("actor", "action", "target"):
            if "\x00" in params.get(name, ""):  # Postgres can't compare text with U+0000 in it
                raise serializers.ValidationError({name: ["Null characters are not allowed."]})
        return {"actor": params.get("actor", ""), "action": params.get("action", ""),
                "target_id": params.get("target", ""), **parsed}

    def get_queryset(self):
        membership = selectors.membership_for_request(self.request)
        if membership is None or membership.role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
            raise PermissionDenied("Only owners and admins can read the audit log.")
        self.organization = membership.organization
        return audit.audit_list(organization=membership.organization, **self._filters())

    @extend_schema(tags=["audit"], parameters=AUDIT_PARAMS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AuditLogExportView(AuditLogView):
    """The same entries as CSV (all matching rows, streamed). The export itself is audited."""

    @extend_schema(tags=["audit"], parameters=AUDIT_PARAMS, responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request, *args, **kwargs):
        entries = self.get_queryset()
        audit.audit_record(action="audit.export", actor=request.user, organization=self.organization,
                           data={"filters": {k: str(v) for k, v in self._filters().items() if v}})
        response = StreamingHttpResponse(audit.audit_csv(entries.iterator(chunk_size=2000)), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="agentry-audit.csv"'
        return response


class ApiKeySerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiToken.Scope.choices), min_length=1,
                                   required=False)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "kind", "scopes", "hint", "user", "expires_at", "created_at", "last_used_at",
                  "revoked_at"]
        read_only_fields = ["id", "hint", "user", "created_at", "last_used_at", "revoked_at"]
        extra_kwargs = {"name": {"required": True, "allow_blank": False}}

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


@extend_schema(tags=["auth"])
class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Your API keys, and the organization's service keys if you are an owner or admin.
    The secret is returned once, when the key is created. DELETE revokes."""

    schema = ApiSchema()
    serializer_class = ApiKeySerializer
    lookup_value_regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def _membership(self) -> Membership:
        membership = selectors.membership_for_request(self.request)
        if membership is None:
            raise PermissionDenied("You are not a member of any organization.")
        return membership

    def _is_admin(self, membership: Membership) -> bool:
        return membership.role in (Membership.Role.OWNER, Membership.Role.ADMIN)

    def get_queryset(self):
        membership = self._membership()
        return selectors.api_key_list(user=self.request.user, organization=membership.organization,
                                      include_service=self._is_admin(membership))

    @extend_schema(responses={201: inline_serializer("ApiKeyCreated", fields={
        "key": ApiKeySerializer(), "token": serializers.CharField(help_text="Shown once.")})})
    def create(self, request, *args, **kwargs):
        membership = self._membership()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data.get("kind") == ApiToken.Kind.SERVICE and not self._is_admin(membership):
            raise PermissionDenied("Only owners and admins can create service keys.")
        token, raw = services.api_token_create(
            user=request.user, organization=membership.organization, name=data["name"],
            kind=data.get("kind", ApiToken.Kind.PERSONAL), scopes=data.get("scopes"), expires_at=data.get("expires_at"),
        )
        return Response({"key": ApiKeySerializer(token).data, "token": raw}, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.api_token_revoke(token=instance, actor=self.request.user)


class UsageView(APIView):
    """This month's usage against the organization's and your own quotas."""

    schema = ApiSchema()

    @extend_schema(tags=["usage"], responses=inline_serializer("UsageReport", fields={
        "month_start": serializers.DateTimeField(),
        "lines": serializers.ListField(child=serializers.DictField()),
    }))
    def get(self, request):
        membership = selectors.membership_for_request(request)
        if membership is None:
            raise PermissionDenied("You are not a member of any organization.")
        lines = quotas.usage_lines(organization=membership.organization, user=request.user)
        return Response({"month_start": quotas.month_start(), "lines": [line.as_dict() for line in lines]})
