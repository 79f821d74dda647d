"""The server-rendered UI, through Django's test client against the real database."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from agents import approvals, events, loop, services
from agents.models import MAX_STEPS_LIMIT, Agent, Approval, Run, RunEvent
from tests.fakes import scripted

pytestmark = pytest.mark.django_db


def make_agent(organization, actor, **fields) -> Agent:
    values = {
        "name": "Calculator bot",
        "description": "Does arithmetic",
        "system_prompt": "You are careful with numbers.",
        "model": "demo",
        "tools": ["calculator"],
    }
    values.update(fields)
    return services.agent_create(organization=organization, actor=actor, **values)


def agent_form_data(**overrides) -> dict:
    data = {
        "name": "Researcher",
        "description": "Looks things up",
        "system_prompt": "Be brief.",
        "model": "demo",
        "tools": ["calculator", "current_time"],
        "max_steps": "7",
        "timeout_seconds": "60",
        "approval_timeout_seconds": "3600",
        "approval_expiry_outcome": "reject",
    }
    data.update(overrides)
    return data


def finished_run(agent, actor) -> Run:
    """A run that went through the whole loop: thought, tool call and result, answer, success."""
    run = services.run_start(agent=agent, goal="What is 17 * 23?", context={"customer": "ACME"}, actor=actor)
    services.run_transition(run_id=run.id, to=Run.Status.RUNNING)
    services.run_add_usage(run_id=run.id, input_tokens=40, output_tokens=9, cost_usd=0)
    events.record(
        run_id=run.id,
        type=RunEvent.Type.THOUGHT,
        data={
            "content": "I'll use the calculator.",
            "step": 1,
            "duration_ms": 12,
            "usage": {"input_tokens": 40, "output_tokens": 9, "cost_usd": "0"},
        },
    )
    events.record(
        run_id=run.id,
        type=RunEvent.Type.TOOL_START,
        data={"tool": "calculator", "call_id": "call_1", "arguments": {"expression": "17 * 23"}, "step": 1},
    )
    events.record(
        run_id=run.id,
        type=RunEvent.Type.TOOL_END,
        data={"tool": "calculator", "call_id": "call_1", "output": "391", "is_error": False, "duration_ms": 3,
              "step": 1},
    )
    events.record(run_id=run.id, type=RunEvent.Type.FINAL_ANSWER, data={"content": "17 * 23 = 391", "step": 2})
    services.run_transition(
        run_id=run.id, to=Run.Status.SUCCEEDED, stop_reason=Run.StopReason.FINAL_ANSWER, answer="17 * 23 = 391"
    )
    run.refresh_from_db()
    return run


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


# --------------------------------------------------------------------------- access


def test_the_root_redirects_to_the_agent_list(owner_client):
    response = owner_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/agents/"


@pytest.mark.parametrize("path", ["/agents/", "/agents/new", "/runs/"])
def test_anonymous_visitors_are_sent_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_anonymous_visitors_cannot_open_a_run(client, organization, owner):
    run = services.run_start(agent=make_agent(organization, owner), goal="hi", actor=owner)
    response = client.get(f"/runs/{run.id}/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_a_user_without_an_organization_is_told_so(client):
    loner = get_user_model().objects.create_user(username="loner", password="x")
    client.force_login(loner)
    response = client.get("/agents/")
    assert response.status_code == 403
    assert "not a member of any organization" in response.content.decode()


def test_the_login_page_uses_the_app_layout(client):
    response = client.get("/accounts/login/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "css/app.css" in html
    assert 'class="card auth-card"' in html
    assert 'name="login"' in html and 'name="password"' in html


def test_pages_load_htmx_from_our_own_static_files(owner_client):
    html = owner_client.get("/agents/").content.decode()
    assert re.search(r'<script src="/static/vendor/htmx\.min\.js', html)
    assert "//unpkg.com" not in html and "cdn" not in html.lower()


# --------------------------------------------------------------------------- agent list


def test_the_agent_list_invites_you_to_create_the_first_agent(owner_client):
    response = owner_client.get("/agents/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "No agents yet" in html
    assert "Create your first agent" in html
    assert reverse("agents:agent-create") in html


def test_the_agent_list_shows_model_label_tools_and_last_run_status(owner_client, organization, owner):
    agent = make_agent(organization, owner, tools=["calculator", "current_time"])
    finished_run(agent, owner)
    html = owner_client.get("/agents/").content.decode()
    assert "Calculator bot" in html
    assert "Does arithmetic" in html
    assert "Offline demo model" in html
    assert '<span class="chip" title=' in html and ">calculator</span>" in html and ">current_time</span>" in html
    assert "status-succeeded" in html


def test_the_agent_list_searches_names_and_descriptions(owner_client, organization, owner):
    make_agent(organization, owner, name="Billing helper", description="Answers invoices")
    make_agent(organization, owner, name="Weather", description="Forecasts for billing cycles")
    make_agent(organization, owner, name="Unrelated", description="Nothing")

    html = owner_client.get("/agents/", {"q": "billing"}).content.decode()
    assert "Billing helper" in html and "Weather" in html
    assert "Unrelated" not in html

    html = owner_client.get("/agents/", {"q": "zzz"}).content.decode()
    assert "No agents match" in html
    assert "No agents yet" not in html


def test_the_agent_search_answers_htmx_with_just_the_results(owner_client, organization, owner):
    make_agent(organization, owner, name="Billing helper")
    response = owner_client.get("/agents/", {"q": "billing"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="agent-results">')
    assert "<html" not in html
    assert "Billing helper" in html


def test_the_agent_list_pages_twenty_at_a_time(owner_client, organization, owner):
    for number in range(23):
        make_agent(organization, owner, name=f"Agent {number:02d}")
    first = owner_client.get("/agents/").content.decode()
    second = owner_client.get("/agents/", {"page": 2}).content.decode()
    assert first.count("data-agent-id=") == 20
    assert second.count("data-agent-id=") == 3
    assert "Page 1 of 2" in first and 'rel="next"' in first


def test_the_agent_list_never_shows_another_organizations_agents(owner_client, other_organization, outsider):
    make_agent(other_organization, outsider, name="Globex secret agent")
    html = owner_client.get("/agents/").content.decode()
    assert "Globex secret agent" not in html


# --------------------------------------------------------------------------- agent form


def test_the_new_agent_form_offers_models_and_tools_as_checkboxes(owner_client, settings):
    html = owner_client.get("/agents/new").content.decode()
    assert re.search(r'<option value="demo"[^>]*selected[^>]*>Offline demo model</option>', html)
    assert 'type="checkbox" name="tools" value="calculator"' in html
    assert "badge-read" in html  # side-effect badge next to each tool


def test_creating_an_agent_through_the_form(owner_client, organization, owner):
    response = owner_client.post("/agents/new", agent_form_data())
    agent = Agent.objects.get(organization=organization)
    assert response.status_code == 302
    assert response["Location"] == f"/agents/{agent.id}/"
    assert agent.name == "Researcher"
    assert agent.tools == ["calculator", "current_time"]
    assert agent.max_steps == 7 and agent.timeout_seconds == 60
    assert agent.created_by == owner


def test_an_empty_prompt_and_zero_steps_are_shown_as_field_errors(owner_client, organization):
    response = owner_client.post("/agents/new", agent_form_data(system_prompt="   ", max_steps="0"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="id_system_prompt_error"' in html and "This field is required." in html
    assert 'id="id_max_steps_error"' in html and "greater than or equal to 1" in html
    assert not Agent.objects.filter(organization=organization).exists()


def test_out_of_range_limits_and_unknown_models_are_rejected(owner_client, organization):
    data = agent_form_data(max_steps=str(MAX_STEPS_LIMIT + 1), timeout_seconds="4", model="gpt-nope", tools=["nope"])
    response = owner_client.post("/agents/new", data)
    html = response.content.decode()
    assert response.status_code == 200
    assert f"less than or equal to {MAX_STEPS_LIMIT}" in html
    assert "greater than or equal to 5" in html
    assert "Select a valid choice. gpt-nope" in html
    assert "Select a valid choice. nope" in html
    assert not Agent.objects.filter(organization=organization).exists()


def test_editing_an_agent_keeps_its_values_and_saves_changes(owner_client, organization, owner):
    agent = make_agent(organization, owner, max_steps=4)
    form = owner_client.get(f"/agents/{agent.id}/edit").content.decode()
    assert 'value="Calculator bot"' in form
    assert re.search(r"value=\"calculator\" id=\"id_tools_\d+\" checked", form)
    assert 'value="4"' in form

    response = owner_client.post(f"/agents/{agent.id}/edit", agent_form_data(name="Renamed", tools=[]))
    agent.refresh_from_db()
    assert response.status_code == 302
    assert agent.name == "Renamed" and agent.tools == []


def test_a_failed_edit_leaves_the_agent_unchanged(owner_client, organization, owner):
    agent = make_agent(organization, owner)
    response = owner_client.post(f"/agents/{agent.id}/edit", agent_form_data(name="", max_steps="0"))
    agent.refresh_from_db()
    assert response.status_code == 200
    assert agent.name == "Calculator bot" and agent.max_steps == 10


def test_deleting_an_agent_asks_first_and_keeps_its_runs(owner_client, organization, owner):
    agent = make_agent(organization, owner)
    run = services.run_start(agent=agent, goal="hi", actor=owner)

    page = owner_client.get(f"/agents/{agent.id}/delete")
    assert page.status_code == 200
    assert "Are you sure?" in page.content.decode()
    assert Agent.objects.filter(id=agent.id).exists()

    response = owner_client.post(f"/agents/{agent.id}/delete")
    assert response.status_code == 302 and response["Location"] == "/agents/"
    assert not Agent.objects.filter(id=agent.id).exists()
    assert Run.objects.filter(id=run.id).exists()


# --------------------------------------------------------------------------- agent detail and starting runs


def test_the_agent_page_shows_its_configuration_and_recent_runs(owner_client, organization, owner):
    agent = make_agent(organization, owner)
    finished_run(agent, owner)
    html = owner_client.get(f"/agents/{agent.id}/").content.decode()
    assert "You are careful with numbers." in html
    assert "Offline demo model" in html
    assert "What is 17 * 23?" in html
    assert 'name="goal"' in html and 'name="context"' in html


def test_starting_a_run_queues_it_and_opens_its_page(
    owner_client, organization, owner, django_capture_on_commit_callbacks
):
    agent = make_agent(organization, owner)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner_client.post(
            f"/agents/{agent.id}/run", {"goal": "What is 2 + 2?", "context": '{"audience": "kids"}'}
        )
    run = Run.objects.get(agent=agent)
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.id}/"
    assert run.status == Run.Status.QUEUED
    assert run.goal == "What is 2 + 2?"
    assert run.context == {"audience": "kids"}
    assert run.created_by == owner
    assert callbacks  # the worker is enqueued after commit (not executed here)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("{not json", "Context is not valid JSON"),
        ("[1, 2]", "Context must be a JSON object"),
        ('"text"', "Context must be a JSON object"),
    ],
)
def test_a_run_context_must_be_a_json_object(owner_client, organization, owner, context, message):
    agent = make_agent(organization, owner)
    response = owner_client.post(f"/agents/{agent.id}/run", {"goal": "Go", "context": context})
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html
    assert 'class="field field-invalid"' in html
    assert not Run.objects.filter(agent=agent).exists()


def test_a_run_needs_a_goal(owner_client, organization, owner):
    agent = make_agent(organization, owner)
    response = owner_client.post(f"/agents/{agent.id}/run", {"goal": "  ", "context": ""})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Run.objects.filter(agent=agent).exists()


# --------------------------------------------------------------------------- tenancy


def test_another_organizations_agent_is_not_found(owner_client, other_organization, outsider):
    agent = make_agent(other_organization, outsider)
    for path in (f"/agents/{agent.id}/", f"/agents/{agent.id}/edit", f"/agents/{agent.id}/delete"):
        assert owner_client.get(path).status_code == 404, path
    assert owner_client.post(f"/agents/{agent.id}/delete").status_code == 404
    assert owner_client.post(f"/agents/{agent.id}/run", {"goal": "steal"}).status_code == 404
    assert owner_client.post(f"/agents/{agent.id}/edit", agent_form_data()).status_code == 404
    assert Agent.objects.filter(id=agent.id, name="Calculator bot").exists()
    assert not Run.objects.filter(agent=agent).exists()


def test_another_organizations_run_is_not_found(owner_client, other_organization, outsider):
    run = services.run_start(agent=make_agent(other_organization, outsider), goal="secret", actor=outsider)
    assert owner_client.get(f"/runs/{run.id}/").status_code == 404
    assert owner_client.get(f"/runs/{run.id}/summary").status_code == 404
    assert owner_client.post(f"/runs/{run.id}/cancel").status_code == 404
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED
    assert "secret" not in owner_client.get("/runs/").content.decode()


# --------------------------------------------------------------------------- runs


def test_the_run_list_has_an_empty_state(owner_client):
    html = owner_client.get("/runs/").content.decode()
    assert "No runs yet" in html


def test_the_run_list_filters_by_agent_and_status(owner_client, organization, owner):
    first = make_agent(organization, owner, name="First")
    second = make_agent(organization, owner, name="Second")
    done = finished_run(first, owner)
    queued = services.run_start(agent=second, goal="Queued goal", actor=owner)

    html = owner_client.get("/runs/").content.decode()
    assert f'data-run-id="{done.id}"' in html and f'data-run-id="{queued.id}"' in html
    assert "status-succeeded" in html and "status-queued" in html

    html = owner_client.get("/runs/", {"agent": str(second.id)}).content.decode()
    assert f'data-run-id="{queued.id}"' in html and f'data-run-id="{done.id}"' not in html

    html = owner_client.get("/runs/", {"status": "succeeded"}).content.decode()
    assert f'data-run-id="{done.id}"' in html and f'data-run-id="{queued.id}"' not in html

    html = owner_client.get("/runs/", {"status": "failed"}).content.decode()
    assert "No runs match these filters" in html

    # Nonsense filters are ignored rather than failing the page.
    assert owner_client.get("/runs/", {"agent": "not-a-uuid", "status": "bogus"}).status_code == 200


def test_the_run_page_renders_the_stored_timeline(owner_client, organization, owner):
    run = finished_run(make_agent(organization, owner), owner)
    html = owner_client.get(f"/runs/{run.id}/").content.decode()

    assert re.search(r'id="run-status"[^>]*data-status="succeeded"', html)
    assert "Offline demo model" in html
    assert "Final answer" in html and "17 * 23 = 391" in html
    assert "&quot;customer&quot;: &quot;ACME&quot;" in html
    types = re.findall(r'data-type="(\w+)" data-seq="(\d+)"', html)
    assert [t for t, _ in types] == [
        "status", "status", "thought", "tool_start", "tool_end", "final_answer", "status",
    ]
    assert [int(s) for _, s in types] == list(range(1, 8))
    assert 'data-last-seq="7"' in html
    assert 'data-finished="true"' in html
    # The call shows its pretty-printed arguments and, paired by call_id, how it ended.
    assert "&quot;expression&quot;: &quot;17 * 23&quot;" in html
    assert "done in 3 ms" in html
    assert "<details class=\"tl-output\" open>" in html
    # Finished runs can't be cancelled.
    assert 'id="cancel-form"' not in html


def test_a_running_run_page_is_wired_for_the_live_stream(owner_client, organization, owner):
    run = services.run_start(agent=make_agent(organization, owner), goal="Go", actor=owner)
    html = owner_client.get(f"/runs/{run.id}/").content.decode()
    assert f'data-ws-path="/ws/runs/{run.id}/"' in html
    assert 'data-finished="false"' in html
    assert 'data-last-seq="1"' in html
    assert 'id="cancel-form"' in html and "data-confirm=" in html
    assert "/static/js/run.js" in html


def test_the_summary_fragment_reflects_the_finished_run(owner_client, organization, owner):
    run = finished_run(make_agent(organization, owner), owner)
    html = owner_client.get(f"/runs/{run.id}/summary").content.decode()
    assert html.lstrip().startswith('<section id="run-summary"')
    assert 'data-status="succeeded"' in html
    assert "17 * 23 = 391" in html
    assert ">40</span> / <span id=\"run-tokens-out\">9<" in html


def test_cancelling_a_queued_run(owner_client, organization, owner):
    run = services.run_start(agent=make_agent(organization, owner), goal="Go", actor=owner)
    response = owner_client.post(f"/runs/{run.id}/cancel", follow=True)
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    assert run.stop_reason == Run.StopReason.CANCELLED
    assert "Run cancelled." in response.content.decode()


def test_cancelling_a_finished_run_explains_why_not(owner_client, organization, owner):
    run = finished_run(make_agent(organization, owner), owner)
    response = owner_client.post(f"/runs/{run.id}/cancel", follow=True)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert "Could not cancel: Run is already succeeded." in response.content.decode()


def test_cancel_only_accepts_post(owner_client, organization, owner):
    run = services.run_start(agent=make_agent(organization, owner), goal="Go", actor=owner)
    assert owner_client.get(f"/runs/{run.id}/cancel").status_code == 405
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED


# --------------------------------------------------------------------------- steering runs


@pytest.fixture
def notes():
    scripted.NOTES.clear()
    yield scripted.NOTES
    scripted.NOTES.clear()


def note_agent(organization, actor, **fields) -> Agent:
    """An agent whose scripted model asks for two append_note calls (a write tool) and then answers."""
    values = {"name": "Note taker", "system_prompt": "Write notes.", "model": "scripted-notes",
              "tools": ["append_note"], "max_steps": 10, "timeout_seconds": 60}
    return make_agent(organization, actor, **(values | fields))


def awaiting_run(agent, actor) -> Run:
    run = services.run_start(agent=agent, goal="Two notes", actor=actor)
    loop.execute_run(run.id)
    run.refresh_from_db()
    assert run.status == Run.Status.AWAITING_APPROVAL
    return run


def pending_approval(run) -> Approval:
    return Approval.objects.get(run=run, status=Approval.Status.PENDING)


def failed_run(agent, actor) -> Run:
    run = services.run_start(agent=agent, goal="Fail please", actor=actor)
    services.run_transition(run_id=run.id, to=Run.Status.RUNNING)
    services.run_transition(run_id=run.id, to=Run.Status.FAILED, stop_reason=Run.StopReason.MODEL_ERROR,
                            error="Scripted provider error 529: overloaded")
    run.refresh_from_db()
    return run


def uncertain_run(agent, actor) -> Run:
    """Paused the way a worker crash during a write call leaves a run: started, never ended."""
    run = services.run_start(agent=agent, goal="Two notes", actor=actor)
    services.run_transition(run_id=run.id, to=Run.Status.RUNNING)
    events.record(run_id=run.id, type=RunEvent.Type.TOOL_START,
                  data={"tool": "append_note", "call_id": "call_crash", "arguments": {"text": "pay invoice 42"},
                        "step": 1})
    services.run_transition(run_id=run.id, to=Run.Status.PAUSED, pause_reason="uncertain_write:call_crash")
    run.refresh_from_db()
    return run


def buttons(html: str) -> set[str]:
    return set(re.findall(r'id="(pause|resume|retry|rerun|cancel)-form"', html))


def flash(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def test_a_queued_run_offers_pause_and_cancel(owner_client, organization, owner):
    run = services.run_start(agent=make_agent(organization, owner), goal="Go", actor=owner)
    html = owner_client.get(f"/runs/{run.id}/").content.decode()
    assert buttons(html) == {"pause", "cancel"}
    assert 'data-confirm="Cancel this run?' in html


def test_a_finished_run_offers_only_a_re_run_and_a_failed_one_a_retry(owner_client, organization, owner):
    agent = make_agent(organization, owner)
    assert buttons(owner_client.get(f"/runs/{finished_run(agent, owner).id}/").content.decode()) == {"rerun"}
    assert buttons(owner_client.get(f"/runs/{failed_run(agent, owner).id}/").content.decode()) == {"retry", "rerun"}


def test_pausing_a_queued_run_pauses_it_and_offers_resume(owner_client, organization, owner):
    run = services.run_start(agent=make_agent(organization, owner), goal="Go", actor=owner)

    response = owner_client.post(f"/runs/{run.id}/pause", follow=True)

    run.refresh_from_db()
    html = response.content.decode()
    assert run.status == Run.Status.PAUSED
    assert "Run paused." in html
    assert buttons(html) == {"resume", "cancel"}
    assert 'class="badge badge-lg status status-paused"' in html
    assert 'id="run-notice">Paused by request.</p>' in html
    assert "by olivia" in html  # the status event says who paused it


def test_resuming_a_paused_run_queues_it_again(owner_client, organization, owner, django_capture_on_commit_callbacks):
    run = services.run_start(agent=make_agent(organization, owner), goal="Go", actor=owner)
    services.run_pause(run=run, actor=owner)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner_client.post(f"/runs/{run.id}/resume", follow=True)

    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED and run.pause_reason == ""
    assert "Run resumed" in response.content.decode()
    assert callbacks  # handed to a worker after commit


def test_retrying_a_failed_run_queues_it_from_its_last_good_step(owner_client, organization, owner):
    run = failed_run(make_agent(organization, owner), owner)

    response = owner_client.post(f"/runs/{run.id}/retry")

    run.refresh_from_db()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.id}/"
    assert "Retrying from the last good step." in flash(response)
    assert run.status == Run.Status.QUEUED and run.error == ""
    html = owner_client.get(f"/runs/{run.id}/").content.decode()
    # The old failure is still in the trace, but the page follows the run live again.
    assert 'data-finished="false"' in html
    assert "retried by olivia" in html


def test_re_running_a_run_opens_the_new_one(owner_client, organization, owner):
    run = finished_run(make_agent(organization, owner), owner)

    response = owner_client.post(f"/runs/{run.id}/rerun")

    new = Run.objects.exclude(id=run.id).get(agent=run.agent)
    assert response.status_code == 302 and response["Location"] == f"/runs/{new.id}/"
    assert (new.goal, new.context, new.config) == (run.goal, run.context, run.config)
    html = owner_client.get(f"/runs/{new.id}/").content.decode()
    assert f'href="/runs/{run.id}/"' in html  # "A re-run of …" in the timeline


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("pause", "Could not pause: Only queued or running runs can be paused; this one is succeeded."),
        ("resume", "Could not resume: Only paused runs can be resumed; this one is succeeded."),
        ("retry", "Could not retry: Only failed or timed-out runs can be retried; this one is succeeded."),
        ("cancel", "Could not cancel: Run is already succeeded."),
    ],
)
def test_steering_a_run_in_the_wrong_state_explains_why_not(owner_client, organization, owner, action, message):
    run = finished_run(make_agent(organization, owner), owner)

    response = owner_client.post(f"/runs/{run.id}/{action}", follow=True)

    run.refresh_from_db()
    assert response.status_code == 200
    assert message in response.content.decode()
    assert run.status == Run.Status.SUCCEEDED


def test_an_unfinished_run_cannot_be_re_run(owner_client, organization, owner):
    run = services.run_start(agent=make_agent(organization, owner), goal="Go", actor=owner)
    response = owner_client.post(f"/runs/{run.id}/rerun", follow=True)
    assert "Could not re-run" in response.content.decode()
    assert Run.objects.count() == 1


@pytest.mark.parametrize("action", ["pause", "resume", "retry", "rerun", "uncertain-write", "controls"])
def test_another_organizations_run_cannot_be_steered(owner_client, other_organization, outsider, action):
    run = services.run_start(agent=make_agent(other_organization, outsider), goal="secret", actor=outsider)
    if action == "controls":
        assert owner_client.get(f"/runs/{run.id}/controls").status_code == 404
    else:
        assert owner_client.post(f"/runs/{run.id}/{action}", {"decision": "skip"}).status_code == 404
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED and Run.objects.count() == 1


# --------------------------------------------------------------------------- uncertain writes


def test_an_interrupted_write_asks_whether_to_run_it_again(owner_client, organization, owner):
    run = uncertain_run(note_agent(organization, owner), owner)

    html = owner_client.get(f"/runs/{run.id}/").content.decode()

    assert "The worker stopped in the middle of a write call — decide: Retry or Skip." in html
    card = html[html.index('id="uncertain-write"'):]
    assert '<code class="tool-name">append_note</code>' in card
    assert "&quot;text&quot;: &quot;pay invoice 42&quot;" in card
    assert 'value="retry"' in card and "Run it again" in card
    assert 'value="skip"' in card and "Don't repeat it" in card
    assert buttons(html) == {"cancel"}  # no plain Resume: the decision comes first


def test_running_an_interrupted_write_again(owner_client, organization, owner):
    run = uncertain_run(note_agent(organization, owner), owner)

    response = owner_client.post(f"/runs/{run.id}/uncertain-write", {"decision": "retry"}, follow=True)

    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED
    assert "The call runs again" in response.content.decode()
    start = RunEvent.objects.filter(run=run, type="tool_start").last()
    assert start.data["approved_retry"] is True and start.data["approved_by"] == "olivia"
    assert "run again after a crash, as olivia decided" in response.content.decode()


def test_skipping_an_interrupted_write(owner_client, organization, owner):
    run = uncertain_run(note_agent(organization, owner), owner)

    response = owner_client.post(f"/runs/{run.id}/uncertain-write", {"decision": "skip"}, follow=True)

    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED
    end = RunEvent.objects.get(run=run, type="tool_end")
    assert end.data["call_id"] == "call_crash" and "chose not to repeat it" in end.data["output"]
    assert "the interrupted call is not repeated by olivia" in response.content.decode()


def test_resume_and_nonsense_decisions_do_not_bypass_an_interrupted_write(owner_client, organization, owner):
    run = uncertain_run(note_agent(organization, owner), owner)

    resumed = owner_client.post(f"/runs/{run.id}/resume", follow=True).content.decode()
    nonsense = owner_client.post(f"/runs/{run.id}/uncertain-write", {"decision": "maybe"}, follow=True)

    run.refresh_from_db()
    assert "decide whether to retry or skip it" in resumed
    assert "Choose whether to run the call again or not." in nonsense.content.decode()
    assert run.status == Run.Status.PAUSED


def test_deciding_about_a_write_that_is_not_waiting_explains_why_not(owner_client, organization, owner):
    run = finished_run(make_agent(organization, owner), owner)
    response = owner_client.post(f"/runs/{run.id}/uncertain-write", {"decision": "retry"}, follow=True)
    assert "not waiting for a decision about an uncertain write" in response.content.decode()


# --------------------------------------------------------------------------- approvals on the run page


def test_a_run_waiting_for_approval_shows_the_call_to_decide(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)

    html = owner_client.get(f"/runs/{run.id}/").content.decode()

    assert 'class="badge badge-lg status status-awaiting_approval"' in html
    assert "Waiting for your approval." in html
    card = html[html.index(f'id="approval-{approval.id}"'):]
    assert "<code class=\"tool-name\">append_note</code>" in card
    assert "&quot;text&quot;: &quot;note 0&quot;" in card
    assert "expires in 59" in card
    assert f'action="/approvals/{approval.id}/decide"' in card
    assert 'value="approve"' in card and 'value="edit"' in card and 'value="reject"' in card
    assert 'name="message"' in card
    # The arguments are prefilled in the edit box.
    assert re.search(r'name="arguments"[^>]*>\{\s*&quot;text&quot;: &quot;note 0&quot;\s*\}</textarea>', card)
    # And the request is on the timeline.
    assert 'data-type="approval"' in html and 'data-approval-status="pending"' in html
    assert notes == []


def test_the_controls_fragment_has_the_buttons_and_the_approval_cards(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)

    html = owner_client.get(f"/runs/{run.id}/controls").content.decode()

    assert html.lstrip().startswith('<div id="run-actions"')
    assert '<div id="run-attention"' in html
    assert f'id="approval-{pending_approval(run).id}"' in html
    assert buttons(html) == {"cancel"}


def test_a_viewer_who_may_not_decide_sees_who_can(client, member_with_role, organization, owner, notes):
    agent = note_agent(organization, owner)
    services.agent_share(agent=agent, team=None, can_edit=False, actor=owner)
    run = awaiting_run(agent, owner)
    approval = pending_approval(run)
    client.force_login(member_with_role("viewer"))

    html = client.get(f"/runs/{run.id}/").content.decode()
    response = client.post(f"/approvals/{approval.id}/decide", {"decision": "approve"})

    assert "Waiting for someone who may approve tool calls" in html
    assert "/decide" not in html and 'value="approve"' not in html
    assert response.status_code == 403
    assert pending_approval(run).status == Approval.Status.PENDING


def test_approving_a_call_resumes_the_run(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)

    response = owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "approve", "message": ""})

    approval.refresh_from_db()
    run.refresh_from_db()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.id}/"
    assert "Approved: the call runs now." in flash(response)
    assert approval.status == Approval.Status.APPROVED and approval.decided_by == owner
    assert run.status == Run.Status.QUEUED

    loop.execute_run(run.id)
    html = owner_client.get(f"/runs/{run.id}/").content.decode()
    assert notes == ["note 0"]
    assert "Approved by <strong>olivia</strong>." in html
    assert "approved by olivia" in html  # on the tool call it let through


def test_approving_with_edits_runs_the_call_with_the_new_arguments(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)

    owner_client.post(f"/approvals/{approval.id}/decide",
                      {"decision": "edit", "arguments": '{"text": "edited note"}'})
    loop.execute_run(run.id)

    approval.refresh_from_db()
    assert approval.edited_arguments == {"text": "edited note"}
    assert notes == ["edited note"]
    html = owner_client.get(f"/runs/{run.id}/").content.decode()
    assert "Approved with edited arguments by <strong>olivia</strong>" in html
    assert "&quot;text&quot;: &quot;edited note&quot;" in html


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ('{"text": "unterminated', "Not valid JSON: Unterminated string"),
        ('["text"]', "The arguments must be a JSON object"),
        ('{"txt": 1}', "These arguments don&#x27;t fit the tool:"),
    ],
)
def test_bad_edited_arguments_are_shown_next_to_the_box(owner_client, organization, owner, notes, arguments, error):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)

    page = owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "edit", "arguments": arguments})
    card = owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "edit", "arguments": arguments},
                             HTTP_HX_REQUEST="true")

    for response in (page, card):
        html = response.content.decode()
        assert response.status_code == 200
        assert error in html
        assert '<details class="approval-edit" open>' in html
        assert 'class="field field-invalid"' in html
    # Without htmx the card is shown on the approval's page, still leading back to the run.
    assert f'name="next" value="/runs/{run.id}/"' in page.content.decode()
    assert card.content.decode().lstrip().startswith("<article")
    assert pending_approval(run).status == Approval.Status.PENDING


def test_rejecting_a_call_tells_the_agent_why(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)

    owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "reject", "message": "Not that one."})
    loop.execute_run(run.id)

    approval.refresh_from_db()
    assert approval.status == Approval.Status.REJECTED and approval.message == "Not that one."
    assert notes == []
    html = owner_client.get(f"/runs/{run.id}/").content.decode()
    assert "Rejected by <strong>olivia</strong>:" in html
    assert '<blockquote class="tl-quote">Not that one.</blockquote>' in html


def test_deciding_twice_explains_that_it_is_already_decided(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)
    owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "approve"})

    again = owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "reject"}, follow=True)
    card = owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "reject"}, HTTP_HX_REQUEST="true")

    assert "Could not decide: This approval is already approved." in again.content.decode()
    assert "This approval is already approved." in card.content.decode()
    assert 'data-status="approved"' in card.content.decode()
    approval.refresh_from_db()
    assert approval.status == Approval.Status.APPROVED


def test_htmx_gets_the_decided_card_back_and_a_nudge_for_the_badge(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)

    response = owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "reject", "message": "No."},
                                 HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert response["HX-Trigger"] == "approvals-changed"
    assert f'id="approval-{approval.id}"' in html and 'data-status="rejected"' in html
    assert "Rejected: the call won&#x27;t run" in html
    assert "Rejected by <strong>olivia</strong>" in html
    assert "/decide" not in html  # nothing left to decide


def test_an_approval_of_a_cancelled_run_is_no_longer_offered(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)
    services.run_cancel(run=run, actor=owner)

    listed = owner_client.get("/approvals/").content.decode()
    response = owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "approve"}, follow=True)

    assert "Nothing waiting for you" in listed
    assert "The run has already finished" in response.content.decode()
    closed = Approval.objects.get(id=approval.id)
    assert closed.status == Approval.Status.REJECTED and closed.message == "The run was cancelled."


# --------------------------------------------------------------------------- the approvals page


def test_the_approvals_page_has_an_empty_state(owner_client):
    html = owner_client.get("/approvals/").content.decode()
    assert "Nothing waiting for you" in html
    assert owner_client.get("/approvals/", {"show": "decided"}).content.decode().count("No decided approvals yet") == 1


def test_the_approvals_page_lists_pending_calls_with_their_runs(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approval = pending_approval(run)

    html = owner_client.get("/approvals/").content.decode()

    assert f'id="approval-{approval.id}"' in html
    assert f'href="/runs/{run.id}/"' in html and "Note taker" in html and "Two notes" in html
    assert 'class="tab-count">1<' in html
    assert 'name="next" value="/approvals/"' in html

    response = owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "approve", "next": "/approvals/"})
    assert response["Location"] == "/approvals/"
    assert "Nothing waiting for you" in owner_client.get("/approvals/").content.decode()
    decided = owner_client.get("/approvals/", {"show": "decided"}).content.decode()
    assert f'id="approval-{approval.id}"' in decided and "Approved by <strong>olivia</strong>" in decided
    assert f'id="approval-{approval.id}"' in owner_client.get("/approvals/", {"show": "all"}).content.decode()


def test_decide_only_redirects_within_the_site(owner_client, organization, owner, notes):
    approval = pending_approval(awaiting_run(note_agent(organization, owner), owner))
    response = owner_client.post(f"/approvals/{approval.id}/decide",
                                 {"decision": "approve", "next": "https://evil.example/"})
    assert response["Location"] == f"/runs/{approval.run_id}/"


def test_the_nav_counts_pending_approvals(owner_client, organization, owner, notes):
    html = owner_client.get("/agents/").content.decode()
    assert 'href="/approvals/"' in html and 'hx-get="/approvals/badge"' in html
    assert "hidden" in owner_client.get("/approvals/badge").content.decode()

    awaiting_run(note_agent(organization, owner), owner)

    badge = owner_client.get("/approvals/badge").content.decode()
    assert re.search(r'id="nav-approvals-count"[^>]*aria-label="1 pending">1</span>', badge)
    assert "hidden" not in badge and "load" not in badge  # a swapped-in badge must not reload itself


def test_another_organizations_approvals_are_not_found(owner_client, other_organization, outsider, notes):
    run = awaiting_run(note_agent(other_organization, outsider), outsider)
    approval = pending_approval(run)

    assert owner_client.get(f"/approvals/{approval.id}/").status_code == 404
    assert owner_client.post(f"/approvals/{approval.id}/decide", {"decision": "approve"}).status_code == 404
    assert str(approval.id) not in owner_client.get("/approvals/").content.decode()
    assert "hidden" in owner_client.get("/approvals/badge").content.decode()
    assert pending_approval(run).status == Approval.Status.PENDING


def test_an_approval_has_its_own_page(owner_client, organization, owner, notes):
    approval = pending_approval(awaiting_run(note_agent(organization, owner), owner))
    html = owner_client.get(f"/approvals/{approval.id}/").content.decode()
    assert f'id="approval-{approval.id}"' in html and "Open the run" in html


# --------------------------------------------------------------------------- the timeline's new events


def test_the_timeline_explains_resumes_retries_and_simulated_calls(owner_client, organization, owner):
    run = services.run_start(agent=note_agent(organization, owner), goal="Go", actor=owner, dry_run=True)
    services.run_transition(run_id=run.id, to=Run.Status.RUNNING)
    # The first worker died; another took the run over once its lease ran out.
    events.record(run_id=run.id, type="status", data={"status": "running", "resumed": True, "attempt": 2})
    events.record(run_id=run.id, type="tool_start", data={"tool": "append_note", "call_id": "c1", "step": 1,
                                                          "arguments": {"text": "x"}, "retry": True})
    events.record(run_id=run.id, type="tool_end", data={"tool": "append_note", "call_id": "c1", "step": 1,
                                                        "output": "[simulated] Dry run", "is_error": False,
                                                        "duration_ms": 0, "simulated": True})

    html = owner_client.get(f"/runs/{run.id}/").content.decode()

    assert 'id="run-dry-run"' in html and ">Dry run</span>" in html
    assert "resumed on another worker (attempt 2)" in html
    assert "retried after a crash" in html
    assert '<span class="badge badge-dry" title="Dry run: the tool was not executed">simulated</span>' in html


def test_a_run_picked_up_after_an_approval_is_not_called_a_takeover(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner), owner)
    approvals.approval_decide(approval=pending_approval(run), decision="approve", actor=owner)
    loop.execute_run(run.id)

    html = owner_client.get(f"/runs/{run.id}/").content.decode()

    assert "picked up again (attempt 2)" in html
    assert "another worker" not in html


def test_an_expired_approval_is_explained_on_the_timeline(owner_client, organization, owner, notes):
    run = awaiting_run(note_agent(organization, owner, approval_expiry_outcome="cancel"), owner)
    Approval.objects.filter(run=run).update(expires_at=timezone.now() - timedelta(seconds=1))
    services.runs_watchdog()

    html = owner_client.get(f"/runs/{run.id}/").content.decode()

    assert 'data-approval-status="expired"' in html
    assert "Nobody decided in time; the run was cancelled." in html


# --------------------------------------------------------------------------- agent form: policies, budgets


def test_the_agent_form_offers_a_policy_per_tool_and_budgets(owner_client):
    html = owner_client.get("/agents/new").content.decode()
    assert '<select name="policy_calculator" id="id_policy_calculator"' in html
    assert '<option value="" selected>Default: run automatically</option>' in html
    assert '<option value="" selected>Default: ask a person first</option>' in html  # a write tool
    assert '<option value="deny">Never run</option>' in html
    for name in ("approval_timeout_seconds", "approval_expiry_outcome", "max_tokens", "max_cost_usd"):
        assert f'name="{name}"' in html, name


def test_the_agent_form_saves_policies_approval_settings_and_budgets(owner_client, organization):
    data = agent_form_data(
        tools=["calculator", "append_note"], policy_calculator="deny", policy_append_note="",
        policy_current_time="auto",  # not ticked: ignored
        approval_timeout_seconds="600", approval_expiry_outcome="cancel", max_tokens="5000", max_cost_usd="0.25",
    )

    response = owner_client.post("/agents/new", data)

    agent = Agent.objects.get(organization=organization)
    assert response.status_code == 302
    assert agent.tool_policies == {"calculator": "deny"}
    assert (agent.approval_timeout_seconds, agent.approval_expiry_outcome) == (600, "cancel")
    assert (agent.max_tokens, agent.max_cost_usd) == (5000, Decimal("0.25"))

    form = owner_client.get(f"/agents/{agent.id}/edit").content.decode()
    assert re.search(r'name="policy_calculator".*?<option value="deny" selected>', form, re.S)
    assert 'value="5000"' in form and 'value="0.25' in form

    page = owner_client.get(f"/agents/{agent.id}/").content.decode()
    assert 'class="policy policy-deny"' in page and "never run" in page
    assert 'class="policy policy-ask policy-default"' in page  # append_note, by default
    assert "expire after 10 minutes, then cancel the run" in page
    assert "5000 per run" in page and "$0.25 per run" in page


def test_budgets_and_approval_timeouts_are_validated(owner_client, organization):
    response = owner_client.post("/agents/new", agent_form_data(
        approval_timeout_seconds="10", max_tokens="0", max_cost_usd="-1", policy_calculator="sometimes"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "greater than or equal to 60" in html
    assert "greater than or equal to 1" in html
    assert "greater than or equal to 0.0001" in html
    assert "Select a valid choice. sometimes" in html
    assert not Agent.objects.exists()


def test_clearing_a_policy_goes_back_to_the_default(owner_client, organization, owner):
    agent = make_agent(organization, owner, tool_policies={"calculator": "deny"})
    owner_client.post(f"/agents/{agent.id}/edit", agent_form_data(tools=["calculator"], policy_calculator=""))
    agent.refresh_from_db()
    assert agent.tool_policies == {}


# --------------------------------------------------------------------------- run form: limits, dry runs


def test_the_run_form_has_limits_a_dry_run_box_and_a_test_button(owner_client, organization, owner):
    agent = make_agent(organization, owner, max_tokens=900)
    html = owner_client.get(f"/agents/{agent.id}/").content.decode()
    assert '<details class="context-field limits-field" id="run-limits">' in html  # collapsed
    assert 'placeholder="agent&#x27;s: 900"' in html and 'placeholder="agent&#x27;s: no limit"' in html
    assert 'name="dry_run"' in html
    assert re.search(r'<button type="submit" name="test" value="1"[^>]*>Test \(dry run\)</button>', html)


def test_a_run_can_set_its_own_limits_and_be_a_dry_run(owner_client, organization, owner):
    agent = make_agent(organization, owner)

    response = owner_client.post(f"/agents/{agent.id}/run", {
        "goal": "Go", "max_steps": "3", "timeout_seconds": "30", "max_tokens": "777", "max_cost_usd": "0.5",
        "dry_run": "on",
    })

    run = Run.objects.get(agent=agent)
    assert response.status_code == 302
    assert run.dry_run and run.config["dry_run"] is True
    assert (run.config["max_steps"], run.config["timeout_seconds"], run.config["max_tokens"]) == (3, 30, 777)
    assert Decimal(run.config["max_cost_usd"]) == Decimal("0.5")


def test_the_test_button_starts_a_dry_run(owner_client, organization, owner):
    agent = make_agent(organization, owner)

    owner_client.post(f"/agents/{agent.id}/run", {"goal": "Try it", "test": "1"})

    run = Run.objects.get(agent=agent)
    assert run.dry_run and run.config["max_steps"] == agent.max_steps
    assert "Dry run" in owner_client.get(f"/runs/{run.id}/").content.decode()


def test_bad_run_limits_open_the_limits_section_with_the_error(owner_client, organization, owner):
    agent = make_agent(organization, owner)
    response = owner_client.post(f"/agents/{agent.id}/run", {"goal": "Go", "max_steps": "0"})
    html = response.content.decode()
    assert '<details class="context-field limits-field" id="run-limits" open>' in html
    assert "greater than or equal to 1" in html
    assert not Run.objects.exists()


# --------------------------------------------------------------------------- admin


def admin_action(admin_client, model: str, action: str, ids) -> str:
    response = admin_client.post(
        f"/admin/agents/{model}/", {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True
    )
    assert response.status_code == 200
    return " | ".join(str(m) for m in response.context["messages"])


def test_admin_can_pause_resume_and_cancel_runs(admin_client, organization, owner):
    agent = make_agent(organization, owner)
    queued = services.run_start(agent=agent, goal="a", actor=owner)
    done = finished_run(agent, owner)

    paused = admin_action(admin_client, "run", "pause_runs", [queued.id, done.id])
    queued.refresh_from_db()
    assert queued.status == Run.Status.PAUSED
    assert "Paused (or asked to pause) 1 run." in paused
    assert "this one is succeeded" in paused

    assert "Resumed 1 run." in admin_action(admin_client, "run", "resume_runs", [queued.id])
    queued.refresh_from_db()
    assert queued.status == Run.Status.QUEUED

    cancelled = admin_action(admin_client, "run", "cancel_runs", [queued.id, done.id])
    queued.refresh_from_db()
    assert queued.status == Run.Status.CANCELLED
    assert "1 run." in cancelled and "Run is already succeeded." in cancelled


def test_admin_can_retry_and_re_run_runs(admin_client, organization, owner):
    agent = make_agent(organization, owner)
    failed = failed_run(agent, owner)
    done = finished_run(agent, owner)

    retried = admin_action(admin_client, "run", "retry_runs", [failed.id, done.id])
    failed.refresh_from_db()
    assert failed.status == Run.Status.QUEUED
    assert "Queued for retry 1 run." in retried and "Only failed or timed-out runs" in retried

    rerun = admin_action(admin_client, "run", "rerun_runs", [done.id, failed.id])
    assert "Started 1 new run." in rerun and "hasn't finished yet" in rerun
    assert Run.objects.filter(goal=done.goal).count() == 2


def test_admin_can_approve_and_reject_calls(admin_client, admin_user, organization, owner, notes):
    agent = note_agent(organization, owner)
    first = pending_approval(awaiting_run(agent, owner))
    second = pending_approval(awaiting_run(agent, owner))

    assert "Approved 1 call." in admin_action(admin_client, "approval", "approve", [first.id])
    rejected = admin_action(admin_client, "approval", "reject", [first.id, second.id])

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Approval.Status.APPROVED and first.decided_by == admin_user
    assert second.status == Approval.Status.REJECTED
    assert "Rejected 1 call." in rejected and "already approved" in rejected

    listing = admin_client.get("/admin/agents/approval/", {"status__exact": "rejected"}).content.decode()
    assert "append_note" in listing
    assert admin_client.get(f"/admin/agents/approval/{first.id}/change/").status_code == 200


def test_admin_shows_an_agents_policies_and_budgets(admin_client, organization, owner):
    agent = make_agent(organization, owner, tool_policies={"calculator": "deny"}, max_tokens=1000)
    assert "calculator: deny" in admin_client.get("/admin/agents/agent/").content.decode()
    page = admin_client.get(f"/admin/agents/agent/{agent.id}/change/").content.decode()
    for name in ("tool_policies", "approval_timeout_seconds", "approval_expiry_outcome", "max_tokens", "max_cost_usd"):
        assert f'name="{name}"' in page, name


def test_a_viewer_opening_the_agent_builder_gets_permission_denied_and_a_way_back(client, member_with_role):
    client.force_login(member_with_role("viewer"))

    response = client.get("/agents/new", HTTP_REFERER="http://testserver/agents/")

    html = response.content.decode()
    assert response.status_code == 403
    assert "Permission denied: your role (Viewer) can" in html and "add agent" in html
    assert 'id="go-back"' in html and 'href="/agents/"' in html
