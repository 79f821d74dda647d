"""Run events: one row per step, numbered per run, published to the run's group after commit.

The sequence number comes from `Run.last_seq`, bumped in the same statement that inserts the
rows, so concurrent writers (the worker, a cancel from the web) never collide and clients can
replay with `after=<seq>` without gaps or duplicates. The same statement adds the step's token
usage and reports whether a cancel was requested, so the loop's hot path is one round trip and
one commit per write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from agents.models import RunEvent

logger = logging.getLogger(__name__)

_INSERT = """
WITH bumped AS (
    UPDATE agents_run
       SET last_seq = last_seq + %s,
           input_tokens = input_tokens + %s,
           output_tokens = output_tokens + %s,
           cost_usd = cost_usd + %s,
           steps = steps + %s{sets}
     WHERE id = %s{guard}
 RETURNING last_seq, cancel_requested_at IS NOT NULL AS cancel_requested,
           pause_requested_at IS NOT NULL AS pause_requested
), inserted AS (
    INSERT INTO agents_runevent (run_id, seq, type, data, created_at)
    SELECT %s, bumped.last_seq - %s + item.ord, item.type, item.data::jsonb, %s
      FROM bumped, (VALUES {values}) AS item(ord, type, data)
 RETURNING id, seq
)
SELECT inserted.id, inserted.seq, bumped.cancel_requested, bumped.pause_requested
  FROM inserted, bumped ORDER BY inserted.seq
"""


class RunGone(LookupError):
    """The run's row is gone (its organization or agent was deleted while it ran)."""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal("0")


@dataclass(frozen=True)
class Recorded:
    events: list[RunEvent]
    cancel_requested: bool
    pause_requested: bool


def group_name(run_id) -> str:
    return f"run.{run_id}"


# Run columns a write may set along with its events (status transitions).
_SETTABLE = (
    "status", "stop_reason", "answer", "error", "started_at", "finished_at", "pause_reason", "lease_holder",
    "lease_expires_at",
)


def record_many(
    *,
    run_id,
    items: list[tuple[str, dict[str, Any]]],
    usage: Usage | None = None,
    step: bool = False,
    set_fields: dict[str, Any] | None = None,
    only_from: tuple[str, ...] | None = None,
    lease_token: int | None = None,
) -> Recorded | None:
    """Persist events (in order, one statement, one commit) and publish them after commit.

    `usage` is added to the run's totals, `step` counts one model call and `set_fields` updates
    the run's own columns, all in the same statement. With `only_from`, nothing is written unless
    the run's status is one of those, and None is returned: that is how a transition loses a race.
    With `lease_token`, likewise unless the writer still holds the run's lease (fencing).
    """
    if not items:
        raise ValueError("record_many needs at least one event")
    usage = usage or Usage()
    set_fields = set_fields or {}
    unknown = set(set_fields) - set(_SETTABLE)
    if unknown:
        raise ValueError(f"record_many cannot set {sorted(unknown)}")
    created_at = timezone.now()
    payloads = [json.dumps(data, cls=DjangoJSONEncoder) for _, data in items]
    values = ", ".join(["(%s::int, %s::text, %s::text)"] * len(items))
    sets = "".join(f",\n           {name} = %s" for name in set_fields)
    guard = (" AND status = ANY(%s)" if only_from is not None else "") + (
        " AND lease_token = %s" if lease_token is not None else ""
    )
    params: list[Any] = [len(items), usage.input_tokens, usage.output_tokens, usage.cost_usd, int(step)]
    params += list(set_fields.values())
    params.append(run_id)
    if only_from is not None:
        params.append(list(only_from))
    if lease_token is not None:
        params.append(lease_token)
    params += [run_id, len(items), created_at]
    for ordinal, ((type_, _), payload) in enumerate(zip(items, payloads, strict=True), start=1):
        params += [ordinal, type_, payload]
    # One statement is its own transaction in autocommit mode: one round trip, no BEGIN/COMMIT.
    # Inside a caller's atomic block it simply joins that transaction.
    with connection.cursor() as cursor:
        cursor.execute(_INSERT.format(values=values, sets=sets, guard=guard), params)
        rows = cursor.fetchall()
    if not rows:
        if only_from is not None or lease_token is not None:
            return None
        raise RunGone(f"run {run_id} does not exist")
    events = [
        RunEvent(id=row_id, run_id=run_id, seq=seq, type=type_, data=data, created_at=created_at)
        for (row_id, seq, _, _), (type_, data) in zip(rows, items, strict=True)
    ]
    at = created_at.isoformat()
    messages = [
        {"type": "run.event", "event": {"seq": e.seq, "type": e.type, "data": json.loads(p), "created_at": at}}
        for e, p in zip(events, payloads, strict=True)
    ]
    group = group_name(run_id)
    # Runs now outside a transaction, or when the caller's transaction commits; never for a rollback.
    transaction.on_commit(lambda: [publisher.publish(group, message) for message in messages])
    return Recorded(events=events, cancel_requested=rows[0][2], pause_requested=rows[0][3])


def record(*, run_id, type: str, data: dict[str, Any]) -> RunEvent:
    """Persist one event and publish it once the surrounding transaction commits."""
    recorded = record_many(run_id=run_id, items=[(type, data)])
    assert recorded is not None  # no guard, so a missing run raised instead
    return recorded.events[0]


class _Publisher:
    """One event-loop thread per process owns the channel layer's Redis connections and sends
    queued messages one at a time, so each run's events leave in order without the run loop
    waiting on Redis. Postgres is the source of truth: a message that can't be sent (Redis down,
    queue full) is logged and dropped, and clients refill the gap from the database."""

    MAX_QUEUED = 100_000

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    self._queue = asyncio.Queue(maxsize=self.MAX_QUEUED)
                    loop.create_task(self._drain())
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="event-publisher", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while True:
            group, message, done = await self._queue.get()
            try:
                if layer is not None and message is not None:
                    await layer.group_send(group, message)
            except Exception:  # noqa: BLE001 - the stored row is the source of truth
                logger.warning("could not publish event to %s", group, exc_info=True)
            finally:
                if done is not None:
                    done.set()

    def _put(self, item) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            logger.warning("event publish queue full; dropping an event for %s", item[0])

    def publish(self, group: str, message: dict) -> None:
        loop = self._ensure_loop()
        loop.call_soon_threadsafe(self._put, (group, message, None))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far has been sent (for short-lived processes)."""
        loop = self._ensure_loop()
        done = threading.Event()
        loop.call_soon_threadsafe(self._put, ("", None, done))
        return done.wait(timeout)


publisher = _Publisher()
