"""Talk to one MCP server with the official SDK: connect, list its tools, call one.

Every operation is one short session (connect, `initialize`, one request, close) run to completion
on its own event loop in the calling thread (a tool thread, or a request thread for "Refresh
tools"), inside a wall-clock limit. There is no long-lived connection to leak or to go stale.

Streamable HTTP goes through the SDK's transport with an `httpx2.AsyncClient` we build: no
environment proxies (`trust_env=False`), no redirects (the SDK follows only same-origin ones and
our transport refuses anything off the vetted origin), timeouts, a response size cap, and DNS
pinned to the addresses the address guard vetted: the URL is checked with `netguard.check_url`
right before each session, and `PinnedTransport` connects every request of that session to the
vetted IP (the real name stays in the Host header and in TLS SNI/certificate checks), so a DNS
answer that changes between our check and the SDK's connect can't reach our network.

stdio servers are started only from settings.MCP_STDIO_SERVERS, by name, with the SDK's minimal
environment (HOME, PATH, ...), so none of Agentry's own secrets reach the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx2
import jsonschema
import mcp_types as types
from django.conf import settings
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from integrations.builtin import netguard
from integrations.tools import ToolError

logger = logging.getLogger(__name__)

T = TypeVar("T")

HINT = "an operator can allow it with AGENTRY_INTEGRATIONS_ALLOWED_HOSTS"
MAX_OUTPUT_CHARS = 100_000
MAX_DESCRIPTION_CHARS = 2_000
CLIENT_INFO = types.Implementation(name="agentry", version="1.0")


class McpFailure(ToolError):
    """The server couldn't be used; the message is safe for the model and the page (no credentials)."""


class McpUnauthorized(McpFailure):
    """The server refused our credentials (HTTP 401/403)."""


@dataclass(frozen=True)
class Target:
    """Where an MCP server is and how to authenticate: a URL (streamable HTTP) or the name of an
    allow-listed command (stdio). `token` is sent as `Authorization: Bearer`."""

    label: str
    url: str = ""
    command: str = ""
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class RemoteTool:
    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool
    schema_replaced: bool = False  # the server's inputSchema wasn't valid JSON Schema

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema,
                "read_only": self.read_only, "schema_replaced": self.schema_replaced}


# --------------------------------------------------------------------------- public, synchronous


def stdio_argv(command: str) -> list[str]:
    argv = settings.MCP_STDIO_SERVERS.get(command)
    if not argv:
        allowed = ", ".join(sorted(settings.MCP_STDIO_SERVERS)) or "none"
        raise McpFailure(f"{command!r} is not a local MCP server this installation allows (allowed: {allowed}); "
                         "an operator lists them in AGENTRY_MCP_STDIO_SERVERS")
    return list(argv)


def check_url(url: str) -> list[netguard.IPAddress]:
    """The address guard for an MCP server URL (registration, refresh and every call)."""
    return netguard.check_url(url, allowed_hosts=settings.INTEGRATIONS_ALLOWED_HOSTS, hint=HINT)


def identify(target: Target, *, timeout: float) -> dict[str, Any]:
    """Connect and initialize; who the server says it is. Raises McpFailure/McpUnauthorized."""

    async def work(session: ClientSession, result: types.InitializeResult) -> dict[str, Any]:
        info = result.server_info
        return {"server": info.name, "version": info.version or "", "protocol": result.protocol_version}

    return _run(target, work, timeout=timeout)


