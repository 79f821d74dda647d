"""Routes of the MCP client. config/urls.py includes them:

    api_patterns:  *mcp_urls.api_urlpatterns          (/api/mcp-servers...)
    urlpatterns:   path("", include("integrations.connectors.mcp.urls"))   (/integrations/mcp-servers/...)
"""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from integrations.connectors.mcp import views
from integrations.connectors.mcp.api import McpServerViewSet

app_name = "mcp_servers"

_router = SimpleRouter()
_router.trailing_slash = "/?"  # like the other API routes: documented without a slash, both accepted
_router.register("mcp-servers", McpServerViewSet, basename="mcp-server")
api_urlpatterns = _router.urls

urlpatterns = [
    path("integrations/mcp-servers/", views.server_list, name="list"),
    path("integrations/mcp-servers/new/", views.server_create, name="create"),
    path("integrations/mcp-servers/<uuid:server_id>/", views.server_detail, name="detail"),
    path("integrations/mcp-servers/<uuid:server_id>/edit/", views.server_edit, name="edit"),
    path("integrations/mcp-servers/<uuid:server_id>/refresh/", views.server_refresh, name="refresh"),
    path("integrations/mcp-servers/<uuid:server_id>/delete/", views.server_delete, name="delete"),
]
