"""Jira tools: search with JQL, read an issue, create one, list and perform workflow transitions,
comment. Searching uses the enhanced search (`POST /rest/api/3/search/jql`, `nextPageToken`
paging), which replaced `/rest/api/3/search` and its startAt paging in 2025."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from integrations.connectors.jira.client import (
    ISSUE_KEY,
    browse_url,
    from_adf,
    issue_path,
    request,
    to_adf,
)
from integrations.tools import SideEffect, ToolError, tool

if TYPE_CHECKING:
    from integrations.calls import CallContext

SEARCH_FIELDS = ["summary", "status", "issuetype", "priority", "assignee", "updated"]
ISSUE_FIELDS = ["summary", "status", "issuetype", "priority", "assignee", "reporter", "created", "updated",
                "labels", "description", "comment", "project"]
KEY_SCHEMA = {"type": "string", "pattern": ISSUE_KEY, "description": "Issue key, e.g. ENG-42."}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _name(value: Any, key: str = "name") -> str | None:
    return value.get(key) if isinstance(value, dict) else None


def _summary(issue: dict[str, Any]) -> dict[str, Any]:
    fields = issue.get("fields") or {}
    return {"key": issue.get("key"), "summary": fields.get("summary"), "status": _name(fields.get("status")),
            "type": _name(fields.get("issuetype")), "priority": _name(fields.get("priority")),
            "assignee": _name(fields.get("assignee"), "displayName"), "updated": fields.get("updated")}


@tool(
    name="jira_search_issues",
    description="Search Jira issues with JQL, e.g. 'project = ENG AND status = \"In Progress\" ORDER BY updated "
                "DESC' or 'assignee = currentUser()'. Returns key, summary, status, type, priority, assignee. The "
                "query must restrict the search (a bare ORDER BY is refused). Pass next_page_token back for more.",
    input_schema={
        "type": "object",
        "properties": {
            "jql": {"type": "string", "minLength": 1, "maxLength": 4000},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            "next_page_token": {"type": "string", "description": "next_page_token from a previous search."},
        },
        "required": ["jql"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=30,
    integration="jira",
    scopes=("read:jira-work",),
)
def search_issues(call: CallContext, *, jql: str, max_results: int = 20, next_page_token: str = "") -> str:
    issues: list[dict[str, Any]] = []
    token = next_page_token or None
    is_last = False
    for _ in range(20):  # Jira may answer fewer than asked; ask for the rest, never more
        body: dict[str, Any] = {"jql": jql, "maxResults": max_results - len(issues), "fields": SEARCH_FIELDS}
        if token:
            body["nextPageToken"] = token
        page = request(call, "POST", "/rest/api/3/search/jql", json=body, idempotent=True) or {}
        issues.extend(page.get("issues") or [])
        token = page.get("nextPageToken")
        is_last = bool(page.get("isLast", not token))
        if is_last or not token or len(issues) >= max_results:
            break
    return _json({"issues": [_summary(i) for i in issues[:max_results]],
                  "next_page_token": None if is_last else token, "is_last": is_last})


@tool(
    name="jira_get_issue",
    description="Read one Jira issue: summary, status, type, priority, assignee, reporter, labels, dates, the "
                "description as text and the latest comments.",
    input_schema={
        "type": "object",
        "properties": {"issue_key": KEY_SCHEMA,
                       "comments": {"type": "integer", "minimum": 0, "maximum": 50, "default": 10,
                                    "description": "How many of the latest comments to include."}},
        "required": ["issue_key"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=30,
    integration="jira",
    scopes=("read:jira-work",),
)
def get_issue(call: CallContext, *, issue_key: str, comments: int = 10) -> str:
    issue = request(call, "GET", issue_path(issue_key), params={"fields": ",".join(ISSUE_FIELDS)}) or {}
    fields = issue.get("fields") or {}
    thread = ((fields.get("comment") or {}).get("comments") or [])[-comments:] if comments else []
    return _json(_summary(issue) | {
        "project": _name(fields.get("project"), "key"),
        "reporter": _name(fields.get("reporter"), "displayName"),
        "created": fields.get("created"),
        "labels": fields.get("labels") or [],
        "description": from_adf(fields.get("description")) if fields.get("description") else "",
        "comments": [{"author": _name(c.get("author"), "displayName"), "created": c.get("created"),
                      "body": from_adf(c.get("body"))} for c in thread],
        "url": browse_url(call, str(issue.get("key") or issue_key)),
    })


@tool(
    name="jira_create_issue",
    description="Create a Jira issue in a project (by its key, e.g. ENG) with a summary and an optional plain-text "
                "description (blank lines separate paragraphs). Returns the new issue's key and link.",
    input_schema={
        "type": "object",
        "properties": {
            "project_key": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,19}$"},
            "summary": {"type": "string", "minLength": 1, "maxLength": 255},
            "issue_type": {"type": "string", "minLength": 1, "default": "Task",
                           "description": "Task, Bug, Story... as named in the project."},
            "description": {"type": "string", "maxLength": 30000},
            "labels": {"type": "array", "items": {"type": "string", "pattern": "^\\S+$"}, "maxItems": 10},
        },
        "required": ["project_key", "summary"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.WRITE,
    timeout_seconds=30,
    integration="jira",
    scopes=("write:jira-work",),
)
def create_issue(call: CallContext, *, project_key: str, summary: str, issue_type: str = "Task",
                 description: str = "", labels: list[str] | None = None) -> str:
    fields: dict[str, Any] = {"project": {"key": project_key.upper()}, "issuetype": {"name": issue_type},
                              "summary": summary.strip()}
    if description.strip():
        fields["description"] = to_adf(description)
    if labels:
        fields["labels"] = labels
    created = request(call, "POST", "/rest/api/3/issue", json={"fields": fields}) or {}
    return _json({"created": True, "key": created.get("key"), "id": created.get("id"),
                  "url": browse_url(call, str(created.get("key")))})


def _transitions(call: CallContext, issue_key: str) -> list[dict[str, Any]]:
    found = request(call, "GET", issue_path(issue_key, "/transitions")) or {}
    return [{"id": str(t.get("id")), "name": t.get("name"), "to": _name(t.get("to"))}
            for t in found.get("transitions") or []]


@tool(
    name="jira_list_transitions",
    description="List the workflow transitions available for a Jira issue now (id, name and the status each leads "
                "to). Use one with jira_transition_issue.",
    input_schema={"type": "object", "properties": {"issue_key": KEY_SCHEMA}, "required": ["issue_key"],
                  "additionalProperties": False},
    side_effect=SideEffect.READ,
    timeout_seconds=30,
    integration="jira",
    scopes=("read:jira-work",),
)
def list_transitions(call: CallContext, *, issue_key: str) -> str:
    return _json({"issue": issue_key.upper(), "transitions": _transitions(call, issue_key)})


@tool(
    name="jira_transition_issue",
    description="Move a Jira issue through its workflow: give a transition's id or name, or the status to move to "
                "(e.g. 'In Progress', 'Done'). Optionally add a comment with the transition.",
    input_schema={
        "type": "object",
        "properties": {
            "issue_key": KEY_SCHEMA,
            "transition": {"type": "string", "minLength": 1, "description": "Transition id or name, or target status."},
            "comment": {"type": "string", "maxLength": 30000},
        },
        "required": ["issue_key", "transition"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.WRITE,
    timeout_seconds=30,
    integration="jira",
    scopes=("read:jira-work", "write:jira-work"),
)
def transition_issue(call: CallContext, *, issue_key: str, transition: str, comment: str = "") -> str:
    available = _transitions(call, issue_key)
    wanted = transition.strip().lower()
    move = (next((t for t in available if t["id"] == wanted), None)
            or next((t for t in available if str(t["name"]).lower() == wanted), None)
            or next((t for t in available if str(t["to"]).lower() == wanted), None))
    if move is None:
        options = ", ".join(f"{t['name']} (id {t['id']}, to {t['to']})" for t in available) or "none"
        raise ToolError(f"{issue_key.upper()} has no transition {transition!r} now; available: {options}")
    body: dict[str, Any] = {"transition": {"id": move["id"]}}
    if comment.strip():
        body["update"] = {"comment": [{"add": {"body": to_adf(comment)}}]}
    request(call, "POST", issue_path(issue_key, "/transitions"), json=body)
    return _json({"issue": issue_key.upper(), "transition": move["name"], "status": move["to"]})


@tool(
    name="jira_add_comment",
    description="Add a comment (plain text; blank lines separate paragraphs) to a Jira issue.",
    input_schema={
        "type": "object",
        "properties": {"issue_key": KEY_SCHEMA, "body": {"type": "string", "minLength": 1, "maxLength": 30000}},
        "required": ["issue_key", "body"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.WRITE,
    timeout_seconds=30,
    integration="jira",
    scopes=("write:jira-work",),
)
def add_comment(call: CallContext, *, issue_key: str, body: str) -> str:
    if not body.strip():
        raise ToolError("the comment is empty")
    added = request(call, "POST", issue_path(issue_key, "/comment"), json={"body": to_adf(body)}) or {}
    return _json({"issue": issue_key.upper(), "comment_id": added.get("id"), "created": added.get("created"),
                  "url": browse_url(call, issue_key.upper())})
