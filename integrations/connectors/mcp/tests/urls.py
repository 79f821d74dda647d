"""The project's routes plus the MCP client's, until config/urls.py includes them (the lead's file)."""

from __future__ import annotations

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns
from integrations.connectors.mcp.urls import api_urlpatterns

urlpatterns = [
    path("api/", include(api_urlpatterns)),
    path("", include("integrations.connectors.mcp.urls")),
    *project_urlpatterns,
]

handler404 = "config.errors.handler404"
handler500 = "config.errors.handler500"
