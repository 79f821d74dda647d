"""REST API for schedules, triggers and the trigger event log, plus the public webhook endpoint.
Views parse, scope through a selector, call one service and serialize."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api import OrganizationScoped
from automations import selectors, services, signing
from automations.models import Trigger, TriggerEvent
from automations.serializers import (
    ScheduleFiringSerializer,
    ScheduleSerializer,
    TriggerCreatedSerializer,
    TriggerEventSerializer,
    TriggerSecretSerializer,
    TriggerSerializer,
    WebhookAcceptedSerializer,
    signing_doc,
)
from config.errors import Conflict, envelope
from config.openapi import ApiSchema, ErrorEnvelopeSerializer

UUID_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def _uuid_param(request, name: str) -> str | None:
    raw = request.query_params.get(name) or ""
    if not raw:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise serializers.ValidationError({name: ["Must be a UUID."]}) from None


def _call(service, **kwargs):
    """Run a service, turning its refusals into API errors: bad input 400, name clash 409."""
    try:
        return service(**kwargs)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None
    except (services.NameTaken, services.NotAWebhook) as exc:
        raise Conflict(str(exc)) from None


CONFLICT = OpenApiResponse(ErrorEnvelopeSerializer, description="Another schedule or trigger of this agent has "
                                                                "that name")


@extend_schema(tags=["schedules"])
class ScheduleViewSet(
    OrganizationScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Schedules: start a run of an agent on a cron timetable, in a time zone, as the schedule's owner.
    Failed runs are retried with backoff (30 s, 2 min, 8 min by default) up to `max_retries` times;
    then the owner is emailed. `next_fire_times` lists the next five, in the schedule's zone."""

    serializer_class = ScheduleSerializer
    role_perms = {
        "list": "automations.view_schedule", "retrieve": "automations.view_schedule",
        "create": "automations.add_schedule", "partial_update": "automations.change_schedule",
        "update": "automations.change_schedule", "destroy": "automations.delete_schedule",
        "fire": "agents.run_agent", "firings": "automations.view_schedule",
    }
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_regex = UUID_REGEX

    def get_queryset(self):
        return selectors.schedule_list(organization=self.organization, viewer=self.access,
                                       agent_id=_uuid_param(self.request, "agent"))

    def get_object(self):
        schedule = selectors.schedule_get(organization=self.organization, viewer=self.access,
                                          schedule_id=self.kwargs["pk"])
        if schedule is None:
            raise NotFound("Schedule not found.")
        return schedule

    @extend_schema(parameters=[OpenApiParameter("agent", OpenApiTypes.UUID, description="Only this agent's.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={201: ScheduleSerializer, 409: CONFLICT})
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)

    @extend_schema(responses={200: ScheduleSerializer, 409: CONFLICT})
    def partial_update(self, request, *args, **kwargs):
        return super().partial_update(request, *args, **kwargs)

    def perform_create(self, serializer):
        serializer.instance = _call(services.schedule_create, organization=self.organization,
                                    actor=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = _call(services.schedule_update, schedule=serializer.instance,
                                    actor=self.request.user, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.schedule_delete(schedule=instance, actor=self.request.user)

    @extend_schema(request=None, responses={201: ScheduleFiringSerializer},
                   summary="Run now: start the schedule's run at once")
    @action(detail=True, methods=["post"])
    def fire(self, request, pk=None):
        firing = services.schedule_fire(schedule=self.get_object(), actor=request.user)
        return Response(ScheduleFiringSerializer(firing).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ScheduleFiringSerializer(many=True),
                   summary="Firings: each attempt, its run and outcome, newest first")
    @action(detail=True, methods=["get"])
    def firings(self, request, pk=None):
        page = self.paginate_queryset(selectors.schedule_firings(schedule=self.get_object()))
        return self.get_paginated_response(ScheduleFiringSerializer(page, many=True).data)


@extend_schema(tags=["triggers"])
class TriggerViewSet(
    OrganizationScoped,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Triggers start an agent when something happens: `webhook` (a signed POST to `webhook_url`),
    `run_finished` (a run of `source_agent` ended with one of `source_statuses`) or `schedule_fired`.
    A webhook's signing secret is returned once, when it is created or rotated. Chains of internal
    triggers are stopped when an agent would run twice or after five hops."""

    serializer_class = TriggerSerializer
    role_perms = {
        "list": "automations.view_trigger", "retrieve": "automations.view_trigger",
        "create": "automations.add_trigger", "partial_update": "automations.change_trigger",
        "update": "automations.change_trigger", "destroy": "automations.delete_trigger",
        "rotate_secret": "automations.change_trigger", "events": "automations.view_trigger",
    }
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_regex = UUID_REGEX

    def get_queryset(self):
        kind = self.request.query_params.get("kind", "")
        if kind and kind not in Trigger.Kind.values:
            raise serializers.ValidationError({"kind": [f"One of: {', '.join(Trigger.Kind.values)}."]})
        return selectors.trigger_list(organization=self.organization, viewer=self.access,
                                      agent_id=_uuid_param(self.request, "agent"),
                                      kind=kind)

    def get_object(self):
        trigger = selectors.trigger_get(organization=self.organization, viewer=self.access,
                                        trigger_id=self.kwargs["pk"])
        if trigger is None:
            raise NotFound("Trigger not found.")
        return trigger

    @extend_schema(parameters=[
        OpenApiParameter("agent", OpenApiTypes.UUID, description="Only triggers that start this agent."),
        OpenApiParameter("kind", str, enum=Trigger.Kind.values),
    ])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={201: TriggerCreatedSerializer, 409: CONFLICT})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = _call(services.trigger_create, organization=self.organization, actor=request.user,
                        **serializer.validated_data)
        data = TriggerCreatedSerializer(created.trigger, context=self.get_serializer_context()).data
        data["secret"] = created.secret
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: TriggerSerializer, 409: CONFLICT})
    def partial_update(self, request, *args, **kwargs):
        return super().partial_update(request, *args, **kwargs)

    def perform_update(self, serializer):
        serializer.instance = _call(services.trigger_update, trigger=serializer.instance, actor=self.request.user,
                                    **serializer.validated_data)

    def perform_destroy(self, instance):
        services.trigger_delete(trigger=instance, actor=self.request.user)

    @extend_schema(request=None, responses={200: TriggerSecretSerializer, 409: OpenApiResponse(
        ErrorEnvelopeSerializer, description="Not a webhook trigger")}, summary="Rotate the webhook signing secret")
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        trigger = self.get_object()
        secret = _call(services.trigger_rotate_secret, trigger=trigger, actor=request.user)
        return Response({"secret": secret, "secret_hint": trigger.secret_hint, "signing": signing_doc()})

    @extend_schema(responses=TriggerEventSerializer(many=True), summary="This trigger's event log, newest first")
    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        trigger = self.get_object()
        page = self.paginate_queryset(selectors.trigger_event_list(organization=self.organization, viewer=self.access,
                                                                   trigger_id=trigger.id))
        return self.get_paginated_response(TriggerEventSerializer(page, many=True).data)


def _since_param(request) -> datetime | None:
    raw = request.query_params.get("since") or ""
    if not raw:
        return None
    moment = parse_datetime(raw)
    if moment is None:
        day = parse_date(raw)
        moment = datetime(day.year, day.month, day.day) if day else None
    if moment is None:
        raise serializers.ValidationError({"since": ["Must be an ISO 8601 date or date-time."]})
    return make_aware(moment) if is_naive(moment) else moment


@extend_schema(tags=["triggers"])
class TriggerEventViewSet(OrganizationScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          viewsets.GenericViewSet):
    """The trigger event log: every webhook call (accepted or rejected, with the reason) and every
    internal event, with the run it started."""

    serializer_class = TriggerEventSerializer
    role_perms = {"list": "automations.view_trigger", "retrieve": "automations.view_trigger"}
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        outcome = self.request.query_params.get("outcome", "")
        if outcome and outcome not in TriggerEvent.Outcome.values:
            raise serializers.ValidationError({"outcome": [f"One of: {', '.join(TriggerEvent.Outcome.values)}."]})
        return selectors.trigger_event_list(
            organization=self.organization, viewer=self.access, trigger_id=_uuid_param(self.request, "trigger"),
            outcome=outcome,
            since=_since_param(self.request),
        )

    def get_object(self):
        event = selectors.trigger_event_get(organization=self.organization, viewer=self.access,
                                            event_id=int(self.kwargs["pk"]))
        if event is None:
            raise NotFound("Event not found.")
        return event

    @extend_schema(parameters=[
        OpenApiParameter("trigger", OpenApiTypes.UUID, description="Only this trigger's events."),
        OpenApiParameter("outcome", str, enum=TriggerEvent.Outcome.values),
        OpenApiParameter("since", OpenApiTypes.DATETIME, description="Only events received at or after this."),
    ])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)])
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)


WEBHOOK_DOC = f"""Start a run of the trigger's agent. No API token: the unguessable URL and the signature
are the credentials.

Send the JSON object as the body with `Content-Type: application/json`, plus

- `{signing.TIMESTAMP_HEADER}`: the current Unix time in seconds;
- `{signing.SIGNATURE_HEADER}`: `sha256=` + the hex HMAC-SHA256 of `<timestamp>.<raw body>`, keyed with the
  trigger's secret.

The timestamp must be within {signing.TOLERANCE_SECONDS // 60} minutes of the server's clock, and a signed
request is accepted once (a replay gets 401). The body (at most 1 MiB) becomes the run's context; the
trigger's goal template turns it into the goal. Answers: 202 with the run id; 400 invalid JSON, not an
object or a template that can't render; 401 missing, stale or wrong timestamp/signature, or a replay;
403 trigger disabled; 404 unknown URL; 413 body too large; 415 not JSON. Every call to an existing
trigger is written to its event log. Example:

```
BODY='{{"order": 42}}'
TS=$(date +%s)
SIG=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
curl -X POST "$URL" -H 'Content-Type: application/json' \\
     -H "{signing.TIMESTAMP_HEADER}: $TS" -H "{signing.SIGNATURE_HEADER}: sha256=$SIG" --data "$BODY"
```"""


def _error_response(code: int, description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorEnvelopeSerializer, description=description)


class WebhookView(APIView):
    schema = ApiSchema()
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        tags=["webhooks"],
        auth=[],
        operation_id="webhook_call",
        summary="Call a webhook trigger",
        description=WEBHOOK_DOC,
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            # As automations/urls.py matches it; anything else is not this endpoint.
            OpenApiParameter("public_id", str, OpenApiParameter.PATH, pattern="^[A-Za-z0-9_-]{1,64}$"),
            OpenApiParameter(signing.TIMESTAMP_HEADER, str, OpenApiParameter.HEADER, required=True,
                             description="Unix time in seconds."),
            OpenApiParameter(signing.SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True,
                             description="sha256=<hex HMAC-SHA256(secret, timestamp + '.' + raw body)>"),
        ],
        responses={
            202: WebhookAcceptedSerializer,
            400: _error_response(400, "Invalid JSON, not an object, or the goal template failed"),
            401: _error_response(401, "Missing/bad signature or timestamp, stale timestamp, or replay"),
            403: _error_response(403, "Trigger disabled"),
            404: _error_response(404, "Unknown webhook URL"),
            413: _error_response(413, "Body larger than 1 MiB"),
            415: _error_response(415, "Content-Type is not application/json"),
        },
    )
    def post(self, request, public_id: str):
        raw = request._request
        try:
            declared = int(raw.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        # Read one byte past the limit, never the whole of an oversized body.
        body = b"" if declared > services.MAX_BODY_BYTES else raw.read(services.MAX_BODY_BYTES + 1)
        result = services.webhook_receive(
            public_id=public_id,
            body=body,
            declared_length=declared,
            content_type=raw.META.get("CONTENT_TYPE", ""),
            timestamp=raw.headers.get(signing.TIMESTAMP_HEADER),
            signature=raw.headers.get(signing.SIGNATURE_HEADER),
            remote_addr=raw.META.get("REMOTE_ADDR") or None,
        )
        if result.accepted:
            return JsonResponse({"run_id": str(result.run_id), "event_id": result.event_id, "status": "accepted"},
                                status=202)
        details = {"event_id": result.event_id} if result.event_id else {}
        return JsonResponse(envelope(raw, code=result.reason, message=result.message, details=details),
                            status=result.status)
