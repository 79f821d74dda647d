"""Belonging to several organizations: the switcher in the user menu, POST /orgs/switch/ and /api/me."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Membership
from accounts.roles import DEFAULTS
from conftest import PASSWORD, client_for


@pytest.fixture
def both(organization, other_organization, owner):
    """Olivia owns Acme and is a Viewer in Globex."""
    services.membership_add(organization=other_organization, user=owner, role=Membership.Role.VIEWER)
    return owner


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_lists_every_organization_with_its_role_and_marks_the_current_one(both, organization, other_organization):
    html = _browser(both).get("/agents/").content.decode()

    assert "Acme" in html and "Globex" in html
    assert 'aria-current="true"' in html
    current = html[html.index('aria-current="true"'):][:300]
    assert "Acme" in current and "Owner" in current and "current" in current
    assert f'value="{other_organization.id}"' in html  # the one to switch to
    assert f'value="{organization.id}"' not in html  # the current one has no switch button
    assert "Viewer" in html


def test_switching_acts_in_the_other_organization_with_its_role(both, other_organization):
    browser = _browser(both)

    response = browser.post("/orgs/switch/", {"organization": str(other_organization.id), "next": "/agents/"})

    assert response.status_code == 302 and response["Location"] == "/agents/"
    assert browser.session["organization_id"] == str(other_organization.id)
    html = browser.get("/agents/").content.decode()
    assert "Globex · Viewer" in html
    # Viewers can't add members: in Globex the members page hides the button.
    assert 'id="add-member"' not in browser.get("/settings/members/").content.decode()
    assert browser.get("/api/me").json()["organization"]["slug"] == "globex"


def test_switching_from_an_object_page_lands_on_the_home_page(both, other_organization, organization):
    browser = _browser(both)
    team = services.team_create(organization=organization, name="Finance", actor=both)

    response = browser.post("/orgs/switch/", {"organization": str(other_organization.id),
                                              "next": f"/settings/teams/{team.id}/"})

    assert response["Location"] == "/"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/agents/", "javascript:alert(1)", ""])
def test_switching_never_redirects_off_site(both, other_organization, target):
    response = _browser(both).post("/orgs/switch/", {"organization": str(other_organization.id), "next": target})

    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.parametrize("value", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_switching_to_an_unknown_organization_is_not_found(owner, value):
    assert _browser(owner).post("/orgs/switch/", {"organization": value}).status_code == 404


def test_switching_to_an_organization_you_dont_belong_to_is_not_found(owner, other_organization, outsider):
    browser = _browser(owner)

    assert browser.post("/orgs/switch/", {"organization": str(other_organization.id)}).status_code == 404
    assert "organization_id" not in browser.session


def test_switching_needs_a_post_and_a_signed_in_person(organization, owner):
    assert _browser(owner).get("/orgs/switch/").status_code == 405
    anonymous = Client().post("/orgs/switch/", {"organization": str(organization.id)})
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_the_api_says_who_you_are_where_you_act_and_what_your_role_allows(both, organization, other_organization):
    body = client_for(both, other_organization).get("/api/me").json()

    assert body["username"] == "olivia"
    assert [(o["slug"], o["role"], o["current"]) for o in body["organizations"]] == [
        ("acme", "owner", False), ("globex", "viewer", True)]
    assert body["organization"]["slug"] == "globex" and body["role"] == "viewer"
    assert set(body["permissions"]) == DEFAULTS[Membership.Role.VIEWER]
    assert "accounts.add_membership" not in body["permissions"]


def test_the_api_answers_someone_in_no_organization_yet(db):
    get_user_model().objects.create_user(username="nora", password=PASSWORD)
    api = APIClient()
    api.login(username="nora", password=PASSWORD)

    body = api.get("/api/me").json()

    assert body["organizations"] == [] and body["organization"] is None
    assert body["role"] is None and body["permissions"] == []


def test_the_api_needs_credentials(db):
    assert APIClient().get("/api/me").status_code == 401
