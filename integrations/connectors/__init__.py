"""Connectors: one package each (its transport, tools and tests). Importing this package
registers every connector's integration and tools; the tool registry does it on first use."""
from integrations.connectors import (
    email,  # noqa: F401
    github,  # noqa: F401
    jira,  # noqa: F401
    mcp,  # noqa: F401
    openapi,  # noqa: F401
    slack,  # noqa: F401
)
