"""A loopback stand-in for Jira Cloud (REST API v3) and Atlassian's OAuth 2.0 (3LO), over real HTTP.

One server plays three hosts, at paths that don't collide:
- the site itself (`https://acme.atlassian.net` → `{url}`): `/rest/api/3/...` with Basic auth
  (email:API token);
- `api.atlassian.com` (`{url}`): `/oauth/token/accessible-resources` and
  `/ex/jira/{cloudid}/rest/api/3/...` with a Bearer token whose scopes are enforced;
- `auth.atlassian.com` (`{url}`): `/authorize` (plays the person consenting: a 302 back with a
  single-use code bound to client, redirect URI and PKCE challenge) and `/oauth/token` (JSON body;
  authorization_code and rotating refresh_token grants).

Shapes follow Atlassian's documentation: issues with `fields`, errors as
`{"errorMessages": [...], "errors": {...}}`, the enhanced search `POST /rest/api/3/search/jql`
paging with `nextPageToken`/`isLast` and returning only issue ids unless `fields` are asked for,
descriptions and comments in the Atlassian Document Format, 401 `{"code": 401, "message":
"Unauthorized"}` for an expired token and "scope does not match" for a missing scope, 429 with
Retry-After. The JQL understood is a small subset: `field op value` clauses joined by AND
(project, key, status, issuetype, assignee, labels, summary/text with ~) and ORDER BY key,
created or updated.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes.loopback import DelegatingHandler, FakeHTTPServer, LoopbackServer

JIRA_SCOPES = frozenset({"read:jira-work", "write:jira-work", "read:jira-user"})
NOT_FOUND = "Issue does not exist or you do not have permission to see it."


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class OAuthToken:
    account_id: str
    scopes: frozenset[str]
    expires_at: float
    revoked: bool = False


@dataclass
class _Code:
    redirect_uri: str
    scopes: frozenset[str]
    challenge: str
    method: str
    used: bool = False


@dataclass
class _Failure:
    match: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


def adf(text: str) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in text.split("\n\n") if line
    ]}


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _stamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(seconds))


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _bad(status: int, *messages: str, **errors: str) -> _Reply:
    return _Reply(status, {"errorMessages": list(messages), "errors": errors})


class FakeJiraServer(LoopbackServer):
    def __init__(self, *, client_id: str = "jira-client-id", client_secret: str = "jira-client-secret",
                 token_lifetime: int = 3600) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.cloud_id = "a1b2c3d4-0000-4000-8000-00000000acme"
        self.site_name = "acme"
        self.users = {
            "5b10a2844c20165700ede21g": {"displayName": "Olivia Owner", "emailAddress": "olivia@example.com"},
            "5b10ac8d82e05b22cc7d4ef5": {"displayName": "Max Builder", "emailAddress": "max@example.com"},
        }
        self.olivia, self.max = list(self.users)
        self.api_tokens: dict[tuple[str, str], str] = {}  # (email, API token) -> accountId
        self.tokens: dict[str, OAuthToken] = {}
        self._refresh_tokens: dict[str, OAuthToken] = {}
        self._codes: dict[str, _Code] = {}
        self.approving_account = self.olivia
        self.grant_only: set[str] | None = None
        self.page_cap = 100  # Jira may return fewer than maxResults
        self.projects = {"ENG": {"id": "10000", "name": "Engineering"}, "OPS": {"id": "10001", "name": "Operations"}}
        self.issue_types = {"Task": "10001", "Bug": "10002", "Story": "10003"}
        self.statuses = {"To Do": ("10000", "new", "To Do", "blue-gray"),
                         "In Progress": ("3", "indeterminate", "In Progress", "yellow"),
                         "Done": ("10001", "done", "Done", "green")}
        self.workflow = [("11", "To Do", "To Do"), ("21", "Start progress", "In Progress"), ("31", "Done", "Done")]
        self.issues: list[dict[str, Any]] = []
        self._failures: deque[_Failure] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._clock = 1_714_000_000
        self._seed()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeJiraServer:
        httpd = FakeHTTPServer(("127.0.0.1", 0), DelegatingHandler)
        httpd.fake = self
        return self._serve(httpd, name="fake-jira")

    # ------------------------------------------------------------------ data
    def _seed(self) -> None:
        for number in range(1, 8):
            self.add_issue("ENG", f"Engineering task {number}", status="In Progress" if number % 3 == 0 else "To Do",
                           assignee=self.olivia if number % 2 else self.max, description=f"Details of task {number}.")
        self.add_issue("OPS", "Rotate the database password", issue_type="Bug", status="Done")
        self.add_issue("OPS", "Renew the TLS certificate", labels=["security"])

    def add_issue(self, project: str, summary: str, *, issue_type: str = "Task", status: str = "To Do",
                  assignee: str | None = None, description: str = "", labels: list[str] | None = None,
                  description_adf: dict | None = None) -> dict[str, Any]:
        self._clock += 3600
        number = 1 + sum(1 for i in self.issues if i["project"] == project)
        issue = {"id": str(10000 + len(self.issues) + 1), "key": f"{project}-{number}", "project": project,
                 "type": issue_type, "status": status, "summary": summary, "assignee": assignee,
                 "reporter": self.olivia, "priority": "Medium", "labels": list(labels or []),
                 "description": description_adf if description_adf is not None else (adf(description)
                                                                                      if description else None),
                 "created": self._clock, "updated": self._clock, "comments": []}
        self.issues.append(issue)
        return issue

    def issue(self, key: str) -> dict[str, Any]:
        return next(i for i in self.issues if i["key"] == key)

    # ------------------------------------------------------------------ credentials and scripting
    def issue_api_token(self, email: str = "olivia@example.com", account_id: str | None = None) -> str:
        token = "ATATT3x" + secrets.token_urlsafe(24)
        self.api_tokens[(email, token)] = account_id or self.olivia
        return token

    def revoke_api_token(self, token: str) -> None:
        for key in [k for k in self.api_tokens if k[1] == token]:
            del self.api_tokens[key]

    def expire(self, token: str) -> None:
        with self._lock:
            self.tokens[token].expires_at = time.time() - 1

    def revoke_grant(self, account_id: str | None = None) -> None:
        """The person removed the app's access (Atlassian account → Connected apps)."""
        account_id = account_id or self.olivia
        with self._lock:
            for token in self.tokens.values():
                if token.account_id == account_id:
                    token.revoked = True
            for key in [k for k, t in self._refresh_tokens.items() if t.account_id == account_id]:
                del self._refresh_tokens[key]

    def rate_limit(self, match: str = "", *, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` requests whose path contains `match` get HTTP 429 with Retry-After."""
        for _ in range(times):
            self._failures.append(_Failure(match, 429, {"Retry-After": str(retry_after)},
                                           {"errorMessages": ["Rate limit exceeded."], "errors": {}}))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, fragment: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if fragment in r.path and (method is None or r.method == method)]

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------------ serving
    def _handle(self, handler: DelegatingHandler) -> None:
        split = urlsplit(handler.path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        body: Any = None
        if raw and headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = ValueError
        elif raw:
            body = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        recorded = RecordedRequest(handler.command, split.path, query, headers, body)
        with self._lock:
            self._requests.append(recorded)
        try:
            if body is ValueError:
                raise _bad(400, "Unexpected character in the JSON request body.")
            self._fail_if_scripted(split.path)
            self._route(handler, recorded)
        except _Reply as reply:
            self._send(handler, reply.status, reply.body, reply.headers)

    def _fail_if_scripted(self, path: str) -> None:
        with self._lock:
            for failure in self._failures:
                if failure.match in path:
                    self._failures.remove(failure)
                    raise _Reply(failure.status, failure.body, failure.headers)

    def _route(self, handler: DelegatingHandler, request: RecordedRequest) -> None:
        path, verb = request.path, request.method
        if path == "/authorize" and verb == "GET":
            return self._authorize(handler, request.query)
        if path == "/oauth/token" and verb == "POST":
            raise self._token_endpoint(request)
        if path == "/oauth/token/accessible-resources" and verb == "GET":
            token = self._bearer(request)
            raise _Reply(200, [{"id": self.cloud_id, "name": self.site_name, "url": self.url,
                                "scopes": sorted(token.scopes & JIRA_SCOPES),
                                "avatarUrl": "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/"
                                             "rocket.png"}])
        prefix = f"/ex/jira/{self.cloud_id}"
        if path.startswith("/ex/jira/"):
            token = self._bearer(request)
            if not path.startswith(prefix + "/"):
                raise _Reply(404, {"code": 404, "message": "Not Found"})
            raise self._rest(request, path[len(prefix):], token.account_id, token.scopes, base=self.url + prefix)
        if path.startswith("/rest/api/3/"):
            raise self._rest(request, path, self._basic(request), None, base=self.url)
        raise _Reply(404, {"errorMessages": ["null for uri: " + path], "errors": {}})

    def _bearer(self, request: RecordedRequest) -> OAuthToken:
        value = request.headers.get("authorization", "")
        with self._lock:
            token = self.tokens.get(value[7:]) if value.lower().startswith("bearer ") else None
        if token is None or token.revoked or token.expires_at <= time.time():
            raise _Reply(401, {"code": 401, "message": "Unauthorized"})
        return token

    def _basic(self, request: RecordedRequest) -> str:
        value = request.headers.get("authorization", "")
        if value.lower().startswith("basic "):
            try:
                email, _, token = base64.b64decode(value[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                email, token = "", ""
            account = self.api_tokens.get((email, token))
            if account:
                return account
        raise _Reply(401, "Client must be authenticated to access this resource.", {"Content-Type": "text/plain"})

    # ------------------------------------------------------------------ REST API v3
    def _rest(self, request: RecordedRequest, path: str, account: str, scopes: frozenset[str] | None,
              *, base: str) -> _Reply:
        def need(scope: str) -> None:
            if scopes is not None and scope not in scopes:
                raise _Reply(401, {"code": 401, "message": "Unauthorized; scope does not match"})

        verb = request.method
        if path == "/rest/api/3/myself" and verb == "GET":
            need("read:jira-user")
            return _Reply(200, self._user(account, base) | {"accountType": "atlassian", "timeZone": "Europe/Berlin",
                                                            "locale": "en_US", "groups": {"size": 1, "items": []}})
        if path == "/rest/api/3/search/jql" and verb in ("GET", "POST"):
            need("read:jira-work")
            return self._search(request, account, base)
        if path == "/rest/api/3/issue" and verb == "POST":
            need("write:jira-work")
            return self._create(request.body, account, base)
        match = re.fullmatch(r"/rest/api/3/issue/([^/]+)(/transitions|/comment)?", path)
        if match is None:
            return _Reply(404, {"errorMessages": ["null for uri: " + base + path], "errors": {}})
        issue = next((i for i in self.issues if match.group(1) in (i["key"], i["id"])), None)
        if issue is None:
            return _bad(404, NOT_FOUND)
        tail = match.group(2)
        if tail is None and verb == "GET":
            need("read:jira-work")
            wanted = [f for f in (request.query.get("fields") or "*all").split(",") if f]
            return _Reply(200, self._render(issue, wanted, base))
        if tail == "/transitions" and verb == "GET":
            need("read:jira-work")
            return _Reply(200, {"expand": "transitions", "transitions": self._transitions(issue)})
        if tail == "/transitions" and verb == "POST":
            need("write:jira-work")
            return self._transition(issue, request.body, account)
        if tail == "/comment" and verb == "POST":
            need("write:jira-work")
            body = (request.body or {}).get("body") if isinstance(request.body, dict) else None
            if not self._is_adf(body):
                return _Reply(400, {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}})
            comment = self._comment(issue, body, account)
            return _Reply(201, self._render_comment(issue, comment, base))
        return _Reply(405, {"errorMessages": ["Method Not Allowed"], "errors": {}})

    @staticmethod
    def _is_adf(value: Any) -> bool:
        return isinstance(value, dict) and value.get("type") == "doc" and value.get("version") == 1 \
            and isinstance(value.get("content"), list)

    def _user(self, account: str | None, base: str) -> dict[str, Any] | None:
        if account is None:
            return None
        person = self.users[account]
        return {"self": f"{base}/rest/api/3/user?accountId={account}", "accountId": account,
                "emailAddress": person["emailAddress"], "displayName": person["displayName"], "active": True,
                "avatarUrls": {"48x48": f"https://avatar.example/{account}.png"}, "timeZone": "Europe/Berlin",
                "accountType": "atlassian"}

    def _status(self, name: str, base: str) -> dict[str, Any]:
        status_id, category, category_name, color = self.statuses[name]
        return {"self": f"{base}/rest/api/3/status/{status_id}", "description": "", "iconUrl": "",
                "name": name, "id": status_id,
                "statusCategory": {"self": f"{base}/rest/api/3/statuscategory/{category}", "id": 2,
                                   "key": category, "colorName": color, "name": category_name}}

    def _render_comment(self, issue: dict[str, Any], comment: dict[str, Any], base: str) -> dict[str, Any]:
        author = self._user(comment["author"], base)
        return {"self": f"{base}/rest/api/3/issue/{issue['id']}/comment/{comment['id']}", "id": comment["id"],
                "author": author, "body": comment["body"], "updateAuthor": author,
                "created": _stamp(comment["created"]), "updated": _stamp(comment["created"]), "jsdPublic": True}

    def _render(self, issue: dict[str, Any], wanted: list[str], base: str) -> dict[str, Any]:
        project = self.projects[issue["project"]]
        comments = [self._render_comment(issue, c, base) for c in issue["comments"]]
        every = {
            "summary": issue["summary"],
            "status": self._status(issue["status"], base),
            "issuetype": {"self": f"{base}/rest/api/3/issuetype/{self.issue_types[issue['type']]}",
                          "id": self.issue_types[issue["type"]], "description": "", "iconUrl": "",
                          "name": issue["type"], "subtask": False, "hierarchyLevel": 0},
            "priority": {"self": f"{base}/rest/api/3/priority/3", "iconUrl": "", "name": issue["priority"], "id": "3"},
            "assignee": self._user(issue["assignee"], base),
            "reporter": self._user(issue["reporter"], base),
            "created": _stamp(issue["created"]),
            "updated": _stamp(issue["updated"]),
            "description": issue["description"],
            "labels": issue["labels"],
            "project": {"self": f"{base}/rest/api/3/project/{project['id']}", "id": project["id"],
                        "key": issue["project"], "name": project["name"], "projectTypeKey": "software",
                        "simplified": False},
            "comment": {"comments": comments, "self": f"{base}/rest/api/3/issue/{issue['id']}/comment",
                        "maxResults": len(comments), "total": len(comments), "startAt": 0},
        }
        rendered: dict[str, Any] = {"expand": "renderedFields,names,schema,operations,editmeta,changelog",
                                    "id": issue["id"], "self": f"{base}/rest/api/3/issue/{issue['id']}",
                                    "key": issue["key"]}
        if wanted == ["id"] or not wanted:
            return {"id": issue["id"]}
        if "*all" in wanted or "*navigable" in wanted:
            rendered["fields"] = every
        else:
            rendered["fields"] = {name: every[name] for name in wanted if name in every}
        return rendered

    # search -----------------------------------------------------------------------------------
    def _search(self, request: RecordedRequest, account: str, base: str) -> _Reply:
        if request.method == "POST":
            body = request.body if isinstance(request.body, dict) else {}
            jql, token = body.get("jql"), body.get("nextPageToken")
            fields, max_results = body.get("fields") or ["id"], body.get("maxResults", 50)
        else:
            jql, token = request.query.get("jql"), request.query.get("nextPageToken")
            fields = [f for f in (request.query.get("fields") or "id").split(",") if f]
            max_results = request.query.get("maxResults", 50)
        try:
            max_results = int(max_results)
        except (TypeError, ValueError):
            return _bad(400, "The maxResults parameter must be an integer.")
        if not isinstance(jql, str):
            return _bad(400, "The JQL query is required.")
        found = self._jql(jql, account)
        start = 0
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(str(token).encode()))
                start = int(decoded["offset"])
                assert decoded["jql"] == hashlib.sha1(jql.encode()).hexdigest()[:12]
            except (ValueError, KeyError, TypeError, AssertionError):
                return _bad(400, "The provided next page token is invalid or expired.")
        size = max(1, min(max_results, self.page_cap, 5000))
        page = found[start:start + size]
        answer: dict[str, Any] = {"issues": [self._render(i, fields, base) for i in page],
                                  "isLast": start + size >= len(found)}
        if not answer["isLast"]:
            answer["nextPageToken"] = base64.urlsafe_b64encode(json.dumps(
                {"offset": start + size, "jql": hashlib.sha1(jql.encode()).hexdigest()[:12]}).encode()).decode()
        return _Reply(200, answer)

    def _jql(self, jql: str, account: str) -> list[dict[str, Any]]:
        text = jql.strip()
        order = re.search(r"\border\s+by\s+(\w+)(?:\s+(asc|desc))?\s*$", text, re.IGNORECASE)
        if order:
            text = text[:order.start()].strip()
        if not text:
            raise _bad(400, "Unbounded JQL queries are not allowed here. Please add a search restriction to your "
                            "query.")
        found = list(self.issues)
        for clause in re.split(r"\s+and\s+", text, flags=re.IGNORECASE):
            found = self._clause(clause.strip(), found, account)
        key, direction = ("key", "desc") if order is None else (order.group(1).lower(),
                                                                (order.group(2) or "asc").lower())
        sorters = {"key": lambda i: (i["project"], int(i["key"].split("-")[1])), "created": lambda i: i["created"],
                   "updated": lambda i: i["updated"]}
        if key not in sorters:
            raise _bad(400, f"Field '{key}' does not exist or you do not have permission to view it.")
        return sorted(found, key=sorters[key], reverse=direction == "desc")

    def _clause(self, clause: str, found: list[dict[str, Any]], account: str) -> list[dict[str, Any]]:
        match = re.fullmatch(r"(\w+)\s*(!=|=|~|not\s+in|in)\s*(.+)", clause, re.IGNORECASE)
        if match is None:
            raise _bad(400, f"Error in the JQL Query: Expecting operator but got '{clause[:30]}'. (line 1, "
                            "character 1)")
        name, op, raw = match.group(1).lower(), re.sub(r"\s+", " ", match.group(2).lower()), match.group(3).strip()
        values = [v.strip().strip("\"'") for v in raw.strip("()").split(",")] if op in ("in", "not in") \
            else [raw.strip("\"'")]
        getters = {
            "project": lambda i: [i["project"], self.projects[i["project"]]["name"]],
            "key": lambda i: [i["key"]], "issuekey": lambda i: [i["key"]],
            "status": lambda i: [i["status"]], "issuetype": lambda i: [i["type"]], "type": lambda i: [i["type"]],
            "assignee": lambda i: [i["assignee"] or "EMPTY"], "labels": lambda i: i["labels"] or ["EMPTY"],
            "summary": lambda i: [i["summary"]], "text": lambda i: [i["summary"], json.dumps(i["description"])],
        }
        if name not in getters:
            raise _bad(400, f"Field '{name}' does not exist or you do not have permission to view it.")
        values = [account if v.lower() == "currentuser()" else ("EMPTY" if v.upper() in ("EMPTY", "NULL") else v)
                  for v in values]
        if name == "project":
            known = {k.lower() for k in self.projects} | {p["name"].lower() for p in self.projects.values()}
            for value in values:
                if value.lower() not in known:
                    raise _bad(400, f"The value '{value}' does not exist for the field 'project'.")
        if op == "~":
            needle = values[0].lower()
            return [i for i in found if any(needle in str(v).lower() for v in getters[name](i))]
        wanted = {v.lower() for v in values}
        hit = [i for i in found if {str(v).lower() for v in getters[name](i)} & wanted]
        return hit if op in ("=", "in") else [i for i in found if i not in hit]

    # writes -----------------------------------------------------------------------------------
    def _create(self, body: Any, account: str, base: str) -> _Reply:
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return _bad(400, "Issue must have fields.")
        errors: dict[str, str] = {}
        project = fields.get("project") or {}
        key = project.get("key") or next((k for k, p in self.projects.items() if p["id"] == project.get("id")), None)
        if key not in self.projects:
            errors["project"] = "Specify a valid project ID or key"
        kind = fields.get("issuetype") or {}
        type_name = kind.get("name") or next((n for n, i in self.issue_types.items() if i == kind.get("id")), None)
        if type_name not in self.issue_types:
            errors["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        if "description" in fields and fields["description"] is not None and not self._is_adf(fields["description"]):
            errors["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
        for extra in sorted(set(fields) - {"project", "issuetype", "summary", "description", "labels"}):
            errors[extra] = f"Field '{extra}' cannot be set. It is not on the appropriate screen, or unknown."
        if errors:
            return _Reply(400, {"errorMessages": [], "errors": errors})
        issue = self.add_issue(key, summary.strip(), issue_type=type_name, labels=fields.get("labels") or [],
                               description_adf=fields.get("description"))
        issue["reporter"] = account
        return _Reply(201, {"id": issue["id"], "key": issue["key"], "self": f"{base}/rest/api/3/issue/{issue['id']}"})

    def _transitions(self, issue: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": tid, "name": name, "to": self._status(to, self.url), "hasScreen": False,
                 "isGlobal": True, "isInitial": False, "isAvailable": True, "isConditional": False, "isLooped": False}
                for tid, name, to in self.workflow if to != issue["status"]]

    def _transition(self, issue: dict[str, Any], body: Any, account: str) -> _Reply:
        wanted = (body or {}).get("transition") if isinstance(body, dict) else None
        transition_id = str((wanted or {}).get("id") or "")
        if not transition_id:
            return _bad(400, "Missing 'transition' identifier")
        move = next((t for t in self._transitions(issue) if t["id"] == transition_id), None)
        if move is None:
            return _bad(400, f"Transition id '{transition_id}' is not valid for this issue.")
        issue["status"] = move["to"]["name"]
        self._clock += 60
        issue["updated"] = self._clock
        for update in ((body.get("update") or {}).get("comment") or []):
            if self._is_adf((update.get("add") or {}).get("body")):
                self._comment(issue, update["add"]["body"], account)
        return _Reply(204)

    def _comment(self, issue: dict[str, Any], body: dict[str, Any], account: str) -> dict[str, Any]:
        self._clock += 60
        comment = {"id": str(20000 + sum(len(i["comments"]) for i in self.issues) + 1), "author": account,
                   "body": body, "created": self._clock}
        issue["comments"].append(comment)
        issue["updated"] = self._clock
        return comment

    # ------------------------------------------------------------------ OAuth 2.0 (3LO)
    def _authorize(self, handler: DelegatingHandler, query: dict[str, str]) -> None:
        redirect_uri = query.get("redirect_uri", "")
        if (query.get("client_id") != self.client_id or query.get("audience") != "api.atlassian.com"
                or query.get("response_type") != "code" or not redirect_uri):
            raise _Reply(400, {"error": "invalid_request", "error_description": "Invalid authorization request"})
        requested = frozenset(query.get("scope", "").split())
        granted = requested if self.grant_only is None else requested & frozenset(self.grant_only)
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(redirect_uri=redirect_uri, scopes=granted,
                                      challenge=query.get("code_challenge", ""),
                                      method=query.get("code_challenge_method", ""))
        location = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}" + urlencode(
            {"code": code, "state": query.get("state", "")})
        raise _Reply(302, None, {"Location": location})

    def _token_endpoint(self, request: RecordedRequest) -> _Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
            return _Reply(401, {"error": "access_denied", "error_description": "Unauthorized"})
        grant = body.get("grant_type")
        if grant == "refresh_token":
            with self._lock:
                old = self._refresh_tokens.pop(str(body.get("refresh_token") or ""), None)
            if old is None:
                return _Reply(403, {"error": "unauthorized_client", "error_description": "refresh_token is invalid"})
            return _Reply(200, self._tokens_for(old.account_id, old.scopes))
        if grant != "authorization_code":
            return _Reply(400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"})
        with self._lock:
            code = self._codes.get(str(body.get("code") or ""))
            if code is None or code.used:
                return _Reply(403, {"error": "invalid_grant", "error_description": "Invalid authorization code"})
            code.used = True
        if code.redirect_uri != body.get("redirect_uri"):
            return _Reply(403, {"error": "invalid_grant", "error_description": "redirect_uri does not match"})
        if code.challenge and (code.method != "S256" or _challenge(str(body.get("code_verifier") or ""))
                               != code.challenge):
            return _Reply(403, {"error": "invalid_grant", "error_description": "Invalid code_verifier"})
        return _Reply(200, self._tokens_for(self.approving_account, code.scopes))

    def issue_oauth_token(self, account_id: str | None = None, scopes: set[str] | frozenset[str] = JIRA_SCOPES) -> str:
        token = "eyJraWQiOiJhdXRoLmF0bGFzc2lhbi5jb20i." + secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = OAuthToken(account_id or self.olivia, frozenset(scopes),
                                            time.time() + self.token_lifetime)
        return token

    def _tokens_for(self, account_id: str, scopes: frozenset[str]) -> dict[str, Any]:
        answer: dict[str, Any] = {"access_token": self.issue_oauth_token(account_id, scopes),
                                  "expires_in": self.token_lifetime, "token_type": "Bearer",
                                  "scope": " ".join(sorted(scopes))}
        if "offline_access" in scopes:  # rotating refresh tokens only with offline_access
            refresh = secrets.token_urlsafe(40)
            with self._lock:
                self._refresh_tokens[refresh] = OAuthToken(account_id, scopes, 0)
            answer["refresh_token"] = refresh
        return answer

    @staticmethod
    def _send(handler: DelegatingHandler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        headers = dict(headers or {})
        if payload is None:
            body = b""
        elif isinstance(payload, str):
            body = payload.encode()
            headers.setdefault("Content-Type", "text/plain;charset=UTF-8")
        else:
            body = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json;charset=UTF-8")
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
