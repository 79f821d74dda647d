"""Pages (`urlpatterns`, namespace "integrations") and REST routes (`api_urlpatterns`, included
under /api/ by config/urls.py)."""

from __future__ import annotations

from django.urls import path, re_path

from integrations import api, views

app_name = "integrations"

urlpatterns = [
    path("integrations/", views.catalog, name="catalog"),
    # Before <slug>/: "oauth" is not an integration.
    path("integrations/oauth/callback", views.oauth_callback, name="oauth-callback"),
    path("integrations/<slug:slug>/", views.integration_detail, name="integration-detail"),
    path("integrations/<slug:slug>/connect", views.integration_connect, name="integration-connect"),
    path("integrations/<slug:slug>/authorize", views.integration_authorize, name="integration-authorize"),
    path("connections/", views.connection_list, name="connection-list"),
    path("connections/<uuid:connection_id>/", views.connection_detail, name="connection-detail"),
    path("connections/<uuid:connection_id>/test", views.connection_test, name="connection-test"),
    path("connections/<uuid:connection_id>/revoke", views.connection_revoke, name="connection-revoke"),
    path("connections/<uuid:connection_id>/reconnect", views.connection_reconnect, name="connection-reconnect"),
    path("connections/<uuid:connection_id>/credentials", views.connection_credentials, name="connection-credentials"),
]

UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
SLUG = "[-a-zA-Z0-9_]+"

# Documented paths have no trailing slash; a slash is accepted too rather than redirecting POSTs.
api_urlpatterns = [
    re_path(r"^integrations/?$", api.IntegrationListView.as_view(), name="api-integration-list"),
    re_path(rf"^integrations/(?P<slug>{SLUG})/?$", api.IntegrationDetailView.as_view(),
            name="api-integration-detail"),
    re_path(rf"^integrations/(?P<slug>{SLUG})/authorize/?$", api.IntegrationAuthorizeView.as_view(),
            name="api-integration-authorize"),
    re_path(r"^connections/?$", api.ConnectionListView.as_view(), name="api-connection-list"),
    re_path(rf"^connections/(?P<connection_id>{UUID})/?$", api.ConnectionDetailView.as_view(),
            name="api-connection-detail"),
    re_path(rf"^connections/(?P<connection_id>{UUID})/test/?$", api.ConnectionTestView.as_view(),
            name="api-connection-test"),
    re_path(rf"^connections/(?P<connection_id>{UUID})/revoke/?$", api.ConnectionRevokeView.as_view(),
            name="api-connection-revoke"),
    re_path(rf"^connections/(?P<connection_id>{UUID})/credentials/?$", api.ConnectionCredentialsView.as_view(),
            name="api-connection-credentials"),
    re_path(rf"^connections/(?P<connection_id>{UUID})/calls/?$", api.ConnectionCallsView.as_view(),
            name="api-connection-calls"),
]
