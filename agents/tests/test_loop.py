from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from agents import loop, services
from agents.models import Run, RunEvent


@pytest.fixture
def make_agent(organization, owner):
    def make(**overrides):
        fields = {
            "name": "Calc",
            "system_prompt": "Use tools.",
            "model": "demo",
            "tools": ["calculator"],
            "max_steps": 5,
            "timeout_seconds": 60,
        } | overrides
        return services.agent_create(organization=organization, actor=owner, **fields)

    return make


def _run(agent, owner, goal: str) -> Run:
    run = services.run_start(agent=agent, goal=goal, actor=owner)
    loop.execute_run(run.id)
    run.refresh_from_db()
    return run


def _types(run: Run) -> list[str]:
    return list(RunEvent.objects.filter(run=run).order_by("seq").values_list("type", flat=True))


def test_the_demo_model_answers_arithmetic_through_the_calculator(make_agent, owner):
    run = _run(make_agent(), owner, "What is 17 * 23?")

    assert run.status == Run.Status.SUCCEEDED
    assert run.stop_reason == Run.StopReason.FINAL_ANSWER
    assert "391" in run.answer
    assert _types(run) == [
        "status", "status", "thought", "tool_start", "tool_end", "thought", "final_answer", "status",
    ]
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert run.last_seq == seqs[-1]
    assert run.steps == 2 and run.input_tokens > 0 and run.output_tokens > 0
    assert run.started_at and run.finished_at


def test_the_run_keeps_a_frozen_copy_of_the_agent(make_agent, owner):
    agent = make_agent()
    run = services.run_start(agent=agent, goal="What is 1 + 1?", actor=owner)
    services.agent_update(agent=agent, actor=owner, system_prompt="Changed later.")

    run.refresh_from_db()
    assert run.config["system_prompt"] == "Use tools."


def test_it_stops_at_max_steps_with_the_trace_kept(make_agent, owner):
    run = _run(make_agent(model="scripted-loop", max_steps=3), owner, "Loop forever")

    assert run.status == Run.Status.FAILED
    assert run.stop_reason == Run.StopReason.MAX_STEPS
    assert _types(run).count("thought") == 3
    assert _types(run).count("tool_end") == 3
    assert "3 steps" in run.error


@pytest.mark.django_db(transaction=True)  # the lease heartbeat thread must see the run
def test_it_times_out_at_the_deadline(make_agent, owner):
    agent = make_agent(model="scripted-slow", max_steps=50)
    run = services.run_start(agent=agent, goal="Loop slowly", actor=owner)
    # The API's minimum is 5 s; a one-second deadline keeps the test quick.
    Run.objects.filter(id=run.id).update(config=run.config | {"timeout_seconds": 1})

    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.TIMED_OUT
    assert run.stop_reason == Run.StopReason.TIMEOUT
    assert (run.finished_at - run.started_at).total_seconds() < 3
    assert "thought" in _types(run)


@pytest.mark.django_db(transaction=True)
def test_a_running_run_stops_at_its_next_checkpoint_when_cancelled(make_agent, owner):
    agent = make_agent(model="scripted-slow", max_steps=50)
    run = services.run_start(agent=agent, goal="Loop slowly", actor=owner)

    def cancel_soon() -> None:
        time.sleep(0.8)
        services.run_cancel(run=Run.objects.get(id=run.id), actor=owner)
        connection.close()  # hand the thread's pooled connection back

    canceller = threading.Thread(target=cancel_soon)
    canceller.start()
    started = time.monotonic()
    loop.execute_run(run.id)
    canceller.join()

    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert run.stop_reason == Run.StopReason.CANCELLED
    assert time.monotonic() - started < 3
    assert _types(run)[-1] == "status"


def test_a_queued_run_is_cancelled_at_once_and_never_executes(make_agent, owner):
    run = services.run_start(agent=make_agent(), goal="What is 2 + 2?", actor=owner)

    services.run_cancel(run=run, actor=owner)
    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert "thought" not in _types(run)


def test_cancelling_a_finished_run_is_refused(make_agent, owner):
    run = _run(make_agent(), owner, "What is 2 + 2?")

    with pytest.raises(services.InvalidTransition):
        services.run_cancel(run=run, actor=owner)


