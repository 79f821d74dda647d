from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from agents.models import Agent, Run, RunEvent


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "model", "tool_list", "max_steps", "timeout_seconds", "created_by",
                    "updated_at"]
    list_filter = ["organization", "model"]
    search_fields = ["name", "description", "system_prompt"]
    readonly_fields = ["id", "created_by", "created_at", "updated_at"]

    @admin.display(description="Tools")
    def tool_list(self, agent: Agent) -> str:
        return ", ".join(agent.tools) or "—"

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class RunEventInline(admin.TabularInline):
    model = RunEvent
    fields = ["seq", "type", "pretty_data", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["seq"]

    @admin.display(description="Data")
    def pretty_data(self, event: RunEvent) -> str:
        return format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>", json.dumps(event.data, indent=2))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "agent_name", "status", "stop_reason", "steps", "input_tokens", "output_tokens",
                    "cost_usd", "created_at", "finished_at"]
    list_filter = ["status", "stop_reason", "organization"]
    search_fields = ["id", "goal", "answer", "agent__name"]
    date_hierarchy = "created_at"
    inlines = [RunEventInline]

    @admin.display(description="Agent")
    def agent_name(self, run: Run) -> str:
        return run.config.get("name", "")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Run._meta.fields]

    # Runs are an audit record: read-only in admin.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
