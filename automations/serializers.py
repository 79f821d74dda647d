from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents import selectors as agent_selectors
from agents.serializers import JSONObjectField
from automations import cron, selectors, services, signing
from automations.models import (
    GOAL_TEMPLATE_MAX,
    MAX_GOAL,
    MAX_RETRIES_LIMIT,
    Schedule,
    ScheduleFiring,
    Trigger,
    TriggerEvent,
)


def _organization(serializer: serializers.Serializer):
    # Forms pass the organization; API views pass themselves (resolved lazily, so building the
    # OpenAPI schema never needs a signed-in user).
    organization = serializer.context.get("organization")
    return organization if organization is not None else serializer.context["view"].organization


def _viewer(serializer: serializers.Serializer):
    """The person choosing an agent: only agents they can see may be picked."""
    if "viewer" in serializer.context:
        return serializer.context["viewer"]
    return serializer.context["view"].access


class PlainScheduleSerializer(serializers.Serializer):
    """A schedule in words; compiles to a cron expression."""

    frequency = serializers.ChoiceField(choices=list(cron.FREQUENCIES))
    time = serializers.RegexField(r"^([01]?\d|2[0-3]):[0-5]\d$", help_text="HH:MM, 24-hour, in the schedule's zone.",
                                  error_messages={"invalid": "Time must be HH:MM in 24-hour form, e.g. 09:00."})
    weekday = serializers.ChoiceField(choices=[d.lower() for d in cron.WEEKDAY_LABELS], required=False,
                                      help_text="For weekly schedules.")
    day = serializers.IntegerField(min_value=1, max_value=cron.MONTHLY_MAX_DAY, required=False,
                                   help_text="Day of the month, for monthly schedules.")


