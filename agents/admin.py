from __future__ import annotations

import json
from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin_scoping import OrganizationScopedAdmin
from accounts.audit import audit_record
from agents import approvals, services
from agents.models import Agent, AgentShare, Approval, Run, RunEvent


class AgentShareInline(admin.TabularInline):
    model = AgentShare
    extra = 0
    fields = ["team", "can_edit", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]


@admin.register(Agent)
class AgentAdmin(OrganizationScopedAdmin):
    # Sharing rules don't apply here: the admin is for those who manage every agent.
    perm_map = {"view": "agents.view_all_agents", "change": "agents.manage_all_agents",
                "delete": "agents.manage_all_agents"}
    inlines = [AgentShareInline]
    list_display = ["name", "organization", "model", "tool_list", "policy_list", "max_steps", "timeout_seconds",
                    "budget", "created_by", "updated_at"]
    list_filter = ["organization", "model", "approval_expiry_outcome"]
    search_fields = ["name", "description", "system_prompt"]
    readonly_fields = ["id", "created_by", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["id", "organization", "name", "description"]}),
        ("Behaviour", {"fields": ["system_prompt", "model", "tools"]}),
        ("Approvals", {
            "fields": ["tool_policies", "approval_timeout_seconds", "approval_expiry_outcome"],
            "description": 'Tool policies map a tool name to "auto", "ask" or "deny". Tools not listed: write '
                           "tools ask a person first, read tools run automatically.",
        }),
        ("Limits and budgets", {"fields": ["max_steps", "timeout_seconds", "max_tokens", "max_cost_usd"]}),
        ("History", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]

    @admin.display(description="Tools")
    def tool_list(self, agent: Agent) -> str:
        return ", ".join(agent.tools) or "—"

    @admin.display(description="Policies")
    def policy_list(self, agent: Agent) -> str:
        policies = sorted((agent.tool_policies or {}).items())
        return ", ".join(f"{tool}: {policy}" for tool, policy in policies) or "default"

    @admin.display(description="Budget")
    def budget(self, agent: Agent) -> str:
        parts = []
        if agent.max_tokens:
            parts.append(f"{agent.max_tokens} tokens")
        if agent.max_cost_usd:
            parts.append(f"${agent.max_cost_usd}")
        return ", ".join(parts) or "—"

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        audit_record(action="agent.update" if change else "agent.create", actor=request.user,
                     organization_id=obj.organization_id, target=obj,
                     data={"via": "admin", "fields": sorted(form.changed_data)})

    def delete_model(self, request, obj):
        audit_record(action="agent.delete", actor=request.user, organization_id=obj.organization_id, target=obj,
                     data={"via": "admin"})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for agent in queryset:
            self.delete_model(request, agent)


class RunEventInline(admin.TabularInline):
    class Media:
        # A stylesheet, not a style attribute: the Content-Security-Policy allows no inline styles.
        css = {"all": ["css/admin.css"]}

    model = RunEvent
    fields = ["seq", "type", "pretty_data", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["seq"]

    @admin.display(description="Data")
    def pretty_data(self, event: RunEvent) -> str:
        return format_html("<pre class='agentry-event-data'>{}</pre>", json.dumps(event.data, indent=2))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ApprovalInline(admin.TabularInline):
    model = Approval
    fields = ["tool", "status", "decided_by", "decided_at", "expires_at", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, done: int, verb: str, problems: list[str]) -> None:
    if done:
        modeladmin.message_user(request, f"{verb} {done} run{'s' if done != 1 else ''}.", messages.SUCCESS)
    for problem in problems:
        modeladmin.message_user(request, problem, messages.WARNING)


def _steer(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Run], verb: str,
           service: Callable[..., Run]) -> None:
    """Apply one steering service to each selected run; a run in the wrong state is reported, not fatal."""
    done, problems = 0, []
    for run in modeladmin.scope(request, queryset, "agents.steer_run"):
        try:
            service(run=run, actor=request.user)
        except services.InvalidTransition as exc:
            problems.append(f"Run {str(run.id)[:8]}: {exc}")
        else:
            done += 1
    _report(modeladmin, request, done, verb, problems)


