"""Every audited action leaves an entry, and nothing can change or remove one."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction
from django.test import Client

from accounts import audit
from accounts import services as account_services
from accounts.models import AuditLog, Membership
from agents import approvals, loop, services
from agents.models import Approval
from conftest import PASSWORD


def _actions(organization) -> list[str]:
    return list(AuditLog.objects.filter(organization=organization).order_by("id").values_list("action", flat=True))


@pytest.fixture
def agent(organization, owner):
    return services.agent_create(organization=organization, actor=owner, name="Calc", system_prompt="x",
                                 model="demo", tools=["calculator"])


def test_agent_lifecycle_is_audited_with_a_diff(agent, owner, organization):
    services.agent_update(agent=agent, actor=owner, max_steps=3, name="Calc")
    services.agent_delete(agent=agent, actor=owner)

    entries = list(AuditLog.objects.filter(organization=organization, action__startswith="agent.").order_by("id"))
    assert [e.action for e in entries] == ["agent.create", "agent.update", "agent.delete"]
    assert entries[1].diff == {"max_steps": [10, 3]}, "only what changed"
    assert entries[0].actor_name == "olivia" and entries[0].target_label == "Calc"


def test_run_steering_and_approvals_are_audited(agent, owner, organization):
    run = services.run_start(agent=agent, goal="x", actor=owner)
    services.run_pause(run=run, actor=owner)
    services.run_resume(run=run, actor=owner)
    services.run_cancel(run=run, actor=owner)
    services.run_rerun(run=run, actor=owner)

    assert _actions(organization)[-5:] == ["run.start", "run.pause", "run.resume", "run.cancel", "run.rerun"]


def test_approval_decisions_are_audited(organization, owner):
    note_agent = services.agent_create(organization=organization, actor=owner, name="Notes", system_prompt="x",
                                       model="scripted-notes", tools=["append_note"])
    run = services.run_start(agent=note_agent, goal="x", actor=owner)
    loop.execute_run(run.id)
    approval = Approval.objects.get(run=run)

    approvals.approval_decide(approval=approval, decision="reject", actor=owner, message="no")

    entry = AuditLog.objects.get(action="run.approval_reject")
    assert entry.data["tool"] == "append_note" and entry.data["message"] == "no"


def test_keys_and_roles_are_audited(owner, member, organization):
    token, _ = account_services.api_token_create(user=owner, organization=organization)
    account_services.api_token_revoke(token=token, actor=owner)
    account_services.membership_add(organization=organization, user=member, role=Membership.Role.ADMIN, actor=owner)

    actions = _actions(organization)
    assert "api_key.create" in actions and "api_key.revoke" in actions
    change = AuditLog.objects.get(action="membership.role_change")
    assert change.diff == {"role": ["builder", "admin"]} and change.actor_name == "olivia"


def test_sign_ins_and_failed_sign_ins_are_audited(owner):
    client = Client(HTTP_USER_AGENT="pytest-browser/1.0")
    client.post("/accounts/login/", {"login": "olivia", "password": "wrong"})
    client.post("/accounts/login/", {"login": "olivia", "password": PASSWORD})

    failed = AuditLog.objects.get(action="auth.sign_in_failed")
    assert failed.data == {"login": "olivia"} and "wrong" not in str(failed.data)
    signed_in = AuditLog.objects.get(action="auth.sign_in")
    assert signed_in.actor_name == "olivia"
    assert signed_in.ip == "127.0.0.1" and signed_in.user_agent == "pytest-browser/1.0" and signed_in.request_id


def test_entries_cannot_be_changed_or_deleted(agent):
    entry = AuditLog.objects.first()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(id=entry.id).update(action="nothing.happened")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.delete()
    assert AuditLog.objects.get(id=entry.id).action == "agent.create"


def test_only_the_retention_purge_may_delete_and_only_old_entries(agent):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO accounts_auditlog (at, actor_name, action, target_type, target_id, target_label,"
                       " user_agent, request_id) VALUES (now() - interval '500 days', '', 'old.thing', '', '', '',"
                       " '', '')")

    assert audit.audit_purge(older_than_days=0) == 0  # 0 means keep forever
    assert audit.audit_purge(older_than_days=400) == 1
    assert not AuditLog.objects.filter(action="old.thing").exists()
    assert AuditLog.objects.filter(action="agent.create").exists()


def test_the_audit_api_filters_and_exports(owner_api, member_api, outsider_api, agent, owner, organization):
    services.run_start(agent=agent, goal="x", actor=owner)

    listed = owner_api.get("/api/audit/logs?action=run.").json()
    assert [e["action"] for e in listed["results"]] == ["run.start"]
    assert owner_api.get("/api/audit/logs?actor=olivia").json()["count"] >= 2
    assert owner_api.get("/api/audit/logs?since=yesterday").status_code == 400
    assert owner_api.get("/api/audit/logs?since=2999-01-01T00:00:00Z").json()["count"] == 0
    assert member_api.get("/api/audit/logs").status_code == 403

    export = owner_api.get("/api/audit/logs.csv")
    body = b"".join(export.streaming_content).decode()
    assert export["Content-Type"] == "text/csv"
    assert body.splitlines()[0].startswith("at,actor_name,action")
    assert "agent.create" in body
    assert AuditLog.objects.filter(action="audit.export", organization=organization).exists()


def test_other_organizations_never_see_the_log(outsider_api, agent):
    entries = outsider_api.get("/api/audit/logs").json()["results"]

    assert all(e["target_label"] != "Calc" for e in entries)


def test_the_log_cannot_be_altered_through_the_api_or_admin(owner_api, admin_client, agent):
    entry = AuditLog.objects.first()

    assert owner_api.delete("/api/audit/logs").status_code == 405
    assert owner_api.post("/api/audit/logs", {}, format="json").status_code == 405
    admin_client.post(f"/admin/accounts/auditlog/{entry.id}/delete/", {"post": "yes"})
    admin_client.post(f"/admin/accounts/auditlog/{entry.id}/change/", {"action": "x"})
    assert AuditLog.objects.get(id=entry.id).action == "agent.create"


def test_each_action_the_governance_issue_lists_leaves_an_entry(owner, owner_api, organization, member_with_role):
    """Sign-in, failed sign-in, role change, agent create/edit/delete/share, run start/cancel/approve, key
    create/revoke and export, each done the way a person does it, each found in the log with its actor."""
    browser = Client()
    browser.post("/accounts/login/", {"login": "olivia", "password": "wrong"})
    browser.post("/accounts/login/", {"login": "olivia", "password": PASSWORD})
    viewer = member_with_role("viewer")
    owner_api.patch(f"/api/members/{viewer.memberships.get().id}", {"role": "operator"}, format="json")
    agent = owner_api.post("/api/agents", {"name": "Notes", "system_prompt": "x", "model": "scripted-notes",
                                           "tools": ["append_note"]}, format="json").json()
    owner_api.patch(f"/api/agents/{agent['id']}", {"description": "now described"}, format="json")
    owner_api.post(f"/api/agents/{agent['id']}/shares", {"team": None, "can_edit": False}, format="json")
    first = owner_api.post(f"/api/agents/{agent['id']}/runs", {"goal": "one note"}, format="json").json()
    owner_api.post(f"/api/runs/{first['id']}/cancel")
    second = owner_api.post(f"/api/agents/{agent['id']}/runs", {"goal": "one note"}, format="json").json()
    loop.execute_run(second["id"])  # a write tool: waits for a person
    approval = Approval.objects.get(run_id=second["id"])
    owner_api.post(f"/api/approvals/{approval.id}/decide", {"decision": "approve"}, format="json")
    key = owner_api.post("/api/keys", {"name": "CI", "scopes": ["read"]}, format="json").json()
    owner_api.delete(f"/api/keys/{key['key']['id']}")
    owner_api.get("/api/audit/logs.csv")
    owner_api.delete(f"/api/agents/{agent['id']}")

    entries = AuditLog.objects.filter(organization=organization)
    assert set(entries.values_list("action", flat=True)) >= {
        "auth.sign_in_failed", "auth.sign_in", "membership.role_change", "agent.create", "agent.update",
        "agent.share", "run.start", "run.cancel", "run.approval_approve", "api_key.create", "api_key.revoke",
        "audit.export", "agent.delete",
    }
    assert entries.get(action="agent.update").diff == {"description": ["", "now described"]}
    assert entries.get(action="membership.role_change").diff == {"role": ["viewer", "operator"]}
    assert all(e.actor_id == owner.id for e in entries.exclude(action__startswith="auth.").exclude(
        action="membership.add"))
