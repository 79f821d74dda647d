"""Members of an organization: adding, inviting, roles, removal, and the rules about Owners."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts import services
from accounts.models import ApiToken, AuditLog, Membership, TeamMembership
from accounts.roles import Denied, role_permissions
from conftest import PASSWORD, client_for

User = get_user_model()


def _person(username: str, organization=None, role: str = Membership.Role.VIEWER):
    user = User.objects.create_user(username=username, email=f"{username}@example.com", password=PASSWORD)
    if organization is not None:
        services.membership_add(organization=organization, user=user, role=role)
    return user


@pytest.fixture
def admin(organization):
    return _person("ada", organization, Membership.Role.ADMIN)


@pytest.fixture
def viewer(organization):
    return _person("vic", organization, Membership.Role.VIEWER)


def _membership(user, organization) -> Membership:
    return Membership.objects.select_related("organization", "user").get(user=user, organization=organization)


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --------------------------------------------------------------------------- services


def test_a_role_change_is_audited_with_a_diff(owner, member, organization):
    services.membership_role_change(membership=_membership(member, organization), role="operator", actor=owner)

    assert _membership(member, organization).role == "operator"
    entry = AuditLog.objects.get(action="membership.role_change", target_id=str(member.pk))
    assert entry.diff == {"role": ["builder", "operator"]} and entry.actor_name == "olivia"


def test_nobody_changes_their_own_role(owner, organization):
    with pytest.raises(Denied, match="their own role"):
        services.membership_role_change(membership=_membership(owner, organization), role="admin", actor=owner)


def test_only_holders_of_manage_owners_grant_or_touch_the_owner_role(owner, admin, member, organization):
    with pytest.raises(Denied, match=r"your role \(Admin\) can't grant the Owner role"):
        services.membership_role_change(membership=_membership(member, organization), role="owner", actor=admin)
    with pytest.raises(Denied, match="change an Owner's role"):
        services.membership_role_change(membership=_membership(owner, organization), role="viewer", actor=admin)
    with pytest.raises(Denied, match="remove an Owner"):
        services.membership_remove(membership=_membership(owner, organization), actor=admin)

    services.membership_role_change(membership=_membership(member, organization), role="owner", actor=owner)
    assert _membership(member, organization).role == "owner"


def test_an_organization_always_keeps_an_owner(owner, organization):
    second = _person("otto", organization, Membership.Role.OWNER)
    services.membership_role_change(membership=_membership(owner, organization), role="admin", actor=second)

    with pytest.raises(services.LastOwner, match="at least one Owner"):
        services.membership_role_change(membership=_membership(second, organization), role="admin", actor=None)
    with pytest.raises(services.LastOwner):
        services.membership_remove(membership=_membership(second, organization), actor=None)
    assert _membership(second, organization).role == "owner"


def test_removing_a_member_takes_them_out_of_teams_and_revokes_their_keys(owner, member, organization,
                                                                          other_organization):
    team = services.team_create(organization=organization, name="Ops", actor=owner)
    services.team_member_add(team=team, user=member, actor=owner)
    token, _ = services.api_token_create(user=member, organization=organization)
    services.membership_add(organization=other_organization, user=member, role="viewer")
    elsewhere, _ = services.api_token_create(user=member, organization=other_organization)

    services.membership_remove(membership=_membership(member, organization), actor=owner)

    assert not Membership.objects.filter(user=member, organization=organization).exists()
    assert not TeamMembership.objects.filter(user=member).exists()
    assert ApiToken.objects.get(id=token.id).revoked_at is not None
    assert ApiToken.objects.get(id=elsewhere.id).revoked_at is None
    entry = AuditLog.objects.get(action="membership.remove")
    assert entry.data == {"role": "builder", "teams": ["Ops"], "api_keys_revoked": 1}


def test_an_invitation_creates_the_account_and_emails_a_set_password_link_that_works(owner, organization,
                                                                                     mailoutbox):
    membership = services.member_invite(organization=organization, email="New.Person@Example.com", role="operator",
                                        actor=owner)

    user = membership.user
    assert user.username == "New.Person" and not user.has_usable_password()
    assert AuditLog.objects.get(action="membership.invite").data == {"email": "New.Person@Example.com",
                                                                     "role": "operator"}
    [mail] = mailoutbox
    assert mail.to == ["New.Person@Example.com"] and "Acme" in mail.subject and "olivia" in mail.subject
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+", mail.body).group(0)
    path = link.split("://", 1)[1].split("/", 1)[1]

    # allauth's own reset page takes the key (and redirects to a form that hides it), then sets the password.
    browser = Client()
    form_page = browser.get("/" + path, follow=True)
    [(form_url, _)] = form_page.redirect_chain
    assert form_page.status_code == 200 and "password1" in form_page.content.decode()
    done = browser.post(form_url, {"password1": "a new long passphrase", "password2": "a new long passphrase"})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a new long passphrase")
    assert Client().login(username="New.Person", password="a new long passphrase")


def test_an_invitation_refuses_an_email_that_already_has_an_account(owner, member, organization, mailoutbox):
    with pytest.raises(services.AccountRuleError, match="add them by username instead") as raised:
        services.member_invite(organization=organization, email="MAX@example.com", role="viewer", actor=owner)

    assert raised.value.field == "email" and mailoutbox == []


def test_an_invitation_that_cant_be_emailed_leaves_nobody_behind(owner, organization, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False

    with pytest.raises(services.AccountRuleError, match="could not be sent"):
        services.member_invite(organization=organization, email="lost@example.com", role="viewer", actor=owner)

    assert not User.objects.filter(email="lost@example.com").exists()


# --------------------------------------------------------------------------- API


def test_members_are_listed_with_roles_and_teams_and_filtered(owner_api, owner, member, viewer, organization):
    team = services.team_create(organization=organization, name="Ops", actor=owner)
    services.team_member_add(team=team, user=member, actor=owner)

    listed = owner_api.get("/api/members").json()["results"]
    assert [(m["username"], m["role"]) for m in listed] == [("max", "builder"), ("olivia", "owner"),
                                                            ("vic", "viewer")]
    assert listed[0]["teams"] == [{"id": str(team.id), "name": "Ops"}] and listed[0]["invited"] is False
    assert [m["username"] for m in owner_api.get("/api/members?role=viewer").json()["results"]] == ["vic"]
    assert [m["username"] for m in owner_api.get(f"/api/members?team={team.id}").json()["results"]] == ["max"]
    assert [m["username"] for m in owner_api.get("/api/members?search=OLI").json()["results"]] == ["olivia"]


@pytest.mark.parametrize("query, field", [("role=king", "role"), ("team=nope", "team"), ("search=a%00b", "search")])
def test_bad_member_filters_get_field_errors(owner_api, query, field):
    response = owner_api.get(f"/api/members?{query}")

    assert response.status_code == 400 and field in response.json()["details"]


def test_the_api_adds_an_existing_person_by_username_or_email(owner_api, organization):
    _person("sam")
    _person("sue")

    by_name = owner_api.post("/api/members", {"user": "sam", "role": "operator"}, format="json")
    by_email = owner_api.post("/api/members", {"user": "SUE@example.com"}, format="json")

    assert by_name.status_code == 201 and by_name.json()["role"] == "operator"
    assert by_email.status_code == 201 and by_email.json()["username"] == "sue" and by_email.json()["role"] == "viewer"
    assert AuditLog.objects.filter(action="membership.add", organization=organization).count() >= 2


def test_the_api_invites_someone_new_by_email(owner_api, mailoutbox):
    response = owner_api.post("/api/members", {"user": "newbie@example.com", "role": "builder"}, format="json")

    assert response.status_code == 201
    assert response.json()["invited"] is True and response.json()["email"] == "newbie@example.com"
    assert len(mailoutbox) == 1


@pytest.mark.parametrize("payload, field", [
    ({}, "user"),
    ({"user": "nobody-by-that-name"}, "user"),
    ({"user": "not@an@email"}, "user"),
    ({"user": "sam", "role": "emperor"}, "role"),
])
def test_bad_member_requests_get_field_errors(owner_api, member, payload, field):
    _person("sam")

    response = owner_api.post("/api/members", payload, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "validation_error" and field in body["details"]


def test_adding_someone_already_in_the_organization_is_a_conflict(owner_api, member):
    response = owner_api.post("/api/members", {"user": "max@example.com", "role": "admin"}, format="json")

    assert response.status_code == 409 and "already a member" in response.json()["message"]
    assert Membership.objects.get(user=member).role == "builder"


def test_the_api_changes_roles_and_removes_members(owner_api, member, organization):
    membership = _membership(member, organization)

    changed = owner_api.patch(f"/api/members/{membership.id}", {"role": "auditor"}, format="json")
    assert changed.status_code == 200 and changed.json()["role"] == "auditor"
    assert owner_api.patch(f"/api/members/{membership.id}", {"role": "x"}, format="json").status_code == 400

    assert owner_api.delete(f"/api/members/{membership.id}").status_code == 204
    assert owner_api.get(f"/api/members/{membership.id}").status_code == 404


@pytest.fixture
def admins_manage_owners(db):
    """Operators may give the Admin role accounts.manage_owners in the admin; then an Admin could try to
    demote or remove the only Owner, which is what the 409 is for."""
    from django.contrib.auth.models import Group, Permission

    Group.objects.get(name="Admin").permissions.add(Permission.objects.get(codename="manage_owners"))
    yield
    role_permissions.clear()  # the test's transaction rolls the grant back; the process-wide cache must follow


def test_the_last_owner_is_a_conflict_even_for_someone_who_manages_owners(admins_manage_owners, owner, admin,
                                                                         organization):
    api = client_for(admin, organization)
    target = _membership(owner, organization)

    demoted = api.patch(f"/api/members/{target.id}", {"role": "admin"}, format="json")
    removed = api.delete(f"/api/members/{target.id}")

    assert demoted.status_code == 409 and removed.status_code == 409
    assert demoted.json()["error"] == "conflict" and "at least one Owner" in demoted.json()["message"]
    assert _membership(owner, organization).role == "owner"
    # With a second Owner, the first may go.
    promoted = api.patch(f"/api/members/{_membership(_person('otto', organization), organization).id}",
                         {"role": "owner"}, format="json")
    assert promoted.status_code == 200
    assert api.patch(f"/api/members/{target.id}", {"role": "admin"}, format="json").status_code == 200


def test_nobody_changes_their_own_role_or_removes_themselves_through_the_api(owner_api, owner, organization):
    own = _membership(owner, organization)

    changed = owner_api.patch(f"/api/members/{own.id}", {"role": "admin"}, format="json")
    removed = owner_api.delete(f"/api/members/{own.id}")

    assert changed.status_code == 403 and "own role" in changed.json()["message"]
    assert removed.status_code == 403 and "remove yourself" in removed.json()["message"]


def test_an_admin_can_manage_members_but_not_owners(owner, admin, member, organization):
    api = client_for(admin, organization)

    assert api.patch(f"/api/members/{_membership(member, organization).id}", {"role": "operator"},
                     format="json").status_code == 200
    for response in (api.patch(f"/api/members/{_membership(member, organization).id}", {"role": "owner"},
                               format="json"),
                     api.patch(f"/api/members/{_membership(owner, organization).id}", {"role": "viewer"},
                               format="json"),
                     api.delete(f"/api/members/{_membership(owner, organization).id}"),
                     api.post("/api/members", {"user": "newowner@example.com", "role": "owner"}, format="json")):
        assert response.status_code == 403 and "(Admin)" in response.json()["message"]
    assert not User.objects.filter(email="newowner@example.com").exists()


def test_a_viewer_can_list_members_but_not_change_them(viewer, member, organization):
    api = client_for(viewer, organization)
    target = _membership(member, organization)

    assert api.get("/api/members").status_code == 200
    for response in (api.post("/api/members", {"user": "x@example.com"}, format="json"),
                     api.patch(f"/api/members/{target.id}", {"role": "viewer"}, format="json"),
                     api.delete(f"/api/members/{target.id}")):
        assert response.status_code == 403 and "Viewer" in response.json()["message"]


def test_members_of_another_organization_are_not_found(outsider_api, member, organization):
    target = _membership(member, organization)

    assert outsider_api.get(f"/api/members/{target.id}").status_code == 404
    assert outsider_api.patch(f"/api/members/{target.id}", {"role": "viewer"}, format="json").status_code == 404
    assert outsider_api.delete(f"/api/members/{target.id}").status_code == 404
    assert "max" not in str(outsider_api.get("/api/members").json())
    assert _membership(member, organization).role == "builder"


# --------------------------------------------------------------------------- pages


def test_the_members_page_lists_filters_and_searches(owner, member, viewer, organization):
    team = services.team_create(organization=organization, name="Ops", actor=owner)
    services.team_member_add(team=team, user=member, actor=owner)
    browser = _browser(owner)

    html = browser.get("/settings/members/").content.decode()
    assert all(name in html for name in ("olivia", "max", "vic", "Ops", "Builder", "Viewer"))
    assert 'id="add-member"' in html
    only_viewers = browser.get("/settings/members/?role=viewer").content.decode()
    assert "vic" in only_viewers and "max@example.com" not in only_viewers
    in_team = browser.get(f"/settings/members/?team={team.id}").content.decode()
    assert "max@example.com" in in_team and "vic@example.com" not in in_team
    assert "Nobody matches" in browser.get("/settings/members/?q=zzz").content.decode()


def test_the_add_page_adds_invites_and_explains_refusals(owner, member, organization, mailoutbox):
    _person("sam")
    browser = _browser(owner)

    added = browser.post("/settings/members/add/", {"login": "sam", "role": "operator"})
    assert added.status_code == 302
    assert _membership(User.objects.get(username="sam"), organization).role == "operator"
    invited = browser.post("/settings/members/add/", {"login": "fresh@example.com", "role": "viewer"}, follow=True)
    assert "Invitation sent to fresh@example.com" in invited.content.decode() and len(mailoutbox) == 1

    again = browser.post("/settings/members/add/", {"login": "max", "role": "viewer"})
    assert again.status_code == 200 and "already a member" in again.content.decode()
    unknown = browser.post("/settings/members/add/", {"login": "ghost", "role": "viewer"})
    assert "Nobody has that username" in unknown.content.decode()


def test_admins_are_not_offered_the_owner_role(admin, member, organization):
    browser = _browser(admin)

    html = browser.get("/settings/members/add/").content.decode()
    assert 'value="owner"' not in html and 'value="admin"' in html
    refused = browser.post("/settings/members/add/", {"login": "someone@example.com", "role": "owner"})
    assert refused.status_code == 200 and not User.objects.filter(email="someone@example.com").exists()


def test_the_member_page_changes_a_role(owner, member, organization):
    membership = _membership(member, organization)
    browser = _browser(owner)

    assert 'id="role-form"' in browser.get(f"/settings/members/{membership.id}/").content.decode()
    response = browser.post(f"/settings/members/{membership.id}/role/", {"role": "auditor"}, follow=True)

    assert "Builder → Auditor" in response.content.decode()
    assert _membership(member, organization).role == "auditor"


def test_your_own_member_page_has_no_role_form(owner, organization):
    membership = _membership(owner, organization)
    browser = _browser(owner)

    html = browser.get(f"/settings/members/{membership.id}/").content.decode()
    assert 'id="role-form"' not in html and "Nobody can change their own role" in html
    assert browser.post(f"/settings/members/{membership.id}/role/", {"role": "admin"}).status_code == 403


def test_the_pages_explain_why_the_last_owner_stays(admins_manage_owners, owner, admin, organization):
    target = _membership(owner, organization)
    browser = _browser(admin)

    demoted = browser.post(f"/settings/members/{target.id}/role/", {"role": "admin"})
    removed = browser.post(f"/settings/members/{target.id}/remove/")

    assert demoted.status_code == 409 and "must keep at least one Owner" in demoted.content.decode()
    assert removed.status_code == 409 and "must keep at least one Owner" in removed.content.decode()
    assert _membership(owner, organization).role == "owner"


def test_removing_a_member_asks_first(owner, member, organization):
    membership = _membership(member, organization)
    browser = _browser(owner)

    confirm = browser.get(f"/settings/members/{membership.id}/remove/").content.decode()
    assert "Are you sure?" in confirm and "Yes, remove them" in confirm
    assert Membership.objects.filter(id=membership.id).exists()

    browser.post(f"/settings/members/{membership.id}/remove/")
    assert not Membership.objects.filter(id=membership.id).exists()


def test_nobody_removes_themselves_and_admins_dont_remove_owners(owner, admin, organization):
    assert _browser(owner).get(f"/settings/members/{_membership(owner, organization).id}/remove/").status_code == 403
    denied = _browser(admin).get(f"/settings/members/{_membership(owner, organization).id}/remove/")
    assert denied.status_code == 403 and "can&#x27;t remove an Owner" in denied.content.decode()
    assert _browser(admin).post(f"/settings/members/{_membership(owner, organization).id}/remove/").status_code == 403


def test_a_viewer_reads_the_members_page_but_cant_change_anyone(viewer, member, organization):
    membership = _membership(member, organization)
    browser = _browser(viewer)

    page = browser.get("/settings/members/").content.decode()
    assert "max" in page and 'id="add-member"' not in page
    assert 'id="role-form"' not in browser.get(f"/settings/members/{membership.id}/").content.decode()
    for response in (browser.get("/settings/members/add/"),
                     browser.post(f"/settings/members/{membership.id}/role/", {"role": "viewer"}),
                     browser.get(f"/settings/members/{membership.id}/remove/")):
        assert response.status_code == 403 and "Permission denied" in response.content.decode()


def test_member_pages_of_another_organization_are_not_found(outsider, member, organization):
    membership = _membership(member, organization)
    browser = _browser(outsider)

    for path in (f"/settings/members/{membership.id}/", f"/settings/members/{membership.id}/remove/"):
        assert browser.get(path).status_code == 404
    assert browser.post(f"/settings/members/{membership.id}/role/", {"role": "viewer"}).status_code == 404
    assert browser.post(f"/settings/members/{membership.id}/remove/").status_code == 404
    assert Membership.objects.filter(id=membership.id, role="builder").exists()
