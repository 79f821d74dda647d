from __future__ import annotations

import re
import secrets
import smtplib

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from accounts.audit import audit_record
from accounts.audit import diff_of as audit_diff
from accounts.models import ApiToken, Membership, Organization, Team, TeamMembership

User = get_user_model()


@transaction.atomic
def organization_create(*, name: str, owner: AbstractBaseUser | None = None, slug: str | None = None) -> Organization:
    organization = Organization.objects.create(name=name, slug=slug or slugify(name)[:100])
    if owner is not None:
        Membership.objects.create(user=owner, organization=organization, role=Membership.Role.OWNER)
    return organization


@transaction.atomic
def membership_add(
    *, organization: Organization, user: AbstractBaseUser, role: str = Membership.Role.BUILDER, actor=None
) -> Membership:
    before = Membership.objects.filter(user=user, organization=organization).values_list("role", flat=True).first()
    membership, _ = Membership.objects.update_or_create(
        user=user, organization=organization, defaults={"role": role}
    )
    if before != role:
        audit_record(action="membership.add" if before is None else "membership.role_change", actor=actor,
                     organization=organization, target=user, diff={"role": [before, role]})
    return membership


@transaction.atomic
def api_token_create(
    *,
    user: AbstractBaseUser,
    organization: Organization,
    name: str = "API token",
    kind: str = ApiToken.Kind.PERSONAL,
    scopes: list[str] | None = None,
    expires_at=None,
) -> tuple[ApiToken, str]:
    """Returns the token row and the raw secret, which is not stored and cannot be shown again."""
    raw = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, organization=organization, name=name, key_hash=ApiToken.hash_key(raw), hint=raw[:10],
        kind=kind, scopes=sorted(set(scopes)) if scopes else ["manage", "read", "run"], expires_at=expires_at,
    )
    audit_record(action="api_key.create", actor=user, organization=organization, target=token,
                 data={"hint": token.hint, "kind": token.kind, "scopes": token.scopes,
                       "expires_at": expires_at.isoformat() if expires_at else None})
    return token, raw


