"""A loopback stand-in for GitHub: the REST API (users, repositories, issues, pull requests,
comments) and the OAuth web flow (authorize, access_token), spoken over real HTTP in the shapes of
GitHub's REST documentation (API version 2022-11-28) and its OAuth troubleshooting pages.

    fake = FakeGitHub().start()
    pair = fake.issue_token("octocat")          # an expiring OAuth user token with a refresh token
    pat = fake.personal_token("octocat")        # a classic personal access token (no refresh)
    fake.expire(pair.access_token)              # 401 "Bad credentials" until the client refreshes
    fake.revoke(pair.access_token)              # 401, and its refresh token is refused too
    fake.rate_limit(2, retry_after=1)           # the next two API responses are 429 + Retry-After
    fake.exhaust_rate_limit(reset_in=600)       # primary limit used up: 403, x-ratelimit-remaining 0
    fake.approve(authorize_url)                 # a person clicking "Authorize": {"code", "state"}

What it checks like GitHub does: the token on every API request (unknown, expired or revoked →
401 `Bad credentials`), repository visibility (a private repository the token can't see is a 404,
never a 403), the `X-GitHub-Api-Version` header, required fields (422 `Validation Failed`),
issues disabled (410). The token endpoint checks the client id and secret, the redirect URI, the
single use and lifetime of a code and the PKCE S256 verifier against the stored challenge, and
answers errors with HTTP 200 and an `error` field, as GitHub does. Refreshing rotates: the old
refresh token and the old access token stop working.

Every request is recorded (`requests`, `api_requests()`, `token_requests()`) so tests can assert
what was — or wasn't — sent. The REST API also answers under `/api/v3` (GitHub Enterprise Server).
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import re
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from tests.fakes.loopback import LoopbackServer

__all__ = ["API_VERSIONS", "FakeGitHub", "RecordedRequest", "TokenPair"]

API_VERSIONS = ("2022-11-28", "2026-03-10")
DOCS = "https://docs.github.com/rest"
CODE_LIFETIME = 600  # GitHub's authorization codes expire after ten minutes
ACCESS_LIFETIME = 28800  # expiring user tokens: eight hours
REFRESH_LIFETIME = 15897600  # and their refresh tokens six months
_ALNUM = string.ascii_letters + string.digits

OAUTH_ERRORS = {
    "incorrect_client_credentials": (
        "The client_id and/or client_secret passed are incorrect.",
        "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials",
    ),
    "redirect_uri_mismatch": (
        "The redirect_uri MUST match the registered callback URL for this application.",
        "/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch2",
    ),
    "bad_verification_code": (
        "The code passed is incorrect or expired.",
        "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code",
    ),
    "bad_refresh_token": (
        "The refresh token passed is incorrect or expired.",
        "/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens",
    ),
    "unsupported_grant_type": (
        "The grant type is not supported.",
        "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors",
    ),
}


def _stamp(day: int, hour: int = 12) -> str:
    return f"2024-03-{day:02d}T{hour:02d}:00:00Z"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _random(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


# --- State ------------------------------------------------------------------------------------


@dataclass
class User:
    login: str
    id: int
    name: str | None = None
    email: str | None = None
    company: str | None = None


@dataclass
class Comment:
    id: int
    author: str
    body: str
    created_at: str
    updated_at: str


@dataclass
class Issue:
    """An issue, or a pull request (GitHub numbers both from one sequence per repository)."""

    number: int
    id: int
    title: str
    author: str
    body: str | None = None
    state: str = "open"
    state_reason: str | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    created_at: str = _stamp(1)
    updated_at: str = _stamp(1)
    closed_at: str | None = None
    milestone: str | None = None
    # Pull requests only.
    is_pull: bool = False
    head: str = ""
    base: str = "main"
    draft: bool = False
    merged_at: str | None = None
    additions: int = 0
    deletions: int = 0
    changed_files: int = 0
    commits: int = 1
    review_comments: int = 0


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    private: bool = False
    description: str | None = None
    language: str | None = None
    default_branch: str = "main"
    has_issues: bool = True
    archived: bool = False
    fork: bool = False
    stars: int = 0
    forks: int = 0
    topics: list[str] = field(default_factory=list)
    homepage: str | None = None
    license: str | None = None
    collaborators: list[str] = field(default_factory=list)
    created_at: str = _stamp(1)
    updated_at: str = _stamp(1)
    pushed_at: str = _stamp(1)
    issues: dict[int, Issue] = field(default_factory=dict)
    known_labels: set[str] = field(default_factory=lambda: {"bug", "documentation", "enhancement", "question"})

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Token:
    value: str
    login: str
    scopes: tuple[str, ...]
    kind: str  # oauth, pat
    refresh_token: str = ""
    expires_at: float | None = None  # time.time()
    refresh_expires_at: float | None = None
    revoked: bool = False
    refresh_used: bool = False
    client_id: str = ""

    def usable(self) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > time.time())


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int | None
    scope: str


@dataclass
class _Code:
    value: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    login: str
    challenge: str
    challenge_method: str
    created: float
    used: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without /api/v3 and without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int
    prefix: str = ""  # "/api/v3" when called the GitHub Enterprise Server way

    @property
    def form(self) -> dict[str, str]:
        """The body as the token endpoint reads it (form-encoded or JSON)."""
        if self.headers.get("content-type", "").startswith("application/json"):
            try:
                loaded = json.loads(self.body or b"{}")
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        return dict(parse_qsl(self.body.decode("utf-8", "replace")))

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def token(self) -> str:
        value = self.headers.get("authorization", "")
        scheme, _, credential = value.partition(" ")
        return credential.strip() if scheme.lower() in ("bearer", "token") else ""


class _Reply(Exception):
    """Raised inside a handler to answer at once."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _error(status: int, message: str, documentation_url: str = DOCS, **extra: Any) -> _Reply:
    return _Reply(status, {"message": message, "documentation_url": documentation_url, "status": str(status)} | extra)


