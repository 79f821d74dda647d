"""Acceptance, in a real browser against the live stack: connect GitHub (the loopback fake, its OAuth
consent page included) as a person, give an agent GitHub read tools, run it, see the call in the
run's trace and in the connection's history; revoke the connection and see the next run refuse
the call with a clear message, without a request reaching GitHub. No credential shows anywhere.

All database setup happens in fixtures before the browser starts (Playwright's sync API keeps an
event loop in this thread, and Django refuses ORM calls while one is running); the checks of
stored rows happen after the browser is closed.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model

from accounts import services as account_services
from tests.fakes import anthropic_server as fake_claude

pytestmark = pytest.mark.browser

PASSWORD = "a long browser test password"
CLAUDE = "claude-sonnet-5-5"
GOAL = "Which issues are open in octocat/Hello-World?"


@pytest.fixture
def person(live):
    user = get_user_model().objects.create_user(username="grace", email="grace@example.com", password=PASSWORD)
    organization = account_services.organization_create(name="Compilers Inc", owner=user)
    return user, organization


def sign_in(page, live) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.url}/accounts/login/")
    expect(page.locator(".auth-card")).to_be_visible()
    page.fill("#id_login", "grace")
    page.fill("#id_password", PASSWORD)
    page.locator(".auth-card button[type=submit]").click()
    page.wait_for_url(re.compile(r"/agents/$"))


def run_and_wait(page, live) -> None:
    from playwright.sync_api import expect

    page.fill("#id_goal", GOAL)
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded", timeout=60_000)


def test_a_person_connects_github_runs_an_agent_through_it_and_revokes_it(
        live, person, browser_context, screenshots):
    from playwright.sync_api import expect

    github = live.github
    page_errors: list[str] = []
    page = browser_context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.set_default_timeout(20_000)
    seen_html: list[str] = []
    try:
        sign_in(page, live)

        # The catalog, then GitHub's page: scopes explained, reading ticked, writing left to the person.
        page.get_by_role("link", name="Integrations").click()
        page.wait_for_url(re.compile(r"/integrations/$"))
        card = page.locator('.integration-card[data-slug="github"]')
        expect(card).to_contain_text("Read repositories, issues and pull requests")
        page.screenshot(path=str(screenshots / "integrations-catalog.png"), full_page=True)
        page.fill("#catalog-search", "github")
        expect(page.locator(".integration-card")).to_have_count(1)
        card.get_by_role("link", name="GitHub").click()
        page.wait_for_url(re.compile(r"/integrations/github/$"))
        expect(page.locator("#integration-tools")).to_contain_text("github_list_issues")
        form = page.locator("#oauth-form")
        expect(form.locator('input[value="repo:read"]')).to_be_checked()
        expect(form.locator('input[value="issues:write"]')).not_to_be_checked()

        page.screenshot(path=str(screenshots / "integration-github.png"), full_page=True)
        # Connect: through the hand-over page to the fake's consent page, approve, and back.
        page.locator("#oauth-connect").click()
        page.wait_for_url(re.compile(re.escape(github.url) + r"/login/oauth/authorize"))
        expect(page.locator("ul.scopes")).to_contain_text("repo")
        page.locator("#js-oauth-authorize-btn").click()
        page.wait_for_url(re.compile(r"/connections/[0-9a-f-]{36}/$"))
        expect(page.locator(".messages")).to_contain_text("Connected “GitHub (octocat)”")
        expect(page.locator(".conn-status")).to_have_text("Active")
        connection_url = page.url
        issued = github.token_of("octocat")
        tokens = [issued.value, issued.refresh_token]
        seen_html.append(page.content())

        # An agent with a GitHub read tool: ticking it shows its connection block and ticks the scope.
        page.goto(f"{live.url}/agents/new")
        page.fill("#id_name", "Issue reader")
        page.fill("#id_system_prompt", "Answer questions about GitHub issues with the GitHub tools.")
        page.select_option("#id_model", CLAUDE)
        block = page.locator('[data-integration-setting="github"]')
        expect(block).to_be_hidden()
        page.check("input[name=tools][value=github_list_issues]")
        expect(block).to_be_visible()
        expect(block.locator('input[data-scope="repo:read"]')).to_be_checked()
        expect(block.locator('input[data-scope="issues:write"]')).not_to_be_checked()
        expect(block.locator("select")).to_have_value("runner")
        page.screenshot(path=str(screenshots / "agent-form-connections.png"), full_page=True)
        page.get_by_role("button", name="Create agent").click()
        page.wait_for_url(re.compile(r"/agents/[0-9a-f-]{36}/$"))
        agent_url = page.url
        expect(page.locator("#agent-connections")).to_contain_text("GitHub via the person running the agent")
        expect(page.locator("#connection-warnings")).to_have_count(0)

        # Run it: Claude (the fake) asks for the issues, Agentry calls GitHub as grace's connection.
        live.anthropic.enqueue(
            fake_claude.tool_use("github_list_issues", {"repo": "octocat/Hello-World"}, text="Let me look."),
            fake_claude.text("Two issues are open: “Found a bug” and “Add dark mode”."),
        )
        run_and_wait(page, live)
        timeline = page.locator("#timeline")
        expect(timeline.locator('li[data-type="tool_start"] .tool-name')).to_have_text("github_list_issues")
        expect(timeline.locator('li[data-type="tool_end"]')).to_contain_text("Found a bug")
        expect(page.locator("#run-answer")).to_contain_text("Add dark mode")
        run_url = page.url
        seen_html.append(page.content())

        # The connection's history has the call, linked to the run.
        page.goto(connection_url)
        calls = page.locator("#connection-calls tbody tr")
        expect(calls).to_have_count(1)
        expect(calls.first).to_contain_text("github_list_issues")
        expect(calls.first).to_contain_text("OK")
        expect(calls.first).to_contain_text("200")
        assert calls.first.locator("a").get_attribute("href") == run_url.removeprefix(live.url)
        expect(page.locator("#connection-agents")).to_contain_text("Issue reader")
        seen_html.append(page.content())
        page.screenshot(path=str(screenshots / "connection-page.png"), full_page=True)

        # Revoke, after a confirmation that names the agent that uses it.
        page.locator("#revoke-connection").click()
        expect(page.locator("#revoke-confirm")).to_contain_text("Issue reader")
        page.locator("#confirm-revoke").click()
        page.wait_for_url(connection_url)
        expect(page.locator("#revoked")).to_be_visible()
        expect(page.locator(".conn-status")).to_have_text("Revoked")

        # The agent's page warns; the next run refuses the call before anything is sent to GitHub.
        page.goto(agent_url)
        expect(page.locator("#connection-warnings")).to_contain_text("was revoked")
        page.screenshot(path=str(screenshots / "agent-connection-warning.png"), full_page=True)
        api_calls_before = len(github.api_requests())
        live.anthropic.enqueue(
            fake_claude.tool_use("github_list_issues", {"repo": "octocat/Hello-World"}, text="Let me look."),
            fake_claude.text("I couldn't read the issues: the GitHub connection was revoked."),
        )
        run_and_wait(page, live)
        refusal = page.locator('#timeline li[data-type="tool_end"]')
        expect(refusal).to_contain_text("Refused")
        expect(refusal).to_contain_text("was revoked")
        assert len(github.api_requests()) == api_calls_before
        seen_html.append(page.content())

        page.goto(connection_url)
        expect(page.locator("#connection-calls tbody tr")).to_have_count(2)
        expect(page.locator("#connection-calls tbody tr").first).to_contain_text("Refused")
        seen_html.append(page.content())
        assert page_errors == []
    except Exception:
        page.screenshot(path=str(screenshots / "github-connection-failure.png"), full_page=True)
        raise

    # Neither the pages nor what the model was sent carry the tokens.
    model_inputs = json.dumps([r.messages for r in live.anthropic.message_requests])
    for token in filter(None, tokens):
        assert all(token not in html for html in seen_html)
        assert token not in model_inputs
    assert "Found a bug" in model_inputs  # the tool result did reach the model
