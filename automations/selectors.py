"""Reads. Every query is scoped to an organization, except the webhook lookup by public id
(the caller is anonymous; the unguessable id and the signature are the credentials)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models import QuerySet

from accounts.models import Organization
from agents.selectors import agent_visible_q
from automations.models import Schedule, ScheduleFiring, Trigger, TriggerEvent

if TYPE_CHECKING:
    from accounts.roles import Access

# `viewer` narrows to automations of agents the viewer may see (an agent private to someone else
# stays invisible, schedules and triggers included); None is the system's own read.


def schedule_list(*, organization: Organization, viewer: Access | None = None, agent_id=None) -> QuerySet[Schedule]:
    qs = Schedule.objects.filter(agent_visible_q(viewer, prefix="agent__"), organization=organization)
    qs = qs.select_related("agent", "owner")
    if agent_id:
        qs = qs.filter(agent_id=agent_id)
    return qs.order_by("name", "id")


def schedule_get(*, organization: Organization, viewer: Access | None = None, schedule_id) -> Schedule | None:
    try:
        return (Schedule.objects.select_related("agent", "owner", "periodic_task")
                .filter(agent_visible_q(viewer, prefix="agent__"), organization=organization, id=schedule_id).first())
    except (ValueError, TypeError):
        return None


def schedule_firings(*, schedule: Schedule) -> QuerySet[ScheduleFiring]:
    return ScheduleFiring.objects.filter(schedule=schedule).select_related("run").order_by("-created_at", "-id")


def trigger_list(
    *, organization: Organization, viewer: Access | None = None, agent_id=None, kind: str = ""
) -> QuerySet[Trigger]:
    qs = Trigger.objects.filter(agent_visible_q(viewer, prefix="agent__"), organization=organization).select_related(
        "agent", "owner", "source_agent", "source_schedule")
    if agent_id:
        qs = qs.filter(agent_id=agent_id)
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("name", "id")


def trigger_get(*, organization: Organization, viewer: Access | None = None, trigger_id) -> Trigger | None:
    try:
        return (Trigger.objects.select_related("agent", "owner", "source_agent", "source_schedule")
                .filter(agent_visible_q(viewer, prefix="agent__"), organization=organization, id=trigger_id).first())
    except (ValueError, TypeError):
        return None


def trigger_event_list(
    *, organization: Organization, viewer: Access | None = None, trigger_id=None, outcome: str = "",
    since: datetime | None = None
) -> QuerySet[TriggerEvent]:
    qs = TriggerEvent.objects.filter(organization=organization).select_related("run", "trigger")
    if viewer is not None and not (viewer.can("agents.view_all_agents") or viewer.can("agents.manage_all_agents")):
        # Events of deleted triggers stay with those who see every agent.
        qs = qs.filter(trigger__in=trigger_list(organization=organization, viewer=viewer).values("id"))
    if trigger_id:
        qs = qs.filter(trigger_id=trigger_id)
    if outcome:
        qs = qs.filter(outcome=outcome)
    if since is not None:
        qs = qs.filter(received_at__gte=since)
    return qs.order_by("-received_at", "-id")


def trigger_event_get(*, organization: Organization, viewer: Access | None = None, event_id) -> TriggerEvent | None:
    try:
        return trigger_event_list(organization=organization, viewer=viewer).filter(id=event_id).first()
    except (ValueError, TypeError):
        return None


def agent_automations(*, organization: Organization, agent_id) -> dict:
    """What the agent page shows: the agent's schedules and triggers, and the triggers it feeds."""
    return {
        "schedules": list(schedule_list(organization=organization, agent_id=agent_id)),
        "triggers": list(trigger_list(organization=organization, agent_id=agent_id)),
        "downstream": list(Trigger.objects.filter(organization=organization, source_agent_id=agent_id)
                           .select_related("agent").order_by("name")),
    }
