"""Leases, resume after a crash, uncertain writes, budgets, steering and the watchdog."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agents import events, leases, loop, services
from agents.models import Run, RunEvent
from tests.fakes import scripted


@pytest.fixture
def make_agent(organization, owner):
    def make(**overrides):
        fields = {
            "name": "Steps", "system_prompt": "Work.", "model": "scripted-steps", "tools": ["calculator"],
            "max_steps": 10, "timeout_seconds": 60,
        } | overrides
        return services.agent_create(organization=organization, actor=owner, **fields)

    return make


def _events(run, type_=None):
    qs = RunEvent.objects.filter(run=run).order_by("seq")
    if type_:
        qs = qs.filter(type=type_)
    return list(qs)


def _crash_after(run, *, thoughts: int, started_not_ended: bool, tool: str = "calculator") -> leases.Lease:
    """Leave a run the way a worker killed with -9 leaves it: claimed, `thoughts` steps stored,
    optionally the last call started but not ended, and the lease expired."""
    lease = leases.claim(run.id)
    events.record_many(run_id=run.id, items=[("status", {"status": "running"})], lease_token=lease.token)
    for step in range(1, thoughts + 1):
        arguments = {"expression": f"{step - 1} + 1"} if tool == "calculator" else {"text": f"note {step - 1}"}
        call = {"id": f"call_{step}", "name": tool, "arguments": arguments}
        events.record_many(run_id=run.id, lease_token=lease.token, step=True, items=[
            ("thought", {"content": f"Step {step}.", "step": step, "calls": [call]}),
            ("tool_start", {"tool": tool, "call_id": call["id"], "arguments": arguments, "step": step}),
        ])
        if step < thoughts or not started_not_ended:
            events.record_many(run_id=run.id, lease_token=lease.token, items=[
                ("tool_end", {"tool": tool, "call_id": call["id"], "output": str(step), "is_error": False,
                              "duration_ms": 1, "step": step}),
            ])
    Run.objects.filter(id=run.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    leases.keeper.release(run.id)
    return lease


def test_a_run_whose_worker_died_is_resumed_from_its_events(make_agent, owner):
    run = services.run_start(agent=make_agent(), goal="Five steps", actor=owner)
    _crash_after(run, thoughts=3, started_not_ended=False)

    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.answer == "Finished 5 steps."
    assert run.attempts == 2
    steps = [e.data["step"] for e in _events(run, "thought")]
    assert steps == [1, 2, 3, 4, 5, 6], "each step once, picking up after the last stored one"
    call_ids = [e.data["call_id"] for e in _events(run, "tool_end")]
    assert len(call_ids) == len(set(call_ids)) == 5
    resumed = [e.data for e in _events(run, "status") if e.data.get("resumed")]
    assert resumed and resumed[0]["takeover"] is True, "taken from a dead worker, not picked from the queue"


def test_a_read_call_caught_mid_call_is_repeated(make_agent, owner):
    run = services.run_start(agent=make_agent(), goal="Five steps", actor=owner)
    _crash_after(run, thoughts=2, started_not_ended=True)

    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    starts = [e.data for e in _events(run, "tool_start") if e.data["call_id"] == "call_2"]
    assert len(starts) == 2 and starts[1].get("retry") is True
    assert [e.data["call_id"] for e in _events(run, "tool_end")].count("call_2") == 1


def test_a_write_call_caught_mid_call_pauses_for_a_person_and_is_not_repeated(make_agent, owner):
    scripted.NOTES.clear()
    agent = make_agent(model="scripted-notes", tools=["append_note"], tool_policies={"append_note": "auto"})
    run = services.run_start(agent=agent, goal="Two notes", actor=owner)
    _crash_after(run, thoughts=1, started_not_ended=True, tool="append_note")

    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.PAUSED
    assert run.pause_reason == "uncertain_write:call_1"
    assert scripted.NOTES == []
    with pytest.raises(services.InvalidTransition):
        services.run_resume(run=run, actor=owner)

    services.run_resolve_uncertain_write(run=run, decision="skip", actor=owner)
    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert scripted.NOTES == ["note 1"], "the uncertain note was not written again; the next one was"
    skipped = [e for e in _events(run, "tool_end") if e.data["call_id"] == "call_1"]
    assert skipped[0].data["is_error"] and "olivia chose not to repeat it" in skipped[0].data["output"]


def test_an_approved_retry_runs_the_uncertain_write_once(make_agent, owner):
    scripted.NOTES.clear()
    agent = make_agent(model="scripted-notes", tools=["append_note"], tool_policies={"append_note": "auto"})
    run = services.run_start(agent=agent, goal="Two notes", actor=owner)
    _crash_after(run, thoughts=1, started_not_ended=True, tool="append_note")
    loop.execute_run(run.id)
    run.refresh_from_db()

    services.run_resolve_uncertain_write(run=run, decision="retry", actor=owner)
    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert scripted.NOTES == ["note 0", "note 1"]
    with pytest.raises(services.InvalidTransition):
        services.run_resolve_uncertain_write(run=run, decision="retry", actor=owner)


def test_a_worker_that_lost_its_lease_cannot_write(make_agent, owner):
    run = services.run_start(agent=make_agent(), goal="x", actor=owner)
    first = leases.claim(run.id)
    Run.objects.filter(id=run.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = leases.claim(run.id)

    assert second.token == first.token + 1
    assert events.record_many(run_id=run.id, items=[("thought", {})], lease_token=first.token) is None
    assert events.record_many(run_id=run.id, items=[("thought", {})], lease_token=second.token) is not None
    assert leases.claim(run.id) is None, "a live lease can't be taken"


def test_the_heartbeat_keeps_a_lease_alive_and_notices_when_it_is_lost(make_agent, owner, settings):
    settings.RUN_LEASE_SECONDS = 30
    run = services.run_start(agent=make_agent(), goal="x", actor=owner)
    lease = leases.claim(run.id)
    keeper = leases.Keeper()
    keeper.hold(run.id, lease.token)
    Run.objects.filter(id=run.id).update(lease_expires_at=timezone.now())

    keeper.renew_now()
    assert Run.objects.get(id=run.id).lease_expires_at > timezone.now() + timedelta(seconds=20)
    assert not keeper.lost(run.id)

    Run.objects.filter(id=run.id).update(lease_token=lease.token + 1)  # someone else took it
    keeper.renew_now()
    assert keeper.lost(run.id)
    keeper.release(run.id)  # its thread then has nothing left to renew


@pytest.mark.parametrize(("limits", "reason"), [({"max_tokens": 40}, "max_tokens"), ({"max_cost_usd": "0.02"},
                                                                                      "max_cost")])
def test_budgets_stop_a_run_before_the_next_model_call(make_agent, owner, limits, reason):
    run = services.run_start(agent=make_agent(), goal="x", actor=owner, limits=limits)

    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.stop_reason == reason
    assert len(_events(run, "thought")) < 6
    assert _events(run)[-1].data["stop_reason"] == reason


def test_agent_budgets_apply_to_its_runs(make_agent, owner):
    run = services.run_start(agent=make_agent(max_tokens=20), goal="x", actor=owner)

    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.stop_reason == "max_tokens" and run.steps == 2


@pytest.mark.django_db(transaction=True)
def test_pause_then_resume_continues_where_it_stopped(make_agent, owner):
    run = services.run_start(agent=make_agent(model="scripted-steps-slow"), goal="x", actor=owner)

    def pause_soon() -> None:
        time.sleep(0.6)
        services.run_pause(run=Run.objects.get(id=run.id), actor=owner)
        connection.close()

    pauser = threading.Thread(target=pause_soon)
    pauser.start()
    loop.execute_run(run.id)
    pauser.join()
    run.refresh_from_db()
    assert run.status == Run.Status.PAUSED
    done_before = len(_events(run, "tool_end"))
    assert 0 < done_before < 5

    services.run_resume(run=run, actor=owner)
    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert len(_events(run, "tool_end")) == 5


def test_a_queued_run_can_be_paused_resumed_and_cancelled(make_agent, owner):
    run = services.run_start(agent=make_agent(), goal="x", actor=owner)

    assert services.run_pause(run=run, actor=owner).status == Run.Status.PAUSED
    assert services.run_resume(run=run, actor=owner).status == Run.Status.QUEUED
    services.run_pause(run=run, actor=owner)
    assert services.run_cancel(run=run, actor=owner).status == Run.Status.CANCELLED
    with pytest.raises(services.InvalidTransition):
        services.run_resume(run=run, actor=owner)


def test_retry_resumes_a_failed_run_from_its_last_good_step(make_agent, owner):
    run = services.run_start(agent=make_agent(model="scripted-flaky"), goal="x", actor=owner)
    loop.execute_run(run.id)
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.stop_reason == "model_error"

    for _ in range(5):
        if run.status == Run.Status.SUCCEEDED:
            break
        services.run_retry(run=run, actor=owner)
        loop.execute_run(run.id)
        run.refresh_from_db()

    assert run.status == Run.Status.SUCCEEDED
    assert [e.data["step"] for e in _events(run, "thought")] == [1, 2, 3]
    with pytest.raises(services.InvalidTransition):
        services.run_retry(run=run, actor=owner)


def test_rerun_starts_a_new_run_with_the_same_inputs(make_agent, owner, member):
    agent = make_agent()
    run = services.run_start(agent=agent, goal="x", context={"a": 1}, actor=owner, limits={"max_steps": 3})
    services.agent_update(agent=agent, actor=owner, system_prompt="Changed.")

    again = services.run_rerun(run=run, actor=member)

    assert again.id != run.id and again.status == Run.Status.QUEUED
    assert (again.goal, again.context, again.config) == (run.goal, run.context, run.config)
    assert again.created_by == member


def test_the_watchdog_times_out_runs_past_their_deadline(make_agent, owner, settings):
    settings.RUN_LEASE_SECONDS = 1
    run = services.run_start(agent=make_agent(), goal="x", actor=owner)
    leases.claim(run.id)
    Run.objects.filter(id=run.id).update(deadline_at=timezone.now() - timedelta(seconds=5))

    counts = services.runs_watchdog()

    run.refresh_from_db()
    assert counts["timed_out"] == 1
    assert run.status == Run.Status.TIMED_OUT and run.stop_reason == "timeout"
    assert "watchdog" in run.error


def test_the_watchdog_requeues_runs_whose_worker_stopped_renewing(make_agent, owner):
    run = services.run_start(agent=make_agent(), goal="x", actor=owner)
    leases.claim(run.id)
    Run.objects.filter(id=run.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert services.runs_watchdog()["requeued"] == 1


def test_an_idempotent_write_tool_is_simply_repeated_after_a_crash(make_agent, owner):
    from dataclasses import replace

    from integrations import tools

    original = tools.get("append_note")
    tools._REGISTRY["append_note"] = replace(original, idempotent=True)
    try:
        scripted.NOTES.clear()
        agent = make_agent(model="scripted-notes", tools=["append_note"], tool_policies={"append_note": "auto"})
        run = services.run_start(agent=agent, goal="Two notes", actor=owner)
        _crash_after(run, thoughts=1, started_not_ended=True, tool="append_note")

        loop.execute_run(run.id)
    finally:
        tools._REGISTRY["append_note"] = original

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert scripted.NOTES == ["note 0", "note 1"]
