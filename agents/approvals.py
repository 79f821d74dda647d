"""Human approval of tool calls: writes (services) and the access rule for who may decide."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.roles import Access
from agents import events, services
from agents.llm import ToolCall
from agents.models import Approval, Run, RunEvent
from integrations import tools as tool_registry


class ApprovalConflict(Exception):
    """Already decided, expired, or the run moved on."""


class InvalidArguments(ValueError):
    pass


def _event(approval: Approval, **extra) -> tuple[str, dict]:
    return RunEvent.Type.APPROVAL, {
        "approval_id": str(approval.id), "call_id": approval.call_id, "tool": approval.tool,
        "arguments": approval.arguments, "status": approval.status, "expires_at": approval.expires_at.isoformat(),
    } | extra


def for_call(run: Run, call: ToolCall, step: int, *, write: Callable) -> Approval:
    """The approval for this call, asking for one (and recording that in the trace) if none exists."""
    existing = Approval.objects.select_related("decided_by").filter(run=run, call_id=call.id).first()
    if existing is not None:
        return existing
    timeout = run.config.get("approval_timeout_seconds") or 3600
    try:
        with transaction.atomic():
            approval = Approval.objects.create(
                organization_id=run.organization_id, run=run, call_id=call.id, tool=call.name,
                arguments=call.arguments, step=step, expires_at=timezone.now() + timedelta(seconds=timeout),
            )
    except IntegrityError:  # a concurrent delivery asked first
        return Approval.objects.get(run=run, call_id=call.id)
    write([_event(approval)])
    return approval


def can_decide(*, access: Access, approval: Approval) -> bool:
    """Whoever's role may decide approvals, in the approval's organization. That they can see the
    run at all is the selectors' check (approval_get / approval_list with the viewer)."""
    return access.organization.id == approval.organization_id and access.can("agents.decide_approval")


def approval_decide(
    *, approval: Approval, decision: str, actor: AbstractBaseUser | None, arguments: dict | None = None,
    message: str = "",
) -> Approval:
    """approve, edit (approve with new arguments) or reject, exactly once; then the run resumes."""
    if decision not in ("approve", "edit", "reject"):
        raise ValueError("decision must be approve, edit or reject")
    edited = None
    if decision == "edit":
        tool = tool_registry.for_organization(approval.organization_id).get(approval.tool)
        problem = tool_registry.validation_error(tool, arguments) if tool else "the tool no longer exists"
        if arguments is None or problem:
            raise InvalidArguments(problem or "edited arguments are required")
        edited = arguments
    status = Approval.Status.REJECTED if decision == "reject" else Approval.Status.APPROVED
    now = timezone.now()
    with transaction.atomic():
        changed = Approval.objects.filter(id=approval.id, status=Approval.Status.PENDING, expires_at__gt=now).update(
            status=status, edited_arguments=edited, message=message, decided_by=actor, decided_at=now,
        )
        if not changed:
            approval.refresh_from_db()
            raise ApprovalConflict(f"This approval is already {approval.status}."
                                   if approval.status != Approval.Status.PENDING else "This approval has expired.")
        approval.refresh_from_db()
        who = getattr(actor, "username", "") or "system"
        events.record_many(run_id=approval.run_id, items=[_event(approval, decision=decision, decided_by=who,
                                                                 edited_arguments=edited, message=message)])
        _resume(approval.run_id, who=who)
        audit_record(action=f"run.approval_{decision}", actor=actor, organization_id=approval.organization_id,
                     target=approval.run, data={"approval": str(approval.id), "tool": approval.tool,
                                                "arguments": approval.effective_arguments, "message": message})
    return approval


def _resume(run_id, *, who: str) -> None:
    if services.run_transition(run_id=run_id, to=Run.Status.QUEUED, only_from=(Run.Status.AWAITING_APPROVAL,),
                               pause_reason="", event_data={"by": who}):
        services._enqueue(run_id)


def approvals_expire() -> int:
    """Pending approvals past their expiry take the agent's configured outcome."""
    count = 0
    for approval in Approval.objects.select_related("run").filter(
        status=Approval.Status.PENDING, expires_at__lte=timezone.now()
    )[:500]:
        with transaction.atomic():
            if not Approval.objects.filter(id=approval.id, status=Approval.Status.PENDING).update(
                status=Approval.Status.EXPIRED, decided_at=timezone.now()
            ):
                continue
            approval.status = Approval.Status.EXPIRED
            outcome = approval.run.config.get("approval_expiry_outcome", "reject")
            events.record_many(run_id=approval.run_id, items=[_event(approval, outcome=outcome)])
            if outcome == "cancel":
                services.run_transition(
                    run_id=approval.run_id, to=Run.Status.CANCELLED, only_from=(Run.Status.AWAITING_APPROVAL,),
                    stop_reason=Run.StopReason.CANCELLED, error="An approval expired; the agent cancels on expiry.",
                )
            else:
                _resume(approval.run_id, who="system")
        count += 1
    return count
