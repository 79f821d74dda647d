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
    """A user's place in an organization. The role names a Django group (accounts/roles.py) whose
    permissions say what the role may do; operators edit those permissions in the admin."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        BUILDER = "builder", "Builder"
        OPERATOR = "operator", "Operator"
        VIEWER = "viewer", "Viewer"
        AUDITOR = "auditor", "Auditor"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique_user_org"),
            models.CheckConstraint(condition=models.Q(role__in=["owner", "admin", "builder", "operator", "viewer",
                                                                "auditor"]), name="membership_role_known"),
        ]
        ordering = ["created_at"]
        permissions = [
            ("manage_owners", "Can grant and take away the Owner role"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Team(models.Model):
    """A group of people inside an organization. A department is a team of teams: `parent` nests
    teams, and sharing with a team reaches everyone in it and in the teams below it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=300, blank=True, default="")
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children",
                               help_text="The department (or larger team) this team belongs to.")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="TeamMembership", related_name="teams")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="team_unique_name"),
            models.CheckConstraint(condition=~models.Q(parent=models.F("id")), name="team_not_own_parent"),
        ]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="team_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class IdentityProvider(models.Model):
    """Single sign-on for one organization: OpenID Connect (Okta, Azure AD, Google Workspace...) or
    SAML 2.0. Claims from the provider map to a role (`role_claim` + `role_mapping`)."""

    class Kind(models.TextChoices):
        OIDC = "oidc", "OpenID Connect"
        SAML = "saml", "SAML 2.0"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="identity_providers")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.OIDC)
    name = models.CharField(max_length=100, help_text="Shown on the sign-in button, e.g. \"Okta\".")
    slug = models.SlugField(max_length=60, unique=True, help_text="Appears in the sign-in and callback URLs.")
    enabled = models.BooleanField(default=True)
    # OpenID Connect
    server_url = models.URLField(blank=True, default="", help_text="Issuer URL; discovery is read from "
                                 "<issuer>/.well-known/openid-configuration.")
    client_id = models.CharField(max_length=200, blank=True, default="")
    client_secret = models.CharField(max_length=500, blank=True, default="")
    # SAML 2.0
    idp_entity_id = models.CharField(max_length=300, blank=True, default="")
    idp_sso_url = models.URLField(blank=True, default="")
    idp_x509_cert = models.TextField(blank=True, default="")
    idp_metadata_url = models.URLField(blank=True, default="")
    # Role mapping: the claim (e.g. "groups") whose values pick the role; first match wins.
    role_claim = models.CharField(max_length=100, blank=True, default="groups")
    role_mapping = models.JSONField(default=dict, blank=True,
                                    help_text='Claim value to role, e.g. {"finance-admins": "admin"}.')
    default_role = models.CharField(max_length=20, choices=Membership.Role.choices, default=Membership.Role.VIEWER)
    email_domains = ArrayField(models.CharField(max_length=200), default=list, blank=True,
                               help_text="People with these email domains are sent to this provider.")
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


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
        permissions = [("manage_service_keys", "Can create and revoke the organization's service keys")]

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
        permissions = [("export_auditlog", "Can export the audit log")]

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
