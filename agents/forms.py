"""Forms for the web UI. Field rules are not restated here: `clean()` hands the data to the same
serializers the API uses, so a rule changes in one place and the browser and API agree."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from agents.llm import registry as model_registry
from agents.models import MAX_STEPS_LIMIT, TIMEOUT_LIMIT_SECONDS, Agent
from agents.serializers import AgentSerializer, RunCreateSerializer
from integrations import catalog as integration_catalog
from integrations import selectors as integration_selectors
from integrations import tools as tool_registry
from integrations.tools import SideEffect

POLICY_PREFIX = "policy_"
# Per integration its tools use: "integration-<slug>-connection" and "integration-<slug>-scopes".
INTEGRATION_PREFIX = "integration-"
MAX_TOKENS_LIMIT = 100_000_000


def _copy_errors(form: forms.Form, errors: dict[str, Any]) -> None:
    for field, messages in errors.items():
        target = field if field in form.fields else None
        for message in messages if isinstance(messages, list) else [messages]:
            form.add_error(target, str(message))


class AgentForm(forms.Form):
    name = forms.CharField(max_length=120, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    description = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Shown in the agent list; the model does not see it.",
    )
    system_prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text="Instructions the model follows on every run.",
    )
    model = forms.ChoiceField()
    tools = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    max_steps = forms.IntegerField(
        min_value=1, max_value=MAX_STEPS_LIMIT, initial=10, help_text=f"Model calls per run, 1–{MAX_STEPS_LIMIT}."
    )
    timeout_seconds = forms.IntegerField(
        min_value=5,
        max_value=TIMEOUT_LIMIT_SECONDS,
        initial=300,
        label="Timeout (seconds)",
        help_text=f"Wall-clock limit per run, 5–{TIMEOUT_LIMIT_SECONDS}.",
    )
    max_tokens = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_TOKENS_LIMIT,
        label="Token budget",
        help_text="Input + output tokens per run; the run stops when it is used up.",
        widget=forms.NumberInput(attrs={"placeholder": "no limit"}),
    )
    max_cost_usd = forms.DecimalField(
        required=False,
        min_value=Decimal("0.0001"),
        max_digits=10,
        decimal_places=4,
        label="Cost budget (USD)",
        help_text="Model spend per run, in US dollars.",
        widget=forms.NumberInput(attrs={"placeholder": "no limit", "step": "0.0001"}),
    )
    approval_timeout_seconds = forms.IntegerField(
        min_value=60,
        max_value=7 * 24 * 3600,
        initial=3600,
        label="Approval timeout (seconds)",
        help_text="How long a tool call waits for a person, 60–604800 (a week).",
    )
    approval_expiry_outcome = forms.ChoiceField(
        choices=Agent.ExpiryOutcome.choices,
        initial=Agent.ExpiryOutcome.REJECT,
        label="When nobody decides in time",
    )

    def __init__(self, *args: Any, instance: Agent | None = None, organization=None, actor=None,
                 **kwargs: Any) -> None:
        self.instance = instance
        self.organization = organization if organization is not None else getattr(instance, "organization", None)
        self.actor = actor
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": instance.name,
                "description": instance.description,
                "system_prompt": instance.system_prompt,
                "model": instance.model,
                "tools": list(instance.tools),
                "max_steps": instance.max_steps,
                "timeout_seconds": instance.timeout_seconds,
                "max_tokens": instance.max_tokens,
                "max_cost_usd": instance.max_cost_usd,
                "approval_timeout_seconds": instance.approval_timeout_seconds,
                "approval_expiry_outcome": instance.approval_expiry_outcome,
            } | {POLICY_PREFIX + tool: policy for tool, policy in (instance.tool_policies or {}).items()}
        super().__init__(*args, **kwargs)
        self.validated_data: dict[str, Any] = {}

        choices = [(m.id, m.label) for m in model_registry.available_models()]
        # An agent saved with a model that is no longer configured (say the API key was removed)
        # still shows what it uses; saving asks for an available one.
        if instance is not None and not model_registry.is_available(instance.model):
            choices.append((instance.model, f"{instance.model} (not available)"))
        self.fields["model"].choices = choices
        if instance is None:
            self.fields["model"].initial = settings.DEFAULT_MODEL

        # Built-in tools, then each integration's (connector, OpenAPI and MCP tools of this organization).
        organization_id = self.organization.id if self.organization is not None else None
        self._integrations = {i.slug: i for i in integration_catalog.all_integrations(organization_id)}
        self._tools = sorted(
            tool_registry.for_organization(organization_id).values(),
            key=lambda t: (t.integration is not None, self._group(t).lower(), t.name),
        )
        self.fields["tools"].choices = [(t.name, t.name) for t in self._tools]
        for t in self._tools:
            default = Agent.Policy.ASK if t.side_effect == SideEffect.WRITE else Agent.Policy.AUTO
            self.fields[POLICY_PREFIX + t.name] = forms.ChoiceField(
                required=False,
                label=f"Policy for {t.name}",
                choices=[("", f"Default: {default.label.lower()}"), *Agent.Policy.choices],
            )
        self._add_integration_fields()

    def _group(self, tool: tool_registry.Tool) -> str:
        if tool.integration is None:
            return "Built-in"
        found = self._integrations.get(tool.integration)
        return found.name if found else tool.integration

    def _add_integration_fields(self) -> None:
        """Which connection and scopes each integration the agent may use acts with."""
        saved = (self.instance.integrations or {}) if self.instance is not None else {}
        current_tools = list(self.instance.tools) if self.instance is not None else []
        self._integration_slugs: list[str] = []
        for slug in dict.fromkeys(t.integration for t in self._tools if t.integration):
            integration = self._integrations.get(slug)
            if integration is None:
                continue
            self._integration_slugs.append(slug)
            setting = saved.get(slug) if isinstance(saved.get(slug), dict) else {}
            if integration_selectors.needs_connection(integration) and self.organization is not None:
                current = str(setting.get("connection") or integration_selectors.RUNNER)
                choices = integration_selectors.connection_choices(
                    organization=self.organization, actor=self.actor or _NoActor(), integration=integration,
                    current=current,
                )
                self.fields[f"{INTEGRATION_PREFIX}{slug}-connection"] = forms.ChoiceField(
                    required=False, label=f"{integration.name} connection", initial=current,
                    choices=[(c.value, c.label) for c in choices],
                    help_text="Acting as the person running the agent, each run uses its starter's own connection.",
                )
            used = [t for t in self._tools if t.integration == slug and t.name in current_tools]
            scopes = setting.get("scopes")
            self.fields[f"{INTEGRATION_PREFIX}{slug}-scopes"] = forms.MultipleChoiceField(
                required=False, label=f"{integration.name} scopes", widget=forms.CheckboxSelectMultiple,
                choices=[(s.name, s.name) for s in integration.scopes],
                initial=list(scopes) if isinstance(scopes, list) else integration_selectors.scopes_needed(integration,
                                                                                                          used),
            )

    def integration_settings(self) -> list[dict[str, Any]]:
        """One block per integration: its connection select and scopes checklist, shown while one
        of its tools is ticked (static/js/integrations.js; the server ignores the others)."""
        selected = set(self["tools"].value() or [])
        blocks = []
        for slug in self._integration_slugs:
            integration = self._integrations[slug]
            connection = self.fields.get(f"{INTEGRATION_PREFIX}{slug}-connection")
            scopes = self[f"{INTEGRATION_PREFIX}{slug}-scopes"]
            chosen = set(scopes.value() or [])
            blocks.append({
                "slug": slug,
                "name": integration.name,
                "active": any(t.integration == slug and t.name in selected for t in self._tools),
                "connection": self[f"{INTEGRATION_PREFIX}{slug}-connection"] if connection is not None else None,
                "scopes": scopes,
                "scope_options": [
                    {"name": s.name, "description": s.description, "write": s.write, "checked": s.name in chosen,
                     "id": f"id_{INTEGRATION_PREFIX}{slug}-scope-{index}"}
                    for index, s in enumerate(integration.scopes)
                ],
            })
        return blocks

    def tool_options(self) -> list[dict[str, Any]]:
        """The tool checkboxes with what a person needs to choose them: description, side effect
        and the policy select that goes with each."""
        selected = set(self["tools"].value() or [])
        return [
            {
                "name": t.name,
                "description": t.description,
                "side_effect": t.side_effect.value,
                "side_effect_label": t.side_effect.label,
                "checked": t.name in selected,
                "id": f"id_tools_{index}",
                "policy": self[POLICY_PREFIX + t.name],
                "group": self._group(t),
                "integration": t.integration or "",
                "scopes": list(t.scopes),
            }
            for index, t in enumerate(self._tools)
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        # A policy only means something for a ticked tool; "default" is the absence of one.
        tools = set(cleaned.get("tools") or [])
        chosen = {key.removeprefix(POLICY_PREFIX): cleaned.pop(key)
                  for key in [k for k in cleaned if k.startswith(POLICY_PREFIX)]}
        policies = {name: policy for name, policy in chosen.items() if policy and name in tools}
        integration_values = self._integration_values(cleaned)
        data = dict(cleaned, tool_policies=policies, integrations=integration_values)
        serializer = AgentSerializer(instance=self.instance, data=data,
                                     context={"organization": self.organization, "actor": self.actor})
        if not serializer.is_valid():
            errors = dict(serializer.errors)
            self._add_integration_errors({k: errors.pop(k) for k in list(errors) if k.startswith("integrations")})
            _copy_errors(self, errors)
            return cleaned
        self.validated_data = dict(serializer.validated_data)
        if self.organization is not None:
            # The same rule the API applies (integrations.selectors), here with its errors placed
            # next to the integration's fields.
            try:
                self.validated_data["integrations"] = integration_selectors.agent_integrations_clean(
                    organization=self.organization, tools=list(self.validated_data.get("tools") or []),
                    value=integration_values, actor=self.actor,
                    current=self.instance.integrations if self.instance is not None else None,
                )
            except ValidationError as exc:
                self.validated_data = {}
                self._add_integration_errors(exc.message_dict)
        return cleaned

    def _add_integration_errors(self, errors: dict[str, Any]) -> None:
        """Errors keyed `integrations.<slug>.connection|scopes` go next to those fields."""
        for key, messages in errors.items():
            if isinstance(messages, dict):  # nested under "integrations" by a serializer field
                self._add_integration_errors(messages)
                continue
            slug, _, part = str(key).removeprefix("integrations.").rpartition(".")
            target = f"{INTEGRATION_PREFIX}{slug}-{part}"
            for message in messages if isinstance(messages, list) else [messages]:
                self.add_error(target if target in self.fields else None, str(message))

    def _integration_values(self, cleaned: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The integration fields as Agent.integrations, taken out of `cleaned` (the serializer
        has no fields by these names)."""
        values: dict[str, dict[str, Any]] = {}
        for slug in self._integration_slugs:
            connection = cleaned.pop(f"{INTEGRATION_PREFIX}{slug}-connection", None)
            scopes = cleaned.pop(f"{INTEGRATION_PREFIX}{slug}-scopes", None)
            values[slug] = {"connection": connection or integration_selectors.RUNNER, "scopes": list(scopes or [])}
        return values


