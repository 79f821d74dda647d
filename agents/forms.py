"""Forms for the web UI. Field rules are not restated here: `clean()` hands the data to the same
serializers the API uses, so a rule changes in one place and the browser and API agree."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings

from agents.llm import registry as model_registry
from agents.models import MAX_STEPS_LIMIT, TIMEOUT_LIMIT_SECONDS, Agent
from agents.serializers import AgentSerializer, RunCreateSerializer
from integrations import tools as tool_registry


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

    def __init__(self, *args: Any, instance: Agent | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": instance.name,
                "description": instance.description,
                "system_prompt": instance.system_prompt,
                "model": instance.model,
                "tools": list(instance.tools),
                "max_steps": instance.max_steps,
                "timeout_seconds": instance.timeout_seconds,
            }
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

        self._tools = tool_registry.all_tools()
        self.fields["tools"].choices = [(t.name, t.name) for t in self._tools]

    def tool_options(self) -> list[dict[str, Any]]:
        """The tool checkboxes with what a person needs to choose them: description and side effect."""
        selected = set(self["tools"].value() or [])
        return [
            {
                "name": t.name,
                "description": t.description,
                "side_effect": t.side_effect.value,
                "side_effect_label": t.side_effect.label,
                "checked": t.name in selected,
                "id": f"id_tools_{index}",
            }
            for index, t in enumerate(self._tools)
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        serializer = AgentSerializer(instance=self.instance, data=cleaned)
        if serializer.is_valid():
            self.validated_data = dict(serializer.validated_data)
        else:
            _copy_errors(self, serializer.errors)
        return cleaned


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validated_data: dict[str, Any] = {}

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
        serializer = RunCreateSerializer(data={"goal": cleaned["goal"], "context": cleaned.get("context")})
        if serializer.is_valid():
            self.validated_data = dict(serializer.validated_data)
        else:
            _copy_errors(self, serializer.errors)
        return cleaned
