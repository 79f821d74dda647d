"""OAuth 2.0 authorization code with PKCE for connections.

`start` makes a single-use `state` and a PKCE verifier (stored encrypted with the pending grant)
and returns the provider's authorization URL; `finish` takes the provider's redirect, claims the
grant once (a replayed or forged `state` finds nothing to claim), exchanges the code with the
verifier and stores the tokens as a connection. `refresh` swaps a refresh token for new tokens.
Token endpoints are called through the connectors' outbound client (address guard, timeouts).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from integrations import catalog, crypto
from integrations.catalog import AuthType, Integration, TokenSet
from integrations.http import Outbound
from integrations.models import Connection, OAuthGrant
from integrations.tools import ToolError


class OAuthError(Exception):
    """The authorization or token exchange failed; the message is safe to show."""


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _client(integration: Integration) -> dict[str, str]:
    assert integration.oauth is not None
    return integration.oauth.client() if integration.oauth.client else integration.app()


@transaction.atomic
def start(
    *,
    organization: Organization,
    actor: AbstractBaseUser,
    integration: Integration,
    scopes: list[str],
    redirect_uri: str,
    for_organization: bool = False,
    name: str = "",
    reconnect: Connection | None = None,
) -> str:
    """Record a pending authorization and return the URL to send the person to."""
    if integration.oauth is None or AuthType.OAUTH2 not in integration.auth_types:
        raise ValidationError({"integration": [f"{integration.name} does not connect with OAuth."]})
    if not integration.oauth_ready():
        raise ValidationError({"integration": [
            f"{integration.name} has no OAuth app configured; an operator must set its client id and secret "
            f"(AGENTRY_{integration.slug.upper()}_CLIENT_ID / _CLIENT_SECRET)."]})
    unknown = [s for s in scopes if integration.scope(s) is None]
    if unknown or not scopes:
        raise ValidationError({"scopes": [f"Choose at least one of {', '.join(integration.scope_names)}."
                                          if not scopes else f"Unknown scope {', '.join(unknown)}."]})
    # Old, never-finished attempts are of no use to anyone.
    OAuthGrant.objects.filter(created_at__lt=timezone.now() - timedelta(seconds=OAuthGrant.LIFETIME_SECONDS)).delete()
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    OAuthGrant.objects.create(
        state=state, organization=organization, user=actor, integration=integration.slug, scopes=scopes,
        for_organization=for_organization, name=name, redirect_uri=redirect_uri,
        secret=crypto.encrypt({"code_verifier": verifier}), reconnect=reconnect,
    )
    spec = integration.oauth
    params = {
        "response_type": "code",
        "client_id": _client(integration)["client_id"],
        "redirect_uri": redirect_uri,
        spec.scope_param: spec.scope_separator.join(integration.provider_scopes_for(scopes)),
        "state": state,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    } | dict(spec.extra_params)
    return f"{spec.authorize_url(_client(integration))}?{urlencode(params)}"


def finish(*, actor: AbstractBaseUser, state: str, code: str, error: str = "") -> Connection:
    """Complete an authorization from the provider's redirect. Raises OAuthError (nothing stored)
    for a state that isn't this person's pending one, an expired one, a provider error, or a
    code the provider won't exchange (replayed, or a PKCE verifier that doesn't match)."""
    from integrations import services

    grant = _claim(actor=actor, state=state)
    integration = catalog.get(grant.integration, grant.organization_id)
    if integration is None or integration.oauth is None:
        raise OAuthError("that integration is no longer available")
    if error:
        raise OAuthError(f"{integration.name} did not authorize the connection: {error}")
    if not code:
        raise OAuthError(f"{integration.name} sent no authorization code")
    verifier = crypto.decrypt(grant.secret)["code_verifier"]
    tokens = _token_request(integration, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": grant.redirect_uri, "code_verifier": verifier,
    })
    try:
        return services.connection_from_tokens(grant=grant, tokens=tokens, actor=actor)
    except ValidationError as exc:
        raise OAuthError("; ".join(m for messages in exc.message_dict.values() for m in messages)) from None


def _claim(*, actor: AbstractBaseUser, state: str) -> OAuthGrant:
    if not state:
        raise OAuthError("the authorization response has no state; start again from the Connect button")
    fresh_after = timezone.now() - timedelta(seconds=OAuthGrant.LIFETIME_SECONDS)
    # A conditional update: only one request can take a state, however many arrive with it.
    claimed = OAuthGrant.objects.filter(state=state, user=actor, used_at__isnull=True,
                                        created_at__gte=fresh_after).update(used_at=timezone.now())
    if not claimed:
        raise OAuthError("this authorization response doesn't match a connection you started (the state is "
                         "unknown, already used or expired); start again from the Connect button")
    return OAuthGrant.objects.select_related("organization").get(state=state)


def refresh(*, integration: Integration, refresh_token: str, connection_options: dict[str, Any]) -> TokenSet:
    return _token_request(integration, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def _token_request(integration: Integration, fields: dict[str, str]) -> TokenSet:
    assert integration.oauth is not None
    spec = integration.oauth
    client = _client(integration)
    body = fields | {"client_id": client["client_id"], "client_secret": client.get("client_secret", "")}
    http = Outbound(deadline=time.monotonic() + 20)
    try:
        if spec.token_request == "json":
            response = http.post(spec.token_url(client), json=body, authenticate=False, idempotent=False)
        else:
            response = http.post(spec.token_url(client), data=body, authenticate=False, idempotent=False)
        payload = response.json()
    except ToolError as exc:
        raise OAuthError(f"{integration.name}'s token endpoint could not be used: {exc}") from None
    if not isinstance(payload, dict):
        raise OAuthError(f"{integration.name}'s token endpoint answered HTTP {response.status} without JSON")
    if not response.ok or payload.get("error") or payload.get("ok") is False:
        reason = payload.get("error_description") or payload.get("error") or f"HTTP {response.status}"
        raise OAuthError(f"{integration.name} refused the token request: {reason}")
    tokens = spec.parse_token(payload) if spec.parse_token else parse_standard(payload, spec.scope_separator)
    if not tokens.access_token:
        raise OAuthError(f"{integration.name}'s token endpoint returned no access token")
    return tokens


def parse_standard(payload: dict[str, Any], separator: str = " ") -> TokenSet:
    scope = payload.get("scope")
    provider_scopes = None
    if isinstance(scope, str):
        provider_scopes = tuple(s for s in scope.replace(",", " ").split() if s) if separator else (scope,)
    expires = payload.get("expires_in")
    return TokenSet(
        access_token=str(payload.get("access_token") or ""),
        refresh_token=str(payload.get("refresh_token") or ""),
        expires_in=int(expires) if isinstance(expires, (int, float, str)) and str(expires).isdigit() else None,
        provider_scopes=provider_scopes,
    )