class ScheduleSerializer(serializers.ModelSerializer):
    agent = serializers.UUIDField(source="agent_id", help_text="The agent this schedule starts.")
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    name = serializers.CharField(max_length=120, trim_whitespace=True)
    cron = serializers.CharField(required=False, max_length=100,
                                 help_text="minute hour day-of-month month day-of-week, e.g. `0 9 * * 1-5`. "
                                           "Give either this or `plain`.")
    plain = PlainScheduleSerializer(required=False, allow_null=True, write_only=True,
                                    help_text="The schedule in words instead of `cron`.")
    plain_form = serializers.SerializerMethodField(help_text="The cron as a preset, when it is one.")
    timezone = serializers.CharField(required=False, default="UTC", max_length=64,
                                     help_text="IANA time zone the times are in, e.g. Europe/Berlin.")
    goal = serializers.CharField(max_length=MAX_GOAL, trim_whitespace=True)
    context = JSONObjectField(required=False, allow_null=True, default=None)
    enabled = serializers.BooleanField(required=False, default=True)
    notify_on_success = serializers.BooleanField(required=False, default=False)
    max_retries = serializers.IntegerField(required=False, default=3, min_value=0, max_value=MAX_RETRIES_LIMIT)
    next_fire_times = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id", "agent", "agent_name", "owner", "name", "cron", "plain", "plain_form", "description", "timezone",
            "goal", "context", "enabled", "notify_on_success", "max_retries", "next_fire_times", "last_fired_at",
            "created_at", "updated_at",
        ]
        read_only_fields = ["id", "description", "last_fired_at", "created_at", "updated_at"]

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_next_fire_times(self, schedule: Schedule) -> list[str]:
        return [moment.isoformat() for moment in services.schedule_next_fire_times(schedule)]

    @extend_schema_field(PlainScheduleSerializer(allow_null=True))
    def get_plain_form(self, schedule: Schedule) -> dict | None:
        try:
            plain = cron.plain_from_cron(cron.parse(schedule.cron))
        except cron.CronError:
            return None
        if plain is None:
            return None
        data = plain.as_dict()
        if "weekday" in data:
            data["weekday"] = cron.WEEKDAY_LABELS[plain.weekday or 0].lower()
        return data

    def validate_agent(self, value):
        agent = agent_selectors.agent_get(organization=_organization(self), viewer=_viewer(self), agent_id=value)
        if agent is None:
            raise serializers.ValidationError("Agent not found.")
        return agent

    def validate_timezone(self, value: str) -> str:
        try:
            cron.zone(value)
        except cron.CronError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_context(self, value):
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("Context must be a JSON object.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        plain = attrs.pop("plain", None)
        if plain and "cron" in attrs:
            raise serializers.ValidationError({"plain": ["Give either `cron` or `plain`, not both."]})
        if plain:
            try:
                attrs["cron"] = cron.plain_to_cron(cron.plain_from(
                    plain["frequency"], plain["time"], plain.get("weekday"), plain.get("day")))
            except cron.CronError as exc:
                raise serializers.ValidationError({"plain": [str(exc)]}) from None
        elif "cron" in attrs:
            try:
                attrs["cron"] = cron.parse(attrs["cron"]).expression
            except cron.CronError as exc:
                raise serializers.ValidationError({"cron": [str(exc)]}) from None
        elif self.instance is None:
            raise serializers.ValidationError({"cron": ["Give a cron expression, or `plain` (e.g. "
                                                        '{"frequency": "weekdays", "time": "09:00"}).']})
        if "agent_id" in attrs:
            attrs["agent"] = attrs.pop("agent_id")
        return attrs


class ScheduleFiringSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScheduleFiring
        fields = ["id", "origin", "occurrence_at", "attempt", "outcome", "run", "retry_of", "due_at", "error",
                  "notification", "fired_at", "finished_at", "created_at"]
        read_only_fields = fields


class SigningSerializer(serializers.Serializer):
    timestamp_header = serializers.CharField()
    signature_header = serializers.CharField()
    signed_content = serializers.CharField()
    algorithm = serializers.CharField()
    tolerance_seconds = serializers.IntegerField()


def signing_doc() -> dict[str, Any]:
    return {
        "timestamp_header": signing.TIMESTAMP_HEADER,
        "signature_header": signing.SIGNATURE_HEADER,
        "signed_content": "<timestamp>.<raw request body>",
        "algorithm": "sha256=<hex HMAC-SHA256 of the signed content, keyed with the secret>",
        "tolerance_seconds": signing.TOLERANCE_SECONDS,
    }


class TriggerSerializer(serializers.ModelSerializer):
    agent = serializers.UUIDField(source="agent_id", help_text="The agent this trigger starts.")
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    kind = serializers.ChoiceField(choices=Trigger.Kind.choices)
    name = serializers.CharField(max_length=120, trim_whitespace=True)
    enabled = serializers.BooleanField(required=False, default=True)
    goal_template = serializers.CharField(
        required=False, max_length=GOAL_TEMPLATE_MAX, trim_whitespace=False,
        help_text="Django template syntax rendered into the goal. Webhooks see `payload` (the JSON body); "
                  "run_finished sees `run` (id, status, goal, answer, error, agent); schedule_fired sees "
                  "`schedule` (name, goal, run_id). Tags: if, with, firstof; filters include default, join, "
                  "truncatechars and json. A default is used when omitted.",
    )
    source_agent = serializers.UUIDField(source="source_agent_id", required=False, allow_null=True,
                                         help_text="run_finished: whose runs finishing start this agent.")
    source_statuses = serializers.ListField(
        child=serializers.ChoiceField(choices=services.TERMINAL_STATUSES), required=False,
        help_text="run_finished: which final statuses count (default: succeeded).")
    source_schedule = serializers.UUIDField(source="source_schedule_id", required=False, allow_null=True,
                                            help_text="schedule_fired: the schedule whose firing starts this agent.")
    webhook_url = serializers.SerializerMethodField()
    signing = serializers.SerializerMethodField()

    class Meta:
        model = Trigger
        fields = [
            "id", "kind", "agent", "agent_name", "owner", "name", "enabled", "goal_template", "webhook_url",
            "signing", "secret_hint", "secret_rotated_at", "source_agent", "source_statuses", "source_schedule",
            "accepted_count", "rejected_count", "last_called_at", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "secret_hint", "secret_rotated_at", "accepted_count", "rejected_count",
                            "last_called_at", "created_at", "updated_at"]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_webhook_url(self, trigger: Trigger) -> str | None:
        if trigger.kind != Trigger.Kind.WEBHOOK:
            return None
        path = reverse("automations:webhook", kwargs={"public_id": trigger.public_id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(SigningSerializer(allow_null=True))
    def get_signing(self, trigger: Trigger) -> dict | None:
        return signing_doc() if trigger.kind == Trigger.Kind.WEBHOOK else None

    def validate_agent(self, value):
        agent = agent_selectors.agent_get(organization=_organization(self), viewer=_viewer(self), agent_id=value)
        if agent is None:
            raise serializers.ValidationError("Agent not found.")
        return agent

    def validate_source_agent(self, value):
        if value is None:
            return None
        agent = agent_selectors.agent_get(organization=_organization(self), viewer=_viewer(self), agent_id=value)
        if agent is None:
            raise serializers.ValidationError("Agent not found.")
        return agent

    def validate_source_schedule(self, value):
        if value is None:
            return None
        schedule = selectors.schedule_get(organization=_organization(self), viewer=_viewer(self), schedule_id=value)
        if schedule is None:
            raise serializers.ValidationError("Schedule not found.")
        return schedule

    def validate_kind(self, value: str) -> str:
        if self.instance is not None and value != self.instance.kind:
            raise serializers.ValidationError("A trigger's kind can't change; create a new trigger.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for source, target in (("agent_id", "agent"), ("source_agent_id", "source_agent"),
                               ("source_schedule_id", "source_schedule")):
            if source in attrs:
                attrs[target] = attrs.pop(source)
        if self.instance is not None:
            attrs.pop("kind", None)
        return attrs


class TriggerCreatedSerializer(TriggerSerializer):
    secret = serializers.CharField(
        read_only=True, allow_null=True,
        help_text="The signing secret (webhooks). Shown in this response only; store it now.")

    class Meta(TriggerSerializer.Meta):
        fields = [*TriggerSerializer.Meta.fields, "secret"]


class TriggerSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret. Shown once; the old one no longer works.")
    secret_hint = serializers.CharField()
    signing = SigningSerializer()


class TriggerEventSerializer(serializers.ModelSerializer):
    run_status = serializers.SerializerMethodField()

    class Meta:
        model = TriggerEvent
        fields = ["id", "trigger", "trigger_name", "kind", "received_at", "outcome", "reason", "message",
                  "status_code", "remote_addr", "run", "run_status", "source_run", "schedule_firing", "chain",
                  "payload_excerpt"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="Status of the started run."))
    def get_run_status(self, event: TriggerEvent) -> str | None:
        return event.run.status if event.run_id and event.run is not None else None


class WebhookAcceptedSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    event_id = serializers.IntegerField()
    status = serializers.CharField(default="accepted")
