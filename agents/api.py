"""REST API for agents, runs and their events. Views parse, scope through a selector, call one
service and serialize."""

from __future__ import annotations

import json
import uuid

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import quotas
from accounts.models import Team
from accounts.permissions import ANY_MEMBER
from accounts.roles import Access, Denied, access_for_request
from agents import approvals, selectors, services, streams
from agents.llm import available_models
from agents.models import Approval, Run
from agents.serializers import (
    AgentSerializer,
    AgentShareSerializer,
    ApprovalDecisionSerializer,
    ApprovalSerializer,
    ModelInfoSerializer,
    RunCreateSerializer,
    RunEventSerializer,
    RunSerializer,
    UncertainWriteDecisionSerializer,
)
from config.errors import Conflict
from config.openapi import ApiSchema

# Only well-formed UUIDs reach a view: a 36-character string of hex digits and dashes that isn't
# one would fail in the database lookup with a 500.
UUID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class QuotaExceededError(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "quota_exceeded"

    def __init__(self, message: str, usage: list[dict]) -> None:
        super().__init__(message)
        self.message = message
        self.details = {"usage": json.loads(json.dumps(usage, default=str))}


def _int_param(request, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise serializers.ValidationError({name: [f"Must be an integer, got {raw!r}."]}) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise serializers.ValidationError({name: [f"Must be {bound}."]})
    return value


def _text_param(request, name: str) -> str:
    value = request.query_params.get(name, "")
    if "\x00" in value:  # Postgres can't compare text with U+0000 in it
        raise serializers.ValidationError({name: ["Null characters are not allowed."]})
    return value


def _ordering_param(request, allowed: set[str]) -> str:
    ordering = request.query_params.get("ordering") or "-created_at"
    if ordering not in allowed:
        raise serializers.ValidationError({"ordering": [f"One of: {', '.join(sorted(allowed))}."]})
    return ordering


class OrganizationScoped:
    """Resolves the organization the caller acts in and their access there; every query goes
    through them. Role checks per action are declared in `role_perms` (accounts.permissions)."""

    schema = ApiSchema()

    @property
    def access(self) -> Access:
        access = access_for_request(self.request)
        if access is None:
            raise PermissionDenied("You are not a member of any organization.")
        return access

    @property
    def organization(self):
        return self.access.organization


AGENT_LIST_PARAMS = [
    OpenApiParameter("search", str, description="Case-insensitive match on name or description."),
    OpenApiParameter("model", str, description="Only agents using this model id."),
    OpenApiParameter("tool", str, description="Only agents that have this tool."),
    OpenApiParameter("ordering", str, enum=sorted(selectors.AGENT_ORDERINGS)),
]


@extend_schema(tags=["agents"])
class AgentViewSet(
    OrganizationScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Agents: a system prompt, a model, the tools it may call and its limits."""

    serializer_class = AgentSerializer
    run_scope_actions = ("runs",)  # POST /agents/<id>/runs needs the run scope, not manage
    role_perms = {
        "list": "agents.view_agent", "retrieve": "agents.view_agent", "create": "agents.add_agent",
        "partial_update": "agents.change_agent", "update": "agents.change_agent", "destroy": "agents.delete_agent",
        "runs:get": "agents.view_run", "runs:post": "agents.run_agent",
        "shares:get": "agents.view_agent", "shares:post": "agents.share_agent", "shares:delete": "agents.share_agent",
    }
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_regex = UUID_REGEX

    def get_serializer_context(self):
        # Tools and connections are per organization (OpenAPI operations, MCP tools, connections).
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return context | {"organization": None}
        return context | {"organization": self.organization}

    def get_queryset(self):
        return selectors.agent_list(
            organization=self.organization,
            viewer=self.access,
            search=_text_param(self.request, "search").strip(),
            model=_text_param(self.request, "model"),
            tool=_text_param(self.request, "tool"),
            ordering=_ordering_param(self.request, selectors.AGENT_ORDERINGS),
        ).select_related("created_by")

    def get_object(self):
        agent = selectors.agent_get(organization=self.organization, viewer=self.access, agent_id=self.kwargs["pk"])
        if agent is None:
            raise NotFound("Agent not found.")
        return agent

    def _editable(self, agent):
        if not selectors.agent_can_edit(viewer=self.access, agent=agent):
            raise Denied("Permission denied: this agent is shared with you to run, not to change.",
                         perm="agents.change_agent")
        return agent

    def _owned(self, agent, verb: str):
        if not selectors.agent_is_owner_or_manager(viewer=self.access, agent=agent):
            raise Denied(f"Permission denied: only the agent's owner or an organization admin can {verb} it.",
                         perm="agents.manage_all_agents")
        return agent

    @extend_schema(parameters=AGENT_LIST_PARAMS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def perform_create(self, serializer):
        serializer.instance = services.agent_create(
            organization=self.organization, actor=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        self._editable(serializer.instance)
        serializer.instance = services.agent_update(
            agent=serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        self._owned(instance, "delete")
        services.agent_delete(agent=instance, actor=self.request.user)

    @extend_schema(methods=["GET"], responses=AgentShareSerializer(many=True), summary="Who this agent is shared with")
    @extend_schema(methods=["POST"], request=AgentShareSerializer, responses={200: AgentShareSerializer},
                   summary="Share with a team (or, with team null, the whole organization)")
    @extend_schema(methods=["DELETE"], request=None, responses={204: None}, summary="Stop sharing",
                   parameters=[OpenApiParameter("team", str, required=True,
                                                description="A team id, or `organization`.")])
    @action(detail=True, methods=["get", "post", "delete"], url_path="shares", pagination_class=None)
    def shares(self, request, pk=None):
        agent = self.get_object()
        if request.method == "GET":
            return Response(AgentShareSerializer(selectors.agent_shares(agent=agent), many=True).data)
        self._owned(agent, "share")
        if request.method == "DELETE":
            raw = _text_param(request, "team")
            team = None if raw == "organization" else self._team(raw, field="team")
            services.agent_unshare(agent=agent, team=team, actor=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        serializer = AgentShareSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        team_id = serializer.validated_data["team"]
        team = self._team(team_id, field="team") if team_id else None
        share = services.agent_share(agent=agent, team=team, can_edit=serializer.validated_data["can_edit"],
                                     actor=request.user)
        return Response(AgentShareSerializer(share).data)

    def _team(self, raw, *, field: str) -> Team:
        try:
            team = Team.objects.filter(organization=self.organization, id=uuid.UUID(str(raw))).first()
        except ValueError:
            team = None
        if team is None:
            raise serializers.ValidationError({field: ["No such team in this organization (or `organization`)."]})
        return team

    @extend_schema(
        methods=["POST"],
        request=RunCreateSerializer,
        responses={201: RunSerializer},
        summary="Start a run of this agent",
        tags=["runs"],
    )
    @extend_schema(
        methods=["GET"],
        responses=RunSerializer(many=True),
        summary="List this agent's runs",
        tags=["runs"],
    )
    @action(detail=True, methods=["get", "post"], url_path="runs")
    def runs(self, request, pk=None):
        agent = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(
                selectors.run_list(organization=self.organization, viewer=self.access, agent_id=agent.id)
            )
            return self.get_paginated_response(RunSerializer(page, many=True).data)
        serializer = RunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        goal, context, limits, dry_run = serializer.split()
        try:
            warnings = quotas.check_run_allowed(organization=agent.organization, user=request.user)
        except quotas.QuotaExceeded as exc:
            raise QuotaExceededError(str(exc), usage=exc.usage) from None
        run = services.run_start(agent=agent, goal=goal, context=context, limits=limits, dry_run=dry_run,
                                 actor=request.user)
        response = Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)
        if warnings:
            response["X-Quota-Warning"] = "; ".join(
                f"{w['scope']} {w['metric']} at {w['percent']:g}% of the monthly quota" for w in warnings
            )
        return response


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets content negotiation accept `Accept: text/event-stream`; the view streams itself."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode()


def _sse_frame(event: dict | None) -> str:
    if event is None:
        return ": keepalive\n\n"
    data = json.dumps(event["data"] | {"seq": event["seq"], "created_at": event["created_at"]})
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n"


@extend_schema(tags=["runs"])
class RunViewSet(OrganizationScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs: one execution of an agent towards a goal, with its status, answer, usage and trace."""

    serializer_class = RunSerializer
    run_scope_actions = ("cancel", "pause", "resume", "retry", "rerun", "uncertain_write")
    role_perms = {
        "list": "agents.view_run", "retrieve": "agents.view_run", "events": "agents.view_run",
        "cancel": "agents.steer_run", "pause": "agents.steer_run", "resume": "agents.steer_run",
        "retry": "agents.steer_run", "uncertain_write": "agents.steer_run", "rerun": "agents.run_agent",
    }
    lookup_value_regex = UUID_REGEX

    def get_queryset(self):
        params = self.request.query_params
        status_filter = params.get("status", "")
        if status_filter and status_filter not in Run.Status.values:
            raise serializers.ValidationError(
                {"status": [f"Unknown status {status_filter!r}. One of: {', '.join(Run.Status.values)}."]}
            )
        agent_id = params.get("agent") or None
        if agent_id:
            try:
                agent_id = str(uuid.UUID(agent_id))
            except ValueError:
                raise serializers.ValidationError({"agent": ["Must be an agent id (UUID)."]}) from None
        return selectors.run_list(
            organization=self.organization,
            viewer=self.access,
            agent_id=agent_id,
            status=status_filter,
            ordering=_ordering_param(self.request, selectors.RUN_ORDERINGS),
        ).select_related(None).select_related("created_by")

    def get_object(self):
        run = selectors.run_get(organization=self.organization, viewer=self.access, run_id=self.kwargs["pk"])
        if run is None:
            raise NotFound("Run not found.")
        return run

    @extend_schema(
        parameters=[
            OpenApiParameter("agent", OpenApiTypes.UUID, description="Only runs of this agent."),
            OpenApiParameter("status", str, enum=Run.Status.values),
            OpenApiParameter("ordering", str, enum=sorted(selectors.RUN_ORDERINGS)),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def _steer(self, request, service, **kwargs):
        run = self.get_object()
        try:
            run = service(run=run, actor=request.user, **kwargs)
        except services.InvalidTransition as exc:
            raise Conflict(str(exc)) from None
        return run

    @extend_schema(request=None, responses={200: RunSerializer, 409: OpenApiResponse(description="Already finished")})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return Response(RunSerializer(self._steer(request, services.run_cancel)).data)

    @extend_schema(request=None, responses={200: RunSerializer, 409: OpenApiResponse(description="Not running")},
                   summary="Pause at the next checkpoint")
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return Response(RunSerializer(self._steer(request, services.run_pause)).data)

    @extend_schema(request=None, responses={200: RunSerializer, 409: OpenApiResponse(description="Not paused")},
                   summary="Resume a paused run from its last stored step")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return Response(RunSerializer(self._steer(request, services.run_resume)).data)

    @extend_schema(request=None, responses={200: RunSerializer, 409: OpenApiResponse(description="Not failed")},
                   summary="Retry a failed or timed-out run from its last good step")
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        return Response(RunSerializer(self._steer(request, services.run_retry)).data)

    @extend_schema(request=None, responses={201: RunSerializer}, summary="Start a new run with the same inputs")
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        run = services.run_rerun(run=self.get_object(), actor=request.user)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UncertainWriteDecisionSerializer, responses={200: RunSerializer, 409: OpenApiResponse(
        description="Not waiting for such a decision")}, summary="Decide about a write caught mid-call by a crash")
    @action(detail=True, methods=["post"], url_path="uncertain-write")
    def uncertain_write(self, request, pk=None):
        serializer = UncertainWriteDecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = self._steer(request, services.run_resolve_uncertain_write, decision=serializer.validated_data["decision"])
        return Response(RunSerializer(run).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("after", {"type": "integer", "minimum": 0},
                             description="Only events with a greater sequence number."),
            OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 5000},
                             description="At most this many events (JSON only; default 1000)."),
        ],
        responses={
            (200, "application/json"): RunEventSerializer(many=True),
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="Server-Sent Events: `id:` is the sequence number (Last-Event-ID resumes), "
                "`event:` one of status, thought, tool_start, tool_end, final_answer, error, approval. "
                "The stream ends after the run's final status."
            ),
        },
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[renderers.JSONRenderer, renderers.BrowsableAPIRenderer, EventStreamRenderer],
        pagination_class=None,  # a plain list, bounded by `limit`; not the page envelope of the lists
    )
    def events(self, request, pk=None):
        run = self.get_object()
        after = _int_param(request, "after", 0)
        if request.accepted_renderer.format == "sse":
            last_event_id = request.headers.get("Last-Event-ID", "")
            if last_event_id.isdigit():
                after = max(after, int(last_event_id))
            return _event_stream(run.id, after)
        limit = _int_param(request, "limit", 1000, minimum=1, maximum=5000)
        return Response(RunEventSerializer(selectors.run_events(run=run, after=after, limit=limit), many=True).data)


