from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.audit import audit_record
from accounts.models import ApiToken, Membership, Organization

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
