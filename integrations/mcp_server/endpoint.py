"""The ASGI app at /mcp: Host and API key first, then the SDK's session manager."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from accounts.audit import RequestInfo
from integrations.mcp_server.calls import CALLER_KEY, authenticate, in_thread

logger = logging.getLogger(__name__)

PATHS = frozenset({"/mcp", "/mcp/"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _bearer(value: str) -> str | None:
    scheme, _, raw = value.partition(" ")
    return raw.strip() if scheme.lower() == "bearer" and raw.strip() else None


def _host_allowed(host: str) -> bool:
    # Django's own rule for its requests; the MCP route bypasses Django's middleware.
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


class McpEndpoint:
    """The ASGI app for /mcp: checks the Host and the API key, then hands over to the SDK's
    session manager, whose run() context lives in a background task started by the ASGI lifespan
    (or by the first request, under a server that sends no lifespan events)."""

    def __init__(self, mcp_server: Server) -> None:
        self.server = mcp_server
        self._manager: StreamableHTTPSessionManager | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()

    @staticmethod
    def handles(scope) -> bool:
        return scope["type"] == "http" and scope["path"] in PATHS

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Under a server (one loop per process) this happens once; a harness that runs the app
            # in a fresh loop each time gets fresh primitives instead of ones bound to a dead loop.
            self._loop, self._task, self._lock = loop, None, asyncio.Lock()
        if self._task is not None and not self._task.done() and self._ready.is_set():
            return
        async with self._lock:
            if self._task is None or self._task.done():
                # A manager runs once; after a crash (or stop) a fresh one takes over.
                self._manager = StreamableHTTPSessionManager(app=self.server, json_response=True, stateless=True)
                self._ready, self._stopping = asyncio.Event(), asyncio.Event()
                self._task = loop.create_task(self._serve(), name="mcp-session-manager")
            ready = asyncio.ensure_future(self._ready.wait())
            await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if not self._ready.is_set():
                ready.cancel()
                self._task.result()  # raises what stopped it
                raise RuntimeError("the MCP session manager stopped before it was ready")

    async def _serve(self) -> None:
        assert self._manager is not None
        async with self._manager.run():
            self._ready.set()
            await self._stopping.wait()

    async def stop(self) -> None:
        if self._task is None or self._task.done():
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(self._task, timeout=10)
        except Exception:  # noqa: BLE001 - shutting down: log and let the process go
            logger.exception("the MCP session manager did not stop cleanly")

    async def __call__(self, scope, receive, send) -> None:
        headers = Headers(scope=scope)
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        ours = {"X-Request-ID": request_id}  # on every answer, ours and the SDK's

        async def answer(status: int, code: str, message: str, details: dict | None = None, **more) -> None:
            body = {"error": code, "message": message, "details": details or {}, "request_id": request_id}
            response = JSONResponse(body | more.pop("body", {}), status_code=status, headers=ours | more)
            await response(scope, receive, send)

        if not _host_allowed(headers.get("host", "")):
            return await answer(400, "bad_request", "Invalid Host header.")
        raw = _bearer(headers.get("authorization", ""))
        client = scope.get("client")
        request = RequestInfo(ip=client[0] if client else None, user_agent=headers.get("user-agent", "")[:400],
                              request_id=request_id)
        caller, decision = await in_thread(authenticate, raw, request) if raw else (None, None)
        if caller is None:
            message = ("Invalid or revoked API key." if raw else
                       "Authentication required: send an API key as `Authorization: Bearer agt_…`.")
            return await answer(401, "not_authenticated", message, **{"WWW-Authenticate": 'Bearer realm="mcp"'})
        if decision is not None:
            ours |= {"X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": str(decision.remaining),
                     "X-RateLimit-Reset": str(decision.reset)}
            if not decision.allowed:
                return await answer(
                    429, "rate_limited", f"Too many requests: retry in {decision.retry_after} s.",
                    {"limit": decision.limit, "counted_per": "token"},
                    body={"retry_after": decision.retry_after}, **{"Retry-After": str(decision.retry_after)},
                )
        if scope["method"] != "POST":
            # Stateless: no server-initiated messages for a GET stream to carry, no session to DELETE.
            return await answer(405, "method_not_allowed", "The MCP endpoint takes POST only.", Allow="POST")

        await self.start()
        assert self._manager is not None
        extra = [(name.lower().encode(), value.encode()) for name, value in ours.items()]

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        await self._manager.handle_request(dict(scope, **{CALLER_KEY: caller}), receive, send_with_headers)