def _event_stream(run_id, after: int) -> StreamingHttpResponse:
    async def body():
        async for event in streams.follow(run_id, after):
            yield _sse_frame(event)

    response = StreamingHttpResponse(body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@extend_schema(tags=["catalog"], responses=ModelInfoSerializer(many=True), summary="Models available now")
class ModelListView(APIView):
    schema = ApiSchema()
    role_perms = {"get": ANY_MEMBER}

    def get(self, request):
        return Response(ModelInfoSerializer(available_models(), many=True).data)




@extend_schema(tags=["approvals"])
class ApprovalViewSet(OrganizationScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Tool calls waiting for (or decided by) a person."""

    serializer_class = ApprovalSerializer
    run_scope_actions = ("decide",)
    role_perms = {"list": "agents.view_approval", "retrieve": "agents.view_approval",
                  "decide": "agents.decide_approval"}
    lookup_value_regex = UUID_REGEX

    def get_queryset(self):
        status_filter = self.request.query_params.get("status", "")
        if status_filter and status_filter not in Approval.Status.values:
            raise serializers.ValidationError({"status": [f"One of: {', '.join(Approval.Status.values)}."]})
        run_id = self.request.query_params.get("run") or None
        if run_id:
            try:
                run_id = str(uuid.UUID(run_id))
            except ValueError:
                raise serializers.ValidationError({"run": ["Must be a run id (UUID)."]}) from None
        return selectors.approval_list(organization=self.organization, viewer=self.access, status=status_filter,
                                       run_id=run_id)

    def get_object(self):
        approval = selectors.approval_get(organization=self.organization, viewer=self.access,
                                          approval_id=self.kwargs["pk"])
        if approval is None:
            raise NotFound("Approval not found.")
        return approval

    @extend_schema(parameters=[OpenApiParameter("status", str, enum=Approval.Status.values),
                               OpenApiParameter("run", OpenApiTypes.UUID)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=ApprovalDecisionSerializer, responses={
        200: ApprovalSerializer,
        409: OpenApiResponse(description="Already decided or expired")}, summary="Approve, edit or reject a tool call")
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        approval = self.get_object()
        serializer = ApprovalDecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            approval = approvals.approval_decide(approval=approval, decision=data["decision"], actor=request.user,
                                                 arguments=data.get("arguments"), message=data.get("message", ""))
        except approvals.InvalidArguments as exc:
            raise serializers.ValidationError({"arguments": [str(exc)]}) from None
        except approvals.ApprovalConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(ApprovalSerializer(approval).data)
