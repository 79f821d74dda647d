"""HTTP/OpenAPI connector: an organization admin registers an API by its OpenAPI document, and the
operations they choose become tools of the custom integration `http-<slug>`, called with an API
key or an OAuth grant held in a connection (see tools.py for how credentials travel)."""

from integrations import catalog
from integrations import tools as registry
from integrations.connectors.openapi import tools

registry.register_source(tools.tool_source)
catalog.register_source(tools.integration_source)
