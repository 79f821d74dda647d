"""Writes for agents and runs: keyword-only, atomic, taking the actor."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Organization
from agents import events
from agents.models import Agent, Run, RunEvent

# Every status transition the system allows, in one place.
TRANSITIONS: dict[str, frozenset[str]] = {
    Run.Status.QUEUED: frozenset({Run.Status.RUNNING, Run.Status.CANCELLED, Run.Status.FAILED}),
    Run.Status.RUNNING: frozenset(
        {Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.CANCELLED, Run.Status.TIMED_OUT}
    ),
}

AGENT_FIELDS = ("name", "description", "system_prompt", "model", "tools", "max_steps", "timeout_seconds")


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
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, actor: AbstractBaseUser | None, **fields: Any) -> Agent:
    unknown = set(fields) - set(AGENT_FIELDS)
    if unknown:
        raise TypeError(f"unknown agent fields: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.full_clean()
    agent.save()
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent, actor: AbstractBaseUser | None) -> None:
    # Runs keep their frozen config and trace; only the link to the agent goes.
    agent.delete()


# --------------------------------------------------------------------------- runs


@transaction.atomic
def run_start(
    *,
    agent: Agent,
    goal: str,
    context: Any = None,
    actor: AbstractBaseUser | None,
    parent: Run | None = None,
) -> Run:
    run = Run.objects.create(
        organization=agent.organization,
        agent=agent,
        parent=parent,
        config=agent.snapshot(),
        goal=goal,
        context=context,
        created_by=actor,
    )
    events.record(run_id=run.id, type=RunEvent.Type.STATUS, data={"status": Run.Status.QUEUED})
    from agents.tasks import execute_run

    transaction.on_commit(lambda: execute_run.delay(str(run.id)))
    return run


def run_transition(
    *,
    run_id,
    to: str,
    only_from: tuple[str, ...] | None = None,
    event_data: dict[str, Any] | None = None,
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
    data.update(event_data or {})
    # One statement: the status changes and its event is stored only if the guard holds.
    recorded = events.record_many(
        run_id=run_id,
        items=[(RunEvent.Type.STATUS, data)],
        set_fields={"status": to, **fields},
        only_from=tuple(allowed_from),
    )
    return recorded is not None


def run_cancel(*, run: Run, actor: AbstractBaseUser | None) -> Run:
    """Cancel a run. A queued run stops at once; a running one stops at its next checkpoint."""
    if run.is_finished:
        raise InvalidTransition(f"Run is already {run.status}.")
    with transaction.atomic():
        Run.objects.filter(id=run.id, cancel_requested_at__isnull=True).update(cancel_requested_at=timezone.now())
        # A queued run has no worker yet to notice the request, so it ends here.
        run_transition(
            run_id=run.id, to=Run.Status.CANCELLED, only_from=(Run.Status.QUEUED,), stop_reason=Run.StopReason.CANCELLED
        )
    run.refresh_from_db()
    return run


def run_add_usage(*, run_id, input_tokens: int, output_tokens: int, cost_usd) -> None:
    """Add one model call's usage to a run's totals (the loop does this within its event writes)."""
    Run.objects.filter(id=run_id).update(
        input_tokens=F("input_tokens") + input_tokens,
        output_tokens=F("output_tokens") + output_tokens,
        cost_usd=F("cost_usd") + cost_usd,
        steps=F("steps") + 1,
    )
