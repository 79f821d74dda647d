"""Roles and what they allow.

A membership's role names a Django group ("Owner", "Admin", "Builder", "Operator", "Viewer",
"Auditor"); the group's permissions are what the role may do in that organization. The groups are
created with the defaults below after `migrate` and are then the operators' to edit in the admin
(`manage.py roles_reset` puts the defaults back). Every check in the product goes through
`Access.can` / `Access.require`, so an edit in the admin changes behaviour everywhere within
`CACHE_SECONDS`, in every process.

Roles nest: Viewer < Operator < Builder < Admin < Owner; Auditor is a Viewer who also sees every
agent, run and the audit log, and can run nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied

from accounts.models import Membership, Organization

CACHE_SECONDS = 5.0

VIEWER = {
    "agents.view_agent", "agents.view_run", "agents.view_approval",
    "automations.view_schedule", "automations.view_trigger",
    "accounts.view_membership", "accounts.view_team", "accounts.view_quota",
    "accounts.add_apitoken",  # personal keys, never beyond the person's own role
    # The catalog, their own connections and the organization's shared ones (names, status; never secrets).
    "integrations.view_connection", "integrations.view_httpapi", "integrations.view_mcpserver",
}
OPERATOR = VIEWER | {
    "agents.run_agent", "agents.steer_run", "agents.decide_approval",
    "automations.add_schedule", "automations.change_schedule", "automations.delete_schedule",
    "automations.add_trigger", "automations.change_trigger", "automations.delete_trigger",
    # Personal connections: agents run by this person act with them.
    "integrations.add_connection", "integrations.change_connection", "integrations.delete_connection",
}
BUILDER = OPERATOR | {"agents.add_agent", "agents.change_agent", "agents.delete_agent", "agents.share_agent"}
AUDITOR = VIEWER | {
    "agents.view_all_agents", "agents.view_all_runs", "accounts.view_auditlog", "accounts.export_auditlog",
    "accounts.view_identityprovider", "integrations.view_all_connections",
}
ADMIN = BUILDER | AUDITOR | {
    "agents.manage_all_agents",
    "accounts.add_membership", "accounts.change_membership", "accounts.delete_membership",
    "accounts.add_team", "accounts.change_team", "accounts.delete_team",
    "accounts.manage_service_keys", "accounts.add_quota", "accounts.change_quota", "accounts.delete_quota",
    "accounts.change_organization",
    "accounts.add_identityprovider", "accounts.change_identityprovider", "accounts.delete_identityprovider",
    "integrations.manage_org_connections",
    "integrations.add_httpapi", "integrations.change_httpapi", "integrations.delete_httpapi",
    "integrations.add_mcpserver", "integrations.change_mcpserver", "integrations.delete_mcpserver",
}
OWNER = ADMIN | {"accounts.manage_owners"}

DEFAULTS: dict[str, frozenset[str]] = {
    Membership.Role.OWNER: frozenset(OWNER),
    Membership.Role.ADMIN: frozenset(ADMIN),
    Membership.Role.BUILDER: frozenset(BUILDER),
    Membership.Role.OPERATOR: frozenset(OPERATOR),
    Membership.Role.VIEWER: frozenset(VIEWER),
    Membership.Role.AUDITOR: frozenset(AUDITOR),
}


def group_name(role: str) -> str:
    return Membership.Role(role).label


class _RolePermissions:
    """Role -> permission strings, read from the groups and kept for CACHE_SECONDS per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._perms: dict[str, frozenset[str]] = {}

    def clear(self) -> None:
        with self._lock:
            self._loaded_at = 0.0

    def get(self, role: str) -> frozenset[str]:
        if time.monotonic() - self._loaded_at > CACHE_SECONDS:
            self._load()
        return self._perms.get(role, frozenset())

    def _load(self) -> None:
        from django.contrib.auth.models import Group

        by_label = {label: value for value, label in Membership.Role.choices}
        perms: dict[str, set[str]] = {value: set() for value in by_label.values()}
        rows = Group.objects.filter(name__in=by_label).values_list(
            "name", "permissions__content_type__app_label", "permissions__codename"
        )
        for name, app_label, codename in rows:
            if codename:
                perms[by_label[name]].add(f"{app_label}.{codename}")
        with self._lock:
            self._perms = {role: frozenset(p) for role, p in perms.items()}
            self._loaded_at = time.monotonic()


