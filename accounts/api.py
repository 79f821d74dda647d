from __future__ import annotations

import uuid

from django.contrib.auth import authenticate
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed, NotFound, PermissionDenied
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import audit, quotas, selectors, services
from accounts.models import ApiToken, AuditLog, Membership, Team
from accounts.permissions import ANY_MEMBER, TokenScopes
from accounts.roles import Access, access_for_request
from accounts.services import AccountConflict, AccountRuleError
from config.errors import Conflict
from config.openapi import ApiSchema, ErrorEnvelopeSerializer

UUID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


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


def _api_error(exc: AccountRuleError, aliases: dict[str, str] | None = None) -> Exception:
    """A service rule as the API says it: 409 for a clash with what exists (the last Owner, a name
    taken, someone already a member), else 400 on the field at fault."""
    if isinstance(exc, AccountConflict):
        return Conflict(exc.message)
    field = (aliases or {}).get(exc.field or "", exc.field) or "non_field_errors"
    return serializers.ValidationError({field: [exc.message]})


CONFLICT_OWNER = OpenApiResponse(ErrorEnvelopeSerializer, description="The organization would be left without an "
                                                                      "Owner.")
CONFLICT_MEMBER = OpenApiResponse(ErrorEnvelopeSerializer, description="Already a member, or the email address belongs "
                                                                       "to an account (add it by username).")
