"""Writes for schedules, triggers and their events: keyword-only, atomic, taking the actor.

How the pieces move (no code in agents/ is involved; runs are started through
agents.services.run_start like any other run):

- Beat wakes `automations.fire_schedule` at a schedule's cron time (the PeriodicTask kept in sync
  below). `schedule_fire_due` starts a run only if the schedule's own `next_fire_at` (from
  automations.cron) has come, which makes early or repeated wake-ups harmless.
- `automations.tick` (beat, every few seconds) does the rest by polling, because run status
  changes are single SQL statements that send no signals:
  catch-up for schedules beat missed, settling scheduled attempts whose run has finished (retry
  with backoff, or mark failed), starting retries whose backoff has passed, starting runs for
  "run finished" triggers, and sending notification emails.
- Polling claims its work with row locks (SKIP LOCKED) or unique constraints, so overlapping ticks
  and duplicate deliveries never start a run twice.
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import re
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from accounts import quotas
from accounts.models import Membership, Organization
from agents import services as agent_services
from agents.models import Agent, Run
from automations import cron, signing, templating
from automations.models import MAX_GOAL, MAX_RETRIES_LIMIT, Schedule, ScheduleFiring, Trigger, TriggerEvent

logger = logging.getLogger(__name__)

FIRE_TASK = "automations.fire_schedule"
NEXT_FIRE_COUNT = 5
# Beat may wake the task a moment before the minute; more than this and it is a wrong wake-up.
EARLY_TOLERANCE = timedelta(seconds=5)
# If beat hasn't fired a schedule this long after its time, the tick fires it.
CATCH_UP_AFTER = timedelta(seconds=60)
MAX_TRIGGER_DEPTH = 5
MAX_BODY_BYTES = 1024 * 1024
EXCERPT_CHARS = 2000
_SIGNATURE = re.compile(r"^sha256=[0-9a-f]{64}$")


def _seconds_setting(name: str, default: float) -> timedelta:
    return timedelta(seconds=float(getattr(settings, name, default)))


def retry_backoff(attempt: int) -> timedelta:
    """Wait before attempt `attempt + 1`: base, 4x base, 16x base (30 s, 2 min, 8 min by default)."""
    base = _seconds_setting("AUTOMATIONS_RETRY_BACKOFF_SECONDS", 30)
    return base * (4 ** (attempt - 1))


class AutomationError(Exception):
    pass


class NameTaken(AutomationError):
    pass


class NotAWebhook(AutomationError):
    pass


def _is_member(user: AbstractBaseUser | None, organization_id) -> bool:
    return bool(user is not None and user.is_active
                and Membership.objects.filter(user=user, organization_id=organization_id).exists())


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:EXCERPT_CHARS]


# --------------------------------------------------------------------------- schedules

SCHEDULE_FIELDS = ("name", "agent", "owner", "cron", "timezone", "goal", "context", "enabled",
                   "notify_on_success", "max_retries")
_TIMING_FIELDS = {"cron", "timezone", "enabled"}


def schedule_validate(schedule: Schedule) -> cron.Cron:
    """Check (and normalise) an unsaved schedule; raises ValidationError by field. Writes nothing."""
    errors: dict[str, list[str]] = {}
    parsed = None
    schedule.name = (schedule.name or "").strip()
    if not schedule.name:
        errors["name"] = ["Give the schedule a name."]
    elif len(schedule.name) > 120:
        errors["name"] = ["120 characters at most."]
    try:
        parsed = cron.parse(schedule.cron)
    except cron.CronError as exc:
        errors["cron"] = [str(exc)]
    try:
        cron.zone(schedule.timezone)
    except cron.CronError as exc:
        errors["timezone"] = [str(exc)]
    schedule.goal = (schedule.goal or "").strip()
    if not schedule.goal:
        errors["goal"] = ["Say what the agent should do."]
    elif len(schedule.goal) > MAX_GOAL:
        errors["goal"] = [f"{MAX_GOAL} characters at most."]
    if schedule.context is not None and not isinstance(schedule.context, dict):
        errors["context"] = ["Context must be a JSON object."]
    if not isinstance(schedule.max_retries, int) or not 0 <= schedule.max_retries <= MAX_RETRIES_LIMIT:
        errors["max_retries"] = [f"Between 0 and {MAX_RETRIES_LIMIT}."]
    if schedule.agent_id is None or schedule.agent.organization_id != schedule.organization_id:
        errors["agent"] = ["Agent not found."]
    if schedule.owner_id is None or not _is_member(schedule.owner, schedule.organization_id):
        errors["owner"] = ["The owner must be an active member of the organization."]
    if errors:
        raise ValidationError(errors)
    assert parsed is not None
    schedule.cron = parsed.expression
    schedule.description = cron.describe_schedule(parsed)[:300]
    return parsed


def schedule_next_fire_times(schedule: Schedule, *, after: datetime | None = None,
                             count: int = NEXT_FIRE_COUNT) -> list[datetime]:
    """The next `count` fire times, in the schedule's time zone (empty when disabled)."""
    if not schedule.enabled:
        return []
    after = after or timezone.now()
    return cron.parse(schedule.cron).next_times(after, cron.zone(schedule.timezone), count)