role_permissions = _RolePermissions()


def permission_label(perm: str) -> str:
    from django.contrib.auth.models import Permission

    app_label, _, codename = perm.partition(".")
    name = (
        Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        .values_list("name", flat=True)
        .first()
    )
    return (name or perm).lower().removeprefix("can ")


class Denied(PermissionDenied):
    """A role check failed. The message names the role and what it lacks; the 403 page links back."""

    def __init__(self, message: str, *, perm: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.perm = perm
        self.details = {"permission": perm} if perm else None


@dataclass
class Access:
    """What the caller may do in the organization they act in."""

    membership: Membership
    _extra: dict = field(default_factory=dict)

    @property
    def organization(self) -> Organization:
        return self.membership.organization

    @property
    def user(self) -> AbstractBaseUser:
        return self.membership.user

    @property
    def role(self) -> str:
        return self.membership.role

    @property
    def role_label(self) -> str:
        return Membership.Role(self.role).label

    @property
    def perms(self) -> frozenset[str]:
        return role_permissions.get(self.role)

    def can(self, perm: str) -> bool:
        return perm in self.perms

    def require(self, perm: str, message: str = "") -> None:
        if not self.can(perm):
            raise Denied(
                message or f"Permission denied: your role ({self.role_label}) can't {permission_label(perm)}.",
                perm=perm,
            )

    @cached_property
    def team_ids(self) -> frozenset:
        """The caller's teams and every team above them (sharing with a department reaches its teams)."""
        from accounts.models import Team, TeamMembership

        direct = set(
            TeamMembership.objects.filter(user_id=self.membership.user_id, team__organization_id=self.organization.id)
            .values_list("team_id", flat=True)
        )
        if not direct:
            return frozenset()
        parents = dict(Team.objects.filter(organization_id=self.organization.id).values_list("id", "parent_id"))
        found: set = set()
        for team_id in direct:
            while team_id is not None and team_id not in found:
                found.add(team_id)
                team_id = parents.get(team_id)
        return frozenset(found)


def access_for(*, user: AbstractBaseUser, organization: Organization | object) -> Access | None:
    """`organization` may be the row or its id."""
    membership = (
        Membership.objects.select_related("organization", "user").filter(user=user, organization=organization).first()
    )
    return Access(membership) if membership else None


def access_for_request(request) -> Access | None:
    """The caller's access in the organization the request acts in (API key's, else the session's)."""
    if hasattr(request, "_agentry_access"):
        return request._agentry_access
    from accounts.selectors import membership_for_request

    access = None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        membership = membership_for_request(request)
        if membership is not None:
            membership.user = request.user  # the same object: no second user query
            access = Access(membership)
    request._agentry_access = access
    return access


def access_or_403(request) -> Access:
    access = access_for_request(request)
    if access is None:
        raise PermissionDenied("You are not a member of any organization yet. Ask an owner to add you.")
    return access


def groups_sync(*, reset: bool = False, **_kwargs) -> None:
    """Create the six role groups with their default permissions (all of them again with reset)."""
    from django.contrib.auth.models import Group, Permission

    wanted = set().union(*DEFAULTS.values())
    by_key = {
        f"{app}.{codename}": pk
        for pk, app, codename in Permission.objects.values_list("id", "content_type__app_label", "codename")
    }
    missing = wanted - by_key.keys()
    if missing:
        # Permissions are created app by app after migrate; the last app's signal finds them all.
        return
    for role, perms in DEFAULTS.items():
        group, created = Group.objects.get_or_create(name=group_name(role))
        if created or reset:
            group.permissions.set([by_key[p] for p in perms])
    role_permissions.clear()
