"""The project's routes plus this connector's, until config/urls.py includes them (the lead's
file); once it does, the project's routes are used as they are."""

from __future__ import annotations

from django.urls import Resolver404, include, path
from django.urls.resolvers import URLResolver, get_resolver

from config import urls as project
from integrations.connectors.openapi.urls import api_urlpatterns


def _mounted(url: str) -> bool:
    try:
        match = get_resolver(project).resolve(url)
    except Resolver404:
        return False
    view = getattr(match.func, "cls", match.func)
    return view.__module__.startswith("integrations.connectors.openapi")


urlpatterns: list[URLResolver] = []
if not _mounted("/api/http-apis"):
    urlpatterns.append(path("api/", include(api_urlpatterns)))
if not _mounted("/integrations/http-apis/"):
    urlpatterns.append(path("", include("integrations.connectors.openapi.urls")))
urlpatterns += project.urlpatterns

handler404 = "config.errors.handler404"
handler500 = "config.errors.handler500"
