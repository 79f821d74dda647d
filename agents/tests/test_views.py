"""The server-rendered UI, through Django's test client against the real database."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from agents import events, services
from agents.models import MAX_STEPS_LIMIT, Agent, Run, RunEvent

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
