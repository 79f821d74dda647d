"""Teams and departments (a department is a team of teams): services, API and pages."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts import services
from accounts.models import AuditLog, Membership, Team, TeamMembership
from accounts.roles import access_for
from conftest import PASSWORD, client_for

User = get_user_model()


@pytest.fixture
def viewer(organization):
    user = User.objects.create_user(username="vic", email="vic@example.com", password=PASSWORD)
    services.membership_add(organization=organization, user=user, role=Membership.Role.VIEWER)
    return user


@pytest.fixture
def finance(organization, owner) -> Team:
    """A department with two teams in it."""
    department = services.team_create(organization=organization, name="Finance", actor=owner)
    services.team_create(organization=organization, name="Payroll", parent=department, actor=owner)
    services.team_create(organization=organization, name="Tax", parent=department, actor=owner)
    return department


def _team(name: str) -> Team:
    return Team.objects.get(name=name)


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _membership(user, organization) -> Membership:
    return Membership.objects.get(user=user, organization=organization)


# --------------------------------------------------------------------------- services


def test_teams_nest_and_their_changes_are_audited(finance, owner):
    payroll = _team("Payroll")
    services.team_update(team=payroll, name="Payroll & benefits", description="People costs", actor=owner)

    assert payroll.parent == finance
    assert [a for a in AuditLog.objects.filter(action__startswith="team.").values_list("action", flat=True)] == [
        "team.update", "team.create", "team.create", "team.create"]
    assert AuditLog.objects.get(action="team.update").diff == {
        "description": ["", "People costs"], "name": ["Payroll", "Payroll & benefits"]}


def test_a_team_cant_sit_inside_itself_or_its_own_sub_teams(finance, owner):
    payroll = _team("Payroll")
    nested = services.team_create(organization=finance.organization, name="Payroll EU", parent=payroll, actor=owner)

    for parent in (finance, payroll, nested):
        with pytest.raises(services.AccountRuleError, match="inside itself") as raised:
            services.team_update(team=finance, parent=parent, actor=owner)
        assert raised.value.field == "parent"
    assert Team.objects.get(id=finance.id).parent_id is None


def test_team_names_are_unique_in_an_organization_but_not_across(finance, owner, outsider, other_organization):
    with pytest.raises(services.AccountRuleError, match="already a team named") as raised:
        services.team_create(organization=finance.organization, name="finance", actor=owner)
    assert raised.value.field == "name"

    assert services.team_create(organization=other_organization, name="Finance", actor=outsider).name == "Finance"


def test_a_parent_from_another_organization_is_refused(finance, outsider, other_organization):
    with pytest.raises(services.AccountRuleError, match="No such team"):
        services.team_create(organization=other_organization, name="Spy", parent=finance, actor=outsider)


def test_deleting_a_department_moves_its_teams_up(finance, owner, organization):
    top = services.team_create(organization=organization, name="Company", actor=owner)
    services.team_update(team=finance, parent=top, actor=owner)

    services.team_delete(team=finance, actor=owner)

    assert {t.name: t.parent for t in Team.objects.filter(organization=organization)} == {
        "Company": None, "Payroll": top, "Tax": top}
    assert AuditLog.objects.get(action="team.delete").data["sub_teams_moved_up"] == ["Payroll", "Tax"]


def test_only_members_of_the_organization_join_its_teams(finance, owner, member, outsider):
    services.team_member_add(team=finance, user=member, actor=owner)
    services.team_member_add(team=finance, user=member, actor=owner)  # already in: nothing happens

    with pytest.raises(services.AccountRuleError, match="Only members") as raised:
        services.team_member_add(team=finance, user=outsider, actor=owner)
    assert raised.value.field == "member"
    assert list(finance.members.all()) == [member]
    assert AuditLog.objects.filter(action="team.member_add").count() == 1

    assert services.team_member_remove(team=finance, user=member, actor=owner) is True
    assert services.team_member_remove(team=finance, user=member, actor=owner) is False
    assert AuditLog.objects.filter(action="team.member_remove").count() == 1


def test_being_in_a_team_puts_you_in_its_department_for_sharing(finance, owner, member, organization):
    services.team_member_add(team=_team("Tax"), user=member, actor=owner)

    assert access_for(user=member, organization=organization).team_ids == {_team("Tax").id, finance.id}


# --------------------------------------------------------------------------- API


def test_the_api_creates_lists_changes_and_deletes_teams(owner_api, finance):
    created = owner_api.post("/api/teams", {"name": "Audit", "parent": str(finance.id)}, format="json")
    assert created.status_code == 201
    team = created.json()
    assert team["parent"] == str(finance.id) and team["member_count"] == 0

    listed = owner_api.get("/api/teams").json()["results"]
    assert [t["name"] for t in listed] == ["Audit", "Finance", "Payroll", "Tax"]

    changed = owner_api.patch(f"/api/teams/{team['id']}", {"parent": None, "description": "Internal"}, format="json")
    assert changed.status_code == 200 and changed.json()["parent"] is None
    assert changed.json()["description"] == "Internal" and changed.json()["name"] == "Audit"

    assert owner_api.delete(f"/api/teams/{team['id']}").status_code == 204
    assert owner_api.get(f"/api/teams/{team['id']}").status_code == 404


@pytest.mark.parametrize("payload, field", [
    ({}, "name"),
    ({"name": "  "}, "name"),
    ({"name": "x" * 121}, "name"),
    ({"name": "New", "parent": "not-a-uuid"}, "parent"),
    ({"name": "New", "parent": ""}, "parent"),
    ({"name": "New", "parent": "00000000-0000-0000-0000-000000000000"}, "parent"),
])
def test_bad_team_requests_get_field_errors(owner_api, finance, payload, field):
    response = owner_api.post("/api/teams", payload, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "validation_error" and field in response.json()["details"]


def test_a_team_name_taken_is_a_conflict(owner_api, finance):
    created = owner_api.post("/api/teams", {"name": "FINANCE"}, format="json")
    renamed = owner_api.patch(f"/api/teams/{_team('Tax').id}", {"name": "Payroll"}, format="json")

    assert created.status_code == 409 and "already a team named" in created.json()["message"]
    assert renamed.status_code == 409 and _team("Tax").name == "Tax"


def test_the_api_refuses_a_cycle_and_a_foreign_parent(owner_api, finance, outsider, other_organization):
    cycle = owner_api.patch(f"/api/teams/{finance.id}", {"parent": str(_team("Tax").id)}, format="json")
    foreign = services.team_create(organization=other_organization, name="Globex ops", actor=outsider)
    elsewhere = owner_api.post("/api/teams", {"name": "New", "parent": str(foreign.id)}, format="json")

    assert cycle.status_code == 400 and "inside itself" in cycle.json()["details"]["parent"][0]
    assert elsewhere.status_code == 400 and elsewhere.json()["details"]["parent"] == [
        "No such team in this organization."]


def test_the_api_adds_and_removes_team_members(owner_api, finance, member, organization):
    membership = _membership(member, organization)

    added = owner_api.post(f"/api/teams/{finance.id}/members", {"member": membership.id}, format="json")
    again = owner_api.post(f"/api/teams/{finance.id}/members", {"member": membership.id}, format="json")
    assert (added.status_code, again.status_code) == (201, 200)
    assert added.json()["username"] == "max" and added.json()["teams"] == [{"id": str(finance.id), "name": "Finance"}]
    assert [m["username"] for m in owner_api.get(f"/api/teams/{finance.id}/members").json()] == ["max"]

    assert owner_api.delete(f"/api/teams/{finance.id}/members/{membership.id}").status_code == 204
    assert owner_api.delete(f"/api/teams/{finance.id}/members/{membership.id}").status_code == 404
    assert not TeamMembership.objects.filter(team=finance).exists()


def test_only_members_of_the_organization_can_be_added_through_the_api(owner_api, finance, outsider,
                                                                       other_organization):
    foreign = _membership(outsider, other_organization)

    for payload in ({"member": foreign.id}, {"member": 0}, {"member": "max"}, {}):
        response = owner_api.post(f"/api/teams/{finance.id}/members", payload, format="json")
        assert response.status_code == 400 and "member" in response.json()["details"], payload
    assert not finance.members.exists()


def test_a_viewer_sees_teams_but_cant_change_them(viewer, finance, member, organization):
    api = client_for(viewer, organization)
    membership = _membership(member, organization)

    assert api.get("/api/teams").status_code == 200
    assert api.get(f"/api/teams/{finance.id}/members").status_code == 200
    for response in (api.post("/api/teams", {"name": "Mine"}, format="json"),
                     api.patch(f"/api/teams/{finance.id}", {"name": "Mine"}, format="json"),
                     api.delete(f"/api/teams/{finance.id}"),
                     api.post(f"/api/teams/{finance.id}/members", {"member": membership.id}, format="json"),
                     api.delete(f"/api/teams/{finance.id}/members/{membership.id}")):
        assert response.status_code == 403 and "Viewer" in response.json()["message"]
    assert Team.objects.get(id=finance.id).name == "Finance"


def test_teams_of_another_organization_are_not_found(outsider_api, finance, member, organization):
    membership = _membership(member, organization)
    services.team_member_add(team=finance, user=member, actor=None)

    assert outsider_api.get(f"/api/teams/{finance.id}").status_code == 404
    assert outsider_api.patch(f"/api/teams/{finance.id}", {"name": "Mine"}, format="json").status_code == 404
    assert outsider_api.delete(f"/api/teams/{finance.id}").status_code == 404
    assert outsider_api.get(f"/api/teams/{finance.id}/members").status_code == 404
    assert outsider_api.delete(f"/api/teams/{finance.id}/members/{membership.id}").status_code == 404
    assert outsider_api.get("/api/teams").json()["results"] == []
    assert finance.members.count() == 1


# --------------------------------------------------------------------------- pages


def test_the_teams_page_shows_departments_with_their_teams(owner, finance):
    html = _browser(owner).get("/settings/teams/").content.decode()

    assert "department · 2 teams" in html
    # Payroll and Tax are listed inside Finance's branch of the tree.
    branch = html[html.index(f'data-team-id="{finance.id}"'):]
    assert "team-tree-nested" in branch and branch.index("Payroll") < branch.index("Tax")


def test_the_team_pages_create_edit_and_refuse_a_cycle(owner, finance):
    browser = _browser(owner)

    created = browser.post("/settings/teams/new/", {"name": "Audit", "description": "", "parent": str(finance.id)})
    audit_team = _team("Audit")
    assert created.status_code == 302 and audit_team.parent == finance

    edit_form = browser.get(f"/settings/teams/{finance.id}/edit/").content.decode()
    assert f'value="{audit_team.id}"' not in edit_form  # a sub-team is never offered as a parent
    cycle = browser.post(f"/settings/teams/{finance.id}/edit/", {"name": "Finance", "parent": str(audit_team.id)})
    assert cycle.status_code == 200 and "Select a valid choice" in cycle.content.decode()
    taken = browser.post(f"/settings/teams/{audit_team.id}/edit/", {"name": "Tax", "parent": str(finance.id)})
    assert "already a team named" in taken.content.decode()
    assert Team.objects.get(id=finance.id).parent is None


def test_the_team_page_adds_and_removes_members_after_asking(owner, finance, member, organization):
    browser = _browser(owner)
    membership = _membership(member, organization)

    browser.post(f"/settings/teams/{finance.id}/members/add/", {"member": str(membership.id)})
    page = browser.get(f"/settings/teams/{finance.id}/").content.decode()
    assert "max" in page and f"/settings/teams/{finance.id}/members/{membership.id}/remove/" in page

    confirm = browser.get(f"/settings/teams/{finance.id}/members/{membership.id}/remove/").content.decode()
    assert "Are you sure?" in confirm and finance.members.filter(id=member.id).exists()
    browser.post(f"/settings/teams/{finance.id}/members/{membership.id}/remove/")
    assert not finance.members.exists()


def test_deleting_a_team_asks_first_and_says_what_happens(owner, finance):
    browser = _browser(owner)

    confirm = browser.get(f"/settings/teams/{finance.id}/delete/").content.decode()
    assert "Are you sure?" in confirm and "Payroll" in confirm and "move up to the top level" in confirm
    assert Team.objects.filter(id=finance.id).exists()

    assert browser.post(f"/settings/teams/{finance.id}/delete/").status_code == 302
    assert not Team.objects.filter(id=finance.id).exists()


def test_a_viewer_reads_team_pages_but_gets_permission_denied_for_changes(viewer, finance, member, organization):
    browser = _browser(viewer)
    membership = _membership(member, organization)
    services.team_member_add(team=finance, user=member, actor=None)

    page = browser.get(f"/settings/teams/{finance.id}/").content.decode()
    assert "max" in page and "Delete" not in page and "team-member-add" not in page
    for response in (browser.get("/settings/teams/new/"), browser.get(f"/settings/teams/{finance.id}/edit/"),
                     browser.get(f"/settings/teams/{finance.id}/delete/"),
                     browser.post(f"/settings/teams/{finance.id}/members/add/", {"member": str(membership.id)}),
                     browser.get(f"/settings/teams/{finance.id}/members/{membership.id}/remove/")):
        assert response.status_code == 403 and "Permission denied" in response.content.decode()


def test_team_pages_of_another_organization_are_not_found(outsider, finance):
    browser = _browser(outsider)

    for path in (f"/settings/teams/{finance.id}/", f"/settings/teams/{finance.id}/edit/",
                 f"/settings/teams/{finance.id}/delete/"):
        assert browser.get(path).status_code == 404
    assert browser.post(f"/settings/teams/{finance.id}/delete/").status_code == 404
    assert Team.objects.filter(id=finance.id).exists()
