"""Connectors: one package each (its transport, tools and tests). Importing this package
registers every connector's integration and tools; the tool registry does it on first use."""
