from __future__ import annotations

from django.urls import path

from accounts import onboarding, views

app_name = "accounts"

urlpatterns = [
    path("usage/", views.usage, name="usage"),
    path("welcome/", onboarding.welcome, name="welcome"),
    path("orgs/switch/", views.org_switch, name="org-switch"),
    path("settings/", views.settings_home, name="settings"),
    path("settings/members/", views.member_list, name="member-list"),
    path("settings/members/add/", views.member_add, name="member-add"),
    path("settings/members/<int:membership_id>/", views.member_detail, name="member-detail"),
    path("settings/members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path("settings/members/<int:membership_id>/remove/", views.member_remove, name="member-remove"),
    path("settings/teams/", views.team_list, name="team-list"),
    path("settings/teams/new/", views.team_create, name="team-create"),
    path("settings/teams/<uuid:team_id>/", views.team_detail, name="team-detail"),
    path("settings/teams/<uuid:team_id>/edit/", views.team_edit, name="team-edit"),
    path("settings/teams/<uuid:team_id>/delete/", views.team_delete, name="team-delete"),
    path("settings/teams/<uuid:team_id>/members/add/", views.team_member_add, name="team-member-add"),
    path("settings/teams/<uuid:team_id>/members/<int:membership_id>/remove/", views.team_member_remove,
         name="team-member-remove"),
    path("settings/keys/", views.key_list, name="key-list"),
    path("settings/keys/new/", views.key_create, name="key-create"),
    path("settings/keys/<uuid:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("audit/", views.audit_list, name="audit-list"),
    path("audit/<int:entry_id>/", views.audit_detail, name="audit-detail"),
]
