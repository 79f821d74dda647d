"""Agentry as an MCP server: `/mcp`, streamable HTTP, authenticated by API key.

tools/list      the organization's agents the key may run (`agent_<name>_<id8>`: start a run, wait,
                return its answer) and the registry's built-in read tools (calculator, current_time,
                web_fetch). Connector tools need a connection and a person's grant; they stay inside
                agents.
tools/call      agent tools need the key's `run` scope and the role's `agents.run_agent`; read tools
                the `read` scope. Refusals (role, scope, quota, bad arguments) are `isError` results
                the client's model can read; an unknown tool is a protocol error.
resources/*     runs the caller may see, as `agentry://runs/<id>` (key scope `read`, role
                `agents.view_run`).

Stateless with JSON responses: every POST stands alone, so any web process can answer any request.
The key is checked before the SDK sees the request (no key, a wrong one → 401). The SDK's handlers
are async; everything touching the ORM runs in worker threads that give their connection back.
"""

from integrations.mcp_server.calls import agent_tool_name
from integrations.mcp_server.endpoint import PATHS, McpEndpoint
from integrations.mcp_server.handlers import server

__all__ = ["PATHS", "McpEndpoint", "agent_tool_name", "server"]
