from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.llm import registry as model_registry
from agents.models import MAX_STEPS_LIMIT, TIMEOUT_LIMIT_SECONDS, Agent, Approval, Run, RunEvent
from integrations import tools as tool_registry


def reject_null_characters(value: object) -> None:
    """Postgres can store U+0000 neither in text nor in jsonb; refuse it here (400) rather than fail
    on save (500). CharFields already do; JSON values and keys need this."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise serializers.ValidationError("Null characters are not allowed.")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@extend_schema_field({"type": "object", "additionalProperties": {}, "nullable": True})
class JSONObjectField(serializers.JSONField):
    """JSON that the serializer only accepts as an object (its validate_<field> says so); documented
    as one, since a plain JSONField is documented as any JSON value."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        reject_null_characters(value)
        return value


class AgentSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=120, allow_blank=False, trim_whitespace=True)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    system_prompt = serializers.CharField(allow_blank=False, trim_whitespace=True, max_length=100_000)
    model = serializers.CharField(required=False, max_length=100)
    model_label = serializers.SerializerMethodField()
    tools = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list,
                                  max_length=50)
    max_steps = serializers.IntegerField(required=False, default=10, min_value=1, max_value=MAX_STEPS_LIMIT)
    timeout_seconds = serializers.IntegerField(required=False, default=300, min_value=5,
                                               max_value=TIMEOUT_LIMIT_SECONDS)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                          max_value=100_000_000)
    max_cost_usd = serializers.DecimalField(required=False, allow_null=True, default=None, max_digits=10,
                                            decimal_places=4, min_value=Decimal("0.0001"), coerce_to_string=False)
    tool_policies = serializers.DictField(
        child=serializers.ChoiceField(choices=Agent.Policy.choices), required=False, default=dict,
        help_text="Per tool: auto, ask or deny. Unlisted write tools ask, read tools run automatically.",
    )
    integrations = serializers.DictField(
        child=serializers.DictField(), required=False,
        help_text='Per integration its tools use: {"connection": "runner" (the person running the agent, the '
                  'default) or a connection id, "scopes": [...] (default: what the chosen tools need)}.',
    )
    approval_timeout_seconds = serializers.IntegerField(required=False, default=3600, min_value=60,
                                                        max_value=7 * 24 * 3600)
    approval_expiry_outcome = serializers.ChoiceField(choices=Agent.ExpiryOutcome.choices, required=False,
                                                      default=Agent.ExpiryOutcome.REJECT)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Agent
        fields = [
            "id", "name", "description", "system_prompt", "model", "model_label", "tools", "max_steps",
            "timeout_seconds", "max_tokens", "max_cost_usd", "tool_policies", "integrations",
            "approval_timeout_seconds", "approval_expiry_outcome", "created_by", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]

    @extend_schema_field(serializers.CharField())
    def get_model_label(self, agent: Agent) -> str:
        return model_registry.model_label(agent.model)

    def validate_model(self, value: str) -> str:
        if not model_registry.is_available(value):
            known = ", ".join(m.id for m in model_registry.available_models())
            raise serializers.ValidationError(f"Model {value!r} is not available. Available: {known}.")
        return value

    def validate_tools(self, value: list[str]) -> list[str]:
        organization = self.context.get("organization")
        known = set(tool_registry.for_organization(organization.id if organization else None))
        unknown = [name for name in value if name not in known]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown tool(s): {', '.join(sorted(set(unknown)))}. Known tools: {', '.join(sorted(known))}."
            )
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Each tool may be listed once.")
        return value

    def validate(self, attrs: dict) -> dict:
        if self.instance is None and not attrs.get("model"):
            attrs["model"] = settings.DEFAULT_MODEL
        tools = attrs.get("tools", self.instance.tools if self.instance else [])
        policies = attrs.get("tool_policies")
        if policies:
            stray = sorted(set(policies) - set(tools))
            if stray:
                raise serializers.ValidationError(
                    {"tool_policies": [f"Policies name tools the agent doesn't have: {', '.join(stray)}."]}
                )
        organization = self.context.get("organization")
        if organization is not None and ("integrations" in attrs or "tools" in attrs):
            from integrations.selectors import agent_integrations_clean

            current = self.instance.integrations if self.instance is not None else None
            request = self.context.get("request")
            try:
                attrs["integrations"] = agent_integrations_clean(
                    organization=organization, tools=list(tools), value=attrs.get("integrations", current or {}),
                    actor=self.context.get("actor") or getattr(request, "user", None), current=current,
                )
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class RunCreateSerializer(serializers.Serializer):
    goal = serializers.CharField(allow_blank=False, trim_whitespace=True, max_length=20_000)
    context = JSONObjectField(required=False, allow_null=True, default=None)
    # Per-run limits; unset ones come from the agent.
    max_steps = serializers.IntegerField(required=False, min_value=1, max_value=MAX_STEPS_LIMIT)
    timeout_seconds = serializers.IntegerField(required=False, min_value=5, max_value=TIMEOUT_LIMIT_SECONDS)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=100_000_000)
    # A number in the schema, as on the agent: the string form's documented pattern admits "".
    max_cost_usd = serializers.DecimalField(required=False, max_digits=10, decimal_places=4,
                                            min_value=Decimal("0.0001"), coerce_to_string=False)
    dry_run = serializers.BooleanField(required=False, default=False,
                                       help_text="Read tools run for real; write tools are simulated.")

    def split(self) -> tuple[str, object, dict, bool]:
        data = dict(self.validated_data)
        limits = {name: data.pop(name) for name in ("max_steps", "timeout_seconds", "max_tokens", "max_cost_usd")
                  if name in data}
        return data["goal"], data.get("context"), limits, data.get("dry_run", False)

    def validate_context(self, value):
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("Context must be a JSON object.")
        return value


class UsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=False)


class RunSerializer(serializers.ModelSerializer):
    agent_name = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    # Blank until the run ends; declared so the schema's enum admits "" (read-only fields lose allow_blank).
    stop_reason = serializers.ChoiceField(choices=Run.StopReason.choices, allow_blank=True, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Run
        fields = [
            "id", "agent", "agent_name", "parent", "goal", "context", "status", "answer", "stop_reason", "error",
            "pause_reason", "dry_run", "steps", "model", "limits", "usage", "last_seq", "attempts", "created_by",
            "created_at",
            "started_at", "finished_at", "deadline_at", "duration_seconds",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_agent_name(self, run: Run) -> str:
        return run.config.get("name", "")

    @extend_schema_field(serializers.CharField())
    def get_model(self, run: Run) -> str:
        return run.config.get("model", "")

    limits = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DictField())
    def get_limits(self, run: Run) -> dict:
        return {k: run.config.get(k) for k in ("max_steps", "timeout_seconds", "max_tokens", "max_cost_usd")}

    @extend_schema_field(UsageSerializer)
    def get_usage(self, run: Run) -> dict:
        return {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens, "cost_usd": run.cost_usd}


class RunEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunEvent
        fields = ["seq", "type", "data", "created_at"]


class ModelInfoSerializer(serializers.Serializer):
    id = serializers.CharField()
    provider = serializers.CharField()
    label = serializers.CharField()


class UncertainWriteDecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["retry", "skip"])


class ToolInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    input_schema = serializers.JSONField()
    side_effect = serializers.ChoiceField(choices=["read", "write"])
    timeout_seconds = serializers.FloatField()


class ApprovalSerializer(serializers.ModelSerializer):
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    agent_name = serializers.SerializerMethodField()

    class Meta:
        model = Approval
        fields = ["id", "run", "agent_name", "call_id", "tool", "arguments", "edited_arguments", "step", "status",
                  "message", "decided_by", "decided_at", "expires_at", "created_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_agent_name(self, approval: Approval) -> str:
        return approval.run.config.get("name", "")


class ApprovalDecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "edit", "reject"])
    arguments = serializers.DictField(required=False, help_text="With `edit`: the arguments to run the tool with.")
    message = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000,
                                    help_text="With `reject`: shown to the model.")

    def validate_arguments(self, value: dict) -> dict:
        reject_null_characters(value)
        return value

    def validate(self, attrs: dict) -> dict:
        if attrs["decision"] == "edit" and "arguments" not in attrs:
            raise serializers.ValidationError({"arguments": ["Required when the decision is edit."]})
        return attrs


class AgentShareSerializer(serializers.Serializer):
    team = serializers.UUIDField(allow_null=True, required=False, default=None,
                                 help_text="A team of the organization; null shares with the whole organization.")
    team_name = serializers.SerializerMethodField()
    can_edit = serializers.BooleanField(required=False, default=False,
                                        help_text="Whether the people it is shared with may also change it.")
    created_at = serializers.DateTimeField(read_only=True)

    @extend_schema_field(serializers.CharField())
    def get_team_name(self, share) -> str:
        return share.team.name if share.team_id else "Whole organization"

    def to_representation(self, share):
        data = super().to_representation(share)
        data["team"] = str(share.team_id) if share.team_id else None
        return data
