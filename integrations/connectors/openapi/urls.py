"""Routes of the HTTP/OpenAPI connector. config/urls.py includes them:

    api_patterns:  *http_api_urls.api_urlpatterns                              (/api/http-apis...)
    urlpatterns:   path("", include("integrations.connectors.openapi.urls"))   (/integrations/http-apis/...)

The page include must come before integrations.urls, whose `integrations/<slug>/` would otherwise
take /integrations/http-apis/ for an integration called "http-apis".
"""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from integrations.connectors.openapi import views
from integrations.connectors.openapi.api import HttpApiViewSet

app_name = "http_apis"

_router = SimpleRouter()
_router.trailing_slash = "/?"  # like the other API routes: documented without a slash, both accepted
_router.register("http-apis", HttpApiViewSet, basename="http-api")
api_urlpatterns = _router.urls

urlpatterns = [
    path("integrations/http-apis/", views.api_list, name="list"),
    path("integrations/http-apis/new/", views.api_create, name="create"),
    path("integrations/http-apis/<uuid:http_api_id>/", views.api_detail, name="detail"),
    path("integrations/http-apis/<uuid:http_api_id>/operations/", views.api_operations, name="operations"),
    path("integrations/http-apis/<uuid:http_api_id>/edit/", views.api_edit, name="edit"),
    path("integrations/http-apis/<uuid:http_api_id>/delete/", views.api_delete, name="delete"),
]