def test_the_models_mistakes_become_observations_and_the_run_goes_on(make_agent, owner):
    run = _run(make_agent(model="scripted-clumsy", max_steps=10), owner, "Do your best")

    assert run.status == Run.Status.SUCCEEDED
    assert "ERR Error: tool 'no_such_tool' is not available" in run.answer
    assert "ERR Error: invalid arguments for calculator" in run.answer
    assert "division by zero" in run.answer
    assert "OK 42" in run.answer
    errors = RunEvent.objects.filter(run=run, type="tool_end", data__is_error=True).count()
    assert errors == 3


def test_a_duplicate_delivery_is_harmless(make_agent, owner):
    run = _run(make_agent(), owner, "What is 17 * 23?")
    events_before = RunEvent.objects.filter(run=run).count()

    loop.execute_run(run.id)

    assert RunEvent.objects.filter(run=run).count() == events_before


def test_a_model_that_is_unavailable_fails_the_run_with_the_reason(make_agent, owner, settings):
    settings.ANTHROPIC_API_KEY = None
    agent = make_agent()
    run = services.run_start(agent=agent, goal="What is 1 + 1?", actor=owner)
    Run.objects.filter(id=run.id).update(config=run.config | {"model": "claude-sonnet-4-5"})

    loop.execute_run(run.id)

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.stop_reason == Run.StopReason.MODEL_ERROR
    assert "ANTHROPIC_API_KEY" in run.error
    assert _types(run)[-2:] == ["error", "status"]


def test_a_run_deleted_while_it_runs_ends_quietly(make_agent, owner):
    run = services.run_start(agent=make_agent(model="scripted-loop", max_steps=3), goal="x", actor=owner)

    class Deleting:
        def complete(self, **kwargs):
            Run.objects.filter(id=run.id).delete()
            from tests.fakes.scripted import LoopingModel

            return LoopingModel().complete(**kwargs)

    from agents.llm import registry

    original = registry._extra_providers["scripted-loop"]
    registry._extra_providers["scripted-loop"] = (original[0], Deleting())
    try:
        loop.execute_run(run.id)  # must not raise
    finally:
        registry._extra_providers["scripted-loop"] = original
    assert not Run.objects.filter(id=run.id).exists()


def test_the_demo_model_reaches_for_connector_tools_the_goal_names():
    from agents.llm.demo import plan

    tools = {"github_list_issues", "github_list_pull_requests", "slack_list_channels", "current_time"}
    assert plan("Which issues are open in octocat/Hello-World?", tools) == [
        ("github_list_issues", {"repo": "octocat/Hello-World"})]
    assert plan("List the open pull requests of acme/widgets.", tools) == [
        ("github_list_pull_requests", {"repo": "acme/widgets"})]
    assert plan("Which Slack channels exist?", tools) == [("slack_list_channels", {})]
    assert plan("What time is it in Europe/Paris?", tools) == [("current_time", {"timezone": "Europe/Paris"})]
    assert plan("Which issues are open in octocat/Hello-World?", {"calculator"}) == []


def test_a_bug_of_ours_fails_the_run_with_its_trace_instead_of_passing_for_a_deleted_run(
    transactional_db, make_agent, owner
):
    # A KeyError is a LookupError too; it once passed for "the run was deleted" and left the run
    # running until the watchdog, over and over.
    from agents.llm import registry
    from agents.llm.base import ModelInfo

    class Broken:
        def complete(self, **kwargs):
            return {}["missing"]

    registry.register_provider(ModelInfo("test-broken", "scripted", "Raises KeyError"), Broken())
    try:
        run = services.run_start(agent=make_agent(model="test-broken"), goal="go", actor=owner)
        with pytest.raises(KeyError):
            loop.execute_run(run.id)
    finally:
        registry._extra_providers.pop("test-broken", None)

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.stop_reason == Run.StopReason.INTERNAL_ERROR
    assert "KeyError" in run.error
    assert RunEvent.objects.filter(run=run, type=RunEvent.Type.ERROR, data__source="internal").exists()


def test_the_demo_model_tells_what_it_does_with_a_connector_tool(make_agent, owner):
    run = _run(make_agent(tools=["github_list_issues"]), owner, "Which issues are open in octocat/Hello-World?")

    assert run.status == Run.Status.SUCCEEDED
    thought = RunEvent.objects.filter(run=run, type=RunEvent.Type.THOUGHT).order_by("seq").first()
    assert thought.data["content"] == "I'll list the open issues of octocat/Hello-World on GitHub."
    end = RunEvent.objects.get(run=run, type=RunEvent.Type.TOOL_END)
    assert end.data["output"].startswith("Refused: the person running this agent has no GitHub connection")
    assert "github_list_issues failed: Refused" in run.answer