CONFLICT_TEAM_NAME = OpenApiResponse(ErrorEnvelopeSerializer, description="Another team of the organization has that "
                                                                          "name.")


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
        from allauth.mfa.utils import is_mfa_enabled

        if is_mfa_enabled(user):
            # A password alone must not get around the second factor: keys come from the UI, after it.
            raise AuthenticationFailed("This account uses two-factor authentication: create an API key on the "
                                       "API keys page after signing in.")
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
    """Read-only: the audit log of your organization, newest first. Roles with accounts.view_auditlog
    (by default Owner, Admin and Auditor)."""

    schema = ApiSchema()
    serializer_class = AuditLogSerializer
    role_perms = {"get": "accounts.view_auditlog"}

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
        self.organization = _access(self.request).organization
        return audit.audit_list(organization=self.organization, **self._filters())

    @extend_schema(tags=["audit"], parameters=AUDIT_PARAMS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AuditLogExportView(AuditLogView):
    """The same entries as CSV (all matching rows, streamed). The export itself is audited."""

    role_perms = {"get": "accounts.export_auditlog"}

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
    """Your API keys, and the organization's service keys if your role manages them
    (accounts.manage_service_keys). The secret is returned once, when the key is created. DELETE revokes."""

    schema = ApiSchema()
    serializer_class = ApiKeySerializer
    lookup_value_regex = UUID_REGEX
    # Listing and revoking reach only your own keys (and service keys if you manage them): the
    # queryset is the rule, so any member may call them.
    role_perms = {"list": ANY_MEMBER, "retrieve": ANY_MEMBER, "create": "accounts.add_apitoken",
                  "destroy": ANY_MEMBER}

    def get_queryset(self):
        access = _access(self.request)
        return selectors.api_key_list(user=self.request.user, organization=access.organization,
                                      include_service=access.can("accounts.manage_service_keys"))

    @extend_schema(responses={201: inline_serializer("ApiKeyCreated", fields={
        "key": ApiKeySerializer(), "token": serializers.CharField(help_text="Shown once.")})})
    def create(self, request, *args, **kwargs):
        access = _access(request)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data.get("kind") == ApiToken.Kind.SERVICE:
            access.require("accounts.manage_service_keys")
        token, raw = services.api_token_create(
            user=request.user, organization=access.organization, name=data["name"],
            kind=data.get("kind", ApiToken.Kind.PERSONAL), scopes=data.get("scopes"), expires_at=data.get("expires_at"),
        )
        return Response({"key": ApiKeySerializer(token).data, "token": raw}, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.api_token_revoke(token=instance, actor=self.request.user)


class UsageView(APIView):
    """This month's usage against the organization's and your own quotas."""

    schema = ApiSchema()
    role_perms = {"get": "accounts.view_quota"}

    @extend_schema(tags=["usage"], responses=inline_serializer("UsageReport", fields={
        "month_start": serializers.DateTimeField(),
        "lines": serializers.ListField(child=serializers.DictField()),
    }))
    def get(self, request):
        organization = _access(request).organization
        lines = quotas.usage_lines(organization=organization, user=request.user)
        return Response({"month_start": quotas.month_start(), "lines": [line.as_dict() for line in lines]})


# --------------------------------------------------------------------------- who am I


class OrganizationRoleSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.SlugField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    role_label = serializers.CharField()
    current = serializers.BooleanField(help_text="The organization this request acts in.")


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    organizations = OrganizationRoleSerializer(many=True)
    organization = OrganizationRoleSerializer(allow_null=True, help_text="Where this request acts: the API key's "
                                              "organization, or the one chosen in the web UI.")
    role = serializers.ChoiceField(choices=Membership.Role.choices, allow_null=True)
    permissions = serializers.ListField(child=serializers.CharField(),
                                        help_text="What the role allows here, e.g. `agents.add_agent`.")


@extend_schema(tags=["auth"], responses=MeSerializer, summary="You, your organizations and what your role allows")
class MeView(APIView):
    """Answers for anyone signed in, also someone who belongs to no organization yet (organizations
    is then empty and role null), so RolePermission — which requires a membership — is left out."""

    schema = ApiSchema()
    permission_classes = [IsAuthenticated, TokenScopes]
    role_perms = {"get": ANY_MEMBER}

    def get(self, request):
        user = request.user
        access = access_for_request(request)
        current_id = access.organization.id if access is not None else None
        organizations = [
            {"id": m.organization.id, "name": m.organization.name, "slug": m.organization.slug, "role": m.role,
             "role_label": m.get_role_display(), "current": m.organization_id == current_id}
            for m in selectors.memberships_of(user=user)
        ]
        return Response(MeSerializer({
            "id": user.pk, "username": user.get_username(), "name": user.get_full_name(), "email": user.email,
            "organizations": organizations,
            "organization": next((o for o in organizations if o["current"]), None),
            "role": access.role if access is not None else None,
            "permissions": sorted(access.perms) if access is not None else [],
        }).data)


# --------------------------------------------------------------------------- members


class TeamRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    name = serializers.SerializerMethodField()
    email = serializers.CharField(source="user.email", read_only=True)
    teams = serializers.SerializerMethodField()
    invited = serializers.SerializerMethodField(help_text="Invited and hasn't set a password yet.")
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "name", "email", "role", "teams", "invited", "joined_at"]
        read_only_fields = fields

    def get_name(self, membership) -> str:
        return membership.user.get_full_name()

    @extend_schema_field(TeamRefSerializer(many=True))
    def get_teams(self, membership) -> list[dict]:
        teams = getattr(membership.user, "org_teams", None)
        if teams is None:
            teams = Team.objects.filter(organization_id=membership.organization_id,
                                        memberships__user_id=membership.user_id).order_by("name")
        return [{"id": str(t.id), "name": t.name} for t in teams]

    def get_invited(self, membership) -> bool:
        return not membership.user.has_usable_password()


class MemberCreateSerializer(serializers.Serializer):
    user = serializers.CharField(
        max_length=254,
        help_text="Username or email of someone with an account (added at once), or the email address of someone "
        "new (an account is created and they get an email to set their password).",
    )
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.VIEWER,
                                   help_text="Owner only if your role may grant it (accounts.manage_owners).")


class MemberRoleSerializer(serializers.Serializer):
    # Optional like every field of a PATCH: an empty body changes nothing.
    role = serializers.ChoiceField(choices=Membership.Role.choices, required=False)


MEMBER_LIST_PARAMS = [
    OpenApiParameter("role", str, enum=Membership.Role.values, description="Only members with this role."),
    OpenApiParameter("team", OpenApiTypes.UUID, description="Only members of this team."),
    OpenApiParameter("search", str, description="Case-insensitive match on username, name or email."),
]


