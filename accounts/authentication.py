"""Bearer tokens for the REST API and websockets; sessions for the browser."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts import selectors, services


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw = _bearer(request.headers.get("Authorization", ""))
        if raw is None:
            return None
        token = selectors.api_token_lookup(raw=raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        if selectors.api_token_is_stale(token):
            services.api_token_touch(token=token)
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


@database_sync_to_async
def _user_for_token(raw: str):
    token = selectors.api_token_lookup(raw=raw)
    return (token.user, token.organization_id) if token else (AnonymousUser(), None)


class _BearerWebsocketMiddleware:
    """Sets scope["user"] from `Authorization: Bearer …`; otherwise the session decides."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        raw = _bearer(headers.get(b"authorization", b"").decode("latin-1"))
        if raw is not None:
            user, organization_id = await _user_for_token(raw)
            scope = dict(scope, user=user, token_organization_id=organization_id)
        return await self.inner(scope, receive, send)


def WebsocketAuthMiddleware(inner):  # noqa: N802 - mirrors Channels' AuthMiddlewareStack naming
    # Session auth runs first; a bearer header, when present, overrides it.
    return AuthMiddlewareStack(_BearerWebsocketMiddleware(inner))


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents the bearer token in the OpenAPI schema (Swagger's Authorize button)."""

    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token from POST /api/auth/token: `Authorization: Bearer agt_…`.",
        }
