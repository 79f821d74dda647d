from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.utils import timezone

from accounts.models import ApiToken, AuditLog, Membership, Organization, Team


def membership_for(*, user: AbstractBaseUser, organization_id=None) -> Membership | None:
    """The caller's membership: the given organization, else their first one."""
    if not user or not user.is_authenticated:
        return None
    qs = Membership.objects.select_related("organization").filter(user=user)
    if organization_id is not None:
        qs = qs.filter(organization_id=organization_id)
    return qs.order_by("created_at").first()


def membership_for_slug(*, user: AbstractBaseUser, slug: str) -> Membership | None:
    return Membership.objects.select_related("organization").filter(user=user, organization__slug=slug).first()


def organization_for(*, user: AbstractBaseUser, organization_id=None) -> Organization | None:
    membership = membership_for(user=user, organization_id=organization_id)
    return membership.organization if membership else None


def api_token_lookup(*, raw: str) -> ApiToken | None:
    if not raw.startswith(ApiToken.PREFIX):
        return None
    # The join on memberships makes a token of someone who left the organization worthless.
    token = (
        ApiToken.objects.select_related("user", "organization")
        .filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()),
            key_hash=ApiToken.hash_key(raw),
            revoked_at__isnull=True,
            user__memberships__organization_id=F("organization_id"),
        )
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    return token


def api_token_is_stale(token: ApiToken) -> bool:
    """last_used_at is written at most once a minute so reads don't turn into writes."""
    return token.last_used_at is None or (timezone.now() - token.last_used_at).total_seconds() > 60


def organization_for_request(request) -> Organization | None:
    """The organization an API or UI request acts in: the token's, else the session's choice."""
    token = getattr(request, "auth", None)
    if isinstance(token, ApiToken):
        return token.organization  # api_token_lookup checked the membership in the same query
    session = getattr(request, "session", None)
    chosen = session.get("organization_id") if session is not None else None
    return organization_for(user=request.user, organization_id=chosen) or organization_for(user=request.user)


def membership_for_request(request) -> Membership | None:
    """The caller's membership in the organization the request acts in, in one query."""
    token = getattr(request, "auth", None)
    if isinstance(token, ApiToken):
        return membership_for(user=request.user, organization_id=token.organization_id)
    session = getattr(request, "session", None)
    chosen = session.get("organization_id") if session is not None else None
    return (chosen and membership_for(user=request.user, organization_id=chosen)) or membership_for(user=request.user)


def api_key_list(*, user: AbstractBaseUser, organization: Organization, include_service: bool) -> QuerySet[ApiToken]:
    """The caller's own keys in this organization, plus its service keys for owners and admins."""
    mine = Q(user=user, kind=ApiToken.Kind.PERSONAL)
    qs = ApiToken.objects.filter(organization=organization).filter(
        mine | Q(kind=ApiToken.Kind.SERVICE) if include_service else mine
    )
    return qs.select_related("user").order_by("-created_at")


# --------------------------------------------------------------------------- members and teams


def memberships_of(*, user: AbstractBaseUser) -> QuerySet[Membership]:
    """Every organization the person belongs to, for the switcher and /api/me."""
    return Membership.objects.filter(user=user).select_related("organization").order_by("organization__name")


def membership_list(*, organization: Organization, role: str = "", team_id=None, search: str = "") -> QuerySet[
        Membership]:
    qs = Membership.objects.filter(organization=organization).select_related("user")
    if role:
        qs = qs.filter(role=role)
    if team_id:
        qs = qs.filter(user__team_memberships__team_id=team_id, user__team_memberships__team__organization=organization)
    if search:
        qs = qs.filter(Q(user__username__icontains=search) | Q(user__email__icontains=search)
                       | Q(user__first_name__icontains=search) | Q(user__last_name__icontains=search))
    teams = Team.objects.filter(organization=organization).order_by("name")
    return qs.prefetch_related(Prefetch("user__teams", queryset=teams, to_attr="org_teams")).order_by(
        "user__username").distinct()


def membership_get(*, organization: Organization, membership_id) -> Membership | None:
    try:
        membership_id = int(membership_id)
    except (TypeError, ValueError):
        return None
    return (Membership.objects.select_related("user", "organization")
            .filter(organization=organization, id=membership_id).first())


def user_find(*, login: str) -> AbstractBaseUser | None:
    """A person by username (exact, then any case) or by email, when exactly one account has it."""
    login = login.strip()
    if not login:
        return None
    users = get_user_model().objects.filter(is_active=True)
    found = users.filter(username=login).first() or users.filter(username__iexact=login).first()
    if found is not None:
        return found
    by_email = list(users.filter(email__iexact=login)[:2])
    return by_email[0] if len(by_email) == 1 else None


def team_list(*, organization: Organization) -> QuerySet[Team]:
    return Team.objects.filter(organization=organization).annotate(member_count=Count("memberships")).order_by("name")


def team_get(*, organization: Organization, team_id) -> Team | None:
    return Team.objects.select_related("organization", "parent").filter(organization=organization, id=team_id).first()


def team_tree(*, organization: Organization) -> list[Team]:
    """Top-level teams (departments and lone teams), each with `.child_list` filled in, depth first."""
    teams = list(team_list(organization=organization))
    by_parent: dict = {}
    for team in teams:
        by_parent.setdefault(team.parent_id, []).append(team)
    for team in teams:
        team.child_list = by_parent.get(team.id, [])
    ids = {team.id for team in teams}
    # A parent outside the organization can't happen through the services; show such a team at the top anyway.
    return [team for team in teams if team.parent_id is None or team.parent_id not in ids]


def team_descendant_ids(*, team: Team) -> set:
    parents = dict(Team.objects.filter(organization_id=team.organization_id).values_list("id", "parent_id"))
    found: set = set()
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if child not in found and (parent == team.id or parent in found):
                found.add(child)
                changed = True
    return found


def team_members(*, team: Team) -> QuerySet[Membership]:
    """The team's people as organization memberships (their role and membership id with them)."""
    return (Membership.objects.filter(organization_id=team.organization_id, user__team_memberships__team=team)
            .select_related("user").order_by("user__username"))


def audit_entry_get(*, organization: Organization, entry_id) -> AuditLog | None:
    try:
        entry_id = int(entry_id)
    except (TypeError, ValueError):
        return None
    return AuditLog.objects.filter(organization=organization, id=entry_id).first()
