from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from accounts.models import Organization

MAX_STEPS_LIMIT = 200
TIMEOUT_LIMIT_SECONDS = 3600


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    system_prompt = models.TextField()
    model = models.CharField(max_length=100)
    tools = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    max_steps = models.PositiveIntegerField(default=10)
    timeout_seconds = models.PositiveIntegerField(default=300)
    class Policy(models.TextChoices):
        AUTO = "auto", "Run automatically"
        ASK = "ask", "Ask a person first"
        DENY = "deny", "Never run"

    class ExpiryOutcome(models.TextChoices):
        REJECT = "reject", "Reject the call (the model is told)"
        CANCEL = "cancel", "Cancel the run"

    # Per tool: auto, ask or deny. Tools not listed: write tools ask, read tools run automatically.
    tool_policies = models.JSONField(default=dict, blank=True)
    # Per integration its tools use: {"github": {"connection": "runner" | "<connection id>",
    # "scopes": [...]}}. "runner" (the default) acts as the person running the agent; the scopes
    # (default: those its chosen tools need) are intersected with the connection's at each call.
    integrations = models.JSONField(default=dict, blank=True)
    approval_timeout_seconds = models.PositiveIntegerField(default=3600)
    approval_expiry_outcome = models.CharField(max_length=10, choices=ExpiryOutcome.choices,
                                               default=ExpiryOutcome.REJECT)
    max_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Input + output tokens per run.")
    max_cost_usd = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True,
                                       help_text="Model spend per run, in USD.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="agents_created"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"])]
        permissions = [
            ("run_agent", "Can run agents shared with them"),
            ("share_agent", "Can share their agents with teams or the organization"),
            ("view_all_agents", "Can see every agent in the organization, shared or not"),
            ("manage_all_agents", "Can change, share and delete every agent in the organization"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_steps__gte=1, max_steps__lte=MAX_STEPS_LIMIT), name="agent_max_steps_range"
            ),
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=5, timeout_seconds__lte=TIMEOUT_LIMIT_SECONDS),
                name="agent_timeout_range",
            ),
            models.CheckConstraint(condition=~Q(system_prompt=""), name="agent_system_prompt_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name

    def snapshot(self) -> dict:
        """The configuration a run freezes at start, so later edits never change a run's meaning."""
        return {
            "agent_id": str(self.id),
            "name": self.name,
            "system_prompt": self.system_prompt,
            "model": self.model,
            "tools": list(self.tools),
            "max_steps": self.max_steps,
            "timeout_seconds": self.timeout_seconds,
            "max_tokens": self.max_tokens,
            "max_cost_usd": str(self.max_cost_usd) if self.max_cost_usd is not None else None,
            "tool_policies": dict(self.tool_policies or {}),
            "integrations": dict(self.integrations or {}),
            "approval_timeout_seconds": self.approval_timeout_seconds,
            "approval_expiry_outcome": self.approval_expiry_outcome,
            "dry_run": False,
        }


class AgentShare(models.Model):
    """Who an agent is shared with besides its owner: a team (and the teams below it) or, with no
    team, the whole organization. Shared people may run it; `can_edit` also lets them change it."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="shares")
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="+",
                             help_text="Empty: the whole organization.")
    can_edit = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One share per team, and at most one organization-wide share (NULLs compare equal here).
            models.UniqueConstraint(fields=["agent", "team"], name="agent_share_unique", nulls_distinct=False),
        ]

    def __str__(self) -> str:
        return f"{self.agent} shared with {self.team or 'the organization'}"


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"

    class StopReason(models.TextChoices):
        FINAL_ANSWER = "final_answer", "Final answer"
        MAX_STEPS = "max_steps", "Max steps reached"
        TIMEOUT = "timeout", "Timeout"
        MAX_TOKENS = "max_tokens", "Token budget reached"
        MAX_COST = "max_cost", "Cost budget reached"
        CANCELLED = "cancelled", "Cancelled"
        MODEL_ERROR = "model_error", "Model error"
        INTERNAL_ERROR = "internal_error", "Internal error"

    TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Covered by the composite indexes below, which lead with these columns.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="runs", db_index=False)
    agent = models.ForeignKey(Agent, on_delete=models.SET_NULL, null=True, related_name="runs", db_index=False)
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children")
    config = models.JSONField(help_text="Frozen copy of the agent's configuration at start.")
    goal = models.TextField()
    context = models.JSONField(null=True, blank=True)
    dry_run = models.BooleanField(default=False, help_text="Write tools are simulated, never executed.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    stop_reason = models.CharField(max_length=20, choices=StopReason.choices, blank=True, default="")
    answer = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    steps = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    last_seq = models.PositiveIntegerField(default=0, help_text="Sequence number of the newest event.")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    pause_requested_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=200, blank=True, default="")
    # The worker that owns a running run holds a lease: renewed by heartbeat, taken over by another
    # worker once expired. Every write checks the fencing token, so a worker that lost its lease
    # (paused by GC, cut off from the network) can't write over the new owner's work.
    lease_holder = models.CharField(max_length=200, blank=True, default="")
    lease_token = models.PositiveBigIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker claimed this run.")
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="Hard wall-clock deadline.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs_started"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["organization", "status", "-created_at"]),
            models.Index(fields=["agent", "-created_at"]),
            models.Index(fields=["lease_expires_at"], condition=Q(status="running"), name="run_running_lease_idx"),
        ]
        permissions = [
            ("steer_run", "Can cancel, pause, resume, retry and re-run runs they can see"),
            ("view_all_runs", "Can see every run in the organization"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status__in=["succeeded", "failed", "cancelled", "timed_out"]) | ~Q(stop_reason=""),
                name="run_finished_has_stop_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class RunEvent(models.Model):
    class Type(models.TextChoices):
        STATUS = "status", "Status"
        THOUGHT = "thought", "Thought"
        TOOL_START = "tool_start", "Tool call"
        TOOL_END = "tool_end", "Tool result"
        FINAL_ANSWER = "final_answer", "Final answer"
        ERROR = "error", "Error"
        APPROVAL = "approval", "Approval"

    id = models.BigAutoField(primary_key=True)
    # Covered by the (run, seq) unique index; a second index would only slow the hot insert path.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=20, choices=Type.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runevent_unique_seq")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"

    def as_dict(self) -> dict:
        return {"seq": self.seq, "type": self.type, "data": self.data, "created_at": self.created_at.isoformat()}


class Approval(models.Model):
    """A tool call waiting for a person. Decided exactly once: the decision is a conditional update
    from pending, so a second approve (or one after expiry) changes nothing and gets a 409."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="approvals")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="approvals")
    call_id = models.CharField(max_length=200)
    tool = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict)
    step = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    edited_arguments = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True, default="", help_text="Shown to the model on rejection.")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="approvals_decided")
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["run", "call_id"], name="approval_unique_call")]
        permissions = [("decide_approval", "Can approve, edit or reject tool calls of runs they can see")]
        indexes = [models.Index(fields=["organization", "status", "-created_at"]),
                   models.Index(fields=["expires_at"], condition=Q(status="pending"), name="approval_pending_idx")]

    def __str__(self) -> str:
        return f"{self.tool} for run {self.run_id} ({self.status})"

    @property
    def effective_arguments(self) -> dict:
        return self.edited_arguments if self.edited_arguments is not None else self.arguments