def _first_fire_after(schedule: Schedule, moment: datetime) -> datetime | None:
    if not schedule.enabled:
        return None
    times = cron.parse(schedule.cron).next_times(moment, cron.zone(schedule.timezone), 1)
    return times[0] if times else None


def _sync_periodic_task(schedule: Schedule, parsed: cron.Cron, *, reset: bool) -> None:
    """Make the beat entry say what the schedule says. Each schedule has its own CrontabSchedule
    row, so editing one schedule never moves another."""
    fields = parsed.celery_fields()
    task = schedule.periodic_task
    if task is not None and task.crontab is not None:
        crontab = task.crontab
        for name, value in fields.items():
            setattr(crontab, name, value)
        crontab.timezone = schedule.timezone
        crontab.save()
    else:
        crontab = CrontabSchedule.objects.create(timezone=schedule.timezone, **fields)
    if task is None:
        task = PeriodicTask(name=schedule.periodic_task_name, task=FIRE_TASK,
                            kwargs=json.dumps({"schedule_id": str(schedule.id)}))
    task.crontab = crontab
    task.enabled = schedule.enabled
    task.description = f"Agent schedule “{schedule.name}” (agent {schedule.agent.name}); managed by Agentry."
    if reset:
        # Beat computes the next run from last_run_at; a stale one could fire at once after an edit.
        task.last_run_at = None
    task.save()
    if schedule.periodic_task_id != task.id:
        schedule.periodic_task = task
        Schedule.objects.filter(id=schedule.id).update(periodic_task=task)


def _save_unique(instance: Schedule | Trigger) -> None:
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        if "unique_name_per_agent" in str(exc):
            noun = instance._meta.verbose_name
            raise NameTaken(f"This agent already has a {noun} named “{instance.name}”.") from None
        raise


