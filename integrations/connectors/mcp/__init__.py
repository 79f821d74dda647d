"""MCP client: organization admins register MCP servers (streamable HTTP by URL, or a local stdio
server from the operator's allow-list); each becomes the integration "MCP: <name>" whose tools are
the server's. Importing this package registers the per-organization sources."""

from integrations.connectors.mcp import tools  # noqa: F401