def list_tools(target: Target, *, timeout: float) -> list[RemoteTool]:
    async def work(session: ClientSession, _result: types.InitializeResult) -> list[RemoteTool]:
        found: list[RemoteTool] = []
        cursor: str | None = None
        for _page in range(50):  # a server that pages forever still ends
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            found.extend(_remote_tool(tool) for tool in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return found

    return _run(target, work, timeout=timeout)


def call_tool(target: Target, name: str, arguments: dict[str, Any], *, timeout: float) -> str:
    """Call one tool and return its content as text; a result flagged isError raises ToolError
    with the server's text."""

    async def work(session: ClientSession, _result: types.InitializeResult) -> types.CallToolResult:
        return await session.call_tool(name, arguments)

    result = _run(target, work, timeout=timeout)
    text = result_text(result)
    if result.is_error:
        raise ToolError(f"{target.label}: {text or 'the tool failed without saying why'}")
    return text


def result_text(result: types.CallToolResult) -> str:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            parts.append(resource.text if isinstance(resource, types.TextResourceContents)
                         else f"[binary resource {resource.uri} ({resource.mime_type or 'unknown type'})]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource {block.uri}{': ' + block.description if block.description else ''}]")
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type} ({block.mime_type}) not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + f"\n[output cut at {MAX_OUTPUT_CHARS} characters]"
    return text


def _remote_tool(tool: types.Tool) -> RemoteTool:
    schema: dict[str, Any] = tool.input_schema if isinstance(tool.input_schema, dict) else {}
    replaced = False
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        if schema.get("type") != "object":
            raise jsonschema.SchemaError("the root must be an object schema")
    except jsonschema.SchemaError:
        # The model still gets the tool; the server validates the arguments itself.
        schema, replaced = {"type": "object"}, True
    annotations = tool.annotations
    description = tool.description or (annotations.title if annotations else "") or tool.name
    return RemoteTool(
        name=tool.name,
        description=description[:MAX_DESCRIPTION_CHARS],
        input_schema=schema,
        read_only=bool(annotations and annotations.read_only_hint),
        schema_replaced=replaced,
    )


# --------------------------------------------------------------------------- running a session


def _run(target: Target, work: Callable[[ClientSession, types.InitializeResult], Awaitable[T]], *,
         timeout: float) -> T:
    pinned = None
    if target.url:
        try:
            addresses = check_url(target.url)
        except ToolError as exc:
            raise McpFailure(str(exc)) from None
        pinned = PinnedTransport(target.url, addresses[0])
    elif not target.command:
        raise McpFailure(f"{target.label} has neither a URL nor a command")
    limit = max(1.0, timeout)

    async def main() -> T:
        with anyio.fail_after(limit):
            async with _session(target, pinned, limit) as (session, result):
                return await work(session, result)

    try:
        return _in_own_loop(main)
    except TimeoutError:
        raise McpFailure(f"{target.label} did not answer within {limit:g} s") from None
    except McpFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - every way a session fails becomes one clear message
        raise _explain(target, exc, pinned) from None


