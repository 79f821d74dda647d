"""A loopback stand-in for the Slack Web API and Slack's OAuth v2 endpoints, spoken over real HTTP.

Shapes follow Slack's reference (docs.slack.dev/reference/methods): every method answers HTTP 200
with `{"ok": true, ...}` or `{"ok": false, "error": "..."}` (`not_authed`, `invalid_auth`,
`token_expired`, `token_revoked`, `missing_scope` with `needed`/`provided`, `channel_not_found`,
`invalid_cursor`...), rate limits are HTTP 429 with `Retry-After`, list methods page with
`limit` + `cursor` and answer `response_metadata.next_cursor` ("" on the last page).

    slack = FakeSlackServer().start()
    slack.url                      # API base is f"{slack.url}/api", authorize at /oauth/v2/authorize
    token = slack.issue_token(scopes={"channels:read"})
    slack.expire(token); slack.revoke(token); slack.rate_limit("conversations.list", retry_after=1)
    slack.calls("chat.postMessage")  # what reached the server

OAuth: `/oauth/v2/authorize` plays the person approving (a 302 back to `redirect_uri` with a
single-use code bound to the client, redirect URI and PKCE challenge); `oauth.v2.access` checks
the client credentials, the code (once), the redirect URI and the PKCE S256 verifier, and nests
the user token in `authed_user`. With `rotation=True` user tokens expire and come with a refresh
token; `grant_type=refresh_token` rotates both (a used refresh token is dead).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes.loopback import DelegatingHandler, FakeHTTPServer, LoopbackServer

ALL_USER_SCOPES = frozenset({"channels:read", "groups:read", "channels:history", "chat:write"})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]  # query string, form fields and JSON body together, as Slack reads them

    @property
    def slack_method(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def token(self) -> str:
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else str(self.params.get("token") or "")


@dataclass
class Token:
    user_id: str
    scopes: frozenset[str]
    kind: str = "user"  # user or bot
    expires_at: float | None = None
    revoked: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    user_scopes: frozenset[str]
    challenge: str
    method: str
    used: bool = False


@dataclass
class _Failure:
    method: str | None
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


def _cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _uncursor(cursor: str) -> str | None:
    try:
        return base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class FakeSlackServer(LoopbackServer):
    def __init__(self, *, client_id: str = "1111.2222", client_secret: str = "slack-client-secret",
                 rotation: bool = True, token_lifetime: int = 43200) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.rotation = rotation
        self.token_lifetime = token_lifetime
        self.team = {"id": "T0ACME0001", "name": "Acme Workspace", "domain": "acme"}
        self.users = {"U0OLIVIA01": "olivia", "U0MAX00002": "max", "B0BOT00003": "agentry-bot"}
        # Who approves at /oauth/v2/authorize, and which of the requested scopes they grant (None: all).
        self.approving_user = "U0OLIVIA01"
        self.grant_only: set[str] | None = None
        # At most this many items per page whatever `limit` asks (Slack may return fewer than asked).
        self.page_cap = 1000
        self.channels: list[dict[str, Any]] = []
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.tokens: dict[str, Token] = {}
        self._refresh_tokens: dict[str, Token] = {}
        self._codes: dict[str, _Code] = {}
        self._failures: deque[_Failure] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._ts = 1_700_000_000
        self._seed()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeSlackServer:
        httpd = FakeHTTPServer(("127.0.0.1", 0), DelegatingHandler)
        httpd.fake = self
        return self._serve(httpd, name="fake-slack")

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    # ------------------------------------------------------------------ data
    def _seed(self) -> None:
        names = ["general", "random", "engineering", "design", "support", "sales", "incidents"]
        for index, name in enumerate(names):
            self.add_channel(name, topic=f"All about {name}", members=["U0OLIVIA01", "U0MAX00002"],
                             created=1_600_000_000 + index)
        self.add_channel("old-launch", archived=True, members=["U0OLIVIA01"])
        self.add_channel("leadership", private=True, members=["U0OLIVIA01"])
        self.add_channel("hr-private", private=True, members=["U0MAX00002"])
        general = self.channel_id("general")
        for number in range(1, 13):
            self.add_message(general, f"general message {number}", user="U0MAX00002")

    def add_channel(self, name: str, *, private: bool = False, archived: bool = False, topic: str = "",
                    members: list[str] | None = None, created: int = 1_600_000_000) -> str:
        channel_id = ("G" if private else "C") + f"{len(self.channels) + 1:08d}"
        self.channels.append({
            "id": channel_id, "name": name, "is_channel": not private, "is_group": private, "is_im": False,
            "is_mpim": False, "is_private": private, "created": created, "creator": "U0OLIVIA01",
            "is_archived": archived, "is_general": name == "general", "unlinked": 0, "name_normalized": name,
            "is_shared": False, "is_org_shared": False, "is_ext_shared": False, "is_pending_ext_shared": False,
            "pending_shared": [], "context_team_id": self.team["id"], "updated": created * 1000,
            "parent_conversation": None, "previous_names": [],
            "topic": {"value": topic, "creator": "U0OLIVIA01" if topic else "", "last_set": created if topic else 0},
            "purpose": {"value": f"#{name}", "creator": "", "last_set": 0},
            "num_members": len(members or []), "_members": list(members or []),
        })
        self.messages[channel_id] = []
        return channel_id

    def channel_id(self, name: str) -> str:
        return next(c["id"] for c in self.channels if c["name"] == name)

    def add_message(self, channel: str, text: str, *, user: str = "U0OLIVIA01") -> dict[str, Any]:
        self._ts += 60
        message = {"type": "message", "user": user, "text": text, "ts": f"{self._ts}.{self._ts % 1000:06d}",
                   "team": self.team["id"]}
        self.messages[channel].insert(0, message)  # newest first, as conversations.history lists them
        return message

    # ------------------------------------------------------------------ tokens and scripting
    def issue_token(self, *, user_id: str = "U0OLIVIA01", scopes: set[str] | frozenset[str] = ALL_USER_SCOPES,
                    kind: str = "user", expires_in: int | None = None) -> str:
        prefix = "xoxb" if kind == "bot" else "xoxp"
        token = f"{prefix}-{secrets.randbelow(10**10)}-{secrets.token_hex(12)}"
        if expires_in is not None:
            token = f"xoxe.{token}"
        with self._lock:
            self.tokens[token] = Token(user_id=user_id, scopes=frozenset(scopes), kind=kind,
                                       expires_at=None if expires_in is None else time.time() + expires_in)
        return token

    def expire(self, token: str) -> None:
        with self._lock:
            self.tokens[token].expires_at = time.time() - 1

    def revoke(self, token: str) -> None:
        """What auth.revoke or an admin removing the app does: the token and its refresh tokens die."""
        with self._lock:
            info = self.tokens[token]
            info.revoked = True
            for key, item in list(self._refresh_tokens.items()):
                if item.user_id == info.user_id:
                    del self._refresh_tokens[key]

    def rate_limit(self, method: str | None = None, *, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls of `method` (any method: None) get HTTP 429 with Retry-After."""
        for _ in range(times):
            self._failures.append(_Failure(method, 429, {"Retry-After": str(retry_after)},
                                           {"ok": False, "error": "ratelimited"}))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.slack_method == method]

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------------ serving
    def _handle(self, handler: DelegatingHandler) -> None:
        split = urlsplit(handler.path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        params: dict[str, Any] = dict(parse_qsl(split.query, keep_blank_values=True))
        content_type = headers.get("content-type", "")
        if raw and content_type.startswith("application/json"):
            try:
                body = json.loads(raw)
            except ValueError:
                return self._send(handler, 200, {"ok": False, "error": "invalid_json"})
            if isinstance(body, dict):
                params.update(body)
        elif raw:
            params.update(parse_qsl(raw.decode(), keep_blank_values=True))
        recorded = RecordedRequest(handler.command, split.path, headers, params)
        with self._lock:
            self._requests.append(recorded)
        if split.path == "/oauth/v2/authorize" and handler.command == "GET":
            return self._authorize(handler, params)
        if not split.path.startswith("/api/"):
            return self._send(handler, 404, {"ok": False, "error": "unknown_method"})
        method = recorded.slack_method
        failure = self._next_failure(method)
        if failure is not None:
            return self._send(handler, failure.status, failure.body, failure.headers)
        if method == "oauth.v2.access":
            return self._send(handler, 200, self._token_endpoint(params, headers))
        handlers = {"auth.test": self._auth_test, "conversations.list": self._conversations_list,
                    "conversations.history": self._conversations_history, "chat.postMessage": self._post_message}
        if method not in handlers:
            return self._send(handler, 404, {"ok": False, "error": "unknown_method"})
        if method == "chat.postMessage" and handler.command != "POST":
            return self._send(handler, 200, {"ok": False, "error": "method_not_supported_for_channel_type"})
        token, problem = self._authenticate(recorded.token)
        if problem:
            return self._send(handler, 200, {"ok": False, "error": problem})
        assert token is not None
        extra = {"x-oauth-scopes": ",".join(sorted(token.scopes))}
        return self._send(handler, 200, handlers[method](token, params), extra)

    def _next_failure(self, method: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.method in (None, method):
                    self._failures.remove(failure)
                    return failure
        return None

    def _authenticate(self, raw: str) -> tuple[Token | None, str]:
        if not raw:
            return None, "not_authed"
        with self._lock:
            token = self.tokens.get(raw)
        if token is None:
            return None, "invalid_auth"
        if token.revoked:
            return None, "token_revoked"
        if token.expires_at is not None and token.expires_at <= time.time():
            return None, "token_expired"
        return token, ""

    @staticmethod
    def _missing(token: Token, needed: str) -> dict[str, Any] | None:
        if needed in token.scopes:
            return None
        return {"ok": False, "error": "missing_scope", "needed": needed, "provided": ",".join(sorted(token.scopes))}

    def _auth_test(self, token: Token, params: dict[str, Any]) -> dict[str, Any]:
        answer = {"ok": True, "url": f"https://{self.team['domain']}.slack.com/", "team": self.team["name"],
                  "user": self.users.get(token.user_id, token.user_id), "team_id": self.team["id"],
                  "user_id": token.user_id, "is_enterprise_install": False}
        if token.kind == "bot":
            answer["bot_id"] = "B0BOT00003"
        return answer

    def _visible(self, token: Token, channel: dict[str, Any]) -> bool:
        return not channel["is_private"] or token.user_id in channel["_members"]

    @staticmethod
    def _public(channel: dict[str, Any], token: Token) -> dict[str, Any]:
        shown = {k: v for k, v in channel.items() if not k.startswith("_")}
        shown["is_member"] = token.user_id in channel["_members"]
        return shown

    def _limit(self, params: dict[str, Any], default: int, maximum: int) -> int | None:
        value = params.get("limit")
        if value in (None, ""):
            return min(default, self.page_cap)
        try:
            number = int(value)
        except (TypeError, ValueError):
            return None
        if number < 1 or number > maximum:
            return None
        return min(number, self.page_cap)

    def _conversations_list(self, token: Token, params: dict[str, Any]) -> dict[str, Any]:
        types = [t.strip() for t in str(params.get("types") or "public_channel").split(",") if t.strip()]
        unknown = [t for t in types if t not in ("public_channel", "private_channel", "mpim", "im")]
        if unknown:
            return {"ok": False, "error": "invalid_types"}
        for kind, scope in (("public_channel", "channels:read"), ("private_channel", "groups:read")):
            if kind in types and (missing := self._missing(token, scope)):
                return missing
        limit = self._limit(params, 100, 999)
        if limit is None:
            return {"ok": False, "error": "invalid_limit"}
        exclude_archived = str(params.get("exclude_archived", "")).lower() in ("1", "true")
        matching = [c for c in self.channels if self._visible(token, c)
                    and ("private_channel" if c["is_private"] else "public_channel") in types
                    and not (exclude_archived and c["is_archived"])]
        start = 0
        if params.get("cursor"):
            decoded = _uncursor(str(params["cursor"])) or ""
            ids = [c["id"] for c in matching]
            if not decoded.startswith("team:") or decoded[5:] not in ids:
                return {"ok": False, "error": "invalid_cursor"}
            start = ids.index(decoded[5:])
        page = matching[start:start + limit]
        following = matching[start + limit:start + limit + 1]
        return {"ok": True, "channels": [self._public(c, token) for c in page],
                "response_metadata": {"next_cursor": _cursor(f"team:{following[0]['id']}") if following else ""}}

    def _channel(self, token: Token, key: Any) -> dict[str, Any] | None:
        name = str(key or "").lstrip("#")
        found = next((c for c in self.channels if c["id"] == name or c["name"] == name), None)
        return found if found is not None and self._visible(token, found) else None

    def _conversations_history(self, token: Token, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(token, params.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if missing := self._missing(token, "groups:history" if channel["is_private"] else "channels:history"):
            return missing
        if token.kind == "bot" and token.user_id not in channel["_members"]:
            return {"ok": False, "error": "not_in_channel"}
        limit = self._limit(params, 100, 999)
        if limit is None:
            return {"ok": False, "error": "invalid_limit"}
        inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")

        def inside(ts: float) -> bool:
            oldest, latest = float(params.get("oldest") or 0), float(params.get("latest") or 10**11)
            return (oldest <= ts <= latest) if inclusive else (oldest < ts < latest)

        try:
            matching = [m for m in self.messages[channel["id"]] if inside(float(m["ts"]))]
        except ValueError:
            return {"ok": False, "error": "invalid_ts_oldest"}
        start = 0
        if params.get("cursor"):
            decoded = _uncursor(str(params["cursor"])) or ""
            stamps = [m["ts"].replace(".", "") for m in matching]
            if not decoded.startswith("next_ts:") or decoded[8:] not in stamps:
                return {"ok": False, "error": "invalid_cursor"}
            start = stamps.index(decoded[8:])
        page = matching[start:start + limit]
        following = matching[start + limit:start + limit + 1]
        answer: dict[str, Any] = {"ok": True, "messages": page, "has_more": bool(following), "pin_count": 0,
                                  "channel_actions_ts": None, "channel_actions_count": 0}
        if following:
            answer["response_metadata"] = {"next_cursor": _cursor("next_ts:" + following[0]["ts"].replace(".", ""))}
        return answer

    def _post_message(self, token: Token, params: dict[str, Any]) -> dict[str, Any]:
        if missing := self._missing(token, "chat:write"):
            return missing
        channel = self._channel(token, params.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if channel["is_archived"]:
            return {"ok": False, "error": "is_archived"}
        if token.user_id not in channel["_members"]:
            return {"ok": False, "error": "not_in_channel"}
        text = str(params.get("text") or "")
        if not text.strip():
            return {"ok": False, "error": "no_text"}
        if len(text) > 40000:
            return {"ok": False, "error": "msg_too_long"}
        message = self.add_message(channel["id"], text, user=token.user_id)
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
        if token.kind == "bot":
            message["bot_id"] = "B0BOT00003"
        return {"ok": True, "channel": channel["id"], "ts": message["ts"], "message": dict(message)}

    # ------------------------------------------------------------------ OAuth
    def _authorize(self, handler: DelegatingHandler, params: dict[str, Any]) -> None:
        redirect_uri = str(params.get("redirect_uri") or "")
        if params.get("client_id") != self.client_id or not redirect_uri:
            return self._send(handler, 400, {"ok": False, "error": "invalid_client_id"})
        requested = frozenset(s for s in str(params.get("user_scope") or "").split(",") if s)
        granted = requested if self.grant_only is None else requested & frozenset(self.grant_only)
        code = f"{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"
        with self._lock:
            self._codes[code] = _Code(client_id=self.client_id, redirect_uri=redirect_uri, user_scopes=granted,
                                      challenge=str(params.get("code_challenge") or ""),
                                      method=str(params.get("code_challenge_method") or ""))
        query = urlencode({"code": code, "state": params.get("state", "")})
        handler.send_response(302)
        handler.send_header("Location", f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _client_ok(self, params: dict[str, Any], headers: dict[str, str]) -> str:
        client_id, secret = params.get("client_id"), params.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.client_id:
            return "invalid_client_id"
        if secret != self.client_secret:
            return "bad_client_secret"
        return ""

    def _token_endpoint(self, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        if problem := self._client_ok(params, headers):
            return {"ok": False, "error": problem}
        grant = params.get("grant_type") or "authorization_code"
        if grant == "refresh_token":
            with self._lock:
                old = self._refresh_tokens.pop(str(params.get("refresh_token") or ""), None)
            if old is None:
                return {"ok": False, "error": "invalid_refresh_token"}
            access, refresh = self._user_tokens(old.user_id, old.scopes)
            # A refreshed user token comes back flat (no authed_user nesting).
            return {"ok": True, "app_id": "A0AGENTRY1", "scope": ",".join(sorted(old.scopes)), "token_type": "user",
                    "access_token": access, "refresh_token": refresh, "expires_in": self.token_lifetime,
                    "team": {"id": self.team["id"], "name": self.team["name"]}, "enterprise": None,
                    "is_enterprise_install": False}
        if grant != "authorization_code":
            return {"ok": False, "error": "invalid_grant_type"}
        with self._lock:
            code = self._codes.get(str(params.get("code") or ""))
            if code is None:
                return {"ok": False, "error": "invalid_code"}
            if code.used:
                return {"ok": False, "error": "code_already_used"}
            code.used = True
        if code.redirect_uri != params.get("redirect_uri"):
            return {"ok": False, "error": "bad_redirect_uri"}
        if code.challenge:
            verifier = str(params.get("code_verifier") or "")
            if code.method != "S256" or not verifier or _challenge(verifier) != code.challenge:
                return {"ok": False, "error": "invalid_code_verifier"}
        access, refresh = self._user_tokens(self.approving_user, code.user_scopes)
        user: dict[str, Any] = {"id": self.approving_user, "scope": ",".join(sorted(code.user_scopes)),
                                "access_token": access, "token_type": "user"}
        if refresh:
            user |= {"refresh_token": refresh, "expires_in": self.token_lifetime}
        return {"ok": True, "app_id": "A0AGENTRY1", "authed_user": user,
                "team": {"id": self.team["id"], "name": self.team["name"]}, "enterprise": None,
                "is_enterprise_install": False}

    def _user_tokens(self, user_id: str, scopes: frozenset[str]) -> tuple[str, str]:
        if not self.rotation:
            return self.issue_token(user_id=user_id, scopes=scopes), ""
        access = self.issue_token(user_id=user_id, scopes=scopes, expires_in=self.token_lifetime)
        refresh = f"xoxe-1-{secrets.token_hex(20)}"
        with self._lock:
            self._refresh_tokens[refresh] = Token(user_id=user_id, scopes=scopes)
        return access, refresh

    @staticmethod
    def _send(handler: DelegatingHandler, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
