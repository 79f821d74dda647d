"""Admin for schedules, triggers and the event log. Saves go through the services, so the beat
entry of a schedule stays in sync and a webhook secret is generated (and shown once)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from accounts.admin_scoping import OrganizationScopedAdmin
from automations import cron, services
from automations.models import Schedule, ScheduleFiring, Trigger, TriggerEvent


def _check(form: forms.ModelForm, model, validate) -> None:
    """Run the service's own checks on what the admin form holds, so refusals show on the form."""
    if form.errors:
        return
    names = {field.name for field in model._meta.fields}
    values = {name: value for name, value in form.cleaned_data.items() if name in names}
    if not form.instance._state.adding:
        # Fields shown read-only on the change form (the kind) keep their stored value.
        values = {name: getattr(form.instance, name) for name in ("organization_id", "kind") if name in names
                  or name == "organization_id"} | values
    candidate = model(**values)
    candidate.pk = form.instance.pk
    try:
        validate(candidate)
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)


class ScheduleAdminForm(forms.ModelForm):
    timezone = forms.ChoiceField(choices=[])

    class Meta:
        model = Schedule
        fields = ["organization", "agent", "owner", "name", "cron", "timezone", "goal", "context", "enabled",
                  "notify_on_success", "max_retries"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = [(name, name) for name in cron.timezone_names()]
        self.fields["cron"].help_text = "minute hour day-of-month month day-of-week, e.g. 0 9 * * 1-5"

    def clean(self):
        cleaned = super().clean()
        _check(self, Schedule, services.schedule_validate)
        return cleaned


class ScheduleFiringInline(admin.TabularInline):
    model = ScheduleFiring
    fk_name = "schedule"
    fields = ["occurrence_at", "origin", "attempt", "outcome", "run", "due_at", "error", "notification"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-created_at"]
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Schedule)
class ScheduleAdmin(OrganizationScopedAdmin):
    form = ScheduleAdminForm
    list_display = ["name", "agent", "organization", "cron", "description", "timezone", "enabled", "next_fire_at",
                    "owner"]
    list_filter = ["enabled", "organization", "timezone"]
    search_fields = ["name", "goal", "agent__name"]
    readonly_fields = ["id", "description", "next_fire_times", "periodic_task", "last_fired_at", "created_at",
                       "updated_at"]
    inlines = [ScheduleFiringInline]
    actions = ["fire_now", "enable", "disable"]

    @admin.display(description="Next 5 fire times")
    def next_fire_times(self, schedule: Schedule) -> str:
        if schedule._state.adding:
            return "—"
        times = services.schedule_next_fire_times(schedule)
        return format_html_join("", "<div>{}</div>", ((t.strftime("%a %Y-%m-%d %H:%M %Z"),) for t in times)) or "—"

    def save_model(self, request, obj: Schedule, form, change):
        fields = {name: form.cleaned_data[name] for name in ScheduleAdminForm.Meta.fields if name != "organization"}
        if change:
            saved = services.schedule_update(schedule=obj, actor=request.user, **fields)
        else:
            saved = services.schedule_create(organization=form.cleaned_data["organization"], actor=request.user,
                                             **fields)
        obj.pk = saved.pk
        obj.id = saved.id

    def delete_model(self, request, obj: Schedule):
        services.schedule_delete(schedule=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for schedule in queryset:
            services.schedule_delete(schedule=schedule, actor=request.user)

    @admin.action(description="Run now")
    def fire_now(self, request, queryset):
        for schedule in queryset:
            services.schedule_fire(schedule=schedule, actor=request.user)
        self.message_user(request, f"Started {queryset.count()} run(s).")

    @admin.action(description="Enable")
    def enable(self, request, queryset):
        for schedule in queryset:
            services.schedule_set_enabled(schedule=schedule, enabled=True, actor=request.user)

    @admin.action(description="Disable")
    def disable(self, request, queryset):
        for schedule in queryset:
            services.schedule_set_enabled(schedule=schedule, enabled=False, actor=request.user)


@admin.register(ScheduleFiring)
class ScheduleFiringAdmin(OrganizationScopedAdmin):
    perm_map = {"view": "automations.view_schedule"}
    list_display = ["schedule", "occurrence_at", "origin", "attempt", "outcome", "run", "notification", "created_at"]
    list_filter = ["outcome", "origin", "notification"]
    search_fields = ["schedule__name", "error"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in ScheduleFiring._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and self.has_view_permission(request, obj)


class TriggerAdminForm(forms.ModelForm):
    class Meta:
        model = Trigger
        fields = ["organization", "agent", "owner", "name", "kind", "enabled", "goal_template", "source_agent",
                  "source_statuses", "source_schedule"]

    def clean(self):
        cleaned = super().clean()
        _check(self, Trigger, services.trigger_validate)
        return cleaned


@admin.register(Trigger)
class TriggerAdmin(OrganizationScopedAdmin):
    form = TriggerAdminForm
    list_display = ["name", "kind", "agent", "organization", "enabled", "accepted_count", "rejected_count",
                    "last_called_at"]
    list_filter = ["kind", "enabled", "organization"]
    search_fields = ["name", "agent__name", "public_id"]
    readonly_fields = ["id", "public_id", "secret_hint", "secret_rotated_at", "accepted_count", "rejected_count",
                       "last_called_at", "armed_at", "created_at", "updated_at"]
    actions = ["rotate_secret"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "kind"] if obj is not None else self.readonly_fields

    def save_model(self, request, obj: Trigger, form, change):
        data = form.cleaned_data
        fields = {name: data[name] for name in ("agent", "owner", "name", "enabled", "goal_template",
                                                "source_agent", "source_statuses", "source_schedule") if name in data}
        if change:
            saved = services.trigger_update(trigger=obj, actor=request.user, **fields)
        else:
            created = services.trigger_create(organization=data["organization"], actor=request.user,
                                              kind=data["kind"], **fields)
            saved = created.trigger
            if created.secret:
                # Admin messages are the only place an admin-created secret can be shown; once.
                messages.warning(request, f"Signing secret for “{saved.name}” (shown once, store it now): "
                                          f"{created.secret}")
        obj.pk = saved.pk
        obj.id = saved.id

    def delete_model(self, request, obj: Trigger):
        services.trigger_delete(trigger=obj, actor=request.user)

    @admin.action(description="Rotate webhook secret")
    def rotate_secret(self, request, queryset):
        for trigger in queryset.filter(kind=Trigger.Kind.WEBHOOK):
            secret = services.trigger_rotate_secret(trigger=trigger, actor=request.user)
            messages.warning(request, f"New signing secret for “{trigger.name}” (shown once): {secret}")


@admin.register(TriggerEvent)
class TriggerEventAdmin(OrganizationScopedAdmin):
    perm_map = {"view": "automations.view_trigger"}
    list_display = ["received_at", "trigger_name", "kind", "outcome", "reason", "status_code", "remote_addr", "run"]
    list_filter = ["outcome", "kind", "reason", "organization"]
    search_fields = ["trigger_name", "reason", "message", "payload_excerpt"]
    date_hierarchy = "received_at"

    def get_readonly_fields(self, request, obj=None):
        return [*(field.name for field in TriggerEvent._meta.fields), "pretty_chain"]

    @admin.display(description="Chain")
    def pretty_chain(self, event: TriggerEvent) -> str:
        return format_html("<code>{}</code>", json.dumps(event.chain))

    # The event log is an audit record: read-only in admin.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and self.has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
