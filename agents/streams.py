"""Follow a run's events: replay what Postgres has after `seq`, then the live ones, with no gap
and no duplicate. Shared by the websocket consumer and the Server-Sent Events endpoint.

The subscription is made *before* the replay query, so an event committed in between arrives
both ways; it is dropped by sequence number. A live event that skips ahead (a publish that was
lost) triggers a refill from Postgres, which is the source of truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from agents import events
from agents.models import Run, RunEvent

TERMINAL = {str(s) for s in Run.TERMINAL}


@database_sync_to_async
def _fetch(run_id, after: int) -> list[dict]:
    rows = RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")[:5000]
    return [event.as_dict() for event in rows]


@database_sync_to_async
def _finished(run_id, last: int) -> bool:
    row = Run.objects.filter(id=run_id).values_list("status", "last_seq").first()
    return row is None or (row[0] in TERMINAL and last >= row[1])


def _is_terminal(event: dict) -> bool:
    return event["type"] == RunEvent.Type.STATUS and event["data"].get("status") in TERMINAL


async def follow(run_id, after: int = 0, *, keepalive: float = 15.0) -> AsyncIterator[dict | None]:
    """Yields event dicts in seq order; `None` now and then as a keepalive. Ends after the run's
    terminal status event."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = events.group_name(run_id)
    await layer.group_add(group, channel)
    last = after
    try:
        while True:
            # Replay (first pass) or refill after a gap or a quiet spell.
            for event in await _fetch(run_id, last):
                yield event
                last = event["seq"]
                if _is_terminal(event):
                    return
            if await _finished(run_id, last):
                return
            while True:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), timeout=keepalive)
                except TimeoutError:
                    yield None
                    break  # re-check Postgres: cheap, and it catches anything a publish lost
                event = message.get("event") or {}
                seq = event.get("seq", 0)
                if seq <= last:
                    continue
                if seq > last + 1:
                    break  # gap: refill from Postgres
                yield event
                last = seq
                if _is_terminal(event):
                    return
    finally:
        await layer.group_discard(group, channel)