def _not_found() -> _Reply:
    return _error(404, "Not Found", f"{DOCS}/issues/issues")


class FakeGitHub(LoopbackServer):
    def __init__(self, *, client_id: str = "Iv1.a629723bfa3c4d21", client_secret: str | None = None,
                 app_name: str = "Agentry", callback_url: str | None = None, expiring_tokens: bool = True,
                 report_scopes: bool = True) -> None:
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_hex(20)
        self.app_name = app_name
        # When set, redirect_uri must start with it (GitHub: "must match the registered callback URL").
        self.callback_url = callback_url
        # GitHub App user tokens expire (8 h) and come with a refresh token; classic OAuth app tokens don't.
        self.expiring_tokens = expiring_tokens
        # Classic OAuth apps answer with the granted scopes; GitHub App tokens answer "scope": "".
        self.report_scopes = report_scopes
        # Scopes the person grants, whatever was asked (None: what was asked).
        self.grant_scopes: tuple[str, ...] | None = None
        self.default_login = "octocat"
        self.requests: list[RecordedRequest] = []
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, Token] = {}
        self._codes: dict[str, _Code] = {}
        self._scripted: deque[_Reply] = deque()
        self._primary_reset: float | None = None
        self._used: dict[str, int] = {}
        self._ids = itertools.count(1_000_000)
        self._lock = threading.RLock()
        self._seed()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeGitHub:
        fake = self

        class Handler(_Handler):
            github = fake

        return self._serve(_HTTPServer(("127.0.0.1", 0), Handler), name="fake-github")

    # ------------------------------------------------------------------ seed data
    def _seed(self) -> None:
        for user in (User("octocat", 583231, "The Octocat", "octocat@github.com", "@github"),
                     User("hubot", 7, "Hubot", None, None), User("monalisa", 2, "Mona Lisa Octocat", None, None)):
            self.users[user.login] = user
        hello = self.add_repo("octocat", "Hello-World", id=1296269, description="My first repository on GitHub!",
                              language="Python", stars=2700, forks=2500, topics=["octocat", "api"],
                              homepage="https://github.com", license="MIT", updated_at=_stamp(20),
                              pushed_at=_stamp(20), collaborators=["hubot"])
        self.add_repo("octocat", "Spoon-Knife", id=1300192, description="This repo is for demonstration purposes only.",
                      language="HTML", stars=12000, forks=140000, updated_at=_stamp(18))
        self.add_repo("octocat", "secret-plans", id=1400001, private=True,
                      description="World domination, step by step.", updated_at=_stamp(22))
        self.add_repo("octocat", "no-issues", id=1400002, has_issues=False, description="Issues are turned off here.",
                      updated_at=_stamp(5))
        self.add_repo("octocat", "linguist", id=1400003, fork=True, language="Ruby",
                      description="Language Savant.", updated_at=_stamp(10), archived=True)
        self.add_repo("hubot", "private-thing", id=1500001, private=True, description="Only hubot sees this.")

        self.add_issue(hello, "Found a bug", author="monalisa",
                       body="I'm having a problem with this.\n\nSteps: run it.", labels=["bug"],
                       created_at=_stamp(2), updated_at=_stamp(3),
                       comments=[("octocat", "Thanks, looking into it."), ("monalisa", "It happens on every run.")])
        self.add_issue(hello, "Add dark mode", author="hubot", body="Please add a dark theme.", labels=["enhancement"],
                       assignees=["octocat"], created_at=_stamp(4), updated_at=_stamp(4))
        self.add_issue(hello, "Amazing new feature", author="monalisa", body="Adds the amazing feature.", pull=True,
                       head="monalisa:new-feature", created_at=_stamp(6), updated_at=_stamp(7), additions=120,
                       deletions=4, changed_files=3, commits=2, comments=[("octocat", "Looks good so far.")])
        self.add_issue(hello, "Crash on start", author="hubot", body="Segfault.", labels=["bug"], state="closed",
                       state_reason="completed", created_at=_stamp(8), updated_at=_stamp(9), closed_at=_stamp(9))
        self.add_issue(hello, "Fix typo in README", author="hubot", body="teh → the", pull=True, head="hubot:typo",
                       state="closed", created_at=_stamp(10), updated_at=_stamp(11), closed_at=_stamp(11),
                       merged_at=_stamp(11), additions=1, deletions=1, changed_files=1)

    def add_repo(self, owner: str, name: str, **fields: Any) -> Repo:
        with self._lock:
            if owner not in self.users:
                self.users[owner] = User(owner, next(self._ids))
            repo = Repo(owner=owner, name=name, id=fields.pop("id", None) or next(self._ids), **fields)
            self.repos[repo.full_name.lower()] = repo
            return repo

    def add_issue(self, repo: Repo | str, title: str, *, author: str = "octocat", pull: bool = False,
                  comments: list[tuple[str, str]] = (), **fields: Any) -> Issue:
        with self._lock:
            repo = repo if isinstance(repo, Repo) else self.repos[repo.lower()]
            number = max(repo.issues, default=0) + 1
            created = fields.setdefault("created_at", _stamp(12))
            fields.setdefault("updated_at", created)
            issue = Issue(number=number, id=next(self._ids), title=title, author=author, is_pull=pull, **fields)
            issue.comments = [Comment(next(self._ids), who, text, created, created) for who, text in comments]
            repo.issues[number] = issue
            return issue

    # ------------------------------------------------------------------ tokens
    def issue_token(self, login: str = "octocat", scopes: tuple[str, ...] = ("repo",), *,
                    expiring: bool | None = None, client_id: str | None = None) -> TokenPair:
        """What the token endpoint would hand out after the person approved (for tests that
        don't need the whole dance)."""
        expiring = self.expiring_tokens if expiring is None else expiring
        with self._lock:
            token = Token(value=_random("ghu_" if expiring else "gho_", 36), login=login, scopes=tuple(scopes),
                          kind="oauth", client_id=client_id or self.client_id)
            if expiring:
                token.refresh_token = _random("ghr_", 76)
                token.expires_at = time.time() + ACCESS_LIFETIME
                token.refresh_expires_at = time.time() + REFRESH_LIFETIME
            self.tokens[token.value] = token
            return TokenPair(token.value, token.refresh_token, ACCESS_LIFETIME if expiring else None,
                             ",".join(token.scopes) if self.report_scopes else "")

    def personal_token(self, login: str = "octocat", scopes: tuple[str, ...] = ("repo",)) -> str:
        with self._lock:
            token = Token(value=_random("ghp_", 36), login=login, scopes=tuple(scopes), kind="pat")
            self.tokens[token.value] = token
            return token.value

    def expire(self, access_token: str) -> None:
        """The access token's eight hours are up; its refresh token still works."""
        with self._lock:
            self.tokens[access_token].expires_at = time.time() - 1

    def revoke(self, access_token: str) -> None:
        """The person revoked the app (or the token leaked and was reset): the access token and its
        refresh token both stop working."""
        with self._lock:
            self.tokens[access_token].revoked = True

    def expire_codes(self) -> None:
        """Ten minutes pass: every authorization code not yet exchanged is too old."""
        with self._lock:
            for code in self._codes.values():
                code.created -= CODE_LIFETIME + 1

    def token_of(self, login: str) -> Token | None:
        """The newest usable token of a person (after refreshes rotated it)."""
        with self._lock:
            found = [t for t in self.tokens.values() if t.login == login and t.usable()]
            return found[-1] if found else None

    # ------------------------------------------------------------------ scripted failures
    def rate_limit(self, count: int = 1, *, retry_after: int = 1, status: int = 429) -> None:
        """The next `count` API responses are GitHub's secondary rate limit, with Retry-After."""
        with self._lock:
            for _ in range(count):
                self._scripted.append(_error(
                    status, "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                    "again. If you reach out to GitHub Support for help, please include the request ID.",
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                ))
                self._scripted[-1].headers["Retry-After"] = str(retry_after)

    def fail_next(self, status: int, body: Any, headers: dict[str, str] | None = None, count: int = 1) -> None:
        with self._lock:
            for _ in range(count):
                self._scripted.append(_Reply(status, body, headers))

    def exhaust_rate_limit(self, *, reset_in: int = 3600) -> None:
        """The primary limit (5,000 an hour) is used up until `reset_in` seconds from now."""
        with self._lock:
            self._primary_reset = time.time() + reset_in

    def restore_rate_limit(self) -> None:
        with self._lock:
            self._primary_reset = None

    # ------------------------------------------------------------------ a person in a browser
    def approve(self, authorize_url: str, *, login: str | None = None, deny: bool = False) -> dict[str, str]:
        """Open the authorization URL and click "Authorize" (or "Cancel"): returns the query of the
        redirect back to the app ({"code", "state"} or {"error", ...})."""
        decision = {"decision": "deny" if deny else "approve"} | ({"login": login} if login else {})
        separator = "&" if "?" in authorize_url else "?"
        response = httpx.get(authorize_url + separator + urlencode(decision), follow_redirects=False, timeout=10,
                             trust_env=False)
        assert response.status_code == 302, f"authorize answered {response.status_code}: {response.text[:300]}"
        return dict(parse_qsl(urlsplit(response.headers["location"]).query))

    # ------------------------------------------------------------------ what was asked
    def api_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if not r.path.startswith("/login/")]

    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/login/oauth/access_token"]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    # ------------------------------------------------------------------ OAuth endpoints
    def authorize(self, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if params.get("client_id") != self.client_id:
            return 404, {"Content-Type": "text/html; charset=utf-8"}, b"<!doctype html><h1>Page not found</h1>"
        redirect_uri = params.get("redirect_uri") or self.callback_url or ""
        state = params.get("state", "")
        if not redirect_uri:
            return 400, {"Content-Type": "text/plain"}, b"redirect_uri is required"
        if self.callback_url and not redirect_uri.startswith(self.callback_url):
            return _redirect(self.callback_url, {
                "error": "redirect_uri_mismatch", "state": state,
                "error_description": "The redirect_uri MUST match the registered callback URL for this application.",
                "error_uri": "https://docs.github.com" + OAUTH_ERRORS["redirect_uri_mismatch"][1]})
        challenge, method = params.get("code_challenge", ""), params.get("code_challenge_method", "")
        if challenge and method != "S256":
            return _redirect(redirect_uri, {"error": "invalid_request", "state": state,
                                            "error_description": "Only the S256 code challenge method is accepted."})
        decision = params.get("decision")
        if decision == "deny":
            return _redirect(redirect_uri, {
                "error": "access_denied", "state": state,
                "error_description": "The user has denied your application access.",
                "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-"
                             "errors/#access-denied"})
        scopes = tuple(s for s in re.split(r"[\s,]+", params.get("scope", "")) if s)
        if decision != "approve":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, self._consent_page(params, scopes)
        code = _Code(value=secrets.token_hex(10), client_id=self.client_id, redirect_uri=redirect_uri,
                     scopes=scopes if self.grant_scopes is None else self.grant_scopes,
                     login=params.get("login") or self.default_login, challenge=challenge,
                     challenge_method=method, created=time.time())
        with self._lock:
            self._codes[code.value] = code
        return _redirect(redirect_uri, {"code": code.value, "state": state})

    def _consent_page(self, params: dict[str, str], scopes: tuple[str, ...]) -> bytes:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items() if k != "decision")
        listed = "".join(f"<li>{html.escape(s)}</li>" for s in scopes) or "<li>(no scopes: public data only)</li>"
        app = html.escape(self.app_name)
        who = html.escape(params.get("login") or self.default_login)
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize application</title></head>
<body><main>
<h1>Authorize {app}</h1>
<p>{app} by Agentry wants to access your <strong>{who}</strong> account.</p>
<ul class="scopes">{listed}</ul>
<form method="post" action="/login/oauth/authorize">{hidden}
<button type="submit" name="decision" value="deny" id="js-oauth-cancel-btn">Cancel</button>
<button type="submit" name="decision" value="approve" id="js-oauth-authorize-btn">Authorize {app}</button>
</form>
</main></body></html>"""
        return page.encode()

    def access_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return _oauth_error("incorrect_client_credentials")
        grant_type = form.get("grant_type") or "authorization_code"
        if grant_type == "refresh_token":
            return self._refresh(form)
        if grant_type != "authorization_code":
            return _oauth_error("unsupported_grant_type")
        with self._lock:
            code = self._codes.get(form.get("code", ""))
            if code is None or code.used or code.client_id != self.client_id:
                return _oauth_error("bad_verification_code")
            # Spent on the first attempt, whatever its outcome: a code can't be tried twice.
            code.used = True
        if time.time() - code.created > CODE_LIFETIME:
            return _oauth_error("bad_verification_code")
        if form.get("redirect_uri") and form["redirect_uri"] != code.redirect_uri:
            return _oauth_error("redirect_uri_mismatch")
        if code.challenge:
            verifier = form.get("code_verifier", "")
            if not verifier or _challenge(verifier) != code.challenge:
                return _oauth_error("bad_verification_code",
                                    "The code_verifier does not match the code_challenge supplied in the "
                                    "authorization request for PKCE.")
        return 200, self._token_payload(self.issue_token(code.login, code.scopes))

    def _refresh(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            old = next((t for t in self.tokens.values() if t.refresh_token and t.refresh_token ==
                        form.get("refresh_token")), None)
            if (old is None or old.revoked or old.refresh_used
                    or (old.refresh_expires_at is not None and old.refresh_expires_at < time.time())):
                return 400, _oauth_error("bad_refresh_token")[1]
            old.refresh_used = True
            old.revoked = True  # "that refresh token and the old user access token will no longer work"
            return 200, self._token_payload(self.issue_token(old.login, old.scopes, expiring=True))

    def _token_payload(self, pair: TokenPair) -> dict[str, Any]:
        payload: dict[str, Any] = {"access_token": pair.access_token, "token_type": "bearer", "scope": pair.scope}
        if pair.refresh_token:
            payload |= {"expires_in": pair.expires_in, "refresh_token": pair.refresh_token,
                        "refresh_token_expires_in": REFRESH_LIFETIME}
        return payload

    # ------------------------------------------------------------------ REST API
    def api(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes,
            base: str) -> _Reply:
        version = headers.get("x-github-api-version")
        if version and version not in API_VERSIONS:
            raise _error(400, f"The '{version}' API version is not supported.",
                         "https://docs.github.com/rest/overview/api-versions")
        token = self._authenticate(headers)
        login = token.login if token else None
        limit_headers = self._rate_headers(login)
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            scripted.headers = limit_headers | scripted.headers
            raise scripted
        if self._primary_reset is not None and self._primary_reset > time.time():
            reply = _error(403, f"API rate limit exceeded for user ID {self._user_id(login)}. If you reach out to "
                           "GitHub Support for help, please include the request ID.",
                           "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api")
            reply.headers = limit_headers | {"x-ratelimit-remaining": "0", "x-ratelimit-used": "5000",
                                             "x-ratelimit-reset": str(int(self._primary_reset))}
            raise reply
        reply = self._route(method, path, query, body, token, base)
        reply.headers = limit_headers | ({"X-OAuth-Scopes": ", ".join(token.scopes),
                                          "X-Accepted-OAuth-Scopes": "repo"} if token else {}) | reply.headers
        return reply

    def _user_id(self, login: str | None) -> int:
        return self.users[login].id if login in self.users else 0

    def _rate_headers(self, login: str | None) -> dict[str, str]:
        with self._lock:
            key = login or "anonymous"
            self._used[key] = self._used.get(key, 0) + 1
            limit = 5000 if login else 60
            return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(0, limit - self._used[key])),
                    "x-ratelimit-used": str(self._used[key]), "x-ratelimit-reset": str(int(time.time()) + 3600),
                    "x-ratelimit-resource": "core"}

    def _authenticate(self, headers: dict[str, str]) -> Token | None:
        value = headers.get("authorization", "")
        if not value:
            return None
        scheme, _, credential = value.partition(" ")
        with self._lock:
            token = self.tokens.get(credential.strip()) if scheme.lower() in ("bearer", "token") else None
            if token is None or not token.usable():
                raise _error(401, "Bad credentials", DOCS)
            return token

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes, token: Token | None,
               base: str) -> _Reply:
        parts = [p for p in path.split("/") if p]
        if parts == ["user"] and method == "GET":
            if token is None:
                raise _error(401, "Requires authentication", f"{DOCS}/users/users#get-the-authenticated-user")
            return _Reply(200, self._user_full(self.users[token.login]))
        if parts == ["user", "repos"] and method == "GET":
            if token is None:
                raise _error(401, "Requires authentication", f"{DOCS}/repos/repos#list-repositories-for-the-"
                             "authenticated-user")
            return self._list_user_repos(token, query, base, path)
        if len(parts) >= 3 and parts[0] == "repos":
            repo = self._visible_repo(parts[1], parts[2], token)
            rest = parts[3:]
            if not rest and method == "GET":
                return _Reply(200, self._repo_full(repo, token))
            if rest == ["issues"] and method == "GET":
                return self._list_issues(repo, query, base, path)
            if rest == ["issues"] and method == "POST":
                return self._create_issue(repo, token, body)
            if len(rest) == 2 and rest[0] == "issues" and rest[1].isdigit() and method == "GET":
                return _Reply(200, self._issue_json(repo, self._issue(repo, int(rest[1]))))
            if len(rest) == 3 and rest[0] == "issues" and rest[1].isdigit() and rest[2] == "comments":
                issue = self._issue(repo, int(rest[1]))
                if method == "GET":
                    return self._page([self._comment_json(repo, issue, c) for c in issue.comments], query, base, path)
                if method == "POST":
                    return self._create_comment(repo, issue, token, body)
            if rest == ["pulls"] and method == "GET":
                return self._list_pulls(repo, query, base, path)
            if len(rest) == 2 and rest[0] == "pulls" and rest[1].isdigit() and method == "GET":
                issue = repo.issues.get(int(rest[1]))
                if issue is None or not issue.is_pull:
                    raise _error(404, "Not Found", f"{DOCS}/pulls/pulls#get-a-pull-request")
                return _Reply(200, self._pull_json(repo, issue, full=True))
        raise _not_found()

    # --- visibility and permissions
    def _can_see(self, repo: Repo, token: Token | None) -> bool:
        if not repo.private:
            return True
        # Classic scopes: only `repo` reaches private repositories (OAuth tokens and PATs alike).
        if token is None or "repo" not in token.scopes:
            return False
        return token.login == repo.owner or token.login in repo.collaborators

    def _can_push(self, repo: Repo, token: Token | None) -> bool:
        return token is not None and (token.login == repo.owner or token.login in repo.collaborators)

    def _can_write(self, repo: Repo, token: Token | None) -> bool:
        """Classic scopes: writing needs `repo`, or `public_repo` for a public repository."""
        if token is None:
            return False
        return "repo" in token.scopes or (not repo.private and "public_repo" in token.scopes)

    def _visible_repo(self, owner: str, name: str, token: Token | None) -> Repo:
        with self._lock:
            repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None or not self._can_see(repo, token):
            raise _error(404, "Not Found", f"{DOCS}/repos/repos#get-a-repository")
        return repo

    def _issue(self, repo: Repo, number: int) -> Issue:
        if not repo.has_issues:
            raise _error(410, "Issues are disabled for this repo", f"{DOCS}/issues/issues")
        issue = repo.issues.get(number)
        if issue is None:
            raise _error(404, "Not Found", f"{DOCS}/issues/issues#get-an-issue")
        return issue

    # --- listings
    def _list_user_repos(self, token: Token, query: dict[str, str], base: str, path: str) -> _Reply:
        visibility = query.get("visibility", "all")
        if visibility not in ("all", "public", "private"):
            raise _error(422, "Validation Failed", f"{DOCS}/repos/repos", errors=[
                {"resource": "Repository", "field": "visibility", "code": "invalid"}])
        with self._lock:
            mine = [r for r in self.repos.values()
                    if (r.owner == token.login or token.login in r.collaborators) and self._can_see(r, token)]
        if visibility != "all":
            mine = [r for r in mine if r.private == (visibility == "private")]
        sort = query.get("sort", "full_name")
        key = {"created": lambda r: r.created_at, "updated": lambda r: r.updated_at,
               "pushed": lambda r: r.pushed_at}.get(sort, lambda r: r.full_name.lower())
        direction = query.get("direction", "asc" if sort == "full_name" else "desc")
        mine.sort(key=key, reverse=direction == "desc")
        return self._page([self._repo_json(r, token) for r in mine], query, base, path)

    def _list_issues(self, repo: Repo, query: dict[str, str], base: str, path: str) -> _Reply:
        if not repo.has_issues:
            raise _error(410, "Issues are disabled for this repo", f"{DOCS}/issues/issues")
        state = query.get("state", "open")
        wanted_labels = {x.strip().lower() for x in query.get("labels", "").split(",") if x.strip()}
        found = [i for i in repo.issues.values()
                 if (state == "all" or i.state == state)
                 and wanted_labels <= {label.lower() for label in i.labels}
                 and (not query.get("assignee") or query["assignee"] in i.assignees
                      or (query["assignee"] == "none" and not i.assignees))
                 and (not query.get("creator") or i.author == query["creator"])]
        sort = query.get("sort", "created")
        key = {"updated": lambda i: i.updated_at,
               "comments": lambda i: len(i.comments)}.get(sort, lambda i: i.created_at)
        found.sort(key=key, reverse=query.get("direction", "desc") == "desc")
        return self._page([self._issue_json(repo, i) for i in found], query, base, path)

    def _list_pulls(self, repo: Repo, query: dict[str, str], base: str, path: str) -> _Reply:
        state = query.get("state", "open")
        found = [i for i in repo.issues.values() if i.is_pull and (state == "all" or i.state == state)
                 and (not query.get("base") or i.base == query["base"])
                 and (not query.get("head") or i.head == query["head"])]
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc" if sort == "created" else "asc")
        found.sort(key=lambda i: i.updated_at if sort == "updated" else i.created_at, reverse=direction == "desc")
        return self._page([self._pull_json(repo, i) for i in found], query, base, path)

    def _page(self, items: list[Any], query: dict[str, str], base: str, path: str) -> _Reply:
        try:
            per_page = min(100, max(1, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            raise _error(422, "Validation Failed", DOCS) from None
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]

        def link(number: int) -> str:
            return f"{base}{path}?{urlencode(query | {'per_page': str(per_page), 'page': str(number)})}"

        rels = []
        if page > 1:
            rels += [f'<{link(page - 1)}>; rel="prev"']
        if page < last:
            rels += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
        if page > 1:
            rels += [f'<{link(1)}>; rel="first"']
        return _Reply(200, chunk, {"Link": ", ".join(rels)} if rels else {})

    # --- writes
    def _json_body(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise _error(400, "Problems parsing JSON", DOCS) from None
        if not isinstance(data, dict):
            raise _error(400, "Problems parsing JSON", DOCS)
        return data

    def _create_issue(self, repo: Repo, token: Token | None, body: bytes) -> _Reply:
        if token is None:
            raise _error(401, "Requires authentication", f"{DOCS}/issues/issues#create-an-issue")
        if not self._can_write(repo, token):
            raise _error(404, "Not Found", f"{DOCS}/issues/issues#create-an-issue")
        if not repo.has_issues:
            raise _error(410, "Issues are disabled for this repo", f"{DOCS}/issues/issues#create-an-issue")
        data = self._json_body(body)
        if not isinstance(data.get("title"), str | int) or not str(data.get("title")).strip():
            raise _error(422, "Validation Failed", f"{DOCS}/issues/issues#create-an-issue",
                         errors=[{"resource": "Issue", "code": "missing_field", "field": "title"}])
        labels, assignees = list(data.get("labels") or []), list(data.get("assignees") or [])
        if self._can_push(repo, token):
            unknown = [a for a in assignees if a not in self.users]
            if unknown:
                raise _error(422, "Validation Failed", f"{DOCS}/issues/issues#create-an-issue",
                             errors=[{"value": unknown[0], "resource": "Issue", "field": "assignees",
                                      "code": "invalid"}])
            repo.known_labels |= set(labels)
        else:
            labels, assignees = [], []  # GitHub silently drops them for people without push access
        now = _now()
        issue = self.add_issue(repo, str(data["title"]), author=token.login, body=data.get("body"), labels=labels,
                               assignees=assignees, created_at=now, updated_at=now)
        return _Reply(201, self._issue_json(repo, issue),
                      {"Location": f"https://api.github.com/repos/{repo.full_name}/issues/{issue.number}"})

    def _create_comment(self, repo: Repo, issue: Issue, token: Token | None, body: bytes) -> _Reply:
        if token is None:
            raise _error(401, "Requires authentication", f"{DOCS}/issues/comments#create-an-issue-comment")
        if not self._can_write(repo, token):
            raise _error(404, "Not Found", f"{DOCS}/issues/comments#create-an-issue-comment")
        data = self._json_body(body)
        if not isinstance(data.get("body"), str) or not data["body"].strip():
            raise _error(422, "Validation Failed", f"{DOCS}/issues/comments#create-an-issue-comment",
                         errors=[{"resource": "IssueComment", "code": "missing_field", "field": "body"}])
        now = _now()
        comment = Comment(next(self._ids), token.login, data["body"], now, now)
        with self._lock:
            issue.comments.append(comment)
            issue.updated_at = now
        return _Reply(201, self._comment_json(repo, issue, comment))

    # --- representations (GitHub's REST shapes, trimmed of the many *_url templates)
    def _user_simple(self, login: str) -> dict[str, Any]:
        user = self.users.get(login) or User(login, 0)
        return {"login": user.login, "id": user.id, "node_id": f"MDQ6VXNlcj{user.id}",
                "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4", "gravatar_id": "",
                "url": f"https://api.github.com/users/{user.login}", "html_url": f"https://github.com/{user.login}",
                "type": "User", "site_admin": False}

    def _user_full(self, user: User) -> dict[str, Any]:
        owned = [r for r in self.repos.values() if r.owner == user.login]
        return self._user_simple(user.login) | {
            "name": user.name, "company": user.company, "blog": "https://github.blog", "location": "San Francisco",
            "email": user.email, "hireable": None, "bio": None, "twitter_username": None,
            "public_repos": sum(not r.private for r in owned), "public_gists": 8, "followers": 20, "following": 0,
            "created_at": "2011-01-25T18:44:36Z", "updated_at": _stamp(1),
            "total_private_repos": sum(r.private for r in owned), "owned_private_repos": sum(r.private for r in owned),
        }

    def _repo_json(self, repo: Repo, token: Token | None) -> dict[str, Any]:
        api = f"https://api.github.com/repos/{repo.full_name}"
        push = self._can_push(repo, token)
        return {
            "id": repo.id, "node_id": f"MDEwOlJlcG9zaXRvcnkx{repo.id}", "name": repo.name,
            "full_name": repo.full_name, "owner": self._user_simple(repo.owner), "private": repo.private,
            "html_url": f"https://github.com/{repo.full_name}", "description": repo.description, "fork": repo.fork,
            "url": api, "issues_url": api + "/issues{/number}", "pulls_url": api + "/pulls{/number}",
            "clone_url": f"https://github.com/{repo.full_name}.git", "homepage": repo.homepage,
            "language": repo.language, "forks_count": repo.forks, "stargazers_count": repo.stars,
            "watchers_count": repo.stars, "size": 108, "default_branch": repo.default_branch,
            "open_issues_count": sum(i.state == "open" for i in repo.issues.values()), "is_template": False,
            "topics": list(repo.topics), "has_issues": repo.has_issues, "has_projects": True, "has_wiki": True,
            "has_pages": False, "has_downloads": True, "archived": repo.archived, "disabled": False,
            "visibility": "private" if repo.private else "public", "pushed_at": repo.pushed_at,
            "created_at": repo.created_at, "updated_at": repo.updated_at,
            "permissions": {"admin": token is not None and token.login == repo.owner, "maintain": push, "push": push,
                            "triage": push, "pull": True},
            "license": ({"key": repo.license.lower(), "name": f"{repo.license} License", "spdx_id": repo.license,
                         "url": f"https://api.github.com/licenses/{repo.license.lower()}",
                         "node_id": "MDc6TGljZW5zZW1p"}
                        if repo.license else None),
            "forks": repo.forks, "open_issues": sum(i.state == "open" for i in repo.issues.values()),
            "watchers": repo.stars,
        }

    def _repo_full(self, repo: Repo, token: Token | None) -> dict[str, Any]:
        return self._repo_json(repo, token) | {"subscribers_count": 42, "network_count": repo.forks,
                                               "temp_clone_token": None, "allow_forking": True}

    def _label_json(self, repo: Repo, name: str) -> dict[str, Any]:
        colors = {"bug": "d73a4a", "enhancement": "a2eeef", "documentation": "0075ca", "question": "d876e3"}
        return {"id": abs(hash((repo.full_name, name))) % 10**9, "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=",
                "url": f"https://api.github.com/repos/{repo.full_name}/labels/{name}", "name": name,
                "description": None, "color": colors.get(name, "ededed"), "default": name in colors}

    def _issue_json(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        api = f"https://api.github.com/repos/{repo.full_name}"
        web = f"https://github.com/{repo.full_name}"
        data: dict[str, Any] = {
            "id": issue.id, "node_id": f"MDU6SXNzdWUx{issue.id}", "url": f"{api}/issues/{issue.number}",
            "repository_url": api, "comments_url": f"{api}/issues/{issue.number}/comments",
            "html_url": f"{web}/{'pull' if issue.is_pull else 'issues'}/{issue.number}", "number": issue.number,
            "state": issue.state, "state_reason": issue.state_reason, "title": issue.title, "body": issue.body,
            "user": self._user_simple(issue.author), "labels": [self._label_json(repo, x) for x in issue.labels],
            "assignee": self._user_simple(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._user_simple(a) for a in issue.assignees],
            "milestone": ({"number": 1, "title": issue.milestone, "state": "open"} if issue.milestone else None),
            "locked": False, "active_lock_reason": None, "comments": len(issue.comments),
            "closed_at": issue.closed_at, "created_at": issue.created_at, "updated_at": issue.updated_at,
            "closed_by": None, "author_association": "OWNER" if issue.author == repo.owner else "CONTRIBUTOR",
            "reactions": {"url": f"{api}/issues/{issue.number}/reactions", "total_count": 0, "+1": 0, "-1": 0},
        }
        if issue.is_pull:
            data["draft"] = issue.draft
            data["pull_request"] = {"url": f"{api}/pulls/{issue.number}", "html_url": f"{web}/pull/{issue.number}",
                                    "diff_url": f"{web}/pull/{issue.number}.diff",
                                    "patch_url": f"{web}/pull/{issue.number}.patch", "merged_at": issue.merged_at}
        return data

    def _branch(self, repo: Repo, label: str) -> dict[str, Any]:
        owner, _, ref = label.rpartition(":") if ":" in label else (repo.owner, ":", label)
        return {"label": f"{owner}:{ref}", "ref": ref, "sha": hashlib.sha1(label.encode()).hexdigest(),  # noqa: S324
                "user": self._user_simple(owner), "repo": self._repo_json(repo, None)}

    def _pull_json(self, repo: Repo, issue: Issue, *, full: bool = False) -> dict[str, Any]:
        api = f"https://api.github.com/repos/{repo.full_name}"
        web = f"https://github.com/{repo.full_name}"
        data: dict[str, Any] = {
            "url": f"{api}/pulls/{issue.number}", "id": issue.id, "node_id": f"MDExOlB1bGxSZXF1ZXN0{issue.id}",
            "html_url": f"{web}/pull/{issue.number}", "diff_url": f"{web}/pull/{issue.number}.diff",
            "patch_url": f"{web}/pull/{issue.number}.patch", "issue_url": f"{api}/issues/{issue.number}",
            "number": issue.number, "state": issue.state, "locked": False, "title": issue.title,
            "user": self._user_simple(issue.author), "body": issue.body,
            "labels": [self._label_json(repo, x) for x in issue.labels], "milestone": None,
            "active_lock_reason": None, "created_at": issue.created_at, "updated_at": issue.updated_at,
            "closed_at": issue.closed_at, "merged_at": issue.merged_at,
            "merge_commit_sha": hashlib.sha1(str(issue.id).encode()).hexdigest() if issue.merged_at else None,  # noqa: S324
            "assignee": self._user_simple(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._user_simple(a) for a in issue.assignees], "requested_reviewers": [],
            "requested_teams": [], "head": self._branch(repo, issue.head or f"{repo.owner}:feature"),
            "base": self._branch(repo, f"{repo.owner}:{issue.base}"),
            "author_association": "OWNER" if issue.author == repo.owner else "CONTRIBUTOR", "auto_merge": None,
            "draft": issue.draft,
        }
        if full:
            data |= {"merged": issue.merged_at is not None, "mergeable": None if issue.state == "closed" else True,
                     "rebaseable": True, "mergeable_state": "clean" if issue.state == "open" else "unknown",
                     "merged_by": self._user_simple(repo.owner) if issue.merged_at else None,
                     "comments": len(issue.comments), "review_comments": issue.review_comments,
                     "maintainer_can_modify": False, "commits": issue.commits, "additions": issue.additions,
                     "deletions": issue.deletions, "changed_files": issue.changed_files}
        return data

    def _comment_json(self, repo: Repo, issue: Issue, comment: Comment) -> dict[str, Any]:
        api = f"https://api.github.com/repos/{repo.full_name}"
        web = f"https://github.com/{repo.full_name}/{'pull' if issue.is_pull else 'issues'}/{issue.number}"
        return {"id": comment.id, "node_id": f"MDEyOklzc3VlQ29tbWVudD{comment.id}",
                "url": f"{api}/issues/comments/{comment.id}", "html_url": f"{web}#issuecomment-{comment.id}",
                "body": comment.body, "user": self._user_simple(comment.author), "created_at": comment.created_at,
                "updated_at": comment.updated_at, "issue_url": f"{api}/issues/{issue.number}",
                "author_association": "OWNER" if comment.author == repo.owner else "CONTRIBUTOR"}


def _redirect(target: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(target)
    query = urlencode([*parse_qsl(parts.query), *((k, v) for k, v in params.items() if v)])
    return 302, {"Location": urlunsplit(parts._replace(query=query))}, b""


def _oauth_error(code: str, description: str | None = None) -> tuple[int, dict[str, Any]]:
    default, uri = OAUTH_ERRORS[code]
    return 200, {"error": code, "error_description": description or default,
                 "error_uri": "https://docs.github.com" + uri}


# --- HTTP plumbing ----------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early are expected in timeout tests


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith("/api/v3/") or path == "/api/v3":
            path = path[len("/api/v3"):] or "/"
            prefix = "/api/v3"
        else:
            prefix = ""
        query = dict(parse_qsl(parts.query))
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        base = f"http://{self.headers.get('Host', '127.0.0.1')}{prefix}"
        fake = self.github
        if path == "/login/oauth/authorize" and method in ("GET", "POST"):
            params = query | (dict(parse_qsl(body.decode("utf-8", "replace"))) if method == "POST" else {})
            status, extra, content = fake.authorize(params)
            self._send(status, extra, content, method, path, query, headers, body, prefix)
            return
        if path == "/login/oauth/access_token" and method == "POST":
            recorded = RecordedRequest(method, path, query, headers, body, 0, prefix)
            status, payload = fake.access_token(query | recorded.form)
            if "application/json" in headers.get("accept", ""):
                extra, content = {"Content-Type": "application/json; charset=utf-8"}, json.dumps(payload).encode()
            else:
                extra = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
                content = urlencode({k: v for k, v in payload.items() if v is not None}).encode()
            self._send(status, extra, content, method, path, query, headers, body, prefix)
            return
        try:
            reply = fake.api(method, path, query, headers, body, base)
        except _Reply as raised:
            reply = raised
        extra = {"Content-Type": "application/json; charset=utf-8", "X-GitHub-Media-Type": "github.v3; format=json",
                 "X-GitHub-Api-Version-Selected": headers.get("x-github-api-version", API_VERSIONS[0]),
                 "X-GitHub-Request-Id": secrets.token_hex(8).upper()} | reply.headers
        content = b"" if reply.status == 204 else json.dumps(reply.body).encode()
        self._send(reply.status, extra, content, method, path, query, headers, body, prefix)

    def _send(self, status: int, headers: dict[str, str], content: bytes, method: str, path: str,
              query: dict[str, str], request_headers: dict[str, str], body: bytes, prefix: str) -> None:
        self.github._record(RecordedRequest(method, path, query, request_headers, body, status, prefix))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(content)