class _NoActor:
    """Stands in for the builder when a form is made without one: owns no connection."""

    pk = None

    def get_username(self) -> str:
        return ""


class RunForm(forms.Form):
    goal = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What should the agent do? e.g. What is 17 * 23?"}),
    )
    context = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "placeholder": '{"customer": "ACME"}'}),
        label="Context (JSON, optional)",
        help_text="A JSON object the agent receives with the goal.",
    )
    # Per-run limits: left empty, the agent's own apply.
    max_steps = forms.IntegerField(required=False, min_value=1, max_value=MAX_STEPS_LIMIT, label="Max steps")
    timeout_seconds = forms.IntegerField(
        required=False, min_value=5, max_value=TIMEOUT_LIMIT_SECONDS, label="Timeout (seconds)"
    )
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=MAX_TOKENS_LIMIT, label="Token budget")
    max_cost_usd = forms.DecimalField(
        required=False, min_value=Decimal("0.0001"), max_digits=10, decimal_places=4, label="Cost budget (USD)",
        widget=forms.NumberInput(attrs={"step": "0.0001"}),
    )
    dry_run = forms.BooleanField(
        required=False,
        label="Dry run",
        help_text="Read tools run for real; write tools are simulated and nothing needs approval.",
    )

    LIMITS = ("max_steps", "timeout_seconds", "max_tokens", "max_cost_usd")

    def __init__(self, *args: Any, agent: Agent | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validated_data: dict[str, Any] = {}
        if agent is not None:
            # The agent's value is what an empty field means.
            defaults = {
                "max_steps": agent.max_steps,
                "timeout_seconds": agent.timeout_seconds,
                "max_tokens": agent.max_tokens,
                "max_cost_usd": agent.max_cost_usd,
            }
            for name, value in defaults.items():
                if isinstance(value, Decimal):
                    value = f"{value.normalize():f}"
                self.fields[name].widget.attrs["placeholder"] = (
                    f"agent's: {value}" if value is not None else "agent's: no limit"
                )

    def limit_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.LIMITS]

    @property
    def limits_changed(self) -> bool:
        return any(self[name].value() not in (None, "") or self[name].errors for name in self.LIMITS)

    def clean_context(self) -> dict | None:
        raw = self.cleaned_data.get("context", "").strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Context is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Context must be a JSON object, like {"key": "value"}.')
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        data = {"goal": cleaned["goal"], "context": cleaned.get("context"), "dry_run": cleaned.get("dry_run", False)}
        data |= {name: cleaned[name] for name in self.LIMITS if cleaned.get(name) is not None}
        serializer = RunCreateSerializer(data=data)
        if serializer.is_valid():
            goal, context, limits, dry_run = serializer.split()
            self.validated_data = {"goal": goal, "context": context, "limits": limits, "dry_run": dry_run}
        else:
            _copy_errors(self, serializer.errors)
        return cleaned


class ApprovalDecisionForm(forms.Form):
    """Approve, approve with edited arguments, or reject. The arguments are checked against the
    tool's schema by `approvals.approval_decide`; this form only makes sure they are a JSON object."""

    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("edit", "Approve with edits"),
                                          ("reject", "Reject")])
    arguments = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}))
    message = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_arguments(self) -> dict | None:
        if self.data.get("decision") != "edit":
            return None
        raw = self.cleaned_data.get("arguments", "").strip()
        if not raw:
            raise forms.ValidationError("Give the arguments to run the tool with, as a JSON object.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError('The arguments must be a JSON object, like {"key": "value"}.')
        return value
