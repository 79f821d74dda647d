"""The settings pages, API keys, the audit log page, the navigation by role, the 403 page, role
rules on the account API, and the rate-limit headers in the OpenAPI document."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts import audit, services
from accounts.models import ApiToken, AuditLog, Membership
from conftest import PASSWORD, client_for

User = get_user_model()

PAGES = ["/settings/members/", "/settings/members/add/", "/settings/teams/", "/settings/teams/new/",
         "/settings/keys/", "/settings/keys/new/", "/audit/", "/usage/"]


def _person(username: str, organization, role: str):
    user = User.objects.create_user(username=username, email=f"{username}@example.com", password=PASSWORD)
    services.membership_add(organization=organization, user=user, role=role)
    return user


@pytest.fixture
def viewer(organization):
    return _person("vic", organization, Membership.Role.VIEWER)


@pytest.fixture
def auditor(organization):
    return _person("aud", organization, Membership.Role.AUDITOR)


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --------------------------------------------------------------------------- pages by role


@pytest.mark.parametrize("path", PAGES)
def test_every_settings_page_renders_for_an_owner(owner, path):
    response = _browser(owner).get(path)

    assert response.status_code == 200
    assert "Permission denied" not in response.content.decode()


@pytest.mark.parametrize("path", ["/settings/members/add/", "/settings/teams/new/", "/audit/"])
def test_a_viewer_gets_permission_denied_with_a_way_back(viewer, path):
    response = _browser(viewer).get(path, HTTP_REFERER="http://testserver/settings/members/")

    html = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Permission denied</h1>" in html and "your role (Viewer) can" in html
    assert re.search(r'<a class="btn" href="http://testserver/settings/members/" id="go-back">Go back</a>', html)


def test_the_way_back_never_leads_off_site(viewer):
    html = _browser(viewer).get("/audit/", HTTP_REFERER="https://evil.example/phish").content.decode()

    assert 'href="/" id="go-back"' in html and "evil.example" not in html


def test_someone_in_no_organization_is_told_so(db):
    User.objects.create_user(username="nora", password=PASSWORD)
    browser = Client()
    browser.login(username="nora", password=PASSWORD)

    response = browser.get("/settings/members/")

    assert response.status_code == 403 and "not a member of any organization" in response.content.decode()


def test_the_navigation_shows_only_what_the_role_can_open(owner, viewer, auditor):
    owners = _browser(owner).get("/settings/keys/").content.decode()
    viewers = _browser(viewer).get("/settings/keys/").content.decode()
    auditors = _browser(auditor).get("/settings/keys/").content.decode()

    assert ">Audit log</a>" in owners and ">Settings</a>" in owners and 'href="/settings/sso/"' in owners
    assert ">Audit log</a>" not in viewers and 'href="/settings/sso/"' not in viewers
    assert ">Settings</a>" in viewers  # members and teams are readable by every role
    assert ">Audit log</a>" in auditors and 'id="add-member"' not in auditors
    for html in (owners, viewers, auditors):
        assert 'href="/accounts/2fa/">Two-factor authentication</a>' in html and ">API keys</a>" in html


# --------------------------------------------------------------------------- API keys


def test_a_personal_key_is_created_with_scopes_and_expiry_and_shown_once(owner, organization):
    browser = _browser(owner)
    day = (timezone.now() + timedelta(days=30)).date()

    response = browser.post("/settings/keys/new/", {"name": "CI", "kind": "personal", "scopes": ["read", "run"],
                                                    "expires_on": day.isoformat()})

    html = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    raw = re.search(r'id="new-api-key" value="(agt_[^"]+)"', html).group(1)
    assert 'data-copy-target="new-api-key"' in html
    key = ApiToken.objects.get(name="CI")
    assert key.scopes == ["read", "run"] and key.expires_at.date() == day and key.kind == "personal"
    assert key.key_hash == ApiToken.hash_key(raw)
    listed = browser.get("/settings/keys/").content.decode()
    assert "CI" in listed and raw not in listed and key.hint in listed
    assert client_for(owner, organization).get("/api/me").status_code == 200


@pytest.mark.parametrize("form, field_error", [
    ({"name": "", "scopes": ["read"]}, "This field is required."),
    ({"name": "x", "scopes": []}, "This field is required."),
    ({"name": "x", "scopes": ["root"]}, "Select a valid choice."),
    ({"name": "x", "scopes": ["read"], "expires_on": "2001-01-01"}, "Pick a day after today."),
    ({"name": "x", "scopes": ["read"], "expires_on": "soon"}, "Enter a valid date."),
])
def test_a_bad_key_form_says_what_is_wrong(owner, form, field_error):
    response = _browser(owner).post("/settings/keys/new/", form)

    assert response.status_code == 200 and field_error in response.content.decode()
    assert not ApiToken.objects.filter(user=owner, name="x").exists()


def test_only_roles_that_manage_service_keys_see_and_create_them(owner, viewer, organization):
    services.api_token_create(user=owner, organization=organization, name="Shared bot", kind="service")
    browser = _browser(viewer)

    page = browser.get("/settings/keys/").content.decode()
    assert "Shared bot" not in page and "Service keys" not in page
    assert 'name="kind"' not in browser.get("/settings/keys/new/").content.decode()
    browser.post("/settings/keys/new/", {"name": "sneaky", "kind": "service", "scopes": ["read"]})
    assert ApiToken.objects.get(name="sneaky").kind == "personal"  # no choice offered, so a personal key
    assert "Shared bot" in _browser(owner).get("/settings/keys/").content.decode()


def test_revoking_a_key_asks_first(owner, organization):
    key, raw = services.api_token_create(user=owner, organization=organization, name="Old")
    browser = _browser(owner)

    confirm = browser.get(f"/settings/keys/{key.id}/revoke/").content.decode()
    assert "Are you sure?" in confirm and ApiToken.objects.get(id=key.id).revoked_at is None

    browser.post(f"/settings/keys/{key.id}/revoke/")
    assert ApiToken.objects.get(id=key.id).revoked_at is not None
    assert AuditLog.objects.filter(action="api_key.revoke", target_id=str(key.id)).exists()


def test_someone_elses_key_is_not_found(owner, viewer, organization, outsider, other_organization):
    mine, _ = services.api_token_create(user=owner, organization=organization, name="Mine")
    service, _ = services.api_token_create(user=owner, organization=organization, name="Bot", kind="service")
    foreign, _ = services.api_token_create(user=outsider, organization=other_organization, name="Theirs",
                                           kind="service")

    for key in (mine, service):
        assert _browser(viewer).post(f"/settings/keys/{key.id}/revoke/").status_code == 404
    assert _browser(owner).get(f"/settings/keys/{foreign.id}/revoke/").status_code == 404
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()


def test_the_keys_api_checks_service_keys_against_the_role(viewer, organization):
    api = client_for(viewer, organization)

    refused = api.post("/api/keys", {"name": "svc", "kind": "service"}, format="json")
    personal = api.post("/api/keys", {"name": "mine"}, format="json")

    assert refused.status_code == 403 and "(Viewer)" in refused.json()["message"]
    assert personal.status_code == 201


# --------------------------------------------------------------------------- audit log


def test_the_audit_page_filters_paginates_and_links_the_export(owner, member, organization, settings):
    settings.AUDIT_RETENTION_DAYS = 90
    services.team_create(organization=organization, name="Ops", actor=owner)
    for n in range(30):
        audit.audit_record(action="test.bulk", actor=member, organization=organization, data={"n": n})
    browser = _browser(owner)

    html = browser.get("/audit/").content.decode()
    assert 'id="audit-retention">90 days' in html
    assert "Page 1 of 2" in html and 'href="/api/audit/logs.csv"' in html

    only_teams = browser.get("/audit/?action=team.").content.decode()
    assert "<code>team.create</code>" in only_teams and "<code>test.bulk</code>" not in only_teams
    assert 'href="/api/audit/logs.csv?action=team."' in only_teams
    by_actor = browser.get("/audit/?actor=olivia").content.decode()
    assert "<code>test.bulk</code>" not in by_actor and "<code>team.create</code>" in by_actor
    today = timezone.now().date().isoformat()
    dated = browser.get(f"/audit/?since={today}&until={today}&action=test.").content.decode()
    assert "Page 1 of 2" in dated and f"since={today}T00%3A00%3A00%2B00%3A00" in dated
    assert "No entries match" in browser.get("/audit/?since=2999-01-01").content.decode()
    bad = browser.get("/audit/?since=yesterday&until=2000-01-01").content.decode()
    assert "Enter a valid date." in bad


def test_the_export_link_downloads_the_filtered_csv_and_is_audited(owner, organization):
    services.team_create(organization=organization, name="Ops", actor=owner)
    browser = _browser(owner)
    link = re.search(r'href="(/api/audit/logs\.csv[^"]*)" id="audit-export"',
                     browser.get("/audit/?action=team.").content.decode()).group(1)

    response = browser.get(link.replace("&amp;", "&"))

    body = b"".join(response.streaming_content).decode()
    assert response.status_code == 200 and "team.create" in body and "auth.sign_in" not in body
    assert AuditLog.objects.filter(action="audit.export", actor=owner).exists()


def test_an_entry_shows_its_diff_and_data(owner, member, organization):
    services.membership_role_change(membership=Membership.objects.get(user=member), role="operator", actor=owner)
    entry = AuditLog.objects.get(action="membership.role_change")

    html = _browser(owner).get(f"/audit/{entry.id}/").content.decode()

    assert "membership.role_change" in html and "&quot;builder&quot;" in html and "&quot;operator&quot;" in html


def test_auditors_read_the_log_and_builders_dont(auditor, member, organization):
    entry = audit.audit_record(action="test.thing", organization=organization)

    assert _browser(auditor).get(f"/audit/{entry.id}/").status_code == 200
    assert 'id="audit-export"' in _browser(auditor).get("/audit/").content.decode()
    assert _browser(member).get(f"/audit/{entry.id}/").status_code == 403


def test_entries_of_another_organization_are_not_found(outsider, organization):
    entry = audit.audit_record(action="test.secret", organization=organization)

    assert _browser(outsider).get(f"/audit/{entry.id}/").status_code == 404
    assert "test.secret" not in _browser(outsider).get("/audit/").content.decode()


def test_the_audit_log_has_no_way_to_edit_or_delete(owner, organization):
    entry = audit.audit_record(action="test.thing", organization=organization)
    browser = _browser(owner)

    assert browser.post("/audit/").status_code == 405
    assert browser.post(f"/audit/{entry.id}/").status_code == 405
    assert browser.delete(f"/audit/{entry.id}/").status_code == 405


def test_the_audit_api_follows_the_role_permissions(auditor, member, organization):
    assert client_for(auditor, organization).get("/api/audit/logs").status_code == 200
    assert client_for(auditor, organization).get("/api/audit/logs.csv").status_code == 200
    refused = client_for(member, organization).get("/api/audit/logs")
    assert refused.status_code == 403 and "(Builder)" in refused.json()["message"]


def test_the_usage_api_follows_the_role_permissions(owner, organization):
    from django.contrib.auth.models import Group

    from accounts.roles import role_permissions

    assert client_for(owner, organization).get("/api/usage").status_code == 200
    Group.objects.get(name="Owner").permissions.remove(*Group.objects.get(name="Owner").permissions.filter(
        codename="view_quota"))
    try:
        assert client_for(owner, organization).get("/api/usage").status_code == 403
    finally:
        role_permissions.clear()


# --------------------------------------------------------------------------- OpenAPI


@pytest.fixture(scope="module")
def schema():
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_documented_response_carries_the_rate_limit_headers(schema):
    checked = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                headers = response.get("headers", {})
                for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
                    assert headers.get(name, {}).get("schema", {}).get("type") == "integer", (path, method, code, name)
                    assert not headers[name].get("required"), "absent while Redis is down, so not required"
                checked += 1
    assert checked > 100


def test_too_many_requests_documents_retry_after(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            refused = operation["responses"]["429"]
            assert "Retry-After" in refused["headers"], (path, method)
            assert refused["content"]["application/json"]["schema"]["$ref"].endswith("/RateLimited")
    body = schema["components"]["schemas"]["RateLimited"]
    assert body["properties"]["retry_after"]["type"] == "integer" and "retry_after" not in body["required"]


def test_the_members_and_teams_api_document_their_conflicts_and_paths(schema):
    paths = schema["paths"]
    assert "409" in paths["/api/members/{id}"]["patch"]["responses"]
    assert "409" in paths["/api/members/{id}"]["delete"]["responses"]
    assert {"get", "post"} <= set(paths["/api/teams/{id}/members"])
    assert set(paths["/api/teams/{id}/members/{membership_id}"]) == {"delete"}
    assert "get" in paths["/api/me"]
