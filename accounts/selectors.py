from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts.models import ApiToken, Membership, Organization


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
    organization = organization_for_request(request)
    if organization is None:
        return None
    return (
        Membership.objects.filter(user=request.user, organization=organization).select_related("organization").first()
    )


def api_key_list(*, user: AbstractBaseUser, organization: Organization, include_service: bool) -> QuerySet[ApiToken]:
    """The caller's own keys in this organization, plus its service keys for owners and admins."""
    mine = Q(user=user, kind=ApiToken.Kind.PERSONAL)
    qs = ApiToken.objects.filter(organization=organization).filter(
        mine | Q(kind=ApiToken.Kind.SERVICE) if include_service else mine
    )
    return qs.select_related("user").order_by("-created_at")
