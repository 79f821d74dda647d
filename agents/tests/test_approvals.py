"""Human approval of tool calls, policies and dry runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.roles import access_for
from agents import approvals, loop, services
from agents.models import Approval, Run, RunEvent
from conftest import client_for
from tests.fakes import scripted


@pytest.fixture(autouse=True)
def _clean_notes():
    scripted.NOTES.clear()


@pytest.fixture
def note_agent(organization, owner):
    def make(**overrides):
        fields = {"name": "Notes", "system_prompt": "Write notes.", "model": "scripted-notes",
                  "tools": ["append_note"], "max_steps": 10, "timeout_seconds": 60} | overrides
        return services.agent_create(organization=organization, actor=owner, **fields)

    return make


def _run(agent, owner, **kwargs) -> Run:
    run = services.run_start(agent=agent, goal="Two notes", actor=owner, **kwargs)
    loop.execute_run(run.id)
    run.refresh_from_db()
    return run


def _pending(run) -> Approval:
    return Approval.objects.get(run=run, status=Approval.Status.PENDING)


def _drive(run, owner, decision="approve", **kwargs) -> Run:
    """Decide every approval the run asks for, the same way, until it stops asking."""
    for _ in range(5):
        if run.status != Run.Status.AWAITING_APPROVAL:
            break
        approvals.approval_decide(approval=_pending(run), decision=decision, actor=owner, **kwargs)
        loop.execute_run(run.id)
        run.refresh_from_db()
    return run


def test_a_write_tool_waits_for_approval_and_runs_once_approved(note_agent, owner):
    run = _run(note_agent(), owner)

    assert run.status == Run.Status.AWAITING_APPROVAL
    approval = _pending(run)
    assert (approval.tool, approval.arguments) == ("append_note", {"text": "note 0"})
    assert scripted.NOTES == []
    requested = RunEvent.objects.filter(run=run, type="approval").last()
    assert requested.data["status"] == "pending" and requested.data["arguments"] == {"text": "note 0"}

    run = _drive(run, owner)

    assert run.status == Run.Status.SUCCEEDED
    assert scripted.NOTES == ["note 0", "note 1"]
    starts = RunEvent.objects.filter(run=run, type="tool_start")
    assert all(s.data.get("approved_by") == "olivia" for s in starts)


def test_an_edited_call_runs_with_the_new_arguments(note_agent, owner):
    run = _run(note_agent(), owner)

    approvals.approval_decide(approval=_pending(run), decision="edit", actor=owner, arguments={"text": "edited"})
    loop.execute_run(run.id)

    assert scripted.NOTES[0] == "edited"


def test_edited_arguments_must_match_the_tool_schema(note_agent, owner):
    run = _run(note_agent(), owner)

    with pytest.raises(approvals.InvalidArguments):
        approvals.approval_decide(approval=_pending(run), decision="edit", actor=owner, arguments={"txt": 1})
    assert _pending(run).status == Approval.Status.PENDING


def test_a_rejection_is_an_observation_the_model_sees(note_agent, owner):
    run = _run(note_agent(), owner)

    run = _drive(run, owner, decision="reject", message="not today")

    assert run.status == Run.Status.SUCCEEDED
    assert scripted.NOTES == []
    results = [e.data["output"] for e in RunEvent.objects.filter(run=run, type="tool_end")]
    assert "rejected by olivia: not today" in results[0]


def test_a_decision_is_applied_exactly_once(note_agent, owner):
    run = _run(note_agent(), owner)
    approval = _pending(run)
    approvals.approval_decide(approval=approval, decision="approve", actor=owner)

    with pytest.raises(approvals.ApprovalConflict, match="already approved"):
        approvals.approval_decide(approval=approval, decision="reject", actor=owner)


def test_an_expired_approval_rejects_by_default(note_agent, owner):
    run = _run(note_agent(), owner)
    approval = _pending(run)
    Approval.objects.filter(id=approval.id).update(expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(approvals.ApprovalConflict, match="expired"):
        approvals.approval_decide(approval=approval, decision="approve", actor=owner)
    assert services.runs_watchdog()["approvals_expired"] == 1
    loop.execute_run(run.id)

    run.refresh_from_db()
    assert "expired before anyone decided" in RunEvent.objects.filter(run=run, type="tool_end").first().data["output"]
    assert scripted.NOTES == []


def test_an_agent_can_cancel_runs_whose_approval_expires(note_agent, owner):
    run = _run(note_agent(approval_expiry_outcome="cancel"), owner)
    Approval.objects.filter(run=run).update(expires_at=timezone.now() - timedelta(seconds=1))

    services.runs_watchdog()

    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED


def test_deny_keeps_a_tool_from_running(note_agent, owner):
    run = _run(note_agent(tool_policies={"append_note": "deny"}), owner)

    assert run.status == Run.Status.SUCCEEDED
    assert scripted.NOTES == []
    assert "policy: deny" in RunEvent.objects.filter(run=run, type="tool_end").first().data["output"]


def test_auto_lets_a_write_tool_run_without_asking(note_agent, owner):
    run = _run(note_agent(tool_policies={"append_note": "auto"}), owner)

    assert run.status == Run.Status.SUCCEEDED
    assert scripted.NOTES == ["note 0", "note 1"]


def test_a_dry_run_never_executes_a_write_tool(note_agent, owner):
    run = _run(note_agent(tool_policies={"append_note": "auto"}), owner, dry_run=True)

    assert run.status == Run.Status.SUCCEEDED and run.dry_run
    assert scripted.NOTES == []
    ends = RunEvent.objects.filter(run=run, type="tool_end")
    assert all(e.data["simulated"] and e.data["output"].startswith("[simulated]") for e in ends)


def test_a_dry_run_runs_read_tools_for_real(organization, owner):
    calc = services.agent_create(organization=organization, actor=owner, name="Calc", system_prompt="x",
                                 model="demo", tools=["calculator"])
    run = services.run_start(agent=calc, goal="What is 17 * 23?", actor=owner, dry_run=True)

    loop.execute_run(run.id)

    run.refresh_from_db()
    assert "391" in run.answer
    assert not RunEvent.objects.get(run=run, type="tool_end").data.get("simulated")


def test_only_roles_that_may_decide_approvals_may_decide(note_agent, owner, organization, member_with_role):
    run = _run(note_agent(), owner)
    approval = _pending(run)

    def access(user):
        return access_for(user=user, organization=organization)

    assert approvals.can_decide(access=access(owner), approval=approval)
    assert approvals.can_decide(access=access(member_with_role("operator")), approval=approval)
    assert not approvals.can_decide(access=access(member_with_role("viewer")), approval=approval)
    assert not approvals.can_decide(access=access(member_with_role("auditor")), approval=approval)


def test_approvals_through_the_api(note_agent, owner, owner_api, member_api, outsider_api, member_with_role,
                                   organization):
    agent = note_agent()
    run = _run(agent, owner)
    approval = _pending(run)
    services.agent_share(agent=agent, team=None, can_edit=False, actor=owner)
    viewer_api = client_for(member_with_role("viewer"), organization)

    listed = owner_api.get("/api/approvals?status=pending").json()
    assert [a["id"] for a in listed["results"]] == [str(approval.id)]
    assert outsider_api.get(f"/api/approvals/{approval.id}").status_code == 404
    assert viewer_api.get(f"/api/approvals/{approval.id}").status_code == 200
    assert viewer_api.post(f"/api/approvals/{approval.id}/decide", {"decision": "approve"},
                           format="json").status_code == 403
    assert owner_api.post(f"/api/approvals/{approval.id}/decide", {"decision": "edit"},
                          format="json").status_code == 400

    first = owner_api.post(f"/api/approvals/{approval.id}/decide", {"decision": "approve"}, format="json")
    second = owner_api.post(f"/api/approvals/{approval.id}/decide", {"decision": "approve"}, format="json")

    assert first.status_code == 200 and first.json()["status"] == "approved"
    assert second.status_code == 409 and second.json()["error"] == "conflict"
    assert Run.objects.get(id=run.id).status == Run.Status.QUEUED


def test_policies_must_name_the_agents_tools(owner_api):
    response = owner_api.post("/api/agents", {"name": "x", "system_prompt": "x", "tools": ["calculator"],
                                              "tool_policies": {"web_fetch": "ask"}}, format="json")

    assert response.status_code == 400
    assert "tool_policies" in response.json()["details"]


def test_cancelling_a_run_closes_its_pending_approvals(note_agent, owner):
    run = _run(note_agent(), owner)

    services.run_cancel(run=run, actor=owner)

    approval = Approval.objects.get(run=run)
    assert approval.status == Approval.Status.REJECTED and approval.message == "The run was cancelled."
    with pytest.raises(approvals.ApprovalConflict):
        approvals.approval_decide(approval=approval, decision="approve", actor=owner)