@extend_schema(tags=["members"])
class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The people of your organization and their roles. Only holders of accounts.manage_owners grant,
    take away or change the Owner role; an organization always keeps one Owner (409); nobody changes
    their own role or removes themselves."""

    schema = ApiSchema()
    serializer_class = MemberSerializer
    lookup_value_regex = "[0-9]{1,18}"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    role_perms = {
        "list": "accounts.view_membership", "retrieve": "accounts.view_membership",
        "create": "accounts.add_membership", "partial_update": "accounts.change_membership",
        "destroy": "accounts.delete_membership",
    }

    def get_queryset(self):
        organization = _access(self.request).organization
        if self.action != "list":
            return selectors.membership_list(organization=organization)
        role = _text_param(self.request, "role")
        if role and role not in Membership.Role.values:
            raise serializers.ValidationError({"role": [f"One of: {', '.join(Membership.Role.values)}."]})
        team = _text_param(self.request, "team")
        if team:
            try:
                team = uuid.UUID(team)
            except ValueError:
                raise serializers.ValidationError({"team": ["Must be a team id (UUID)."]}) from None
        return selectors.membership_list(organization=organization, role=role, team_id=team or None,
                                         search=_text_param(self.request, "search"))

    def get_object(self) -> Membership:
        membership = selectors.membership_get(organization=_access(self.request).organization,
                                              membership_id=self.kwargs["pk"])
        if membership is None:
            raise NotFound("No such member in this organization.")
        return membership

    @extend_schema(parameters=MEMBER_LIST_PARAMS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=MemberCreateSerializer, responses={201: MemberSerializer, 409: CONFLICT_MEMBER},
                   summary="Add someone with an account, or invite someone new by email")
    def create(self, request):
        access = _access(request)
        serializer = MemberCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        login, role = serializer.validated_data["user"].strip(), serializer.validated_data["role"]
        user = selectors.user_find(login=login)
        try:
            if user is not None:
                membership = services.member_add(organization=access.organization, user=user, role=role,
                                                 actor=request.user)
            elif "@" in login:
                membership = services.member_invite(organization=access.organization, email=login, role=role,
                                                    actor=request.user)
            else:
                raise AccountRuleError("Nobody has that username or email. To invite someone new, give their email "
                                       "address.", field="user")
        except AccountRuleError as exc:
            raise _api_error(exc, {"email": "user", "login": "user"}) from None
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MemberRoleSerializer, responses={200: MemberSerializer, 409: CONFLICT_OWNER},
                   summary="Change a member's role")
    def partial_update(self, request, pk=None):
        membership = self.get_object()
        serializer = MemberRoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "role" in serializer.validated_data:
            try:
                services.membership_role_change(membership=membership, role=serializer.validated_data["role"],
                                                actor=request.user)
            except AccountRuleError as exc:
                raise _api_error(exc) from None
        return Response(MemberSerializer(membership).data)

    @extend_schema(responses={204: None, 409: CONFLICT_OWNER},
                   summary="Remove from the organization (their teams and API keys here go too)")
    def destroy(self, request, pk=None):
        membership = self.get_object()
        try:
            services.membership_remove(membership=membership, actor=request.user)
        except AccountRuleError as exc:
            raise _api_error(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------- teams


class TeamField(serializers.PrimaryKeyRelatedField):
    def run_validation(self, data=serializers.empty):
        # DRF reads "" as null for relations; the documented values are a team id or null.
        if data == "":
            raise serializers.ValidationError("Must be a team id (UUID) or null.")
        return super().run_validation(data)


class TeamSerializer(serializers.ModelSerializer):
    parent = TeamField(
        queryset=Team.objects.none(), allow_null=True, required=False, pk_field=serializers.UUIDField(),
        help_text="The department (or larger team) this team belongs to; null for the top level.",
        error_messages={"does_not_exist": "No such team in this organization."},
    )
    member_count = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["id", "name", "description", "parent", "member_count", "created_at"]
        read_only_fields = ["id", "member_count", "created_at"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        organization = self.context.get("organization")
        if organization is not None:
            self.fields["parent"].queryset = Team.objects.filter(organization=organization)

    def get_member_count(self, team) -> int:
        count = getattr(team, "member_count", None)
        return count if count is not None else team.memberships.count()


class TeamMemberAddSerializer(serializers.Serializer):
    member = serializers.IntegerField(min_value=1, max_value=2**63 - 1,
                                      help_text="A member id of the organization (GET /api/members).")


MEMBERSHIP_ID = OpenApiParameter("membership_id", int, OpenApiParameter.PATH,
                                 description="A member id of the organization (GET /api/members).")


@extend_schema(tags=["teams"])
@extend_schema_view(create=extend_schema(responses={201: TeamSerializer, 409: CONFLICT_TEAM_NAME}))
class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Teams of your organization. A department is a team of teams (`parent`); sharing an agent with a
    team reaches the people in it and in the teams below it. A team can't sit inside itself or one of
    its own sub-teams. Deleting a team moves its sub-teams up to its parent."""

    schema = ApiSchema()
    serializer_class = TeamSerializer
    lookup_value_regex = UUID_REGEX
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    role_perms = {
        "list": "accounts.view_team", "retrieve": "accounts.view_team", "create": "accounts.add_team",
        "partial_update": "accounts.change_team", "destroy": "accounts.delete_team",
        "members:get": "accounts.view_team", "members:post": "accounts.change_team",
        "member_remove:delete": "accounts.change_team",
    }

    def get_queryset(self):
        return selectors.team_list(organization=_access(self.request).organization)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        access = access_for_request(self.request)
        context["organization"] = access.organization if access is not None else None
        return context

    def get_object(self) -> Team:
        team = self.get_queryset().filter(id=self.kwargs["pk"]).select_related("organization").first()
        if team is None:
            raise NotFound("No such team in this organization.")
        return team

    def perform_create(self, serializer):
        try:
            serializer.instance = services.team_create(organization=_access(self.request).organization,
                                                       actor=self.request.user, **serializer.validated_data)
        except AccountRuleError as exc:
            raise _api_error(exc) from None

    @extend_schema(request=TeamSerializer, responses={200: TeamSerializer, 409: CONFLICT_TEAM_NAME},
                   summary="Change a team")
    def partial_update(self, request, pk=None):
        team = self.get_object()
        serializer = self.get_serializer(team, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            services.team_update(team=team, actor=request.user, **serializer.validated_data)
        except AccountRuleError as exc:
            raise _api_error(exc) from None
        return Response(self.get_serializer(team).data)

    def perform_destroy(self, instance):
        services.team_delete(team=instance, actor=self.request.user)

    @extend_schema(methods=["GET"], responses=MemberSerializer(many=True), summary="The team's members")
    @extend_schema(methods=["POST"], request=TeamMemberAddSerializer,
                   responses={200: MemberSerializer, 201: MemberSerializer},
                   summary="Add a member of the organization to the team (200 if already in it)")
    @action(detail=True, methods=["get", "post"], url_path="members", pagination_class=None)
    def members(self, request, pk=None):
        team = self.get_object()
        if request.method == "GET":
            return Response(MemberSerializer(selectors.team_members(team=team), many=True).data)
        serializer = TeamMemberAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = selectors.membership_get(organization=team.organization,
                                              membership_id=serializer.validated_data["member"])
        if membership is None:
            raise serializers.ValidationError({"member": ["No such member in this organization."]})
        already = team.memberships.filter(user_id=membership.user_id).exists()
        try:
            services.team_member_add(team=team, user=membership.user, actor=request.user)
        except AccountRuleError as exc:
            raise _api_error(exc) from None
        return Response(MemberSerializer(membership).data,
                        status=status.HTTP_200_OK if already else status.HTTP_201_CREATED)

    @extend_schema(parameters=[MEMBERSHIP_ID], request=None, responses={204: None},
                   summary="Take a member out of the team")
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<membership_id>[0-9]{1,18})",
            pagination_class=None)
    def member_remove(self, request, pk=None, membership_id=None):
        team = self.get_object()
        membership = selectors.membership_get(organization=team.organization, membership_id=membership_id)
        if membership is None or not services.team_member_remove(team=team, user=membership.user,
                                                                 actor=request.user):
            raise NotFound("That member is not in this team.")
        return Response(status=status.HTTP_204_NO_CONTENT)