@transaction.atomic
def schedule_create(
    *,
    organization: Organization,
    agent: Agent,
    actor: AbstractBaseUser | None,
    name: str,
    goal: str,
    cron: str,
    timezone: str = "UTC",
    context: dict | None = None,
    enabled: bool = True,
    notify_on_success: bool = False,
    max_retries: int = 3,
    owner: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> Schedule:
    """`now` (for tests on a frozen clock) is when the schedule starts counting."""
    schedule = Schedule(
        organization=organization, agent=agent, owner=owner or actor, name=name, goal=goal, cron=cron,
        timezone=timezone, context=context, enabled=enabled, notify_on_success=notify_on_success,
        max_retries=max_retries,
    )
    parsed = schedule_validate(schedule)
    schedule.next_fire_at = _first_fire_after(schedule, now or _now())
    _save_unique(schedule)
    _sync_periodic_task(schedule, parsed, reset=True)
    return schedule


def _now() -> datetime:
    return timezone.now()


@transaction.atomic
def schedule_update(*, schedule: Schedule, actor: AbstractBaseUser | None, **fields: Any) -> Schedule:
    unknown = set(fields) - set(SCHEDULE_FIELDS)
    if unknown:
        raise TypeError(f"unknown schedule fields: {sorted(unknown)}")
    # Locked, so a firing that is advancing next_fire_at right now isn't overwritten.
    locked = (Schedule.objects.select_for_update(of=("self",)).select_related("periodic_task__crontab")
              .get(id=schedule.id))
    timing_changed = any(name in _TIMING_FIELDS and getattr(locked, name) != value for name, value in fields.items())
    for name, value in fields.items():
        setattr(locked, name, value)
    parsed = schedule_validate(locked)
    if timing_changed:
        locked.next_fire_at = _first_fire_after(locked, _now())
    _save_unique(locked)
    _sync_periodic_task(locked, parsed, reset=timing_changed)
    return locked


def schedule_set_enabled(*, schedule: Schedule, enabled: bool, actor: AbstractBaseUser | None) -> Schedule:
    return schedule_update(schedule=schedule, actor=actor, enabled=enabled)


@transaction.atomic
def schedule_delete(*, schedule: Schedule, actor: AbstractBaseUser | None) -> None:
    # Its firings go with it; the runs it started stay. The beat entry goes in on_schedule_deleted.
    schedule.delete()


def on_schedule_deleted(sender, instance: Schedule, **kwargs: Any) -> None:
    """post_delete: remove the beat entry (and its crontab) of a deleted schedule, however it was
    deleted: through the service, the admin, or a cascade from its agent or owner."""
    if instance.periodic_task_id is None:
        return
    task = PeriodicTask.objects.filter(id=instance.periodic_task_id).first()
    if task is None:
        return
    crontab_id = task.crontab_id
    task.delete()
    if crontab_id and not PeriodicTask.objects.filter(crontab_id=crontab_id).exists():
        CrontabSchedule.objects.filter(id=crontab_id).delete()


def schedule_fire_due(*, schedule_id, now: datetime | None = None) -> ScheduleFiring | None:
    """Beat's wake-up (and the tick's catch-up): start the run for the occurrence that has come.

    Returns None, starting nothing, when the schedule is gone or disabled or its time hasn't come
    (an early or repeated wake-up). An occurrence more than the grace period late (everything was
    down) is recorded as skipped rather than run hours after its time.
    """
    now = now or timezone.now()
    grace = _seconds_setting("AUTOMATIONS_SCHEDULE_GRACE_SECONDS", 1800)
    with transaction.atomic():
        schedule = (Schedule.objects.select_for_update(of=("self",)).select_related("agent", "owner")
                    .filter(id=schedule_id).first())
        if schedule is None or not schedule.enabled or schedule.next_fire_at is None:
            return None
        occurrence = schedule.next_fire_at
        if occurrence > now + EARLY_TOLERANCE:
            return None
        # Occurrences missed while late are not run one after another; the schedule goes on from now.
        schedule.next_fire_at = _first_fire_after(schedule, max(now, occurrence))
        if now - occurrence > grace:
            schedule.save(update_fields=["next_fire_at"])
            return ScheduleFiring.objects.create(
                organization_id=schedule.organization_id, schedule=schedule, occurrence_at=occurrence,
                outcome=ScheduleFiring.Outcome.SKIPPED, finished_at=now,
                error=f"Missed: nothing was running to fire it at {_local(occurrence, schedule)}.",
            )
        schedule.last_fired_at = now
        schedule.save(update_fields=["next_fire_at", "last_fired_at"])
        try:
            with transaction.atomic():
                firing = ScheduleFiring.objects.create(
                    organization_id=schedule.organization_id, schedule=schedule, occurrence_at=occurrence,
                    origin=ScheduleFiring.Origin.SCHEDULE, attempt=1, outcome=ScheduleFiring.Outcome.PENDING,
                )
        except IntegrityError:
            return None  # this occurrence already fired
        return _start_attempt(firing, schedule=schedule, now=now)


@transaction.atomic
def schedule_fire(*, schedule: Schedule, actor: AbstractBaseUser | None, now: datetime | None = None) -> ScheduleFiring:
    """Run now: start the schedule's run at once, outside its timetable (retries and emails apply)."""
    now = now or timezone.now()
    schedule = Schedule.objects.select_related("agent", "owner").get(id=schedule.id)
    firing = ScheduleFiring.objects.create(
        organization_id=schedule.organization_id, schedule=schedule, occurrence_at=now,
        origin=ScheduleFiring.Origin.MANUAL, attempt=1, outcome=ScheduleFiring.Outcome.PENDING,
    )
    return _start_attempt(firing, schedule=schedule, now=now)


def _local(moment: datetime, schedule: Schedule) -> str:
    return moment.astimezone(cron.zone(schedule.timezone)).strftime("%Y-%m-%d %H:%M %Z")


def _start_attempt(firing: ScheduleFiring, *, schedule: Schedule, now: datetime) -> ScheduleFiring:
    """Start the run of a pending attempt (inside the caller's transaction)."""
    firing.fired_at = now
    firing.due_at = None
    if not _is_member(schedule.owner, schedule.organization_id):
        firing.outcome = ScheduleFiring.Outcome.FAILED
        firing.finished_at = now
        firing.error = (f"Not started: the owner {schedule.owner.get_username()} is no longer an active member "
                        "of the organization. Give the schedule a new owner.")
        firing.save()
        return firing
    try:
        quotas.check_run_allowed(organization=schedule.organization, user=schedule.owner)
    except quotas.QuotaExceeded as exc:
        firing.outcome = ScheduleFiring.Outcome.FAILED
        firing.finished_at = now
        firing.error = f"Not started: {exc}"
        firing.save()
        return firing
    run = agent_services.run_start(agent=schedule.agent, goal=schedule.goal, context=copy.deepcopy(schedule.context),
                                   actor=schedule.owner)
    firing.run = run
    firing.outcome = ScheduleFiring.Outcome.RUNNING
    firing.save()
    if firing.attempt == 1:
        _dispatch_schedule_fired(schedule=schedule, firing=firing, run=run, now=now)
    return firing


def schedules_catch_up(*, now: datetime | None = None, limit: int = 200) -> int:
    """Fire schedules whose time passed a minute ago without beat firing them."""
    now = now or timezone.now()
    overdue = list(Schedule.objects.filter(enabled=True, next_fire_at__lte=now - CATCH_UP_AFTER)
                   .order_by("next_fire_at").values_list("id", flat=True)[:limit])
    fired = 0
    for schedule_id in overdue:
        if schedule_fire_due(schedule_id=schedule_id, now=now) is not None:
            fired += 1
    return fired


def schedule_firings_advance(*, now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    """Settle attempts whose run has finished; start retries whose backoff has passed."""
    now = now or timezone.now()
    counts = {"succeeded": 0, "retrying": 0, "failed": 0, "cancelled": 0, "retried": 0}
    with transaction.atomic():
        finished = (
            ScheduleFiring.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(outcome=ScheduleFiring.Outcome.RUNNING)
            .filter(Q(run__status__in=list(Run.TERMINAL)) | Q(run__isnull=True))
            .select_related("schedule", "run")
            .order_by("id")[:limit]
        )
        for firing in finished:
            counts[_settle(firing, now=now)] += 1
    with transaction.atomic():
        due = (
            ScheduleFiring.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(outcome=ScheduleFiring.Outcome.PENDING, due_at__lte=now)
            .select_related("schedule__agent", "schedule__owner")
            .order_by("due_at")[:limit]
        )
        for firing in due:
            schedule = firing.schedule
            if not schedule.enabled:
                firing.outcome = ScheduleFiring.Outcome.SKIPPED
                firing.error = "Not retried: the schedule was disabled."
                firing.finished_at = now
                firing.save()
                continue
            _start_attempt(firing, schedule=schedule, now=now)
            counts["retried"] += 1
    return counts


def _settle(firing: ScheduleFiring, *, now: datetime) -> str:
    run = firing.run
    schedule = firing.schedule
    firing.finished_at = now
    if run is not None and run.status == Run.Status.SUCCEEDED:
        firing.outcome = ScheduleFiring.Outcome.SUCCEEDED
        if schedule.notify_on_success:
            firing.notification = ScheduleFiring.Notification.PENDING
    elif run is not None and run.status == Run.Status.CANCELLED:
        # Someone stopped it on purpose; trying again would undo their decision.
        firing.outcome = ScheduleFiring.Outcome.CANCELLED
        firing.error = "The run was cancelled."
    else:
        firing.error = _run_failure(run)
        if firing.attempt <= schedule.max_retries and schedule.enabled:
            firing.outcome = ScheduleFiring.Outcome.RETRYING
            ScheduleFiring.objects.create(
                organization_id=firing.organization_id, schedule=schedule, origin=firing.origin,
                occurrence_at=firing.occurrence_at, attempt=firing.attempt + 1, retry_of=firing,
                outcome=ScheduleFiring.Outcome.PENDING, due_at=now + retry_backoff(firing.attempt),
            )
        else:
            firing.outcome = ScheduleFiring.Outcome.FAILED
            firing.notification = ScheduleFiring.Notification.PENDING
    firing.save()
    return firing.outcome


def _run_failure(run: Run | None) -> str:
    if run is None:
        return "The run was deleted."
    reason = Run.StopReason(run.stop_reason).label if run.stop_reason in Run.StopReason.values else run.status
    return f"{Run.Status(run.status).label}: {run.error or reason}"[:2000]


# --------------------------------------------------------------------------- notifications


def _absolute(path: str) -> str:
    return getattr(settings, "PUBLIC_URL", "").rstrip("/") + path


def _notification_text(firing: ScheduleFiring) -> tuple[str, str]:
    schedule = firing.schedule
    when = _local(firing.occurrence_at, schedule)
    lines = [f"The schedule “{schedule.name}” of agent {schedule.agent.name} fired for {when}."]
    if firing.outcome == ScheduleFiring.Outcome.SUCCEEDED:
        subject = f"[Agentry] Scheduled run succeeded: {schedule.name}"
        lines.append(f"Its run succeeded{f' on attempt {firing.attempt}' if firing.attempt > 1 else ''}.")
        if firing.run is not None and firing.run.answer:
            lines += ["", "Answer:", firing.run.answer[:4000]]
    else:
        subject = f"[Agentry] Scheduled run failed: {schedule.name}"
        tries = f"{firing.attempt} attempt{'s' if firing.attempt != 1 else ''}"
        lines.append(f"It failed after {tries} and will not be retried.")
        lines += ["", f"Last error: {firing.error}"]
    lines.append("")
    if firing.run_id:
        lines.append(f"Run: {_absolute(f'/runs/{firing.run_id}/')}")
    lines.append(f"Schedule: {_absolute(f'/automations/schedules/{schedule.id}/')}")
    return subject, "\n".join(lines) + "\n"


def schedule_notifications_send(*, limit: int = 50) -> int:
    """Email owners about final failures (and successes, where asked). Each email is claimed
    before sending, so two ticks never send it twice; one that can't be sent is marked so."""
    sent = 0
    pending = list(ScheduleFiring.objects.filter(notification=ScheduleFiring.Notification.PENDING)
                   .order_by("id").values_list("id", flat=True)[:limit])
    for firing_id in pending:
        claimed = ScheduleFiring.objects.filter(
            id=firing_id, notification=ScheduleFiring.Notification.PENDING
        ).update(notification=ScheduleFiring.Notification.SENDING)
        if not claimed:
            continue
        firing = ScheduleFiring.objects.select_related("schedule__owner", "schedule__agent", "run").get(id=firing_id)
        address = firing.schedule.owner.email
        if not address:
            state = ScheduleFiring.Notification.NO_ADDRESS
        else:
            subject, body = _notification_text(firing)
            try:
                send_mail(subject, body, None, [address])
            except (smtplib.SMTPException, OSError):
                logger.warning("could not send the notification for schedule firing %s", firing_id, exc_info=True)
                state = ScheduleFiring.Notification.FAILED
            else:
                state = ScheduleFiring.Notification.SENT
                sent += 1
        ScheduleFiring.objects.filter(id=firing_id).update(notification=state)
    return sent


# --------------------------------------------------------------------------- triggers

TRIGGER_FIELDS = ("name", "agent", "owner", "goal_template", "enabled", "source_agent", "source_statuses",
                  "source_schedule")
DEFAULT_TEMPLATES = {
    Trigger.Kind.WEBHOOK: "Handle this event: {{ payload|json }}",
    Trigger.Kind.RUN_FINISHED: "Follow up on this result from {{ run.agent }} ({{ run.status }}): {{ run.answer }}",
    Trigger.Kind.SCHEDULE_FIRED: "The schedule “{{ schedule.name }}” just fired. Do your part.",
}
TERMINAL_STATUSES = sorted(str(s) for s in Run.TERMINAL)


def trigger_validate(trigger: Trigger) -> None:
    """Check (and normalise) an unsaved trigger; raises ValidationError by field. Writes nothing."""
    errors: dict[str, list[str]] = {}
    trigger.name = (trigger.name or "").strip()
    if not trigger.name:
        errors["name"] = ["Give the trigger a name."]
    elif len(trigger.name) > 120:
        errors["name"] = ["120 characters at most."]
    if trigger.kind not in Trigger.Kind.values:
        errors["kind"] = [f"One of: {', '.join(Trigger.Kind.values)}."]
    if trigger.agent_id is None or trigger.agent.organization_id != trigger.organization_id:
        errors["agent"] = ["Agent not found."]
    if trigger.owner_id is None or not _is_member(trigger.owner, trigger.organization_id):
        errors["owner"] = ["The owner must be an active member of the organization."]
    try:
        templating.check(trigger.goal_template)
    except templating.TemplateError as exc:
        errors["goal_template"] = [str(exc)]
    if trigger.kind == Trigger.Kind.RUN_FINISHED:
        if trigger.source_agent_id is None or trigger.source_agent.organization_id != trigger.organization_id:
            errors["source_agent"] = ["Choose the agent whose finished runs start this one."]
        elif trigger.source_agent_id == trigger.agent_id:
            errors["source_agent"] = ["An agent can't be started by its own runs (that is a loop)."]
        if not trigger.source_statuses:
            trigger.source_statuses = [Run.Status.SUCCEEDED]
        bad = [s for s in trigger.source_statuses if s not in TERMINAL_STATUSES]
        if bad:
            errors["source_statuses"] = [f"Final statuses only: {', '.join(TERMINAL_STATUSES)}."]
        trigger.source_statuses = sorted(set(trigger.source_statuses))
    else:
        trigger.source_agent = None
        trigger.source_statuses = []
    if trigger.kind == Trigger.Kind.SCHEDULE_FIRED:
        source = trigger.source_schedule
        if source is None or source.organization_id != trigger.organization_id:
            errors["source_schedule"] = ["Choose the schedule whose firing starts this agent."]
        elif source.agent_id == trigger.agent_id:
            errors["source_schedule"] = ["This schedule already starts this agent."]
    else:
        trigger.source_schedule = None
    if errors:
        raise ValidationError(errors)


def _new_secret(trigger: Trigger) -> str:
    trigger.secret_salt = signing.new_salt()
    secret = signing.derive_secret(public_id=trigger.public_id, salt=trigger.secret_salt)
    trigger.secret_hint = signing.hint(secret)
    trigger.secret_rotated_at = timezone.now()
    return secret


@dataclass(frozen=True)
class CreatedTrigger:
    trigger: Trigger
    secret: str | None  # webhooks only; shown once, never stored


@transaction.atomic
def trigger_create(
    *,
    organization: Organization,
    agent: Agent,
    actor: AbstractBaseUser | None,
    kind: str,
    name: str,
    goal_template: str = "",
    enabled: bool = True,
    source_agent: Agent | None = None,
    source_statuses: list[str] | None = None,
    source_schedule: Schedule | None = None,
    owner: AbstractBaseUser | None = None,
) -> CreatedTrigger:
    trigger = Trigger(
        organization=organization, agent=agent, owner=owner or actor, kind=kind, name=name,
        goal_template=goal_template or DEFAULT_TEMPLATES.get(kind, ""), enabled=enabled, source_agent=source_agent,
        source_statuses=list(source_statuses or []), source_schedule=source_schedule,
    )
    trigger_validate(trigger)
    secret = None
    if kind == Trigger.Kind.WEBHOOK:
        trigger.public_id = signing.new_public_id()
        secret = _new_secret(trigger)
    _save_unique(trigger)
    return CreatedTrigger(trigger=trigger, secret=secret)


@transaction.atomic
def trigger_update(*, trigger: Trigger, actor: AbstractBaseUser | None, **fields: Any) -> Trigger:
    unknown = set(fields) - set(TRIGGER_FIELDS)
    if unknown:
        raise TypeError(f"unknown trigger fields: {sorted(unknown)}")
    locked = Trigger.objects.select_for_update().get(id=trigger.id)
    was_enabled = locked.enabled
    for name, value in fields.items():
        setattr(locked, name, value)
    trigger_validate(locked)
    if locked.enabled and not was_enabled:
        # Runs that finished while it was off don't all start now.
        locked.armed_at = timezone.now()
    _save_unique(locked)
    return locked


def trigger_set_enabled(*, trigger: Trigger, enabled: bool, actor: AbstractBaseUser | None) -> Trigger:
    return trigger_update(trigger=trigger, actor=actor, enabled=enabled)


@transaction.atomic
def trigger_delete(*, trigger: Trigger, actor: AbstractBaseUser | None) -> None:
    # Its event log stays (the events keep the trigger's name).
    trigger.delete()


@transaction.atomic
def trigger_rotate_secret(*, trigger: Trigger, actor: AbstractBaseUser | None) -> str:
    """A new signing secret for a webhook; the old one stops working at once."""
    if trigger.kind != Trigger.Kind.WEBHOOK:
        raise NotAWebhook("Only webhook triggers have a signing secret.")
    locked = Trigger.objects.select_for_update().get(id=trigger.id)
    secret = _new_secret(locked)
    locked.save(update_fields=["secret_salt", "secret_hint", "secret_rotated_at", "updated_at"])
    trigger.secret_salt, trigger.secret_hint = locked.secret_salt, locked.secret_hint
    trigger.secret_rotated_at = locked.secret_rotated_at
    return secret


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class WebhookResult:
    status: int
    reason: str
    message: str
    run_id: Any = None
    event_id: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 202


def webhook_receive(
    *,
    public_id: str,
    body: bytes,
    declared_length: int | None,
    content_type: str,
    timestamp: str | None,
    signature: str | None,
    remote_addr: str | None,
    now: datetime | None = None,
) -> WebhookResult:
    """Check an inbound call and start the trigger's run. Every call to a known trigger is logged
    and counted. Checks, in order: enabled (403), size (413), content type (415), timestamp and
    signature (401), replay (401), JSON object (400), goal template (400)."""
    now = now or timezone.now()
    trigger = (Trigger.objects.select_related("agent", "owner")
               .filter(public_id=public_id, kind=Trigger.Kind.WEBHOOK).first() if public_id else None)
    if trigger is None:
        # Not logged: there is no trigger (and no organization) to log it against.
        return WebhookResult(404, "unknown_trigger", "No webhook trigger has this URL.")

    def reject(status: int, reason: str, message: str, excerpt: str = "") -> WebhookResult:
        event = _record_event(trigger, now=now, outcome=TriggerEvent.Outcome.REJECTED, reason=reason,
                              message=message, status_code=status, remote_addr=remote_addr,
                              signature=(signature or "")[:80], payload_excerpt=excerpt)
        return WebhookResult(status, reason, message, event_id=event.id)

    if not trigger.enabled:
        return reject(403, "disabled", "This trigger is disabled.")
    if (declared_length or 0) > MAX_BODY_BYTES or len(body) > MAX_BODY_BYTES:
        return reject(413, "too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
    # Postgres text can't hold NUL; the excerpt is for people, so drop it.
    excerpt = body[:EXCERPT_CHARS].decode("utf-8", "replace").replace("\x00", "")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        return reject(415, "unsupported_media_type",
                      f"Send Content-Type: application/json (got {media_type or 'none'!r}).", excerpt)
    if not timestamp:
        return reject(401, "missing_timestamp", f"The {signing.TIMESTAMP_HEADER} header is missing.", excerpt)
    if not timestamp.isdigit() or len(timestamp) > 12:
        return reject(401, "bad_timestamp", f"{signing.TIMESTAMP_HEADER} must be Unix time in seconds.", excerpt)
    skew = now.timestamp() - int(timestamp)
    if abs(skew) > signing.TOLERANCE_SECONDS:
        where = "old" if skew > 0 else "far in the future"
        return reject(401, "stale_timestamp", f"The timestamp is too {where} (more than "
                      f"{signing.TOLERANCE_SECONDS // 60} minutes from the server's clock).", excerpt)
    if not signature:
        return reject(401, "missing_signature", f"The {signing.SIGNATURE_HEADER} header is missing.", excerpt)
    if not _SIGNATURE.match(signature) or not any(
        _constant_time_equal(signing.sign(secret=secret, timestamp=timestamp, body=body), signature)
        for secret in signing.candidate_secrets(public_id=trigger.public_id, salt=trigger.secret_salt)
    ):
        return reject(401, "bad_signature", "The signature does not match the body and timestamp.", excerpt)
    seen = TriggerEvent.objects.filter(trigger=trigger, signature=signature, outcome=TriggerEvent.Outcome.ACCEPTED)
    if seen.exists():
        return reject(401, "replayed", "This exact request was already accepted.", excerpt)
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return reject(400, "invalid_json", f"The body is not valid JSON: {exc}.", excerpt)
    if not isinstance(payload, dict):
        return reject(400, "not_an_object", "The body must be a JSON object.", excerpt)
    if "\\u0000" in json.dumps(payload):
        # Postgres can't store NUL in text or jsonb; refuse it here rather than fail on save.
        return reject(400, "invalid_json", "The body contains a NUL character (\\u0000), which is not accepted.",
                      excerpt)
    if not _is_member(trigger.owner, trigger.organization_id):
        return reject(403, "owner_not_member", "The trigger's owner is no longer a member of the organization.",
                      excerpt)
    try:
        goal = templating.render(trigger.goal_template, {"payload": payload, "trigger": {"name": trigger.name}})
    except templating.TemplateError as exc:
        return reject(400, "template_error", str(exc), excerpt)
    try:
        quotas.check_run_allowed(organization=trigger.organization, user=trigger.owner)
    except quotas.QuotaExceeded as exc:
        return reject(429, "quota_exceeded", str(exc), excerpt)
    try:
        with transaction.atomic():
            event = _record_event(trigger, now=now, outcome=TriggerEvent.Outcome.ACCEPTED, reason="accepted",
                                  message="Run started.", status_code=202, remote_addr=remote_addr,
                                  signature=signature, payload_excerpt=excerpt)
            run = agent_services.run_start(agent=trigger.agent, goal=goal, context=payload, actor=trigger.owner)
            TriggerEvent.objects.filter(id=event.id).update(run=run)
    except IntegrityError:
        # The same signed request accepted a moment ago by another process.
        return reject(401, "replayed", "This exact request was already accepted.", excerpt)
    return WebhookResult(202, "accepted", "Run started.", run_id=run.id, event_id=event.id)


def _constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _record_event(trigger: Trigger, *, now: datetime, outcome: str, reason: str, message: str,
                  **fields: Any) -> TriggerEvent:
    """One log row plus the trigger's counters, in one transaction."""
    with transaction.atomic():
        event = TriggerEvent.objects.create(
            organization_id=trigger.organization_id, trigger=trigger, trigger_name=trigger.name, kind=trigger.kind,
            received_at=now, outcome=outcome, reason=reason, message=message[:500], **fields,
        )
        counter = "accepted_count" if outcome == TriggerEvent.Outcome.ACCEPTED else "rejected_count"
        Trigger.objects.filter(id=trigger.id).update(**{counter: F(counter) + 1}, last_called_at=now)
    return event


# --------------------------------------------------------------------------- internal events


def _chain_of(run: Run) -> list[str]:
    """The agents whose runs led to `run`, oldest first, ending with its own agent."""
    chain = (TriggerEvent.objects.filter(run=run, outcome=TriggerEvent.Outcome.ACCEPTED).exclude(chain=[])
             .values_list("chain", flat=True).first())
    if chain:
        return list(chain)
    return [str(run.agent_id)] if run.agent_id else []


def _start_from_event(
    *,
    trigger: Trigger,
    source_chain: list[str],
    template_context: dict[str, Any],
    run_context: dict[str, Any],
    now: datetime,
    source_run: Run | None = None,
    schedule_firing: ScheduleFiring | None = None,
) -> TriggerEvent | None:
    """Start `trigger`'s agent for an internal event, unless that would loop. Returns None when the
    event was already handled (another tick got there first)."""
    target = str(trigger.agent_id)
    chain = [*source_chain, target]
    reason, message, goal = "accepted", "Run started.", ""
    if target in source_chain:
        reason = "loop"
        message = f"Refused: {trigger.agent.name} already ran earlier in this chain of triggers."
    elif len(chain) - 1 > MAX_TRIGGER_DEPTH:
        reason = "too_deep"
        message = f"Refused: more than {MAX_TRIGGER_DEPTH} triggers in a row."
    elif not _is_member(trigger.owner, trigger.organization_id):
        reason, message = "owner_not_member", "The trigger's owner is no longer a member of the organization."
    else:
        try:
            goal = templating.render(trigger.goal_template, template_context | {"trigger": {"name": trigger.name}})
        except templating.TemplateError as exc:
            reason, message = "template_error", str(exc)
    if reason == "accepted":
        try:
            quotas.check_run_allowed(organization=trigger.organization, user=trigger.owner)
        except quotas.QuotaExceeded as exc:
            reason, message = "quota_exceeded", str(exc)
    accepted = reason == "accepted"
    try:
        with transaction.atomic():
            event = _record_event(
                trigger, now=now, outcome=TriggerEvent.Outcome.ACCEPTED if accepted else TriggerEvent.Outcome.REJECTED,
                reason=reason, message=message, source_run=source_run, schedule_firing=schedule_firing,
                payload_excerpt=_excerpt(template_context), chain=chain if accepted else [],
            )
            if accepted:
                run = agent_services.run_start(agent=trigger.agent, goal=goal, actor=trigger.owner,
                                               context=run_context | {"trigger_chain": chain})
                TriggerEvent.objects.filter(id=event.id).update(run=run)
                event.run = run
    except IntegrityError:
        return None
    return event


def _run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "agent_id": str(run.agent_id) if run.agent_id else None,
        "agent": (run.config or {}).get("name", ""),
        "status": run.status,
        "stop_reason": run.stop_reason,
        "goal": run.goal,
        "answer": run.answer,
        "error": run.error,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def triggers_dispatch_run_finished(*, now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    """Start the agents whose "run finished" triggers match runs that finished since the trigger
    was enabled (looking back at most AUTOMATIONS_TRIGGER_LOOKBACK_SECONDS). Each (trigger, run)
    pair is handled once: the event row is the claim."""
    now = now or timezone.now()
    lookback = now - _seconds_setting("AUTOMATIONS_TRIGGER_LOOKBACK_SECONDS", 86400)
    counts = {"accepted": 0, "rejected": 0}
    triggers = Trigger.objects.filter(kind=Trigger.Kind.RUN_FINISHED, enabled=True).select_related("agent", "owner")
    for trigger in triggers:
        handled = TriggerEvent.objects.filter(trigger=trigger, source_run=OuterRef("pk"))
        runs = (
            Run.objects.filter(
                organization_id=trigger.organization_id, agent_id=trigger.source_agent_id,
                status__in=trigger.source_statuses, finished_at__gte=max(trigger.armed_at, lookback),
                finished_at__lte=now,
            )
            .filter(~Exists(handled))
            .order_by("finished_at")[:limit]
        )
        for run in runs:
            summary = _run_summary(run)
            with transaction.atomic():
                event = _start_from_event(
                    trigger=trigger, source_chain=_chain_of(run), template_context={"run": summary},
                    run_context={"source_run": summary}, now=now, source_run=run,
                )
            if event is not None:
                counts["accepted" if event.outcome == TriggerEvent.Outcome.ACCEPTED else "rejected"] += 1
    return counts


def _dispatch_schedule_fired(*, schedule: Schedule, firing: ScheduleFiring, run: Run, now: datetime) -> None:
    info = {"id": str(schedule.id), "name": schedule.name, "goal": schedule.goal,
            "occurrence_at": firing.occurrence_at.isoformat(), "run_id": str(run.id)}
    for trigger in Trigger.objects.filter(kind=Trigger.Kind.SCHEDULE_FIRED, enabled=True, source_schedule=schedule
                                          ).select_related("agent", "owner"):
        _start_from_event(trigger=trigger, source_chain=[str(schedule.agent_id)],
                          template_context={"schedule": info}, run_context={"schedule": info}, now=now,
                          schedule_firing=firing)


# --------------------------------------------------------------------------- the periodic tick


def automations_tick(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    counts = {"caught_up": schedules_catch_up(now=now)}
    counts |= schedule_firings_advance(now=now)
    counts |= {f"triggers_{k}": v for k, v in triggers_dispatch_run_finished(now=now).items()}
    counts["emails"] = schedule_notifications_send()
    return counts
