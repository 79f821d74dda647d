"""Slack Web API transport: one method call, Slack's error model, cursor pagination.

Slack answers almost everything with HTTP 200 and `{"ok": false, "error": "..."}`, including dead
credentials (`invalid_auth`, `token_expired`, `token_revoked`), so the outbound client's 401
handling never fires. `api()` does the equivalent: an expired token is refreshed once (token
rotation) and the call retried; credentials that can't be refreshed mark the connection "needs
re-authorization" (its owner is told) and the call fails with `Unauthorized`. Rate limits do come
as HTTP 429 with Retry-After, which the outbound client already honours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from integrations.catalog import TokenSet
from integrations.http import HttpError, Unauthorized, error_message
from integrations.tools import ToolError

if TYPE_CHECKING:
    from integrations.calls import CallContext

# Credentials that no longer work. The first two may be cured by refreshing (token rotation).
REFRESHABLE = frozenset({"invalid_auth", "token_expired"})
DEAD = frozenset({"not_authed", "token_revoked", "account_inactive"})

_EXPLAIN = {
    "channel_not_found": "Slack can't find that channel; use a channel id such as C0123ABCD from slack_list_channels "
                         "(private channels are only visible to their members)",
    "not_in_channel": "the connected Slack account is not a member of that channel; someone must add it first",
    "is_archived": "that channel is archived, so nothing can be posted to it",
    "msg_too_long": "the message is too long for Slack (40,000 characters at most)",
    "no_text": "the message is empty",
    "invalid_cursor": "that cursor is not valid (it must come from the previous page of the same listing)",
    "invalid_limit": "that limit is out of range",
    "restricted_action": "a workspace setting forbids posting in that channel",
    "ratelimited": "Slack is rate-limiting these calls; try again later",
}


def headers(credentials: dict[str, Any], options: dict[str, Any]) -> dict[str, str]:
    token = credentials.get("access_token") or credentials.get("token")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _explain(call: CallContext, method: str, payload: dict[str, Any]) -> str:
    error = str(payload.get("error") or "unknown_error")
    if error == "missing_scope":
        needed = str(payload.get("needed") or "another scope")
        if all(call.integration.scope(s) is not None for s in needed.split(",")):
            return (f"Slack refused {method}: the connection's token lacks the Slack scope {needed}; reconnect "
                    "Slack granting it")
        # e.g. groups:history for a private channel's messages, which this connector never asks for.
        return f"Slack refused {method}: it needs the Slack scope {needed}, which Agentry's Slack connector doesn't use"
    return f"Slack refused {method}: {_EXPLAIN.get(error, error)}"


def api(call: CallContext, method: str, *, params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a Web API method: GET with `params` for reads, POST JSON `body` for writes. Returns
    the payload of an `ok` answer; raises ToolError (Unauthorized for dead credentials)."""
    url = f"{call.api_url}/{method}"
    refreshed = False
    while True:
        if body is None:
            response = call.http.get(url, params={k: v for k, v in (params or {}).items() if v not in (None, "")})
        else:
            # Slack warns about JSON posted without a charset.
            response = call.http.post(url, json=body, headers={"Content-Type": "application/json; charset=utf-8"},
                                      idempotent=False)
        if not response.ok:
            raise HttpError(error_message(response, service="Slack"), status=response.status)
        payload = response.json()
        if not isinstance(payload, dict):
            raise HttpError(f"Slack answered {method} with something other than a JSON object")
        if payload.get("ok") is True:
            return payload
        error = str(payload.get("error") or "unknown_error")
        if error in REFRESHABLE | DEAD:
            if error in REFRESHABLE and not refreshed and call.credentials.get("refresh_token"):
                refreshed = True
                # On failure this marks the connection "needs re-authorization" itself.
                if call.http.auth is not None and call.http.auth.refresh():
                    continue
            else:
                call.credentials_rejected(f"Slack refused the token ({error})")
            raise Unauthorized(f"Slack refused the connection's token ({error}); it was revoked or has expired — "
                               "its owner must reconnect Slack", status=response.status)
        raise ToolError(_explain(call, method, payload))


def paged(call: CallContext, method: str, key: str, *, params: dict[str, Any], limit: int, cursor: str = "",
          page_size: int = 200, keep: Callable[[dict[str, Any]], bool] | None = None) -> tuple[list[dict], str]:
    """Follow `response_metadata.next_cursor` until `limit` items are collected or the listing
    ends. Each page asks only for what is still missing, so the returned cursor continues
    exactly after the last item returned."""
    items: list[dict[str, Any]] = []
    for _ in range(20):  # a page of none (Slack filters after paging) must not loop forever
        want = min(page_size, limit - len(items))
        payload = api(call, method, params=params | {"limit": want, "cursor": cursor})
        page = [item for item in payload.get(key) or [] if keep is None or keep(item)]
        items.extend(page)
        cursor = str((payload.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor or len(items) >= limit:
            break
    return items[:limit], cursor


def identify(call: CallContext) -> dict[str, Any]:
    token = str(call.credentials.get("token") or "")
    if token and not token.startswith(("xoxb-", "xoxp-", "xoxe.xoxb-", "xoxe.xoxp-")):
        raise ToolError("that is not a Slack bot or user token (they start with xoxb- or xoxp-)")
    found = api(call, "auth.test")
    account = {key: found.get(key) for key in ("team", "user", "user_id", "team_id", "url") if found.get(key)}
    if found.get("bot_id"):
        account["bot_id"] = found["bot_id"]
    return account


def parse_token(payload: dict[str, Any]) -> TokenSet:
    """oauth.v2.access nests a user token in `authed_user`; a refreshed user token comes back flat."""
    user = payload.get("authed_user") if isinstance(payload.get("authed_user"), dict) else {}
    source = user if user.get("access_token") else payload
    scope = source.get("scope")
    provider_scopes = tuple(s.strip() for s in scope.split(",") if s.strip()) if isinstance(scope, str) else None
    expires = source.get("expires_in")
    team = payload.get("team") if isinstance(payload.get("team"), dict) else {}
    return TokenSet(
        access_token=str(source.get("access_token") or ""),
        refresh_token=str(source.get("refresh_token") or ""),
        expires_in=int(expires) if isinstance(expires, int) or (isinstance(expires, str) and expires.isdigit())
        else None,
        provider_scopes=provider_scopes,
        extra={"team_id": str(team["id"])} if team.get("id") else {},
    )
