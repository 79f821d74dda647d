"""Server-rendered pages for schedules, triggers and the trigger event log. Each view resolves the
caller's organization, reads through `automations.selectors`, writes through
`automations.services`, and renders a template."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Page
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Organization
from accounts.roles import access_or_403
from agents import selectors as agent_selectors
from automations import cron, selectors, services, signing
from automations.forms import ScheduleForm, TriggerForm
from automations.models import Schedule, ScheduleFiring, Trigger, TriggerEvent
from config.ui import found_or_404, organization_or_403, page_of, role_required

PAGE_SIZE = 20


_organization = organization_or_403
_viewer = access_or_403


def _schedule_or_404(request: HttpRequest, schedule_id: uuid.UUID) -> Schedule:
    access = _viewer(request)
    schedule = selectors.schedule_get(organization=access.organization, viewer=access, schedule_id=schedule_id)
    return found_or_404(schedule, "No such schedule.")


def _trigger_or_404(request: HttpRequest, trigger_id: uuid.UUID) -> Trigger:
    access = _viewer(request)
    trigger = selectors.trigger_get(organization=access.organization, viewer=access, trigger_id=trigger_id)
    return found_or_404(trigger, "No such trigger.")


def _page(request: HttpRequest, items: Any) -> Page:
    return page_of(request, items, PAGE_SIZE)


def _agent_filter(request: HttpRequest):
    raw = request.GET.get("agent", "")
    try:
        agent_id = uuid.UUID(raw) if raw else None
    except ValueError:
        return None
    if not agent_id:
        return None
    access = _viewer(request)
    return agent_selectors.agent_get(organization=access.organization, viewer=access, agent_id=agent_id)


def _service_errors(form, exc: Exception) -> None:
    if isinstance(exc, services.NameTaken):
        form.add_error("name", str(exc))
    elif isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
    else:
        form.add_error(None, str(exc))


# --------------------------------------------------------------------------- schedules


def _decorate_schedule(schedule: Schedule, *, count: int = 1) -> Schedule:
    schedule.upcoming = services.schedule_next_fire_times(schedule, count=count)
    return schedule


@login_required
@require_GET
@role_required("automations.view_schedule")
def schedule_list(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    agent = _agent_filter(request)
    page = _page(request, selectors.schedule_list(organization=organization, viewer=_viewer(request),
                                                    agent_id=agent.id if agent else None))
    context = {
        "organization": organization,
        "page": page,
        "schedules": [_decorate_schedule(s) for s in page.object_list],
        "agent": agent,
        "page_query": urlencode({"agent": agent.id}) if agent else "",
        "has_agents": agent_selectors.agent_list(organization=organization, viewer=_viewer(request)).exists(),
        "section": "schedules",
    }
    return render(request, "automations/schedule_list.html", context)


def _schedule_form_page(request, organization, form, schedule) -> HttpResponse:
    return render(request, "automations/schedule_form.html",
                  {"organization": organization, "form": form, "schedule": schedule, "section": "schedules"})


@login_required
@require_http_methods(["GET", "POST"])
@role_required("automations.add_schedule")
def schedule_create(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    form = ScheduleForm(request.POST or None, organization=organization, viewer=_viewer(request),
                        agent_id=request.GET.get("agent"))
    if request.method == "POST" and form.is_valid():
        try:
            schedule = services.schedule_create(organization=organization, actor=request.user, **form.validated_data)
        except (ValidationError, services.NameTaken) as exc:
            _service_errors(form, exc)
        else:
            messages.success(request, f"Schedule “{schedule.name}” created.")
            return redirect("automations:schedule-detail", schedule_id=schedule.id)
    return _schedule_form_page(request, organization, form, None)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("automations.change_schedule")
def schedule_edit(request: HttpRequest, schedule_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    schedule = _schedule_or_404(request, schedule_id)
    form = ScheduleForm(request.POST or None, organization=organization, viewer=_viewer(request), instance=schedule)
    if request.method == "POST" and form.is_valid():
        try:
            schedule = services.schedule_update(schedule=schedule, actor=request.user, **form.validated_data)
        except (ValidationError, services.NameTaken) as exc:
            _service_errors(form, exc)
            schedule.refresh_from_db()
        else:
            messages.success(request, f"Schedule “{schedule.name}” saved.")
            return redirect("automations:schedule-detail", schedule_id=schedule.id)
    return _schedule_form_page(request, organization, form, _decorate_schedule(schedule, count=5))


@login_required
@require_GET
@role_required("automations.view_schedule")
def schedule_detail(request: HttpRequest, schedule_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    schedule = _decorate_schedule(_schedule_or_404(request, schedule_id), count=services.NEXT_FIRE_COUNT)
    page = _page(request, selectors.schedule_firings(schedule=schedule))
    firings = list(page.object_list)
    for firing in firings:
        firing.css = _FIRING_CLASS.get(firing.outcome, "queued")
    context = {
        "organization": organization,
        "schedule": schedule,
        "page": page,
        "firings": firings,
        "downstream": list(schedule.downstream_triggers.select_related("agent").order_by("name")),
        "section": "schedules",
    }
    return render(request, "automations/schedule_detail.html", context)


_FIRING_CLASS = {
    ScheduleFiring.Outcome.PENDING: "queued",
    ScheduleFiring.Outcome.RUNNING: "running",
    ScheduleFiring.Outcome.SUCCEEDED: "succeeded",
    ScheduleFiring.Outcome.RETRYING: "timed_out",
    ScheduleFiring.Outcome.FAILED: "failed",
    ScheduleFiring.Outcome.CANCELLED: "cancelled",
    ScheduleFiring.Outcome.SKIPPED: "paused",
}


@login_required
@require_POST
@role_required("automations.change_schedule")
def schedule_toggle(request: HttpRequest, schedule_id: uuid.UUID) -> HttpResponse:
    schedule = _schedule_or_404(request, schedule_id)
    try:
        schedule = services.schedule_set_enabled(schedule=schedule, enabled=not schedule.enabled, actor=request.user)
    except ValidationError as exc:
        messages.error(request, "Could not change it: " + "; ".join(exc.messages))
    else:
        messages.success(request, f"Schedule “{schedule.name}” {'enabled' if schedule.enabled else 'disabled'}.")
    return redirect("automations:schedule-detail", schedule_id=schedule.id)


@login_required
@require_POST
@role_required("agents.run_agent")
def schedule_fire(request: HttpRequest, schedule_id: uuid.UUID) -> HttpResponse:
    schedule = _schedule_or_404(request, schedule_id)
    firing = services.schedule_fire(schedule=schedule, actor=request.user)
    if firing.run_id:
        messages.success(request, "Run started.")
        return redirect("agents:run-detail", run_id=firing.run_id)
    messages.error(request, firing.error or "The run could not be started.")
    return redirect("automations:schedule-detail", schedule_id=schedule.id)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("automations.delete_schedule")
def schedule_delete(request: HttpRequest, schedule_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    schedule = _schedule_or_404(request, schedule_id)
    if request.method == "POST":
        name, agent_id = schedule.name, schedule.agent_id
        services.schedule_delete(schedule=schedule, actor=request.user)
        messages.success(request, f"Schedule “{name}” deleted. The runs it started are kept.")
        return redirect(reverse("automations:schedule-list") + f"?agent={agent_id}")
    context = {"organization": organization, "schedule": schedule, "section": "schedules",
               "firing_count": schedule.firings.count(), "downstream_count": schedule.downstream_triggers.count()}
    return render(request, "automations/schedule_confirm_delete.html", context)


@login_required
@require_GET
@role_required("automations.view_schedule")
def schedule_preview(request: HttpRequest) -> HttpResponse:
    """The next fire times for what the schedule form says now (htmx, as the form changes)."""
    params = request.GET
    error, times, description, zone = "", [], "", None
    try:
        if params.get("mode") == "cron":
            expression = params.get("cron", "")
        else:
            day = params.get("day", "")
            expression = cron.plain_to_cron(cron.plain_from(
                params.get("frequency", ""), params.get("time", ""), params.get("weekday") or None,
                int(day) if day.isdigit() else None))
        zone = cron.zone(params.get("timezone") or "UTC")
        parsed = cron.parse(expression)
        times = parsed.next_times(timezone.now(), zone, services.NEXT_FIRE_COUNT)
        description = cron.describe_schedule(parsed)
    except cron.CronError as exc:
        error = str(exc)
    # Times read in the zone being chosen, as on the schedule's own page.
    with timezone.override(zone or timezone.get_current_timezone()):
        return render(request, "automations/_next_fire_times.html",
                      {"times": times, "error": error, "description": description, "preview": True})


# --------------------------------------------------------------------------- triggers


@login_required
@require_GET
@role_required("automations.view_trigger")
def trigger_list(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    agent = _agent_filter(request)
    page = _page(request, selectors.trigger_list(organization=organization, viewer=_viewer(request),
                                                   agent_id=agent.id if agent else None))
    context = {
        "organization": organization,
        "page": page,
        "triggers": page.object_list,
        "agent": agent,
        "page_query": urlencode({"agent": agent.id}) if agent else "",
        "has_agents": agent_selectors.agent_list(organization=organization, viewer=_viewer(request)).exists(),
        "section": "triggers",
    }
    return render(request, "automations/trigger_list.html", context)


def _webhook_url(request: HttpRequest, trigger: Trigger) -> str:
    return request.build_absolute_uri(reverse("automations:webhook", kwargs={"public_id": trigger.public_id}))


def _secret_page(request: HttpRequest, organization: Organization, trigger: Trigger, secret: str,
                 *, rotated: bool) -> HttpResponse:
    # Rendered in the POST response itself and never stored: reloading doesn't show it again.
    response = render(request, "automations/trigger_secret.html", {
        "organization": organization, "trigger": trigger, "secret": secret, "rotated": rotated,
        "webhook_url": _webhook_url(request, trigger), "signing": signing, "section": "triggers",
    })
    response["Cache-Control"] = "no-store"
    return response


def _trigger_form_page(request, organization, form, trigger) -> HttpResponse:
    return render(request, "automations/trigger_form.html",
                  {"organization": organization, "form": form, "trigger": trigger, "section": "triggers"})


@login_required
@require_http_methods(["GET", "POST"])
@role_required("automations.add_trigger")
def trigger_create(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    form = TriggerForm(request.POST or None, organization=organization, viewer=_viewer(request),
                        agent_id=request.GET.get("agent"))
    if request.method == "POST" and form.is_valid():
        try:
            created = services.trigger_create(organization=organization, actor=request.user, **form.validated_data)
        except (ValidationError, services.NameTaken) as exc:
            _service_errors(form, exc)
        else:
            if created.secret:
                return _secret_page(request, organization, created.trigger, created.secret, rotated=False)
            messages.success(request, f"Trigger “{created.trigger.name}” created.")
            return redirect("automations:trigger-detail", trigger_id=created.trigger.id)
    return _trigger_form_page(request, organization, form, None)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("automations.change_trigger")
def trigger_edit(request: HttpRequest, trigger_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    trigger = _trigger_or_404(request, trigger_id)
    form = TriggerForm(request.POST or None, organization=organization, viewer=_viewer(request), instance=trigger)
    if request.method == "POST" and form.is_valid():
        try:
            trigger = services.trigger_update(trigger=trigger, actor=request.user, **form.validated_data)
        except (ValidationError, services.NameTaken) as exc:
            _service_errors(form, exc)
            trigger.refresh_from_db()
        else:
            messages.success(request, f"Trigger “{trigger.name}” saved.")
            return redirect("automations:trigger-detail", trigger_id=trigger.id)
    return _trigger_form_page(request, organization, form, trigger)


@login_required
@require_GET
@role_required("automations.view_trigger")
def trigger_detail(request: HttpRequest, trigger_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    trigger = _trigger_or_404(request, trigger_id)
    page = _page(request, selectors.trigger_event_list(organization=organization, viewer=_viewer(request),
                                                         trigger_id=trigger.id))
    context = {
        "organization": organization,
        "trigger": trigger,
        "page": page,
        "events": page.object_list,
        "webhook_url": _webhook_url(request, trigger) if trigger.kind == Trigger.Kind.WEBHOOK else "",
        "signing": signing,
        "section": "triggers",
    }
    return render(request, "automations/trigger_detail.html", context)


@login_required
@require_POST
@role_required("automations.change_trigger")
def trigger_toggle(request: HttpRequest, trigger_id: uuid.UUID) -> HttpResponse:
    trigger = _trigger_or_404(request, trigger_id)
    try:
        trigger = services.trigger_set_enabled(trigger=trigger, enabled=not trigger.enabled, actor=request.user)
    except ValidationError as exc:
        messages.error(request, "Could not change it: " + "; ".join(exc.messages))
    else:
        messages.success(request, f"Trigger “{trigger.name}” {'enabled' if trigger.enabled else 'disabled'}.")
    return redirect("automations:trigger-detail", trigger_id=trigger.id)


@login_required
@require_POST
@role_required("automations.change_trigger")
def trigger_rotate(request: HttpRequest, trigger_id: uuid.UUID) -> HttpResponse:
    trigger = _trigger_or_404(request, trigger_id)
    try:
        secret = services.trigger_rotate_secret(trigger=trigger, actor=request.user)
    except services.NotAWebhook as exc:
        messages.error(request, str(exc))
        return redirect("automations:trigger-detail", trigger_id=trigger.id)
    return _secret_page(request, trigger.organization, trigger, secret, rotated=True)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("automations.delete_trigger")
def trigger_delete(request: HttpRequest, trigger_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    trigger = _trigger_or_404(request, trigger_id)
    if request.method == "POST":
        name, agent_id = trigger.name, trigger.agent_id
        services.trigger_delete(trigger=trigger, actor=request.user)
        messages.success(request, f"Trigger “{name}” deleted. Its event log is kept.")
        return redirect(reverse("automations:trigger-list") + f"?agent={agent_id}")
    return render(request, "automations/trigger_confirm_delete.html",
                  {"organization": organization, "trigger": trigger, "section": "triggers"})


# --------------------------------------------------------------------------- event log


@login_required
@require_GET
@role_required("automations.view_trigger")
def event_list(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    outcome = request.GET.get("outcome", "")
    if outcome not in TriggerEvent.Outcome.values:
        outcome = ""
    page = _page(request, selectors.trigger_event_list(organization=organization, viewer=_viewer(request),
                                                         outcome=outcome))
    context = {
        "organization": organization,
        "page": page,
        "events": page.object_list,
        "outcome": outcome,
        "outcomes": TriggerEvent.Outcome.choices,
        "page_query": urlencode({"outcome": outcome}) if outcome else "",
        "section": "events",
    }
    return render(request, "automations/event_list.html", context)
