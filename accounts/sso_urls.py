"""Single sign-on routes. config/urls.py includes these *before* allauth's, so the two sign-in
starts below take allauth's paths (same URL, same reverse() names on allauth's side) and check the
provider first; allauth's callback, ACS and metadata routes stay allauth's."""

from __future__ import annotations

from django.urls import path

from accounts import sso_views

app_name = "sso"

urlpatterns = [
    path("accounts/oidc/<str:provider_id>/login/", sso_views.oidc_login, name="oidc-login"),
    path("accounts/saml/<str:organization_slug>/login/", sso_views.saml_login, name="saml-login"),
    path("accounts/sso/", sso_views.discover, name="discover"),
    path("settings/sso/", sso_views.provider_list, name="list"),
    path("settings/sso/new/", sso_views.provider_create, name="create"),
    path("settings/sso/<uuid:provider_id>/", sso_views.provider_detail, name="detail"),
    path("settings/sso/<uuid:provider_id>/edit/", sso_views.provider_edit, name="edit"),
    path("settings/sso/<uuid:provider_id>/delete/", sso_views.provider_delete, name="delete"),
    path("settings/sso/<uuid:provider_id>/test/", sso_views.provider_test, name="test"),
]
