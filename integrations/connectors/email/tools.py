"""The Email connector's tools: send a message over SMTP, list/search and read messages over IMAP.

Everything the model passes is structured: addresses are parsed and validated one by one before a
message is built (so no header can be smuggled in), and a search is assembled from fields, each
value quoted by `transport.Search`, never from raw IMAP text. Reading never marks mail as read.
A login the server refuses marks the connection "needs re-authorization" (HTTP connectors get the
same through Outbound's 401 handling, which mail doesn't pass through).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid, parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from integrations.builtin.web_fetch import html_to_text
from integrations.connectors.email import transport
from integrations.http import Unauthorized
from integrations.tools import SideEffect, ToolError, tool

if TYPE_CHECKING:
    from integrations.calls import CallContext

MAX_RECIPIENTS = 50
MAX_SEND_CHARS = 100_000
SNIPPET_BYTES = 16_384  # enough for the headers and the start of the text of most messages
SNIPPET_CHARS = 200
READ_CHARS = 20_000
MAX_PAGE = 50


# ---------------------------------------------------------------------------- helpers

def _box(call: CallContext) -> transport.Mailbox:
    return transport.mailbox_of(call.options, call.credentials)


@contextmanager
def _reauthorize_on_refusal(call: CallContext) -> Iterator[None]:
    """The server refused the stored password: mark the connection so agents stop using it and its
    owner hears about it, and tell the model plainly."""
    try:
        yield
    except Unauthorized as exc:
        if call.connection is None:
            raise
        call.credentials_rejected(str(exc))
        raise Unauthorized(f"{exc}; the connection {call.connection.name!r} is now marked as needing "
                           "re-authorization: its owner must reconnect it with the current password "
                           "(Connections page)", status=None) from None


def _one_address(value: str, field: str) -> Address:
    if transport._CONTROL.search(value):
        raise ToolError(f"{field}: {value!r} contains a line break or control character")
    parsed = getaddresses([value])
    if len(parsed) != 1 or not parsed[0][1]:
        raise ToolError(f"{field}: {value!r} is not exactly one email address (give one address per item)")
    name, addr = parsed[0]
    try:
        validate_email(addr)
        return Address(display_name=name, addr_spec=addr)
    except (ValidationError, ValueError, IndexError):
        raise ToolError(f"{field}: {addr!r} is not a valid email address") from None


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # noqa: BLE001 - a malformed header in someone's mail must not fail the read
        value = None
    if value is None:
        return ""
    return " ".join(str(value).split())[:1000]


def _iso_date(message: EmailMessage) -> str:
    raw = _header(message, "Date")
    try:
        return parsedate_to_datetime(raw).isoformat() if raw else ""
    except (TypeError, ValueError, IndexError):
        return raw


def _text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except Exception:  # noqa: BLE001 - unknown charset, truncated encoding: show what we can
        payload = part.get_payload(decode=True)
        content = payload.decode(part.get_content_charset() or "utf-8", "replace") if isinstance(payload, bytes) \
            else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        return html_to_text(content)[1]
    return content


def _body(message: EmailMessage) -> tuple[str, str]:
    """The message's readable text and the type it came from."""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except Exception:  # noqa: BLE001 - a broken MIME structure still has headers worth showing
        part = None
    if part is None:
        return "", ""
    return _text(part).replace("\r\n", "\n").strip(), part.get_content_type()


def _attachments(message: EmailMessage) -> list[dict[str, Any]]:
    body = None
    try:
        body = message.get_body(preferencelist=("plain", "html"))
    except Exception:  # noqa: BLE001
        body = None
    found = []
    for part in message.walk():
        if part.is_multipart() or part is body:
            continue
        filename = part.get_filename()
        if part.get_content_disposition() != "attachment" and not filename:
            continue
        payload = part.get_payload(decode=True)
        found.append({"name": " ".join(str(filename or "(unnamed)").split())[:255],
                      "type": part.get_content_type(),
                      "size_bytes": len(payload) if isinstance(payload, bytes) else 0})
    return found


def _parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[return-value]


