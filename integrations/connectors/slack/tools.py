"""Slack tools: list channels, read a channel's history, post a message (as the connected person
with a user token, or as the bot with a bot token)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from integrations.connectors.slack.client import api, paged
from integrations.tools import SideEffect, ToolError, tool

if TYPE_CHECKING:
    from integrations.calls import CallContext

_TS = re.compile(r"^\d{1,12}(\.\d{1,6})?$")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _slack_ts(value: str, name: str) -> str:
    """Slack timestamps are epoch seconds as text; an ISO 8601 time is accepted too."""
    value = value.strip()
    if not value or _TS.match(value):
        return value
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ToolError(f"{name} must be a Slack timestamp such as 1700000000.000100 or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{when.timestamp():.6f}"


def _time(ts: str) -> str | None:
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (TypeError, ValueError):
        return None


@tool(
    name="slack_list_channels",
    description="List Slack channels in the connected workspace: id, name, topic, member count and whether the "
                "connected account is a member. Use the returned id with slack_read_history or slack_post_message. "
                "Pass next_cursor back as cursor for the next page.",
    input_schema={
        "type": "object",
        "properties": {
            "include_private": {"type": "boolean", "default": False,
                                "description": "Also list private channels the person is in (needs groups:read)."},
            "include_archived": {"type": "boolean", "default": False},
            "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
            "cursor": {"type": "string", "description": "next_cursor from a previous call."},
        },
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=30,
    integration="slack",
    scopes=("channels:read",),
)
def list_channels(call: CallContext, *, include_private: bool = False, include_archived: bool = False,
                  limit: int = 100, cursor: str = "") -> str:
    if include_private:
        call.require("groups:read")
    channels, next_cursor = paged(
        call, "conversations.list", "channels", limit=limit, cursor=cursor,
        params={"types": "public_channel,private_channel" if include_private else "public_channel",
                "exclude_archived": "false" if include_archived else "true"},
    )
    return _json({
        "channels": [{
            "id": c.get("id"), "name": c.get("name"), "private": bool(c.get("is_private")),
            "archived": bool(c.get("is_archived")), "member": bool(c.get("is_member")),
            "members": c.get("num_members"), "topic": (c.get("topic") or {}).get("value") or "",
            "purpose": (c.get("purpose") or {}).get("value") or "",
        } for c in channels],
        "next_cursor": next_cursor or None,
    })


@tool(
    name="slack_read_history",
    description="Read messages from a Slack channel, newest first: time, author id, text and thread info. "
                "Narrow with oldest/latest (a Slack timestamp or an ISO 8601 time); pass next_cursor back as "
                "cursor for older messages.",
    input_schema={
        "type": "object",
        "properties": {
            "channel": {"type": "string", "minLength": 1, "description": "Channel id, e.g. C0123ABCD."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
            "cursor": {"type": "string"},
            "oldest": {"type": "string", "description": "Only messages after this time."},
            "latest": {"type": "string", "description": "Only messages before this time."},
        },
        "required": ["channel"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=30,
    integration="slack",
    scopes=("channels:history",),
)
def read_history(call: CallContext, *, channel: str, limit: int = 50, cursor: str = "", oldest: str = "",
                 latest: str = "") -> str:
    messages, next_cursor = paged(
        call, "conversations.history", "messages", limit=limit, cursor=cursor,
        params={"channel": channel.strip(), "oldest": _slack_ts(oldest, "oldest"),
                "latest": _slack_ts(latest, "latest")},
    )
    shown = []
    for m in messages:
        item = {"ts": m.get("ts"), "time": _time(str(m.get("ts"))), "user": m.get("user") or m.get("bot_id"),
                "text": m.get("text") or ""}
        for key in ("subtype", "thread_ts", "reply_count"):
            if m.get(key):
                item[key] = m[key]
        shown.append(item)
    return _json({"channel": channel, "messages": shown, "has_more": bool(next_cursor),
                  "next_cursor": next_cursor or None})


@tool(
    name="slack_post_message",
    description="Post a message to a Slack channel as the connected account (Slack mrkdwn formatting). "
                "To reply in a thread, pass the parent message's ts as thread_ts.",
    input_schema={
        "type": "object",
        "properties": {
            "channel": {"type": "string", "minLength": 1, "description": "Channel id, e.g. C0123ABCD."},
            "text": {"type": "string", "minLength": 1, "maxLength": 40000},
            "thread_ts": {"type": "string", "description": "Reply in this message's thread."},
        },
        "required": ["channel", "text"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.WRITE,
    timeout_seconds=30,
    integration="slack",
    scopes=("chat:write",),
)
def post_message(call: CallContext, *, channel: str, text: str, thread_ts: str = "") -> str:
    body = {"channel": channel.strip(), "text": text}
    if thread_ts.strip():
        body["thread_ts"] = _slack_ts(thread_ts, "thread_ts")
    posted = api(call, "chat.postMessage", body=body)
    return _json({"posted": True, "channel": posted.get("channel"), "ts": posted.get("ts"),
                  "thread_ts": body.get("thread_ts")})
