"""MCP servers built with the official `mcp` SDK, for testing Agentry's MCP client.

`FakeMcpServer` is a streamable-HTTP server ("Issue tracker") served by uvicorn in a thread on
127.0.0.1. In front of the SDK's app sits what a real deployment puts there: a bearer-token check
answering 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750), as the MCP
authorization spec asks. It counts every HTTP request that reaches it and records every tool call,
so a test can prove a refused call sent nothing.

    server = FakeMcpServer(token="s3cret").start()
    server.url                  # http://127.0.0.1:<port>/mcp
    server.add_close_tool()     # the server gains a tool (for "Refresh tools")
    server.requests, server.tool_calls
    server.stop()

Run as a script (`python tests/fakes/mcp_servers.py`), the same tools are served over stdio, the
way a local MCP server from AGENTRY_MCP_STDIO_SERVERS is started.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations

ISSUES = [
    {"id": 1, "title": "Login page times out", "state": "open"},
    {"id": 2, "title": "Export drops the last row", "state": "closed"},
]


def build_server(*, record: list[tuple[str, dict[str, Any]]] | None = None) -> MCPServer:
    """The fake tracker: a read tool (readOnlyHint) and a write tool (no hint: a write)."""
    calls = record if record is not None else []
    issues = [dict(issue) for issue in ISSUES]
    server = MCPServer("Fake issue tracker", version="1.0.0", log_level="WARNING")

    @server.tool(
        name="search_issues",
        description="Search issues by words in their title.",
        annotations=ToolAnnotations(title="Search issues", read_only_hint=True),
    )
    def search_issues(query: str, state: str = "any") -> str:
        calls.append(("search_issues", {"query": query, "state": state}))
        found = [i for i in issues if query.lower() in i["title"].lower() and state in ("any", i["state"])]
        return json.dumps(found) if found else f"No issue matches {query!r}."

    @server.tool(
        name="create_issue",
        description="Open a new issue.",
        annotations=ToolAnnotations(title="Create issue", destructive_hint=False),
    )
    def create_issue(title: str) -> str:
        calls.append(("create_issue", {"title": title}))
        if not title.strip():
            raise ToolError("title must not be empty")
        issue = {"id": len(issues) + 1, "title": title, "state": "open"}
        issues.append(issue)
        return f"Created issue #{issue['id']}: {title}"

    return server


@dataclass
class RecordedRequest:
    method: str
    path: str
    host: str
    authorized: bool


@dataclass
class FakeMcpServer:
    token: str | None = None
    # Host header values the SDK's DNS-rebinding check accepts besides loopback ("name:*").
    extra_hosts: tuple[str, ...] = ()
    requests: list[RecordedRequest] = field(default_factory=list)
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mcp = build_server(record=self.tool_calls)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def add_close_tool(self) -> None:
        def close_issue(issue_id: int) -> str:
            self.tool_calls.append(("close_issue", {"issue_id": issue_id}))
            return f"Closed issue #{issue_id}"

        self.mcp.add_tool(close_issue, name="close_issue", description="Close an issue.",
                          annotations=ToolAnnotations(destructive_hint=True))

    # ------------------------------------------------------------------ ASGI: token check in front
    def _app(self):
        hosts = ["127.0.0.1:*", "localhost:*", *(f"{name}:*" for name in self.extra_hosts)]
        inner = self.mcp.streamable_http_app(transport_security=TransportSecuritySettings(
            allowed_hosts=hosts, allowed_origins=[f"http://{host}" for host in hosts]))

        async def app(scope, receive, send):
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            authorized = self.token is None or headers.get("authorization") == f"Bearer {self.token}"
            self.requests.append(RecordedRequest(scope["method"], scope["path"], headers.get("host", ""), authorized))
            if not authorized:
                error = "invalid_token" if "authorization" in headers else "invalid_request"
                body = json.dumps({"error": error, "error_description": "Authentication required"}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", f'Bearer error="{error}", error_description="Authentication required"'
                     .encode()),
                ]})
                await send({"type": "http.response.body", "body": body})
                return
            await inner(scope, receive, send)

        return app

    def start(self) -> FakeMcpServer:
        import uvicorn

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="fake-mcp")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake MCP server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


if __name__ == "__main__":
    build_server().run("stdio")
