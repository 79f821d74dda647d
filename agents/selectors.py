"""Reads. Every query is scoped to an organization; nothing here crosses tenants."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.models import Organization
from agents.models import Agent, AgentShare, Approval, Run, RunEvent

if TYPE_CHECKING:
    from accounts.roles import Access

AGENT_ORDERINGS = {"name", "-name", "created_at", "-created_at", "updated_at", "-updated_at"}
RUN_ORDERINGS = {"created_at", "-created_at", "finished_at", "-finished_at", "status", "-status"}


# Every reader passes `viewer`: the caller's Access, whose sharing rules then narrow the result,
# or None for the system's own reads (workers, schedules, triggers). It has no default on purpose.


def _shared_with(viewer: Access, agent_ref) -> Exists:
    return Exists(
        AgentShare.objects.filter(agent_id=agent_ref).filter(Q(team__isnull=True) | Q(team_id__in=viewer.team_ids))
    )


def agent_visible_q(viewer: Access | None, prefix: str = "") -> Q:
    """Agents the viewer may see: their own and those shared with the organization or their teams."""
    if viewer is None or viewer.can("agents.view_all_agents") or viewer.can("agents.manage_all_agents"):
        return Q()
    agent_ref = OuterRef("agent_id" if prefix == "agent__" else "pk")
    return Q(**{f"{prefix}created_by_id": viewer.user.pk}) | Q(_shared_with(viewer, agent_ref))


def run_visible_q(viewer: Access | None) -> Q:
    """Runs the viewer may see: those they started and those of agents they may see."""
    if viewer is None or viewer.can("agents.view_all_runs"):
        return Q()
    return Q(created_by_id=viewer.user.pk) | agent_visible_q(viewer, prefix="agent__")


def agent_can_edit(*, viewer: Access, agent: Agent) -> bool:
    if viewer.can("agents.manage_all_agents"):
        return True
    if not viewer.can("agents.change_agent"):
        return False
    if agent.created_by_id == viewer.user.pk:
        return True
    return AgentShare.objects.filter(agent=agent, can_edit=True).filter(
        Q(team__isnull=True) | Q(team_id__in=viewer.team_ids)
    ).exists()


def agent_is_owner_or_manager(*, viewer: Access, agent: Agent) -> bool:
    """Deleting and sharing belong to the agent's owner (and to those who manage every agent)."""
    return viewer.can("agents.manage_all_agents") or agent.created_by_id == viewer.user.pk


def agent_shares(*, agent: Agent) -> QuerySet[AgentShare]:
    return AgentShare.objects.filter(agent=agent).select_related("team").order_by("team__name")


def agent_list(
    *,
    organization: Organization,
    viewer: Access | None,
    search: str = "",
    model: str = "",
    tool: str = "",
    ordering: str = "-created_at",
) -> QuerySet[Agent]:
    qs = Agent.objects.filter(agent_visible_q(viewer), organization=organization)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    if model:
        qs = qs.filter(model=model)
    if tool:
        qs = qs.filter(tools__contains=[tool])
    return qs.order_by(ordering if ordering in AGENT_ORDERINGS else "-created_at", "id")


def agent_get(*, organization: Organization, viewer: Access | None, agent_id) -> Agent | None:
    try:
        return Agent.objects.filter(agent_visible_q(viewer), organization=organization, id=agent_id).first()
    except (ValueError, TypeError):
        return None


def run_list(
    *,
    organization: Organization,
    viewer: Access | None,
    agent_id=None,
    status: str = "",
    ordering: str = "-created_at",
) -> QuerySet[Run]:
    qs = Run.objects.filter(run_visible_q(viewer), organization=organization).select_related("agent")
    if agent_id:
        qs = qs.filter(agent_id=agent_id)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by(ordering if ordering in RUN_ORDERINGS else "-created_at", "id")


def run_get(*, organization: Organization, viewer: Access | None, run_id) -> Run | None:
    try:
        return (
            Run.objects.select_related("agent", "created_by")
            .filter(run_visible_q(viewer), organization=organization, id=run_id)
            .first()
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


def _approval_visible_q(viewer: Access | None) -> Q:
    if viewer is None or viewer.can("agents.view_all_runs"):
        return Q()
    return Q(run__in=Run.objects.filter(run_visible_q(viewer), organization=viewer.organization).values("id"))


def approval_list(
    *, organization: Organization, viewer: Access | None, status: str = "", run_id=None
) -> QuerySet[Approval]:
    qs = Approval.objects.filter(_approval_visible_q(viewer), organization=organization).select_related(
        "run", "decided_by"
    )
    if status:
        qs = qs.filter(status=status)
    if run_id:
        qs = qs.filter(run_id=run_id)
    return qs.order_by("-created_at", "id")


def approval_get(*, organization: Organization, viewer: Access | None, approval_id) -> Approval | None:
    try:
        return Approval.objects.select_related("run", "run__agent", "decided_by").filter(
            _approval_visible_q(viewer), organization=organization, id=approval_id
        ).first()
    except (ValueError, TypeError):
        return None