def _since(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ToolError(f"since: {value!r} is not a date like 2024-05-31") from None


def _max_bytes() -> int:
    return int(settings.INTEGRATIONS_MAX_RESPONSE_BYTES)


# ---------------------------------------------------------------------------- tools

@tool(
    name="email_send",
    description=(
        "Send a plain-text email from the connected mailbox. Recipients are email addresses "
        "(\"ada@example.com\" or \"Ada Lovelace <ada@example.com>\"), one per list item; at most "
        f"{MAX_RECIPIENTS} in to and cc together. Sending can't be undone."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "to": {"type": "array", "minItems": 1, "maxItems": MAX_RECIPIENTS,
                   "items": {"type": "string", "minLength": 3, "maxLength": 320}, "description": "Recipients."},
            "cc": {"type": "array", "maxItems": MAX_RECIPIENTS,
                   "items": {"type": "string", "minLength": 3, "maxLength": 320}, "description": "Copy recipients."},
            "subject": {"type": "string", "maxLength": 900},
            "body": {"type": "string", "maxLength": MAX_SEND_CHARS, "description": "Plain text."},
            "reply_to": {"type": "string", "minLength": 3, "maxLength": 320,
                         "description": "Where replies should go, if not to the sender."},
        },
        "required": ["to", "subject", "body"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.WRITE,
    timeout_seconds=60,
    integration="email",
    scopes=("mail:send",),
)
def send(call: CallContext, *, to: list[str], subject: str, body: str, cc: list[str] | None = None,
         reply_to: str | None = None) -> str:
    box = _box(call)
    if not box.from_address:
        raise ToolError("this email connection has no from address; its owner must reconnect it with one")
    sender = _one_address(box.from_address, "from_address")
    to_addresses = [_one_address(value, "to") for value in to]
    cc_addresses = [_one_address(value, "cc") for value in cc or []]
    # Once each, compared the way mail servers compare them in practice (without case).
    recipients = list({a.addr_spec.lower(): a.addr_spec for a in [*to_addresses, *cc_addresses]}.values())
    if len(recipients) > MAX_RECIPIENTS:
        raise ToolError(f"{len(recipients)} recipients; at most {MAX_RECIPIENTS} are allowed in one message")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to_addresses
    if cc_addresses:
        message["Cc"] = cc_addresses
    if reply_to:
        message["Reply-To"] = _one_address(reply_to, "reply_to")
    # Line breaks in a subject would start a new header; the model rarely means them.
    message["Subject"] = " ".join(subject.split())
    message["Date"] = format_datetime(timezone.now())
    message["Message-ID"] = make_msgid(domain=sender.domain or "agentry.local")
    message.set_content(body)
    with _reauthorize_on_refusal(call):
        refused = transport.smtp_send(box, message, sender=sender.addr_spec, recipients=recipients,
                                      deadline=call.http.deadline)
    accepted = [r for r in recipients if r not in refused]
    summary = (f"Sent \"{message['Subject']}\" from {sender.addr_spec} to {', '.join(accepted)} "
               f"(Message-ID {message['Message-ID']}).")
    if refused:
        summary += " The server did not accept: " + "; ".join(f"{k} ({v})" for k, v in refused.items()) + "."
    return summary


@tool(
    name="email_list_messages",
    description=(
        "List or search messages in a mailbox folder, newest first. Filters combine (all must match): "
        "sender (text in the From address or name), subject (text in the subject), since (a date, "
        "YYYY-MM-DD), unseen (only unread). Returns uid, from, subject, date and a snippet per message; "
        "page with limit and offset. Use email_read_message with a uid to read one. Listing doesn't "
        "mark anything as read."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "folder": {"type": "string", "minLength": 1, "maxLength": 200, "default": "INBOX"},
            "sender": {"type": "string", "maxLength": 200},
            "subject": {"type": "string", "maxLength": 200},
            "since": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            "unseen": {"type": "boolean", "default": False},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 10},
            "offset": {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
        },
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=60,
    integration="email",
    scopes=("mail:read",),
)
def list_messages(call: CallContext, *, folder: str = "INBOX", sender: str = "", subject: str = "",
                  since: str | None = None, unseen: bool = False, limit: int = 10, offset: int = 0) -> str:
    criteria = transport.Search(sender=sender.strip(), subject=subject.strip(), since=_since(since), unseen=unseen)
    transport.mailbox_name(folder)  # a bad folder name is the model's mistake: say so before connecting
    criteria.arguments()
    box = _box(call)
    with _reauthorize_on_refusal(call), transport.ImapSession(box, deadline=call.http.deadline,
                                                               max_bytes=_max_bytes()) as session:
        session.examine(folder)
        uids = session.search(criteria)
        page = uids[offset:offset + limit]
        partial = max(1024, min(SNIPPET_BYTES, _max_bytes() // max(1, len(page))))
        fetched = session.fetch(page, partial=partial)
    messages = []
    for uid in page:
        item = fetched.get(uid)
        if item is None:
            continue  # deleted between the search and the fetch
        message = _parse(item.body)
        text, _type = _body(message)
        messages.append({
            "uid": uid,
            "from": _header(message, "From"),
            "subject": _header(message, "Subject"),
            "date": _iso_date(message),
            "unread": "\\Seen" not in item.flags,
            "snippet": " ".join(text.split())[:SNIPPET_CHARS],
        })
    following = offset + limit if offset + limit < len(uids) else None
    return json.dumps({"folder": folder, "matched": len(uids), "offset": offset, "next_offset": following,
                       "messages": messages}, ensure_ascii=False, indent=1)


@tool(
    name="email_read_message",
    description=(
        "Read one message by its uid (from email_list_messages): its headers, its text (HTML is "
        "turned into text), and the names and sizes of its attachments. Long messages are cut at "
        "max_chars. Reading doesn't mark the message as read."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "uid": {"type": "integer", "minimum": 1, "maximum": 4294967295},
            "folder": {"type": "string", "minLength": 1, "maxLength": 200, "default": "INBOX"},
            "max_chars": {"type": "integer", "minimum": 200, "maximum": 100_000, "default": READ_CHARS},
        },
        "required": ["uid"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=60,
    integration="email",
    scopes=("mail:read",),
)
def read_message(call: CallContext, *, uid: int, folder: str = "INBOX", max_chars: int = READ_CHARS) -> str:
    transport.mailbox_name(folder)
    box = _box(call)
    cap = _max_bytes()
    with _reauthorize_on_refusal(call), transport.ImapSession(box, deadline=call.http.deadline,
                                                               max_bytes=cap) as session:
        session.examine(folder)
        item = session.fetch([uid], partial=cap).get(uid)
    if item is None:
        raise ToolError(f"there is no message with uid {uid} in {folder!r} (it may have been moved or deleted); "
                        "list the folder to see the current uids")
    message = _parse(item.body)
    text, content_type = _body(message)
    state = "read" if "\\Seen" in item.flags else "unread"
    lines = [f"Folder: {folder} · UID {uid} · {state}"]
    for name in ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID"):
        value = _header(message, name)
        if value:
            lines.append(f"{name}: {value}")
    attachments = _attachments(message)
    if attachments:
        lines.append(f"Attachments ({len(attachments)}): " + "; ".join(
            f"{a['name']} ({a['type']}, {a['size_bytes']} bytes)" for a in attachments))
    lines.append("")
    lines.append(f"--- body ({content_type or 'none'}) ---")
    lines.append(text[:max_chars] if text else "(no text body)")
    if len(text) > max_chars:
        lines.append(f"[body cut at {max_chars} of {len(text)} characters]")
    if item.size is not None and item.size > len(item.body):
        lines.append(f"[message truncated: it is {item.size} bytes and only the first {len(item.body)} were "
                     "fetched; later parts may be missing and attachment sizes may be incomplete]")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- connection check

def identify(call: CallContext) -> dict[str, Any]:
    """Log in to the SMTP server (and the IMAP server, when one is set) with these settings."""
    try:
        box = _box(call)
        if box.from_address:
            _one_address(box.from_address, "from_address")
        elif call.connection is None:
            raise transport.SettingsError("from_address", "Enter the address mail is sent from (the username "
                                          "isn't an email address).")
    except transport.SettingsError as exc:
        if call.connection is None:  # saving: show it next to the field
            raise ValidationError({exc.field: [str(exc)]}) from None
        raise
    except ToolError as exc:
        if call.connection is None:
            raise ValidationError({"from_address": [str(exc).removeprefix("from_address: ")]}) from None
        raise
    transport.smtp_check(box, deadline=call.http.deadline)
    if box.imap is not None:
        transport.imap_check(box, deadline=call.http.deadline)
    return {"email": box.from_address or box.username}
