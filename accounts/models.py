from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        # The full role set (Builder, Operator, Viewer, Auditor) arrives with the governance issue.
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique_user_org")]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


def _all_scopes() -> list[str]:
    return ["read", "run", "manage"]


class ApiToken(models.Model):
    """An API key. Only a SHA-256 of the secret is stored; the secret is shown once.

    Personal keys act as their user; service keys are for integrations and are managed by the
    organization's owners and admins (they still name the person who created them, for audit).
    Scopes narrow what a key may do below its user's own rights.
    """

    PREFIX = "agt_"

    class Kind(models.TextChoices):
        PERSONAL = "personal", "Personal"
        SERVICE = "service", "Service"

    class Scope(models.TextChoices):
        READ = "read", "Read"
        RUN = "run", "Run agents, steer runs, decide approvals"
        MANAGE = "manage", "Create and change agents, schedules, triggers, keys"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, default="API token")
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12, help_text="First characters of the token, to recognise it.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PERSONAL)
    scopes = ArrayField(models.CharField(max_length=10, choices=Scope.choices),
                        default=_all_scopes)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @staticmethod
    def hash_key(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"


class AuditLog(models.Model):
    """Append-only record of state changes and sensitive reads.

    A database trigger (migration 0002) refuses UPDATE and DELETE, so no code path — UI, API,
    admin, a bug — can alter history; only the retention purge may delete old rows, by setting a
    transaction-local flag the trigger checks.
    """

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    organization = models.ForeignKey(Organization, on_delete=models.DO_NOTHING, null=True, blank=True,
                                     db_constraint=False, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, null=True, blank=True,
                              db_constraint=False, related_name="+")
    # Kept as text too, so the entry still says who it was after the user is gone.
    actor_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=60, db_index=True)
    target_type = models.CharField(max_length=60, blank=True, default="")
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_label = models.CharField(max_length=200, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")
    diff = models.JSONField(null=True, blank=True)
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["organization", "-at"]), models.Index(fields=["organization", "action", "-at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.target_label}"


class Quota(models.Model):
    """Monthly limits for an organization, or for one user in it. Empty limits mean unlimited."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="quotas")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
                             related_name="quotas", help_text="Empty: the whole organization.")
    runs_per_month = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True)
    spend_per_month_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="quota_unique_user",
                                    condition=models.Q(user__isnull=False)),
            models.UniqueConstraint(fields=["organization"], name="quota_unique_org",
                                    condition=models.Q(user__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"Quota for {self.user or self.organization}"