@admin.register(Run)
class RunAdmin(OrganizationScopedAdmin):
    perm_map = {"view": "agents.view_all_runs"}
    list_display = ["id", "agent_name", "status", "stop_reason", "dry_run", "steps", "attempts", "input_tokens",
                    "output_tokens", "cost_usd", "created_at", "finished_at"]
    list_filter = ["status", "stop_reason", "dry_run", "organization"]
    search_fields = ["id", "goal", "answer", "agent__name"]
    date_hierarchy = "created_at"
    inlines = [ApprovalInline, RunEventInline]
    actions = ["cancel_runs", "pause_runs", "resume_runs", "retry_runs", "rerun_runs"]

    @admin.display(description="Agent")
    def agent_name(self, run: Run) -> str:
        return run.config.get("name", "")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Run._meta.fields]

    # Runs are an audit record: read-only in admin. They are steered through the actions, which
    # go through the same services as the API and the UI.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and self.has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_steer_permission(self, request) -> bool:
        return self.allowed(request, "agents.steer_run")


    @admin.action(description="Cancel the selected runs", permissions=["steer"])
    def cancel_runs(self, request, queryset):
        _steer(self, request, queryset, "Cancelled (or asked to stop)", services.run_cancel)

    @admin.action(description="Pause the selected runs", permissions=["steer"])
    def pause_runs(self, request, queryset):
        _steer(self, request, queryset, "Paused (or asked to pause)", services.run_pause)

    @admin.action(description="Resume the selected runs", permissions=["steer"])
    def resume_runs(self, request, queryset):
        _steer(self, request, queryset, "Resumed", services.run_resume)

    @admin.action(description="Retry the selected runs", permissions=["steer"])
    def retry_runs(self, request, queryset):
        _steer(self, request, queryset, "Queued for retry", services.run_retry)

    @admin.action(description="Re-run the selected runs", permissions=["steer"])
    def rerun_runs(self, request, queryset):
        done, problems = 0, []
        for run in self.scope(request, queryset, "agents.run_agent"):
            if not run.is_finished:
                problems.append(f"Run {str(run.id)[:8]}: it hasn't finished yet, so it can't be re-run.")
                continue
            services.run_rerun(run=run, actor=request.user)
            done += 1
        if done:
            self.message_user(request, f"Started {done} new run{'s' if done != 1 else ''}.", messages.SUCCESS)
        for problem in problems:
            self.message_user(request, problem, messages.WARNING)


@admin.register(Approval)
class ApprovalAdmin(OrganizationScopedAdmin):
    perm_map = {"view": "agents.view_all_runs"}
    list_display = ["tool", "agent_name", "run_link", "status", "decided_by", "decided_at", "expires_at", "created_at"]
    list_filter = ["status", "tool", "organization"]
    search_fields = ["id", "tool", "call_id", "run__id", "message"]
    date_hierarchy = "created_at"
    list_select_related = ["run", "decided_by"]
    actions = ["approve", "reject"]

    @admin.display(description="Agent")
    def agent_name(self, approval: Approval) -> str:
        return approval.run.config.get("name", "")

    @admin.display(description="Run")
    def run_link(self, approval: Approval) -> str:
        url = reverse("admin:agents_run_change", args=[approval.run_id])
        return format_html('<a href="{}">{}</a>', url, str(approval.run_id)[:8])

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Approval._meta.fields]

    # Decided exactly once, through approval_decide: never edited, added or deleted by hand.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and self.has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_decide_permission(self, request) -> bool:
        return self.allowed(request, "agents.decide_approval")

    def _decide(self, request, queryset, decision: str, verb: str) -> None:
        done, problems = 0, []
        # Only in organizations where this person's role may decide (they may see others).
        for approval in self.scope(request, queryset, "agents.decide_approval").select_related("run"):
            try:
                approvals.approval_decide(approval=approval, decision=decision, actor=request.user)
            except approvals.ApprovalConflict as exc:
                problems.append(f"{approval.tool} for run {str(approval.run_id)[:8]}: {exc}")
            else:
                done += 1
        if done:
            self.message_user(request, f"{verb} {done} call{'s' if done != 1 else ''}.", messages.SUCCESS)
        for problem in problems:
            self.message_user(request, problem, messages.WARNING)

    @admin.action(description="Approve the selected calls", permissions=["decide"])
    def approve(self, request, queryset):
        self._decide(request, queryset, "approve", "Approved")

    @admin.action(description="Reject the selected calls", permissions=["decide"])
    def reject(self, request, queryset):
        self._decide(request, queryset, "reject", "Rejected")
