"""Reads. Every query is scoped to an organization; nothing here crosses tenants."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Organization
from agents.models import Agent, Approval, Run, RunEvent

AGENT_ORDERINGS = {"name", "-name", "created_at", "-created_at", "updated_at", "-updated_at"}
RUN_ORDERINGS = {"created_at", "-created_at", "finished_at", "-finished_at", "status", "-status"}


def agent_list(
    *, organization: Organization, search: str = "", model: str = "", tool: str = "", ordering: str = "-created_at"
) -> QuerySet[Agent]:
    qs = Agent.objects.filter(organization=organization)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    if model:
        qs = qs.filter(model=model)
    if tool:
        qs = qs.filter(tools__contains=[tool])
    return qs.order_by(ordering if ordering in AGENT_ORDERINGS else "-created_at", "id")


def agent_get(*, organization: Organization, agent_id) -> Agent | None:
    try:
        return Agent.objects.filter(organization=organization, id=agent_id).first()
    except (ValueError, TypeError):
        return None


def run_list(
    *,
    organization: Organization,
    agent_id=None,
    status: str = "",
    ordering: str = "-created_at",
) -> QuerySet[Run]:
    qs = Run.objects.filter(organization=organization).select_related("agent")
    if agent_id:
        qs = qs.filter(agent_id=agent_id)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by(ordering if ordering in RUN_ORDERINGS else "-created_at", "id")


def run_get(*, organization: Organization, run_id) -> Run | None:
    try:
        return (
            Run.objects.select_related("agent", "created_by").filter(organization=organization, id=run_id).first()
        )
    except (ValueError, TypeError):
        return None


def run_events(*, run: Run, after: int = 0, limit: int | None = None) -> list[RunEvent]:
    qs = RunEvent.objects.filter(run=run, seq__gt=after).order_by("seq")
    if limit is not None:
        qs = qs[:limit]
    return list(qs)


def run_status(*, run_id) -> tuple[str, int] | None:
    row = Run.objects.filter(id=run_id).values_list("status", "last_seq").first()
    return row


def approval_list(*, organization: Organization, status: str = "", run_id=None) -> QuerySet[Approval]:
    qs = Approval.objects.filter(organization=organization).select_related("run", "decided_by")
    if status:
        qs = qs.filter(status=status)
    if run_id:
        qs = qs.filter(run_id=run_id)
    return qs.order_by("-created_at", "id")


def approval_get(*, organization: Organization, approval_id) -> Approval | None:
    try:
        return Approval.objects.select_related("run", "run__agent", "decided_by").filter(
            organization=organization, id=approval_id
        ).first()
    except (ValueError, TypeError):
        return None
