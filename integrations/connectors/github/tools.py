"""GitHub tools: repositories, issues and pull requests (read), comments and new issues (write).

Outputs are compact JSON the model can quote from (number, title, state, author, labels, url...);
lists say whether there is a next page. Bodies written by other people are data, passed on
verbatim but cut to a length, never followed as instructions by this code.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from integrations.connectors.github import client
from integrations.tools import SideEffect, ToolError, tool

if TYPE_CHECKING:
    from integrations.calls import CallContext

TIMEOUT = 30.0
LIST_EXCERPT = 200
BODY_LIMIT = 8000
COMMENT_LIMIT = 2000
MAX_COMMENTS = 30

REPO = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$",
        "description": "The repository as owner/name, e.g. octocat/Hello-World."}
NUMBER = {"type": "integer", "minimum": 1}
PAGE = {"type": "integer", "minimum": 1, "default": 1, "description": "Page of results, from 1."}
PER_PAGE = {"type": "integer", "minimum": 1, "maximum": client.MAX_PER_PAGE, "default": 30,
            "description": f"Results per page (1-{client.MAX_PER_PAGE})."}
STATE = {"type": "string", "enum": ["open", "closed", "all"], "default": "open"}


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


def _compact(item: dict[str, Any]) -> dict[str, Any]:
    """Fields GitHub left empty say nothing; leaving them out keeps long lists short."""
    return {k: v for k, v in item.items() if v is not None}


def _cut(text: str | None, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit].rstrip() + f" … [cut; {len(text) - limit} more characters]"


def _login(user: Any) -> str | None:
    return user.get("login") if isinstance(user, dict) else None


def _labels(item: dict[str, Any]) -> list[str]:
    return [label.get("name") if isinstance(label, dict) else str(label) for label in item.get("labels") or []]


def _owner_name(repo: str) -> str:
    owner, name = repo.split("/", 1)
    return f"/repos/{owner}/{name}"


def _repository(data: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    summary = {
        "full_name": data.get("full_name"), "private": data.get("private"), "description": data.get("description"),
        "language": data.get("language"), "default_branch": data.get("default_branch"),
        "stars": data.get("stargazers_count"), "forks": data.get("forks_count"),
        "open_issues_and_pull_requests": data.get("open_issues_count"), "archived": data.get("archived"),
        "fork": data.get("fork"), "updated_at": data.get("updated_at"), "url": data.get("html_url"),
    }
    if full:
        license_ = data.get("license") or {}
        summary |= {
            "owner": _login(data.get("owner")), "visibility": data.get("visibility"), "topics": data.get("topics"),
            "homepage": data.get("homepage"),
            "license": license_.get("spdx_id") if isinstance(license_, dict) else None,
            "has_issues": data.get("has_issues"), "created_at": data.get("created_at"),
            "pushed_at": data.get("pushed_at"),
            "your_permissions": [k for k, v in (data.get("permissions") or {}).items() if v] or None,
        }
    return _compact(summary)


def _issue(data: dict[str, Any], *, body_limit: int) -> dict[str, Any]:
    issue = {
        "number": data.get("number"), "title": data.get("title"), "state": data.get("state"),
        "state_reason": data.get("state_reason"), "author": _login(data.get("user")), "labels": _labels(data),
        "assignees": [_login(a) for a in data.get("assignees") or []], "comments": data.get("comments"),
        "created_at": data.get("created_at"), "updated_at": data.get("updated_at"),
        "closed_at": data.get("closed_at"), "url": data.get("html_url"),
    }
    milestone = data.get("milestone")
    if isinstance(milestone, dict):
        issue["milestone"] = milestone.get("title")
    if body_limit:
        issue["body"] = _cut(data.get("body"), body_limit)
    return _compact(issue)


def _pull(data: dict[str, Any], *, body_limit: int, full: bool = False) -> dict[str, Any]:
    head, base = data.get("head") or {}, data.get("base") or {}
    pull = {
        "number": data.get("number"), "title": data.get("title"), "state": data.get("state"),
        "draft": data.get("draft"), "author": _login(data.get("user")), "labels": _labels(data),
        "head": head.get("label"), "base": base.get("ref"), "created_at": data.get("created_at"),
        "updated_at": data.get("updated_at"), "closed_at": data.get("closed_at"), "merged_at": data.get("merged_at"),
        "url": data.get("html_url"),
    }
    if full:
        pull |= {key: data.get(key) for key in ("merged", "mergeable", "mergeable_state", "comments",
                                                "review_comments", "commits", "additions", "deletions",
                                                "changed_files")}
        pull["merged_by"] = _login(data.get("merged_by"))
        pull["requested_reviewers"] = [_login(r) for r in data.get("requested_reviewers") or []]
    if body_limit:
        pull["body"] = _cut(data.get("body"), body_limit)
    return _compact(pull)


def _not_visible(repo: str) -> str:
    return (f"repository {repo} not found or not visible with this connection (a private repository needs a "
            "connection whose account can see it)")


def _object(response: Any) -> dict[str, Any]:
    data = response.json()
    if not isinstance(data, dict):
        raise ToolError("GitHub answered with something other than an object")
    return data


def _items(response: Any) -> list[dict[str, Any]]:
    data = response.json()
    if not isinstance(data, list):
        raise ToolError("GitHub answered with something other than a list")
    return [item for item in data if isinstance(item, dict)]


# --------------------------------------------------------------------------------- reading


@tool(
    name="github_list_repositories",
    description=(
        "List the GitHub repositories the connected account can access (its own, those it collaborates on and "
        "its organizations'), most recently updated first. Use the full_name (owner/name) as `repo` in the other "
        "GitHub tools. Paginated: the output says whether there is a next page."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "visibility": {"type": "string", "enum": ["all", "public", "private"], "default": "all"},
            "sort": {"type": "string", "enum": ["updated", "pushed", "created", "full_name"], "default": "updated"},
            "page": PAGE,
            "per_page": PER_PAGE,
        },
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("repo:read",),
)
def list_repositories(call: CallContext, *, visibility: str = "all", sort: str = "updated", page: int = 1,
                      per_page: int = 30) -> str:
    response = client.request(call, "GET", "/user/repos", params={
        "visibility": visibility, "sort": sort, "page": page, "per_page": per_page})
    repositories = [_repository(r) for r in _items(response)]
    return _dump({"repositories": repositories, "count": len(repositories)}
                 | client.pagination(response, page=page, per_page=per_page, tool="github_list_repositories"))


@tool(
    name="github_get_repository",
    description="Get one GitHub repository: description, visibility, default branch, language, topics, license, "
                "stars, open issue count and what the connected account may do in it.",
    input_schema={"type": "object", "properties": {"repo": REPO}, "required": ["repo"], "additionalProperties": False},
    side_effect=SideEffect.READ,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("repo:read",),
)
def get_repository(call: CallContext, *, repo: str) -> str:
    response = client.request(call, "GET", _owner_name(repo), not_found=_not_visible(repo))
    return _dump({"repository": _repository(_object(response), full=True)})


@tool(
    name="github_list_issues",
    description=(
        "List issues of a GitHub repository (not pull requests; use github_list_pull_requests for those), newest "
        "first. Filter by state, labels (all must match) and assignee. Paginated: the output says whether there is "
        "a next page."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "repo": REPO,
            "state": STATE,
            "labels": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 20,
                       "description": "Only issues carrying every one of these labels."},
            "assignee": {"type": "string", "description": "A login, \"none\" for unassigned, or \"*\" for any."},
            "page": PAGE,
            "per_page": PER_PAGE,
        },
        "required": ["repo"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("repo:read",),
)
def list_issues(call: CallContext, *, repo: str, state: str = "open", labels: list[str] | None = None,
                assignee: str | None = None, page: int = 1, per_page: int = 30) -> str:
    response = client.request(call, "GET", f"{_owner_name(repo)}/issues", params={
        "state": state, "labels": ",".join(labels or []), "assignee": assignee, "page": page, "per_page": per_page,
    }, not_found=_not_visible(repo))
    items = _items(response)
    # GitHub's issues endpoint lists pull requests too (each has a `pull_request` key).
    issues = [_issue(i, body_limit=LIST_EXCERPT) for i in items if "pull_request" not in i]
    result: dict[str, Any] = {"repository": repo, "issues": issues, "count": len(issues)}
    skipped = len(items) - len(issues)
    if skipped:
        result["pull_requests_left_out"] = skipped
    return _dump(result | client.pagination(response, page=page, per_page=per_page, tool="github_list_issues"))


@tool(
    name="github_get_issue",
    description="Get one issue of a GitHub repository by number: title, state, author, labels, assignees, body "
                "and the number of comments; with include_comments, also the first comments.",
    input_schema={
        "type": "object",
        "properties": {
            "repo": REPO,
            "number": NUMBER,
            "include_comments": {"type": "boolean", "default": False,
                                 "description": f"Also return the first {MAX_COMMENTS} comments."},
        },
        "required": ["repo", "number"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("repo:read",),
)
def get_issue(call: CallContext, *, repo: str, number: int, include_comments: bool = False) -> str:
    path = f"{_owner_name(repo)}/issues/{number}"
    not_found = f"issue #{number} not found in {repo}, or the repository isn't visible with this connection"
    data = _object(client.request(call, "GET", path, not_found=not_found))
    result: dict[str, Any] = {"issue": _issue(data, body_limit=BODY_LIMIT)}
    if "pull_request" in data:
        result["note"] = f"#{number} is a pull request; github_get_pull_request shows its branches and merge state."
    if include_comments and data.get("comments"):
        response = client.request(call, "GET", f"{path}/comments", params={"per_page": MAX_COMMENTS},
                                  not_found=not_found)
        result["comments"] = [_compact({"author": _login(c.get("user")), "created_at": c.get("created_at"),
                                        "body": _cut(c.get("body"), COMMENT_LIMIT), "url": c.get("html_url")})
                              for c in _items(response)]
        if (data.get("comments") or 0) > len(result["comments"]):
            result["comments_left_out"] = data["comments"] - len(result["comments"])
    return _dump(result)


@tool(
    name="github_list_pull_requests",
    description="List pull requests of a GitHub repository, newest first; filter by state and base branch. "
                "Paginated: the output says whether there is a next page.",
    input_schema={
        "type": "object",
        "properties": {
            "repo": REPO,
            "state": STATE,
            "base": {"type": "string", "minLength": 1, "description": "Only pull requests into this branch."},
            "page": PAGE,
            "per_page": PER_PAGE,
        },
        "required": ["repo"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("repo:read",),
)
def list_pull_requests(call: CallContext, *, repo: str, state: str = "open", base: str | None = None, page: int = 1,
                       per_page: int = 30) -> str:
    response = client.request(call, "GET", f"{_owner_name(repo)}/pulls", params={
        "state": state, "base": base, "page": page, "per_page": per_page}, not_found=_not_visible(repo))
    pulls = [_pull(p, body_limit=LIST_EXCERPT) for p in _items(response)]
    return _dump({"repository": repo, "pull_requests": pulls, "count": len(pulls)}
                 | client.pagination(response, page=page, per_page=per_page, tool="github_list_pull_requests"))


@tool(
    name="github_get_pull_request",
    description="Get one pull request of a GitHub repository by number: title, state, author, head and base "
                "branches, whether it is merged or mergeable, size (commits, additions, deletions, files) and body.",
    input_schema={"type": "object", "properties": {"repo": REPO, "number": NUMBER}, "required": ["repo", "number"],
                  "additionalProperties": False},
    side_effect=SideEffect.READ,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("repo:read",),
)
def get_pull_request(call: CallContext, *, repo: str, number: int) -> str:
    response = client.request(call, "GET", f"{_owner_name(repo)}/pulls/{number}", not_found=(
        f"pull request #{number} not found in {repo} (it may be an issue, not a pull request), or the repository "
        "isn't visible with this connection"))
    return _dump({"pull_request": _pull(_object(response), body_limit=BODY_LIMIT, full=True)})


# --------------------------------------------------------------------------------- writing


def _comment(call: CallContext, *, repo: str, number: int, body: str, pull_request: bool) -> str:
    if not body.strip():
        raise ToolError("the comment is empty; write something in `body`")
    path = f"{_owner_name(repo)}/issues/{number}"
    kind = "pull request" if pull_request else "issue"
    not_found = f"{kind} #{number} not found in {repo}, or the repository isn't visible with this connection"
    # Issues and pull requests share one comment endpoint; check which this number is first, so an
    # agent granted only issues:write can't comment on pull requests (and the other way round).
    target = _object(client.request(call, "GET", path, not_found=not_found))
    if ("pull_request" in target) != pull_request:
        other = "github_comment_on_issue" if pull_request else "github_comment_on_pull_request"
        actual = "an issue" if pull_request else "a pull request"
        raise ToolError(f"#{number} in {repo} is {actual}, not {'a pull request' if pull_request else 'an issue'}; "
                        f"nothing was posted. Use {other} for it")
    response = client.request(call, "POST", f"{path}/comments", json={"body": body}, not_found=(
        f"GitHub would not accept a comment on {kind} #{number} in {repo}: the connection's account can't see the "
        "repository or its token can't write to it"))
    created = _object(response)
    return _dump({"commented": {"repository": repo, "number": number, "kind": kind, "comment_id": created.get("id"),
                                "author": _login(created.get("user")), "url": created.get("html_url")}})


COMMENT_INPUT = {
    "type": "object",
    "properties": {"repo": REPO, "number": NUMBER, "body": {"type": "string", "minLength": 1, "maxLength": 65536}},
    "required": ["repo", "number", "body"],
    "additionalProperties": False,
}


@tool(
    name="github_comment_on_issue",
    description="Post a comment (GitHub Markdown) on an issue of a GitHub repository, as the connected account. "
                "Refuses pull requests; use github_comment_on_pull_request for those.",
    input_schema=COMMENT_INPUT,
    side_effect=SideEffect.WRITE,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("issues:write",),
)
def comment_on_issue(call: CallContext, *, repo: str, number: int, body: str) -> str:
    return _comment(call, repo=repo, number=number, body=body, pull_request=False)


@tool(
    name="github_comment_on_pull_request",
    description="Post a comment (GitHub Markdown) on a pull request's conversation in a GitHub repository, as the "
                "connected account. Refuses issues; use github_comment_on_issue for those.",
    input_schema=COMMENT_INPUT,
    side_effect=SideEffect.WRITE,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("pull_requests:write",),
)
def comment_on_pull_request(call: CallContext, *, repo: str, number: int, body: str) -> str:
    return _comment(call, repo=repo, number=number, body=body, pull_request=True)


@tool(
    name="github_create_issue",
    description="Open a new issue in a GitHub repository, as the connected account. Labels and assignees are "
                "applied only if the account has push access to the repository (GitHub drops them otherwise).",
    input_schema={
        "type": "object",
        "properties": {
            "repo": REPO,
            "title": {"type": "string", "minLength": 1, "maxLength": 256},
            "body": {"type": "string", "maxLength": 65536, "description": "GitHub Markdown."},
            "labels": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 20},
            "assignees": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 10},
        },
        "required": ["repo", "title"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.WRITE,
    timeout_seconds=TIMEOUT,
    integration="github",
    scopes=("issues:write",),
)
def create_issue(call: CallContext, *, repo: str, title: str, body: str = "", labels: list[str] | None = None,
                 assignees: list[str] | None = None) -> str:
    if not title.strip():
        raise ToolError("the issue needs a title")
    payload: dict[str, Any] = {"title": title}
    if body:
        payload["body"] = body
    if labels:
        payload["labels"] = labels
    if assignees:
        payload["assignees"] = assignees
    response = client.request(call, "POST", f"{_owner_name(repo)}/issues", json=payload, not_found=(
        f"GitHub would not open an issue in {repo}: the repository isn't visible with this connection or its "
        "token can't write to it"))
    created = _issue(_object(response), body_limit=0)
    dropped = [name for name, asked, got in (("labels", labels, created["labels"]),
                                             ("assignees", assignees, created["assignees"])) if asked and not got]
    result: dict[str, Any] = {"created": created}
    if dropped:
        result["note"] = (f"GitHub did not apply the {' and '.join(dropped)}: the connected account has no push "
                          f"access to {repo}")
    return _dump(result)
