"""Websocket `/ws/runs/<id>/?after=<seq>`: replay stored events, then stream live ones.

Authenticated by session cookie or `Authorization: Bearer`; scoped to the caller's organization
and role, with the same sharing rules as the API. Never writes. Close codes: 4401 not signed in,
4403 your role may not read runs, 4404 no such run that you can see.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.roles import access_for
from agents import selectors, streams
from agents.models import Run


@database_sync_to_async
def _check(user, run_id, token_organization_id) -> int | None:
    """None when the caller may follow the run, else the close code."""
    organization_id = Run.objects.filter(id=run_id).values_list("organization_id", flat=True).first()
    if organization_id is None or (token_organization_id is not None and organization_id != token_organization_id):
        return 4404
    access = access_for(user=user, organization=organization_id)
    if access is None:
        return 4404
    if not access.can("agents.view_run"):
        return 4403
    if selectors.run_get(organization=access.organization, viewer=access, run_id=run_id) is None:
        return 4404
    return None


class RunEventsConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self._pump: asyncio.Task | None = None
        user = self.scope.get("user")
        # Accept before refusing so the client sees a close code it can act on (stop retrying)
        # instead of a bare failed handshake.
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=4401)
            return
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        refused = await _check(user, run_id, self.scope.get("token_organization_id"))
        if refused is not None:
            await self.accept()
            await self.close(code=refused)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        raw_after = (query.get("after") or ["0"])[0]
        after = int(raw_after) if raw_after.isdigit() else 0
        await self.accept()
        self._pump = asyncio.create_task(self._stream(run_id, after))

    async def _stream(self, run_id, after: int) -> None:
        async for event in streams.follow(run_id, after):
            if event is not None:
                await self.send(text_data=json.dumps(event))
        await self.close(code=1000)

    async def disconnect(self, code) -> None:
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # The stream is one-way; client messages (pings) are ignored.
        return None
