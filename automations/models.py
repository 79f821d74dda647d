from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from accounts.models import Organization
from agents.models import Agent, Run

MAX_RETRIES_LIMIT = 10
GOAL_TEMPLATE_MAX = 5000
MAX_GOAL = 20_000


class Schedule(models.Model):
    """An agent run that starts on a cron schedule, in a time zone, owned by `owner`.

    `next_fire_at` (computed by automations.cron) is the authority on when it fires; the linked
    django-celery-beat PeriodicTask, kept in sync by the services, wakes the worker at that time.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="schedules")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="schedules")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_schedules",
                              help_text="Runs are started as this user; failure emails go to them.")
    name = models.CharField(max_length=120)
    cron = models.CharField(max_length=100, help_text="Five fields: minute hour day-of-month month day-of-week.")
    description = models.CharField(max_length=300, blank=True, default="", help_text="The cron in words.")
    timezone = models.CharField(max_length=64, default="UTC")
    goal = models.TextField()
    context = models.JSONField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    notify_on_success = models.BooleanField(default=False)
    max_retries = models.PositiveSmallIntegerField(default=3)
    periodic_task = models.OneToOneField(PeriodicTask, on_delete=models.SET_NULL, null=True, blank=True,
                                         related_name="agent_schedule", editable=False)
    next_fire_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_fired_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            models.Index(fields=["organization", "agent"]),
            models.Index(fields=["next_fire_at"], condition=Q(enabled=True), name="schedule_due_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["agent", "name"], name="schedule_unique_name_per_agent"),
            models.CheckConstraint(condition=Q(max_retries__lte=MAX_RETRIES_LIMIT), name="schedule_max_retries_range"),
            models.CheckConstraint(condition=~Q(goal=""), name="schedule_goal_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def periodic_task_name(self) -> str:
        return f"automations.schedule:{self.id}"


class ScheduleFiring(models.Model):
    """One attempt at one occurrence of a schedule. A failed attempt that will be retried is
    `retrying` and points to nothing; its retry is a new row (`retry_of` → it), `pending` until
    its backoff has passed."""

    class Origin(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Run now"

    class Outcome(models.TextChoices):
        PENDING = "pending", "Waiting to retry"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        RETRYING = "retrying", "Failed, retrying"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"

    class Notification(models.TextChoices):
        NONE = "", "None"
        PENDING = "pending", "To send"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Could not send"
        NO_ADDRESS = "no_address", "Owner has no email address"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="firings")
    origin = models.CharField(max_length=20, choices=Origin.choices, default=Origin.SCHEDULE)
    occurrence_at = models.DateTimeField(help_text="The scheduled time this attempt belongs to.")
    attempt = models.PositiveSmallIntegerField(default=1)
    retry_of = models.OneToOneField("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retry")
    run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RUNNING)
    due_at = models.DateTimeField(null=True, blank=True, help_text="When a pending retry starts.")
    error = models.TextField(blank=True, default="")
    notification = models.CharField(max_length=20, choices=Notification.choices, blank=True, default="")
    fired_at = models.DateTimeField(null=True, blank=True, help_text="When this attempt's run was started.")
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["schedule", "-created_at"]),
            models.Index(fields=["outcome"], condition=Q(outcome__in=["pending", "running"]),
                         name="firing_open_idx"),
            models.Index(fields=["notification"], condition=Q(notification="pending"), name="firing_notify_idx"),
        ]
        constraints = [
            # A duplicate wake-up for the same occurrence can't start a second run.
            models.UniqueConstraint(fields=["schedule", "occurrence_at"],
                                    condition=Q(attempt=1, origin="schedule"), name="firing_once_per_occurrence"),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.occurrence_at:%Y-%m-%d %H:%M} #{self.attempt} ({self.outcome})"


class Trigger(models.Model):
    """Starts a run of `agent` (owned by `owner`) when something happens:
    an inbound webhook call, a run of another agent finishing, or a schedule firing."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Inbound webhook"
        RUN_FINISHED = "run_finished", "A run of another agent finished"
        SCHEDULE_FIRED = "schedule_fired", "A schedule fired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="triggers")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="triggers",
                              help_text="The agent this trigger starts.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_triggers",
                              help_text="Runs are started as this user.")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    goal_template = models.TextField(help_text="Django template syntax; rendered into the run's goal.")
    # Webhook: the URL is /hooks/<public_id>. The signing secret is not stored: it is derived
    # from SECRET_KEY and `secret_salt` (automations.signing), so a database dump alone can't sign.
    public_id = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    secret_salt = models.CharField(max_length=64, blank=True, default="", editable=False)
    secret_hint = models.CharField(max_length=16, blank=True, default="", editable=False)
    secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Internal events.
    source_agent = models.ForeignKey(Agent, on_delete=models.CASCADE, null=True, blank=True,
                                     related_name="downstream_triggers")
    source_statuses = ArrayField(models.CharField(max_length=20), default=list, blank=True,
                                 help_text="Run statuses that count (run_finished).")
    source_schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, null=True, blank=True,
                                        related_name="downstream_triggers")
    accepted_count = models.PositiveBigIntegerField(default=0, editable=False)
    rejected_count = models.PositiveBigIntegerField(default=0, editable=False)
    last_called_at = models.DateTimeField(null=True, blank=True, editable=False)
    armed_at = models.DateTimeField(default=timezone.now, editable=False,
                                    help_text="When it was created or last enabled; older runs don't trigger it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            models.Index(fields=["organization", "agent"]),
            models.Index(fields=["source_agent"], condition=Q(kind="run_finished", enabled=True),
                         name="trigger_run_finished_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["agent", "name"], name="trigger_unique_name_per_agent"),
            models.CheckConstraint(
                condition=(Q(kind="webhook", public_id__isnull=False)
                           | Q(kind="run_finished", source_agent__isnull=False)
                           | Q(kind="schedule_fired", source_schedule__isnull=False)),
                name="trigger_kind_has_source",
            ),
            models.CheckConstraint(condition=~Q(goal_template=""), name="trigger_goal_template_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class TriggerEvent(models.Model):
    """Every call of a trigger, accepted or not, and the run it started. Kept when the trigger is
    deleted (it's the audit trail), so the trigger's name and kind are copied."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    trigger = models.ForeignKey(Trigger, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    trigger_name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=Trigger.Kind.choices)
    received_at = models.DateTimeField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    reason = models.CharField(max_length=40, help_text="Machine-readable: accepted, bad_signature, loop, ...")
    message = models.CharField(max_length=500, blank=True, default="")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status (webhooks).")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    source_run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    schedule_firing = models.ForeignKey(ScheduleFiring, on_delete=models.SET_NULL, null=True, blank=True,
                                        related_name="+")
    signature = models.CharField(max_length=80, blank=True, default="")
    payload_excerpt = models.TextField(blank=True, default="")
    chain = ArrayField(models.CharField(max_length=36), default=list, blank=True,
                       help_text="Agents (ids) whose runs led to the started run, oldest first.")

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-received_at"]),
            models.Index(fields=["trigger", "-received_at"]),
        ]
        constraints = [
            # A signature is accepted once: the same signed request sent again is a replay.
            models.UniqueConstraint(fields=["trigger", "signature"], condition=Q(outcome="accepted") & ~Q(signature=""),
                                    name="triggerevent_signature_once"),
            # Each finished run is handled once per trigger, however many scans see it.
            models.UniqueConstraint(fields=["trigger", "source_run"], condition=Q(source_run__isnull=False),
                                    name="triggerevent_source_run_once"),
        ]

    def __str__(self) -> str:
        return f"{self.trigger_name} {self.received_at:%Y-%m-%d %H:%M:%S} {self.reason}"
