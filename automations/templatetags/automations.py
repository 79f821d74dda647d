"""{% agent_automations agent %}: the agent page's section listing its schedules and triggers.
A tag rather than view context because the agent page's view belongs to the agents app."""

from __future__ import annotations

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from agents.models import Run
from automations import selectors, services

register = template.Library()


@register.inclusion_tag("automations/_agent_automations.html")
def agent_automations(agent) -> dict:
    # Scoped by the agent's own organization: the agent page already checked the caller may see it.
    data = selectors.agent_automations(organization=agent.organization, agent_id=agent.id)
    for schedule in data["schedules"]:
        schedule.upcoming = services.schedule_next_fire_times(schedule, count=1)
    return {"agent": agent, **data}


@register.filter
def ago(moment) -> str:
    """'just now' under a minute, else '3 hours ago'."""
    if moment is None:
        return ""
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment)} ago"


@register.filter
def statuses(values) -> str:
    """Run statuses as words: ['failed', 'timed_out'] → 'failed or timed out'."""
    labels = [str(Run.Status(v).label).lower() if v in Run.Status.values else v for v in values or []]
    return " or ".join(labels) or "finishes"