def _in_own_loop(main: Callable[[], Awaitable[T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    # Called from async code (an ASGI thread with a loop): a loop can't nest, so use a thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcp") as pool:
        return pool.submit(asyncio.run, main()).result()


@asynccontextmanager
async def _session(target: Target, pinned: PinnedTransport | None,
                   limit: float) -> AsyncIterator[tuple[ClientSession, types.InitializeResult]]:
    if pinned is not None:
        headers = {"User-Agent": "Agentry/1.0 (+https://github.com/agentry)"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        timeout = httpx2.Timeout(min(float(settings.INTEGRATIONS_TIMEOUT), limit), read=limit)
        client = httpx2.AsyncClient(transport=pinned, headers=headers, timeout=timeout, trust_env=False,
                                    follow_redirects=False, max_redirects=0)
        async with client, streamable_http_client(target.url, http_client=client) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=limit, client_info=CLIENT_INFO) as session:
                yield session, await session.initialize()
        return
    argv = stdio_argv(target.command)
    params = StdioServerParameters(command=argv[0], args=argv[1:])
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        try:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=limit, client_info=CLIENT_INFO) as session:
                    yield session, await session.initialize()
        except BaseException:
            errlog.seek(0)
            tail = errlog.read()[-2000:].strip()
            if tail:  # the operator's log, not the model's: a local server may print anything
                logger.warning("MCP server %r (stdio) failed; its stderr ends with:\n%s", target.command, tail)
            raise


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _explain(target: Target, exc: Exception, pinned: PinnedTransport | None) -> McpFailure:
    label = target.label
    if pinned is not None and pinned.refused_status is not None:
        status = pinned.refused_status
        what = "the token" if target.token else "the request: it needs credentials"
        return McpUnauthorized(f"{label} refused {what} (HTTP {status}); "
                               + ("check or replace the token" if target.token else
                                  "connect it with a token (Integrations → Connect)"))
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, McpFailure):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, TimeoutError | httpx2.TimeoutException):
            return McpFailure(f"{label} did not answer in time")
        if isinstance(leaf, httpx2.ConnectError | ConnectionError):
            return McpFailure(f"could not reach {label} at {_origin(target)}")
        if isinstance(leaf, httpx2.HTTPError):
            return McpFailure(f"talking to {label} failed: {type(leaf).__name__}")
        if isinstance(leaf, MCPError):
            if pinned is not None and pinned.last_status and pinned.last_status >= 400:
                return McpFailure(f"{label} answered HTTP {pinned.last_status}: {leaf.error.message}")
            return McpFailure(f"{label} answered with an error: {leaf.error.message}")
        if isinstance(leaf, OSError):
            return McpFailure(f"could not start the local MCP server {target.command!r}: {leaf.strerror or leaf}")
    first = leaves[0] if leaves else exc
    logger.warning("MCP session with %s failed", label, exc_info=first)
    return McpFailure(f"talking to {label} failed: {type(first).__name__}: {str(first)[:300]}")


def _origin(target: Target) -> str:
    try:
        url = httpx2.URL(target.url)
    except httpx2.InvalidURL:
        return "its URL"
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


# --------------------------------------------------------------------------- the pinned transport


class PinnedTransport(httpx2.AsyncBaseTransport):
    """Send every request of a session to the address the guard vetted, and nowhere else.

    Same idea as netguard.pinned_request (which is for httpx, not the SDK's httpx2): the TCP
    connection goes to the IP, the Host header keeps the name, and for https the `sni_hostname`
    extension makes TLS send SNI for, and verify the certificate against, the real name. A request
    for any other origin (a redirect the SDK would follow) is refused."""

    def __init__(self, url: str, address: netguard.IPAddress) -> None:
        parsed = httpx2.URL(url)
        self.origin = (parsed.scheme, parsed.host, parsed.port)
        self.address = address
        self.max_bytes = int(settings.INTEGRATIONS_MAX_RESPONSE_BYTES)
        self.inner = httpx2.AsyncHTTPTransport(trust_env=False, retries=0)
        self.statuses: list[int] = []

    @property
    def last_status(self) -> int | None:
        return self.statuses[-1] if self.statuses else None

    @property
    def refused_status(self) -> int | None:
        return next((s for s in self.statuses if s in (401, 403)), None)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if (url.scheme, url.host, url.port) != self.origin:
            raise McpFailure(f"the MCP server sent us to another address ({url.scheme}://{url.host}); not followed")
        extensions = dict(request.extensions)
        if _is_literal(url.host):
            target = url
        else:
            target = url.copy_with(host=str(self.address))
            if url.scheme == "https":
                extensions["sni_hostname"] = url.host
        pinned = httpx2.Request(request.method, target, headers=request.headers, stream=request.stream,
                                extensions=extensions)
        response = await self.inner.handle_async_request(pinned)
        self.statuses.append(response.status_code)
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            await response.aclose()
            raise McpFailure(f"the MCP server sent {declared} bytes, more than the {self.max_bytes}-byte limit")
        return httpx2.Response(status_code=response.status_code, headers=response.headers,
                               stream=_CappedStream(response.stream, self.max_bytes),
                               extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, stream: Any, limit: int) -> None:
        self.stream = stream
        self.limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self.stream:
            size += len(chunk)
            if size > self.limit:
                raise McpFailure(f"the MCP server sent more than the {self.limit}-byte limit")
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
