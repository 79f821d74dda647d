"""Forms for the web UI. Rules live in the API serializers; `clean()` hands the data to them, so
the browser and the API accept and refuse the same things."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from accounts.models import Organization
from agents import selectors as agent_selectors
from automations import cron, selectors
from automations.models import MAX_RETRIES_LIMIT, Schedule, Trigger
from automations.serializers import ScheduleSerializer, TriggerSerializer
from automations.services import DEFAULT_TEMPLATES, TERMINAL_STATUSES


def _copy_errors(form: forms.Form, errors: dict[str, Any], aliases: dict[str, str] | None = None) -> None:
    for field, messages in errors.items():
        if isinstance(messages, dict):  # nested serializer (the plain form)
            for inner, inner_messages in messages.items():
                _copy_errors(form, {inner: inner_messages}, aliases)
            continue
        field = (aliases or {}).get(field, field)
        target = field if field in form.fields else None
        for message in messages if isinstance(messages, list) else [messages]:
            form.add_error(target, str(message))


def _json_object(raw: str) -> dict | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    if not isinstance(value, dict):
        raise forms.ValidationError('Must be a JSON object, like {"key": "value"}.')
    return value


def _agent_choices(organization: Organization, viewer) -> list[tuple[str, str]]:
    agents = agent_selectors.agent_list(organization=organization, viewer=viewer, ordering="name")
    return [(str(a.id), a.name) for a in agents]


class ScheduleForm(forms.Form):
    MODES = [("plain", "In words"), ("cron", "Cron expression")]

    name = forms.CharField(max_length=120, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    agent = forms.ChoiceField()
    mode = forms.ChoiceField(choices=MODES, initial="plain", widget=forms.RadioSelect, label="Repeat")
    frequency = forms.ChoiceField(choices=list(cron.FREQUENCIES.items()), required=False, initial="weekdays")
    time = forms.CharField(required=False, initial="09:00", max_length=5,
                           widget=forms.TextInput(attrs={"placeholder": "09:00", "inputmode": "numeric",
                                                         "autocomplete": "off"}),
                           help_text="HH:MM, 24-hour, in the time zone below.")
    weekday = forms.ChoiceField(choices=[(d.lower(), d) for d in cron.WEEKDAY_LABELS], required=False,
                                initial="monday", help_text="For weekly schedules.")
    day = forms.IntegerField(required=False, min_value=1, max_value=cron.MONTHLY_MAX_DAY, initial=1,
                             label="Day of month", help_text=f"For monthly schedules, 1–{cron.MONTHLY_MAX_DAY}.")
    cron = forms.CharField(required=False, max_length=100, label="Cron expression",
                           widget=forms.TextInput(attrs={"placeholder": "0 9 * * 1-5", "spellcheck": "false",
                                                         "class": "mono-input"}),
                           help_text="minute hour day-of-month month day-of-week.")
    timezone = forms.ChoiceField(initial="UTC", label="Time zone")
    goal = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="What the agent does each time.")
    context = forms.CharField(required=False, label="Context (JSON, optional)",
                              widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false",
                                                           "placeholder": '{"report": "weekly"}'}))
    enabled = forms.BooleanField(required=False, initial=True)
    notify_on_success = forms.BooleanField(required=False, label="Email me when a run succeeds too",
                                           help_text="Failures are always emailed, after the last retry.")
    max_retries = forms.IntegerField(min_value=0, max_value=MAX_RETRIES_LIMIT, initial=3, label="Retries",
                                     help_text="Attempts after a failure, waiting 30 s, 2 min, 8 min, …")

    def __init__(self, *args: Any, organization: Organization, viewer: Any, instance: Schedule | None = None,
                 agent_id: str | None = None, **kwargs: Any) -> None:
        self.organization = organization
        self.viewer = viewer
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            initial: dict[str, Any] = {
                "name": instance.name, "agent": str(instance.agent_id), "mode": "cron", "cron": instance.cron,
                "timezone": instance.timezone, "goal": instance.goal, "enabled": instance.enabled,
                "notify_on_success": instance.notify_on_success, "max_retries": instance.max_retries,
                "context": json.dumps(instance.context, indent=2) if instance.context is not None else "",
            }
            plain = cron.plain_from_cron(cron.parse(instance.cron))
            if plain is not None:
                initial |= {"mode": "plain", "frequency": plain.frequency, "time": plain.time,
                            "weekday": cron.WEEKDAY_LABELS[plain.weekday or 0].lower(), "day": plain.day or 1}
            kwargs["initial"] = initial
        elif agent_id:
            kwargs.setdefault("initial", {})["agent"] = agent_id
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = _agent_choices(organization, viewer)
        self.fields["timezone"].choices = [(name, name) for name in cron.timezone_names()]
        self.validated_data: dict[str, Any] = {}

    def clean_context(self) -> dict | None:
        return _json_object(self.cleaned_data.get("context", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        data: dict[str, Any] = {
            key: cleaned.get(key) for key in ("agent", "name", "timezone", "goal", "context", "enabled",
                                              "notify_on_success", "max_retries")
        }
        if cleaned.get("mode") == "cron":
            data["cron"] = cleaned.get("cron") or ""
        else:
            plain = {"frequency": cleaned.get("frequency"), "time": cleaned.get("time") or ""}
            if plain["frequency"] == "weekly":
                plain["weekday"] = cleaned.get("weekday")
            if plain["frequency"] == "monthly":
                plain["day"] = cleaned.get("day")
            data["plain"] = plain
        serializer = ScheduleSerializer(instance=self.instance, data=data,
                                        context={"organization": self.organization, "viewer": self.viewer})
        if serializer.is_valid():
            self.validated_data = dict(serializer.validated_data)
        else:
            _copy_errors(self, serializer.errors, aliases={"plain": "frequency", "non_field_errors": "__all__"})
        return cleaned


class TriggerForm(forms.Form):
    kind = forms.ChoiceField(choices=Trigger.Kind.choices, widget=forms.RadioSelect, initial=Trigger.Kind.WEBHOOK,
                             label="Starts when")
    name = forms.CharField(max_length=120, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    agent = forms.ChoiceField(label="Agent to start")
    goal_template = forms.CharField(
        required=False, label="Goal template",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono-input"}),
        help_text="Django template syntax. Webhooks: {{ payload.field }}, {{ payload|json }}. Run finished: "
                  "{{ run.answer }}, {{ run.status }}, {{ run.goal }}. Schedule fired: {{ schedule.name }}. "
                  "Tags: if, with, firstof. Leave empty for a sensible default.",
    )
    source_agent = forms.ChoiceField(required=False, label="When a run of this agent finishes")
    source_statuses = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="…with status",
        choices=[(s, s.replace("_", " ").capitalize()) for s in TERMINAL_STATUSES], initial=["succeeded"],
    )
    source_schedule = forms.ChoiceField(required=False, label="When this schedule fires")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, organization: Organization, viewer: Any, instance: Trigger | None = None,
                 agent_id: str | None = None, **kwargs: Any) -> None:
        self.organization = organization
        self.viewer = viewer
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "kind": instance.kind, "name": instance.name, "agent": str(instance.agent_id),
                "goal_template": instance.goal_template, "enabled": instance.enabled,
                "source_agent": str(instance.source_agent_id or ""), "source_statuses": instance.source_statuses,
                "source_schedule": str(instance.source_schedule_id or ""),
            }
        elif agent_id:
            kwargs.setdefault("initial", {})["agent"] = agent_id
        super().__init__(*args, **kwargs)
        agents = _agent_choices(organization, viewer)
        self.fields["agent"].choices = agents
        self.fields["source_agent"].choices = [("", "—")] + agents
        self.fields["source_schedule"].choices = [("", "—")] + [
            (str(s.id), f"{s.name} ({s.agent.name})")
            for s in selectors.schedule_list(organization=organization, viewer=viewer)
        ]
        if instance is not None:
            self.fields["kind"].disabled = True
        self.validated_data: dict[str, Any] = {}

    def default_templates(self) -> dict[str, str]:
        return {str(kind): template for kind, template in DEFAULT_TEMPLATES.items()}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        kind = cleaned.get("kind")
        data: dict[str, Any] = {"kind": kind, "name": cleaned.get("name"), "agent": cleaned.get("agent"),
                                "enabled": cleaned.get("enabled")}
        if cleaned.get("goal_template", "").strip():
            data["goal_template"] = cleaned["goal_template"]
        elif self.instance is not None:
            data["goal_template"] = DEFAULT_TEMPLATES[kind]
        if kind == Trigger.Kind.RUN_FINISHED:
            data["source_agent"] = cleaned.get("source_agent") or None
            data["source_statuses"] = cleaned.get("source_statuses") or ["succeeded"]
            if not data["source_agent"]:
                self.add_error("source_agent", "Choose the agent whose finished runs start this one.")
                return cleaned
        if kind == Trigger.Kind.SCHEDULE_FIRED:
            data["source_schedule"] = cleaned.get("source_schedule") or None
            if not data["source_schedule"]:
                self.add_error("source_schedule", "Choose the schedule.")
                return cleaned
        serializer = TriggerSerializer(instance=self.instance, data=data,
                                       context={"organization": self.organization, "viewer": self.viewer})
        if serializer.is_valid():
            self.validated_data = dict(serializer.validated_data)
        else:
            _copy_errors(self, serializer.errors, aliases={"non_field_errors": "__all__"})
        return cleaned
