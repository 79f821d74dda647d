"""Run events: one row per step, numbered per run, published to the run's group after commit.

The sequence number comes from `Run.last_seq`, bumped in the same statement that inserts the row,
so concurrent writers (the worker, a cancel from the web) never collide and clients can replay
with `after=<seq>` without gaps or duplicates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from agents.models import RunEvent

logger = logging.getLogger(__name__)

_INSERT = """
WITH bumped AS (
    UPDATE agents_run SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq
)
INSERT INTO agents_runevent (run_id, seq, type, data, created_at)
SELECT %s, bumped.last_seq, %s, %s::jsonb, %s FROM bumped
RETURNING id, seq
"""


def group_name(run_id) -> str:
    return f"run.{run_id}"


def record(*, run_id, type: str, data: dict[str, Any]) -> RunEvent:
    """Persist one event and publish it once the surrounding transaction commits."""
    created_at = timezone.now()
    payload = json.dumps(data, cls=DjangoJSONEncoder)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_INSERT, [run_id, run_id, type, payload, created_at])
            row = cursor.fetchone()
        if row is None:
            raise LookupError(f"run {run_id} does not exist")
        event = RunEvent(id=row[0], run_id=run_id, seq=row[1], type=type, data=data, created_at=created_at)
        message = {"type": "run.event", "event": json.loads(json.dumps(event.as_dict(), cls=DjangoJSONEncoder))}
        transaction.on_commit(lambda: publisher.publish(group_name(run_id), message))
    return event


class _Publisher:
    """One event loop thread per process that owns the channel layer's Redis connections.

    `async_to_sync` would build a fresh loop (and connection) for every event; this keeps one.
    Publishing waits for Redis so one run's events leave in order; a failure is logged, not
    raised: the row is committed and clients replay it from Postgres.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="event-publisher", daemon=True).start()
                ready.wait()
                self._loop = loop
            return self._loop

    def publish(self, group: str, message: dict) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
        try:
            future.result(timeout=settings.EVENT_PUBLISH_TIMEOUT)
        except Exception:  # noqa: BLE001 - the stored row is the source of truth
            logger.warning("could not publish event to %s", group, exc_info=True)


publisher = _Publisher()
