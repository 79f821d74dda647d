from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from accounts.api import (
    ApiKeyViewSet,
    AuditLogExportView,
    AuditLogView,
    MemberViewSet,
    MeView,
    TeamViewSet,
    TokenView,
    UsageView,
)
from accounts.sso_api import IdentityProviderViewSet
from agents.api import AgentViewSet, ApprovalViewSet, ModelListView, RunViewSet
from config import health
from integrations.api import ToolListView
from integrations.connectors.mcp import urls as mcp_urls
from integrations.connectors.openapi.urls import api_urlpatterns as http_api_patterns
from integrations.urls import api_urlpatterns as integration_api_patterns

# The admin signs in through allauth's flow, so two-factor authentication applies there too.
admin.site.login = secure_admin_login(admin.site.login)

router = SimpleRouter()
router.trailing_slash = "/?"  # documented paths have no slash; accept both rather than redirect POSTs
router.register("agents", AgentViewSet, basename="agent")
router.register("runs", RunViewSet, basename="run")
router.register("approvals", ApprovalViewSet, basename="approval")
router.register("keys", ApiKeyViewSet, basename="api-key")
router.register("members", MemberViewSet, basename="member")
router.register("teams", TeamViewSet, basename="team")
router.register("identity-providers", IdentityProviderViewSet, basename="identity-provider")

api_patterns = [
    path("auth/token", TokenView.as_view(), name="api-token"),
    path("audit/logs", AuditLogView.as_view(), name="api-audit-logs"),
    path("audit/logs.csv", AuditLogExportView.as_view(), name="api-audit-export"),
    path("usage", UsageView.as_view(), name="api-usage"),
    path("me", MeView.as_view(), name="api-me"),
    path("models", ModelListView.as_view(), name="api-models"),
    path("tools", ToolListView.as_view(), name="api-tools"),
    *integration_api_patterns,
    *mcp_urls.api_urlpatterns,
    *http_api_patterns,
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
]

urlpatterns = [
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("api/", include(api_patterns)),
    path("admin/", admin.site.urls),
    # Before allauth: wraps its two SSO sign-in starts (accounts/sso_urls.py).
    path("", include("accounts.sso_urls")),
    path("accounts/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("", include("automations.urls")),
    # Registered APIs and MCP servers before the catalog, whose integrations/<slug>/ would take them.
    path("", include("integrations.connectors.mcp.urls")),
    path("", include("integrations.connectors.openapi.urls")),
    path("", include("integrations.urls")),
    path("", include("agents.urls")),
]

handler404 = "config.errors.handler404"
handler500 = "config.errors.handler500"