def api_token_touch(*, token: ApiToken) -> None:
    ApiToken.objects.filter(id=token.id).update(last_used_at=timezone.now())


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: AbstractBaseUser) -> None:
    if ApiToken.objects.filter(id=token.id, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit_record(action="api_key.revoke", actor=actor, organization_id=token.organization_id, target=token)


# --------------------------------------------------------------------------- members


class AccountRuleError(Exception):
    """A rule about members, teams or keys was broken. `field` names the input at fault (None: the
    request as a whole), so the API answers 400 with field errors and forms show it by the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class AccountConflict(AccountRuleError):
    """The request clashes with what exists (the API answers 409, like other name clashes)."""


class LastOwner(AccountConflict):
    """The change would leave the organization without an Owner."""


class NameTaken(AccountConflict):
    """Another team of the organization has that name."""


class AlreadyMember(AccountConflict):
    """The person already belongs to the organization."""


OWNER_PERM = "accounts.manage_owners"


def _require_owner_rights(*, actor, organization: Organization, message: str) -> None:
    """Only holders of accounts.manage_owners may grant, take away or touch the Owner role. No actor
    means the system (provisioning, management commands), which is trusted."""
    if actor is None:
        return
    from accounts.roles import Denied, access_for

    access = access_for(user=actor, organization=organization)
    if access is None or not access.can(OWNER_PERM):
        role = access.role_label if access is not None else "not a member"
        raise Denied(f"Permission denied: your role ({role}) can't {message}.", perm=OWNER_PERM)


def _refuse_self(*, actor, membership: Membership, message: str) -> None:
    if actor is not None and membership.user_id == actor.pk:
        from accounts.roles import Denied

        raise Denied(f"Permission denied: {message}")


def _keep_an_owner(*, organization: Organization, leaving: Membership) -> None:
    # The organization row is the lock: two owners demoting each other at once must not both win.
    Organization.objects.select_for_update().filter(id=organization.id).first()
    others = Membership.objects.filter(organization=organization, role=Membership.Role.OWNER).exclude(id=leaving.id)
    if not others.exists():
        raise LastOwner(f"{organization.name} must keep at least one Owner: make someone else an Owner first.",
                        field="role")


def _known_role(role: str) -> str:
    if role not in Membership.Role.values:
        raise AccountRuleError(f"Unknown role {role!r}; one of: {', '.join(Membership.Role.values)}.", field="role")
    return role


@transaction.atomic
def member_add(*, organization: Organization, user: AbstractBaseUser, role: str, actor) -> Membership:
    """Adds an existing person to the organization. Unlike membership_add it never changes the role
    of someone already in it (that is membership_role_change, with its rules)."""
    _known_role(role)
    if role == Membership.Role.OWNER:
        _require_owner_rights(actor=actor, organization=organization, message="grant the Owner role")
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise AlreadyMember(f"{user.get_username()} is already a member of {organization.name}.", field="user")
    return membership_add(organization=organization, user=user, role=role, actor=actor)


def _username_for(email: str) -> str:
    base = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:140] or "user"
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


def _send_invitation(*, user: AbstractBaseUser, organization: Organization, actor) -> None:
    """A "set your password" email whose link is allauth's password-reset-from-key page, so the
    invited person chooses their password through the same, tested flow as a reset."""
    from allauth.account.forms import default_token_generator
    from allauth.account.utils import user_pk_to_url_str

    path = reverse("account_reset_password_from_key",
                   kwargs={"uidb36": user_pk_to_url_str(user), "key": default_token_generator.make_token(user)})
    context = {
        "user": user,
        "organization": organization,
        "inviter": actor.get_username() if actor is not None else "",
        "set_password_url": settings.PUBLIC_URL.rstrip("/") + path,
        "sign_in_url": settings.PUBLIC_URL.rstrip("/") + reverse("account_login"),
    }
    subject = render_to_string("accounts/email/invite_subject.txt", context).strip()
    body = render_to_string("accounts/email/invite_message.txt", context)
    try:
        send_mail(subject, body, None, [user.email])
    except (smtplib.SMTPException, OSError) as exc:
        # Raised inside the transaction: no half-invited person is left behind, and the admin can retry.
        raise AccountRuleError(f"The invitation email could not be sent ({exc}); nobody was added. Check the "
                               "email settings and try again.", field="email") from exc


@transaction.atomic
def member_invite(*, organization: Organization, email: str, role: str, actor) -> Membership:
    """Creates an account for someone new (no usable password yet), adds them with the role and
    emails them a link to set their password."""
    _known_role(role)
    if role == Membership.Role.OWNER:
        _require_owner_rights(actor=actor, organization=organization, message="grant the Owner role")
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        raise AccountRuleError("Enter a valid email address.", field="email") from None
    if User.objects.filter(email__iexact=email).exists():
        raise AccountConflict("Someone with this email address already has an account: add them by username "
                              "instead.", field="email")
    user = User(username=_username_for(email), email=email)
    user.set_unusable_password()
    user.save()
    membership = Membership.objects.create(user=user, organization=organization, role=role)
    audit_record(action="membership.invite", actor=actor, organization=organization, target=user,
                 data={"email": email, "role": role})
    _send_invitation(user=user, organization=organization, actor=actor)
    return membership


@transaction.atomic
def membership_role_change(*, membership: Membership, role: str, actor) -> Membership:
    _known_role(role)
    organization = membership.organization
    _refuse_self(actor=actor, membership=membership, message="nobody can change their own role; ask another "
                                                            "owner or admin.")
    before = membership.role
    if role == before:
        return membership
    if Membership.Role.OWNER in (before, role):
        verb = "grant the Owner role" if role == Membership.Role.OWNER else "change an Owner's role"
        _require_owner_rights(actor=actor, organization=organization, message=verb)
    if before == Membership.Role.OWNER:
        _keep_an_owner(organization=organization, leaving=membership)
    Membership.objects.filter(id=membership.id).update(role=role)
    membership.role = role
    audit_record(action="membership.role_change", actor=actor, organization=organization, target=membership.user,
                 diff={"role": [before, role]})
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor) -> None:
    """Takes the person out of the organization, its teams and its API keys (revoked, so a later
    re-invitation doesn't bring old keys back to life)."""
    organization = membership.organization
    _refuse_self(actor=actor, membership=membership, message="you can't remove yourself from the organization; "
                                                            "ask another owner or admin.")
    if membership.role == Membership.Role.OWNER:
        _require_owner_rights(actor=actor, organization=organization, message="remove an Owner")
        _keep_an_owner(organization=organization, leaving=membership)
    user = membership.user
    team_links = TeamMembership.objects.filter(user=user, team__organization=organization)
    teams = sorted(team_links.values_list("team__name", flat=True))
    team_links.delete()
    revoked = ApiToken.objects.filter(user=user, organization=organization, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
    Membership.objects.filter(id=membership.id).delete()
    audit_record(action="membership.remove", actor=actor, organization=organization, target=user,
                 data={"role": membership.role, "teams": teams, "api_keys_revoked": revoked})


# --------------------------------------------------------------------------- teams

TEAM_FIELDS = ("name", "description", "parent")


def _team_state(team: Team) -> dict:
    return {"name": team.name, "description": team.description,
            "parent": str(team.parent_id) if team.parent_id else None}


def _check_parent(*, organization: Organization, team: Team | None, parent: Team | None) -> None:
    if parent is None:
        return
    if parent.organization_id != organization.id:
        raise AccountRuleError("No such team in this organization.", field="parent")
    if team is None:
        return
    # Walking up from the new parent must never reach the team itself: that would be a cycle.
    parents = dict(Team.objects.filter(organization=organization).values_list("id", "parent_id"))
    seen, current = set(), parent.id
    while current is not None and current not in seen:
        if current == team.id:
            raise AccountRuleError(
                "A team can't sit inside itself or inside one of its own sub-teams.", field="parent")
        seen.add(current)
        current = parents.get(current)


def _name_free(*, organization: Organization, name: str, team: Team | None) -> str:
    name = name.strip()
    if not name:
        raise AccountRuleError("A team needs a name.", field="name")
    taken = Team.objects.filter(organization=organization, name__iexact=name)
    if team is not None:
        taken = taken.exclude(id=team.id)
    if taken.exists():
        raise NameTaken(f"There is already a team named “{name}”.", field="name")
    return name


def _save_team(team: Team) -> None:
    try:
        with transaction.atomic():
            team.save()
    except IntegrityError:
        # Two people creating the same name at once: the constraint has the last word.
        raise NameTaken(f"There is already a team named “{team.name}”.", field="name") from None


@transaction.atomic
def team_create(*, organization: Organization, name: str, description: str = "", parent: Team | None = None,
                actor) -> Team:
    _check_parent(organization=organization, team=None, parent=parent)
    team = Team(organization=organization, name=_name_free(organization=organization, name=name, team=None),
                description=description.strip(), parent=parent)
    _save_team(team)
    audit_record(action="team.create", actor=actor, organization=organization, target=team, data=_team_state(team))
    return team


@transaction.atomic
def team_update(*, team: Team, actor, **fields) -> Team:
    unknown = set(fields) - set(TEAM_FIELDS)
    if unknown:
        raise TypeError(f"unknown team fields: {sorted(unknown)}")
    organization = team.organization
    before = _team_state(team)
    if "name" in fields:
        team.name = _name_free(organization=organization, name=fields["name"], team=team)
    if "description" in fields:
        team.description = (fields["description"] or "").strip()
    if "parent" in fields:
        _check_parent(organization=organization, team=team, parent=fields["parent"])
        team.parent = fields["parent"]
    changes = audit_diff(before, _team_state(team))
    if changes:
        _save_team(team)
        audit_record(action="team.update", actor=actor, organization=organization, target=team, diff=changes)
    return team


@transaction.atomic
def team_delete(*, team: Team, actor) -> None:
    """Its sub-teams move up to its own parent (a department closing keeps its teams); agents shared
    with it are no longer shared with its people."""
    organization = team.organization
    children = sorted(team.children.values_list("name", flat=True))
    team.children.update(parent=team.parent_id)
    members = sorted(team.members.values_list("username", flat=True))
    data = {"name": team.name, "parent": str(team.parent_id) if team.parent_id else None, "members": members,
            "sub_teams_moved_up": children}
    audit_record(action="team.delete", actor=actor, organization=organization, target=team, data=data)
    team.delete()


@transaction.atomic
def team_member_add(*, team: Team, user: AbstractBaseUser, actor) -> TeamMembership:
    if not Membership.objects.filter(organization_id=team.organization_id, user=user).exists():
        raise AccountRuleError("Only members of the organization can join its teams.", field="member")
    link, created = TeamMembership.objects.get_or_create(team=team, user=user)
    if created:
        audit_record(action="team.member_add", actor=actor, organization_id=team.organization_id, target=team,
                     data={"user": user.get_username()})
    return link


@transaction.atomic
def team_member_remove(*, team: Team, user: AbstractBaseUser, actor) -> bool:
    deleted, _ = TeamMembership.objects.filter(team=team, user=user).delete()
    if deleted:
        audit_record(action="team.member_remove", actor=actor, organization_id=team.organization_id, target=team,
                     data={"user": user.get_username()})
    return bool(deleted)
