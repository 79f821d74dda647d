"""Writes for agents and runs: keyword-only, atomic, taking the actor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.audit import audit_record, diff_of
from accounts.models import Organization, Team
from agents import events
from agents.models import Agent, AgentShare, Approval, Run, RunEvent

# Every status transition the system allows, in one place.
# (A worker taking over a running run whose lease expired is a claim, not a transition: leases.py.)
TRANSITIONS: dict[str, frozenset[str]] = {
    Run.Status.QUEUED: frozenset(
        {Run.Status.RUNNING, Run.Status.CANCELLED, Run.Status.FAILED, Run.Status.TIMED_OUT, Run.Status.PAUSED}
    ),
    Run.Status.RUNNING: frozenset(
        {Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.CANCELLED, Run.Status.TIMED_OUT, Run.Status.PAUSED,
         Run.Status.AWAITING_APPROVAL}
    ),
    Run.Status.PAUSED: frozenset({Run.Status.QUEUED, Run.Status.CANCELLED, Run.Status.TIMED_OUT}),
    Run.Status.AWAITING_APPROVAL: frozenset({Run.Status.QUEUED, Run.Status.CANCELLED, Run.Status.TIMED_OUT}),
    # Retry: a failed or timed-out run goes back to the queue and resumes from its last good step.
    Run.Status.FAILED: frozenset({Run.Status.QUEUED}),
    Run.Status.TIMED_OUT: frozenset({Run.Status.QUEUED}),
}

AGENT_FIELDS = (
    "name", "description", "system_prompt", "model", "tools", "max_steps", "timeout_seconds", "max_tokens",
    "max_cost_usd", "tool_policies", "approval_timeout_seconds", "approval_expiry_outcome",
    "integrations",
)
# Limits a single run may set for itself, overriding the agent's.
RUN_LIMITS = ("max_steps", "timeout_seconds", "max_tokens", "max_cost_usd")


class InvalidTransition(Exception):
    pass


# --------------------------------------------------------------------------- agents


@transaction.atomic
def agent_create(*, organization: Organization, actor: AbstractBaseUser | None, **fields: Any) -> Agent:
    unknown = set(fields) - set(AGENT_FIELDS)
    if unknown:
        raise TypeError(f"unknown agent fields: {sorted(unknown)}")
    agent = Agent(organization=organization, created_by=actor, **fields)
    agent.full_clean()
    agent.save()
    audit_record(action="agent.create", actor=actor, organization=organization, target=agent,
                 data={"model": agent.model, "tools": agent.tools})
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, actor: AbstractBaseUser | None, **fields: Any) -> Agent:
    unknown = set(fields) - set(AGENT_FIELDS)
    if unknown:
        raise TypeError(f"unknown agent fields: {sorted(unknown)}")
    before = {name: _jsonable(getattr(agent, name)) for name in fields}
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.full_clean()
    agent.save()
    changes = diff_of(before, {name: _jsonable(getattr(agent, name)) for name in fields})
    if changes:
        audit_record(action="agent.update", actor=actor, organization_id=agent.organization_id, target=agent,
                     diff=changes)
    return agent


def _jsonable(value):
    return str(value) if not isinstance(value, (str, int, float, bool, list, dict, type(None))) else value


@transaction.atomic
def agent_delete(*, agent: Agent, actor: AbstractBaseUser | None) -> None:
    # Runs keep their frozen config and trace; only the link to the agent goes.
    audit_record(action="agent.delete", actor=actor, organization_id=agent.organization_id, target=agent)
    agent.delete()


class ShareError(ValueError):
    pass


@transaction.atomic
def agent_share(*, agent: Agent, team: Team | None, can_edit: bool, actor: AbstractBaseUser | None) -> AgentShare:
    """Share with a team (and the teams below it) or, with team None, the whole organization."""
    if team is not None and team.organization_id != agent.organization_id:
        raise ShareError("That team belongs to another organization.")
    share, created = AgentShare.objects.get_or_create(
        agent=agent, team=team, defaults={"can_edit": can_edit, "created_by": actor}
    )
    before = None if created else share.can_edit
    if not created and share.can_edit != can_edit:
        share.can_edit = can_edit
        share.save(update_fields=["can_edit"])
    if created or before != can_edit:
        audit_record(action="agent.share", actor=actor, organization_id=agent.organization_id, target=agent,
                     diff={"can_edit": [before, can_edit]},
                     data={"team": str(team.id) if team else None, "team_name": team.name if team else "organization"})
    return share


@transaction.atomic
def agent_unshare(*, agent: Agent, team: Team | None, actor: AbstractBaseUser | None) -> bool:
    deleted, _ = AgentShare.objects.filter(agent=agent, team=team).delete()
    if deleted:
        audit_record(action="agent.unshare", actor=actor, organization_id=agent.organization_id, target=agent,
                     data={"team": str(team.id) if team else None, "team_name": team.name if team else "organization"})
    return bool(deleted)


# --------------------------------------------------------------------------- runs


@transaction.atomic
def run_start(
    *,
    agent: Agent,
    goal: str,
    context: Any = None,
    actor: AbstractBaseUser | None,
    parent: Run | None = None,
    limits: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> Run:
    config = agent.snapshot() | {"dry_run": dry_run}
    for name, value in (limits or {}).items():
        if name not in RUN_LIMITS:
            raise TypeError(f"unknown run limit {name!r}")
        if value is not None:
            config[name] = str(value) if name == "max_cost_usd" else value
    run = Run.objects.create(
        organization_id=agent.organization_id,
        agent=agent,
        parent=parent,
        config=config,
        dry_run=dry_run,
        goal=goal,
        context=context,
        created_by=actor,
    )
    events.record(run_id=run.id, type=RunEvent.Type.STATUS, data={"status": Run.Status.QUEUED})
    audit_record(action="run.start", actor=actor, organization_id=run.organization_id, target=run,
                 data={"agent": str(agent.id), "dry_run": dry_run, "limits": limits or {}})
    _enqueue(run.id)
    return run


def run_transition(
    *,
    run_id,
    to: str,
    only_from: tuple[str, ...] | None = None,
    event_data: dict[str, Any] | None = None,
    lease_token: int | None = None,
    **fields: Any,
) -> bool:
    """Move a run to `to` if its current status allows it; record a status event. Returns False
    (and changes nothing) when another writer got there first."""
    allowed_from = [state for state, targets in TRANSITIONS.items() if to in targets]
    if only_from is not None:
        allowed_from = [state for state in allowed_from if state in only_from]
    now = timezone.now()
    if to == Run.Status.RUNNING:
        fields.setdefault("started_at", now)
    if to in Run.TERMINAL:
        fields.setdefault("finished_at", now)
    data = {"status": to}
    if fields.get("stop_reason"):
        data["stop_reason"] = fields["stop_reason"]
    if fields.get("error"):
        data["error"] = fields["error"]
    if fields.get("pause_reason"):
        data["pause_reason"] = fields["pause_reason"]
    data.update(event_data or {})
    # One statement: the status changes and its event is stored only if the guard holds.
    recorded = events.record_many(
        run_id=run_id,
        items=[(RunEvent.Type.STATUS, data)],
        set_fields={"status": to, **fields},
        only_from=tuple(allowed_from),
        lease_token=lease_token,
    )
    return recorded is not None


def run_cancel(*, run: Run, actor: AbstractBaseUser | None) -> Run:
    """Cancel a run. A queued or paused run stops at once; a running one at its next checkpoint."""
    if run.is_finished:
        raise InvalidTransition(f"Run is already {run.status}.")
    with transaction.atomic():
        Run.objects.filter(id=run.id, cancel_requested_at__isnull=True).update(cancel_requested_at=timezone.now())
        # Nobody should be asked to decide about a call of a cancelled run.
        Approval.objects.filter(run_id=run.id, status=Approval.Status.PENDING).update(
            status=Approval.Status.REJECTED, message="The run was cancelled.", decided_by=actor,
            decided_at=timezone.now(),
        )
        # No worker is there to notice the request, so it ends here.
        run_transition(
            run_id=run.id,
            to=Run.Status.CANCELLED,
            only_from=(Run.Status.QUEUED, Run.Status.PAUSED, Run.Status.AWAITING_APPROVAL),
            stop_reason=Run.StopReason.CANCELLED,
            event_data={"by": _username(actor)},
        )
    audit_record(action="run.cancel", actor=actor, organization_id=run.organization_id, target=run)
    run.refresh_from_db()
    return run


def _username(actor) -> str:
    return getattr(actor, "username", "") or "system"


def _enqueue(run_id) -> None:
    from agents.tasks import execute_run

    # robust: if Redis is down the run is still saved (the caller gets its 201), and the watchdog
    # enqueues queued runs that no worker picked up.
    transaction.on_commit(lambda: execute_run.delay(str(run_id)), robust=True)


def run_pause(*, run: Run, actor: AbstractBaseUser | None) -> Run:
    """Ask a running run to pause at its next checkpoint (a queued one pauses at once)."""
    if run.status not in (Run.Status.QUEUED, Run.Status.RUNNING):
        raise InvalidTransition(f"Only queued or running runs can be paused; this one is {run.status}.")
    with transaction.atomic():
        Run.objects.filter(id=run.id, pause_requested_at__isnull=True).update(pause_requested_at=timezone.now())
        # A queued run has no worker yet to notice the request, so it pauses here.
        run_transition(run_id=run.id, to=Run.Status.PAUSED, only_from=(Run.Status.QUEUED,),
                       pause_reason="Paused by request.", event_data={"by": _username(actor)})
    audit_record(action="run.pause", actor=actor, organization_id=run.organization_id, target=run)
    run.refresh_from_db()
    return run


def run_resume(*, run: Run, actor: AbstractBaseUser | None) -> Run:
    """Put a paused run back in the queue; a worker resumes it from its stored events."""
    if run.status != Run.Status.PAUSED:
        raise InvalidTransition(f"Only paused runs can be resumed; this one is {run.status}.")
    if run.pause_reason.startswith("uncertain_write:"):
        raise InvalidTransition("This run stopped in the middle of a write; decide whether to retry or skip it.")
    with transaction.atomic():
        Run.objects.filter(id=run.id).update(pause_requested_at=None)
        if not run_transition(run_id=run.id, to=Run.Status.QUEUED, only_from=(Run.Status.PAUSED,),
                              pause_reason="", event_data={"by": _username(actor), "resumed": True}):
            raise InvalidTransition("The run changed state; reload it.")
        _enqueue(run.id)
    audit_record(action="run.resume", actor=actor, organization_id=run.organization_id, target=run)
    run.refresh_from_db()
    return run


def run_resolve_uncertain_write(*, run: Run, decision: str, actor: AbstractBaseUser | None) -> Run:
    """A worker died during a write tool call, so nobody knows whether it took effect.
    `retry` runs the call again; `skip` tells the model it was not repeated. Either way the
    decision is stored in the trace and the run resumes."""
    prefix = "uncertain_write:"
    if run.status != Run.Status.PAUSED or not run.pause_reason.startswith(prefix):
        raise InvalidTransition("This run is not waiting for a decision about an uncertain write.")
    if decision not in ("retry", "skip"):
        raise ValueError("decision must be 'retry' or 'skip'")
    call_id = run.pause_reason[len(prefix):]
    start = RunEvent.objects.filter(run=run, type=RunEvent.Type.TOOL_START, data__call_id=call_id).last()
    if start is None:
        raise InvalidTransition("The uncertain call is not in the trace.")
    with transaction.atomic():
        who = _username(actor)
        if decision == "retry":
            events.record(run_id=run.id, type=RunEvent.Type.TOOL_START,
                          data=start.data | {"approved_retry": True, "approved_by": who})
        else:
            events.record(run_id=run.id, type=RunEvent.Type.TOOL_END, data={
                "tool": start.data["tool"], "call_id": call_id, "step": start.data.get("step"),
                "output": "Not executed again: the worker stopped during this call and "
                          f"{who} chose not to repeat it. It may or may not have taken effect.",
                "is_error": True, "duration_ms": 0,
            })
        run_transition(run_id=run.id, to=Run.Status.QUEUED, only_from=(Run.Status.PAUSED,), pause_reason="",
                       event_data={"by": who, "decision": decision})
        _enqueue(run.id)
    audit_record(action="run.uncertain_write_decision", actor=actor, organization_id=run.organization_id,
                 target=run, data={"decision": decision})
    run.refresh_from_db()
    return run


def run_retry(*, run: Run, actor: AbstractBaseUser | None) -> Run:
    """Resume a failed or timed-out run from its last good step, with a fresh deadline."""
    if run.status not in (Run.Status.FAILED, Run.Status.TIMED_OUT):
        raise InvalidTransition(f"Only failed or timed-out runs can be retried; this one is {run.status}.")
    with transaction.atomic():
        if not run_transition(
            run_id=run.id, to=Run.Status.QUEUED, only_from=(Run.Status.FAILED, Run.Status.TIMED_OUT),
            stop_reason="", error="", finished_at=None, event_data={"by": _username(actor), "retry": True},
        ):
            raise InvalidTransition("The run changed state; reload it.")
        Run.objects.filter(id=run.id).update(deadline_at=None, cancel_requested_at=None, pause_requested_at=None)
        _enqueue(run.id)
    audit_record(action="run.retry", actor=actor, organization_id=run.organization_id, target=run)
    run.refresh_from_db()
    return run


@transaction.atomic
def run_rerun(*, run: Run, actor: AbstractBaseUser | None) -> Run:
    """A new run with the same goal, context and frozen configuration as `run`."""
    new = Run.objects.create(
        organization_id=run.organization_id, agent_id=run.agent_id, config=run.config, goal=run.goal,
        context=run.context, created_by=actor, dry_run=run.dry_run,
    )
    events.record(run_id=new.id, type=RunEvent.Type.STATUS, data={"status": Run.Status.QUEUED, "rerun_of": str(run.id)})
    _enqueue(new.id)
    audit_record(action="run.rerun", actor=actor, organization_id=run.organization_id, target=new,
                 data={"rerun_of": str(run.id)})
    return new


def run_add_usage(*, run_id, input_tokens: int, output_tokens: int, cost_usd) -> None:
    """Add one model call's usage to a run's totals (the loop does this within its event writes)."""
    Run.objects.filter(id=run_id).update(
        input_tokens=F("input_tokens") + input_tokens,
        output_tokens=F("output_tokens") + output_tokens,
        cost_usd=F("cost_usd") + cost_usd,
        steps=F("steps") + 1,
    )


# --------------------------------------------------------------------------- watchdog


def runs_watchdog() -> dict[str, int]:
    """Find runs nobody is driving and put them right. Called every few seconds by beat.

    - running with an expired lease (its worker died): queue it again; a worker claims it and
      resumes from the stored events;
    - queued for a while with no worker on it (the queue message was lost, e.g. Redis restarted):
      enqueue it again; a duplicate message is harmless because claiming is conditional;
    - past its hard deadline plus one lease period while not finished: stop it as timed out.
    """
    from django.conf import settings

    from agents.tasks import execute_run

    now = timezone.now()
    lease = timedelta(seconds=settings.RUN_LEASE_SECONDS)
    counts = {"requeued": 0, "reenqueued": 0, "timed_out": 0}
    from agents.approvals import approvals_expire

    counts["approvals_expired"] = approvals_expire()
    for run_id, deadline in Run.objects.filter(
        status__in=[Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.PAUSED, Run.Status.AWAITING_APPROVAL],
        deadline_at__lt=now - lease,
    ).values_list("id", "deadline_at"):
        if run_transition(
            run_id=run_id, to=Run.Status.TIMED_OUT, stop_reason=Run.StopReason.TIMEOUT, lease_holder="",
            lease_expires_at=None, error=f"Hard deadline {deadline.isoformat()} passed; stopped by the watchdog.",
        ):
            counts["timed_out"] += 1
    for run_id in Run.objects.filter(status=Run.Status.RUNNING, lease_expires_at__lt=now).values_list("id", flat=True):
        execute_run.delay(str(run_id))
        counts["requeued"] += 1
    stale = now - timedelta(seconds=max(60, 4 * settings.RUN_LEASE_SECONDS))
    for run_id in Run.objects.filter(status=Run.Status.QUEUED, created_at__lt=stale,
                                     lease_expires_at__isnull=True).values_list("id", flat=True)[:500]:
        execute_run.delay(str(run_id))
        counts["reenqueued"] += 1
    return counts
