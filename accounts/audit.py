"""The audit log: who did what, to what, from where, when.

Services call `audit_record(...)`; the request's IP, user agent and request id come from a
context variable the middleware sets, so services don't need the request. Entries are written in
the caller's transaction: an action that rolls back leaves no entry, and one that commits always
has one.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import AuditLog, Organization


@dataclass(frozen=True)
class RequestInfo:
    ip: str | None
    user_agent: str
    request_id: str


_request: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar("audit_request", default=None)


def client_ip(request) -> str | None:
    # Behind a proxy, configure it to set REMOTE_ADDR (X-Forwarded-For is client-controlled).
    return request.META.get("REMOTE_ADDR") or None


@contextlib.contextmanager
def request_context(info: RequestInfo) -> Iterator[None]:
    """Entries recorded inside carry this request's address, user agent and id (requests that don't
    pass through Django, like /mcp, enter it themselves)."""
    token = _request.set(info)
    try:
        yield
    finally:
        _request.reset(token)


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_context(RequestInfo(
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", "")[:400],
            request_id=getattr(request, "request_id", ""),
        )):
            return self.get_response(request)


def _label(target: Any) -> str:
    for attribute in ("name", "username", "goal", "slug"):
        value = getattr(target, attribute, None)
        if value:
            return str(value)[:200]
    return str(target)[:200]


def audit_record(
    *,
    action: str,
    actor=None,
    organization: Organization | None = None,
    organization_id=None,
    target: Any = None,
    diff: dict | None = None,
    data: dict | None = None,
) -> AuditLog:
    info = _request.get()
    actor = actor if getattr(actor, "is_authenticated", False) else None
    return AuditLog.objects.create(
        organization_id=organization.id if organization is not None else organization_id,
        actor=actor,
        actor_name=getattr(actor, "username", "") or "",
        action=action,
        target_type=target._meta.model_name if target is not None and hasattr(target, "_meta") else "",
        target_id=str(getattr(target, "pk", "") or ""),
        target_label=_label(target) if target is not None else "",
        ip=info.ip if info else None,
        user_agent=info.user_agent if info else "",
        request_id=info.request_id if info else "",
        diff=_plain(diff),
        data=_plain(data),
    )


def _plain(value):
    """Decimals, datetimes, UUIDs → JSON-safe values, as the API would show them."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def diff_of(before: dict, after: dict) -> dict:
    """{field: [old, new]} for the fields that changed."""
    return {key: [before.get(key), after.get(key)] for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)}


def audit_list(*, organization: Organization, actor: str = "", action: str = "", since=None, until=None,
               target_id: str = "") -> QuerySet[AuditLog]:
    qs = AuditLog.objects.filter(organization=organization)
    if actor:
        qs = qs.filter(actor_name=actor)
    if action:
        qs = qs.filter(action__startswith=action)
    if since:
        qs = qs.filter(at__gte=since)
    if until:
        qs = qs.filter(at__lt=until)
    if target_id:
        qs = qs.filter(target_id=target_id)
    return qs.order_by("-at", "-id")


CSV_FIELDS = ["at", "actor_name", "action", "target_type", "target_id", "target_label", "ip", "user_agent",
              "request_id", "diff", "data"]


def audit_csv(entries: Iterable[AuditLog]) -> Iterable[str]:
    """Rows of a CSV export, streamed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return value

    writer.writerow(CSV_FIELDS)
    yield flush()
    for entry in entries:
        writer.writerow([getattr(entry, name) if name != "at" else entry.at.isoformat() for name in CSV_FIELDS])
        yield flush()


def audit_purge(*, older_than_days: int | None = None) -> int:
    """Delete entries past the retention period — the one deletion the database allows."""
    days = older_than_days if older_than_days is not None else settings.AUDIT_RETENTION_DAYS
    if not days:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL agentry.audit_purge = 'on'")
            cursor.execute("DELETE FROM accounts_auditlog WHERE at < %s", [cutoff])
            return cursor.rowcount
