"""End to end in a real browser: sign in, create an agent, run it and watch the live timeline.

Runs against the live stack (uvicorn + a real Celery worker on the test database). All database
setup happens in fixtures that run before the browser starts: Playwright's sync API keeps an
event loop in this thread, and Django refuses ORM calls while one is running.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from accounts import services as account_services
from agents import services as agent_services

pytestmark = pytest.mark.browser

GOAL = "What is 17 * 23?"
PASSWORD = "a long browser test password"


@pytest.fixture
def ui_user(live):
    user = get_user_model().objects.create_user(username="ada", email="ada@example.com", password=PASSWORD)
    organization = account_services.organization_create(name="Analytical Engines", owner=user)
    return user, organization


@pytest.fixture
def slow_agent(ui_user):
    """An agent on the scripted model that takes half a second per step and never answers."""
    user, organization = ui_user
    return agent_services.agent_create(
        organization=organization,
        actor=user,
        name="Slow looper",
        system_prompt="Keep computing.",
        model="scripted-slow",
        tools=["calculator"],
        max_steps=100,
        timeout_seconds=120,
    )


def new_page(browser_context, errors: list[str]):
    page = browser_context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(20_000)
    return page


def sign_in(page, live) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live.url}/accounts/login/")
    expect(page.locator(".auth-card")).to_be_visible()
    page.fill("#id_login", "ada")
    page.fill("#id_password", PASSWORD)
    page.locator(".auth-card button[type=submit]").click()
    page.wait_for_url(re.compile(r"/agents/$"))


def timeline_seqs(page) -> list[int]:
    return [int(s) for s in page.locator("#timeline li[data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")]


def test_a_person_runs_an_agent_and_watches_it_answer(live, ui_user, browser_context, screenshots):
    from playwright.sync_api import expect

    page_errors: list[str] = []
    page = new_page(browser_context, page_errors)

    try:
        sign_in(page, live)
        expect(page.get_by_text("No agents yet")).to_be_visible()

        # Create an agent with the calculator, on the offline demo model.
        page.get_by_role("link", name="+ New agent").click()
        page.wait_for_url(re.compile(r"/agents/new$"))
        page.fill("#id_name", "Arithmetic assistant")
        page.fill("#id_description", "Answers sums with the calculator.")
        page.fill("#id_system_prompt", "You do arithmetic with the calculator tool and report the result.")
        # The live stack has a (fake) Anthropic key, so the default model there is Claude; the
        # demo model is picked explicitly so the answer doesn't depend on the fake's script.
        page.select_option("#id_model", "demo")
        page.check("input[name=tools][value=calculator]")
        page.get_by_role("button", name="Create agent").click()
        page.wait_for_url(re.compile(r"/agents/[0-9a-f-]{36}/$"))
        expect(page.locator(".config")).to_contain_text("Offline demo model")

        # Start a run; the browser lands on the run page and follows it live.
        page.fill("#id_goal", GOAL)
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
        expect(page.locator(".goal")).to_have_text(GOAL)

        timeline = page.locator("#timeline")
        answer = timeline.locator('li[data-type="final_answer"]')
        expect(answer).to_contain_text("391", timeout=60_000)
        status = page.locator("#run-status")
        expect(status).to_have_attribute("data-status", "succeeded", timeout=30_000)
        expect(status).to_have_text(re.compile("succeeded", re.I))

        # The tool call and its result are on the timeline, paired by call id.
        call = timeline.locator('li[data-type="tool_start"]')
        expect(call).to_have_count(1)
        expect(call.locator(".tool-name")).to_have_text("calculator")
        expect(call.locator(".tl-args")).to_contain_text('"expression": "17 * 23"')
        expect(call.locator(".tl-state")).to_contain_text("done in")
        result = timeline.locator('li[data-type="tool_end"]')
        expect(result).to_have_count(1)
        expect(result.locator("pre")).to_have_text("391")
        assert call.get_attribute("data-call-id") == result.get_attribute("data-call-id")

        # Every event exactly once, in order, whichever way it arrived (page render or socket).
        seqs = timeline_seqs(page)
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        types = timeline.locator("li[data-type]").evaluate_all("els => els.map(e => e.dataset.type)")
        assert types[-1] == "status" and "thought" in types and types.count("final_answer") == 1, types

        # The header is refreshed once the run ends: answer, model label, no cancel button.
        expect(page.locator("#run-answer")).to_contain_text("391")
        expect(page.locator("#run-model")).to_have_text("Offline demo model")
        expect(page.locator("#cancel-form")).to_have_count(0)
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "done")
        assert int(page.locator("#run-tokens-in").inner_text()) > 0

        page.screenshot(path=str(screenshots / "run-page.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()  # a fresh layout at phone width; the finished run renders fully server-side
        expect(page.locator("#timeline li").last).to_have_attribute("data-status", "succeeded")
        page.screenshot(path=str(screenshots / "run-page-mobile.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

        # The lists narrow down in place (htmx swaps the results; the URL follows).
        page.goto(f"{live.url}/agents/")
        row = page.locator("#agent-results [data-agent-id]")
        expect(row).to_contain_text("Offline demo model")
        expect(row.locator(".status")).to_have_text("Succeeded")
        page.fill("#agent-search", "no such agent")
        expect(page.locator("#agent-results")).to_contain_text("No agents match")
        page.fill("#agent-search", "arithmetic")
        expect(row).to_contain_text("Arithmetic assistant")
        page.wait_for_url(re.compile(r"\?q=arithmetic$"))

        page.goto(f"{live.url}/runs/")
        expect(page.locator("#run-results [data-run-id]")).to_have_count(1)
        page.select_option("#filter-status", "failed")
        expect(page.locator("#run-results")).to_contain_text("No runs match these filters")
        page.select_option("#filter-status", "succeeded")
        expect(page.locator("#run-results [data-run-id]")).to_contain_text(GOAL)
        assert page_errors == []
    except Exception:
        page.screenshot(path=str(screenshots / "run-page-failure.png"), full_page=True)
        raise


def test_a_slow_run_streams_live_survives_a_reload_and_can_be_cancelled(
    live, slow_agent, browser_context, screenshots
):
    from playwright.sync_api import expect

    page_errors: list[str] = []
    page = new_page(browser_context, page_errors)
    try:
        sign_in(page, live)
        page.goto(f"{live.url}/agents/{slow_agent.id}/")
        page.fill("#id_goal", "Count forever")
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))

        # Steps arrive over the websocket while the run is going.
        status = page.locator("#run-status")
        expect(status).to_have_attribute("data-status", "running", timeout=15_000)
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
        live_thoughts = page.locator('#timeline li[data-type="thought"][data-source="live"]')
        expect(live_thoughts.nth(1)).to_be_attached(timeout=15_000)
        expect(page.locator('#timeline li[data-type="tool_end"][data-source="live"]').first).to_contain_text("ok")
        assert int(page.locator("#run-tokens-in").inner_text()) >= 20  # accumulated from live thoughts

        # A reload renders what is stored and resumes the stream after it: no gap, no duplicate.
        page.reload()
        first_live = page.locator('#timeline li[data-source="live"]').first
        expect(first_live).to_be_attached(timeout=15_000)
        rendered = page.locator("#timeline li[data-seq]:not([data-source])").count()
        assert rendered >= 2 and int(first_live.get_attribute("data-seq")) == rendered + 1
        seqs = timeline_seqs(page)
        assert seqs == list(range(1, len(seqs) + 1)), seqs

        # Cancel asks for confirmation first; dismissing it changes nothing.
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("#cancel-form button").click()
        expect(status).to_have_attribute("data-status", "running")

        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#cancel-form button").click()
        expect(page.locator(".messages")).to_contain_text("Cancellation requested")
        expect(page.locator("#run-status")).to_have_attribute("data-status", "cancelled", timeout=15_000)
        expect(page.locator("#run-stop-reason")).to_have_text("Cancelled")
        expect(page.locator("#cancel-form")).to_have_count(0)
        seqs = timeline_seqs(page)
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        page.screenshot(path=str(screenshots / "run-cancelled.png"), full_page=True)
        assert page_errors == []
    except Exception:
        page.screenshot(path=str(screenshots / "run-cancel-failure.png"), full_page=True)
        raise


def test_a_person_approves_and_rejects_an_agents_write_calls(live, ui_user, browser_context, screenshots):
    """The scripted-notes model asks for append_note (a write tool) twice, then answers: the first
    call is approved (after a slip in the edit box), the second rejected with a message."""
    from playwright.sync_api import expect

    page_errors: list[str] = []
    page = new_page(browser_context, page_errors)
    try:
        sign_in(page, live)
        page.get_by_role("link", name="+ New agent").click()
        page.fill("#id_name", "Note taker")
        page.fill("#id_system_prompt", "Write the notes you are asked for.")
        page.select_option("#id_model", "scripted-notes")
        page.check("input[name=tools][value=append_note]")
        expect(page.locator("#id_policy_append_note")).to_have_value("")  # default: ask for a write tool
        page.get_by_role("button", name="Create agent").click()
        page.wait_for_url(re.compile(r"/agents/[0-9a-f-]{36}/$"))
        expect(page.locator(".config .policy-ask")).to_have_text("ask a person first")

        page.fill("#id_goal", "Write two notes")
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))

        # The request arrives over the websocket: the status, the card and the nav count follow.
        status = page.locator("#run-status")
        first = page.locator(".approval-card[data-status=pending]")
        expect(first).to_have_count(1, timeout=30_000)
        # The status event follows the approval event from the worker; on a loaded CI machine that
        # can take more than expect()'s default 5 s.
        expect(status).to_have_attribute("data-status", "awaiting_approval", timeout=15_000)
        expect(page.locator("#run-notice")).to_have_text("Waiting for your approval.")
        expect(first.locator(".approval-args")).to_contain_text('"text": "note 0"')
        expect(first.locator(".approval-expiry")).to_contain_text("expires in")
        expect(page.locator('#timeline li[data-type="approval"][data-approval-status="pending"]')).to_have_count(1)
        expect(page.locator("#nav-approvals-count")).to_have_text("1")
        first_id = first.get_attribute("data-approval-id")
        page.evaluate("window.scrollTo(0, 0)")  # the sticky header would land mid-page in a full-page shot
        page.screenshot(path=str(screenshots / "approval.png"), full_page=True)

        # A slip in the edit box is shown in the card; nothing is decided.
        first.locator(".approval-edit summary").click()
        first.locator("textarea[name=arguments]").fill('{"text": ')
        first.get_by_role("button", name="Approve with edits").click()
        card = page.locator(f"#approval-{first_id}")
        expect(card.locator(".approval-error")).to_contain_text("Not valid JSON")
        expect(card).to_have_attribute("data-status", "pending")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshots / "approval-invalid-json.png"), full_page=True)

        # Approve as asked: the run carries on and asks about the next call.
        card.get_by_role("button", name="✓ Approve", exact=True).click()
        second = page.locator(f".approval-card[data-status=pending]:not(#approval-{first_id})")
        expect(second).to_have_count(1, timeout=30_000)
        expect(second.locator(".approval-args")).to_contain_text('"text": "note 1"')
        expect(page.locator(f"#approval-{first_id}")).to_have_count(0)
        approved = page.locator('#timeline li[data-type="approval"][data-approval-status="approved"]')
        expect(approved).to_contain_text("Approved by ada")
        expect(page.locator('#timeline li[data-type="tool_start"]').first).to_contain_text("approved by ada")

        # Reject the second with a message: the agent sees it and finishes without the note.
        second.locator("textarea[name=message]").fill("Not today, thanks.")
        second.get_by_role("button", name="✕ Reject").click()
        expect(status).to_have_attribute("data-status", "succeeded", timeout=30_000)
        rejected = page.locator('#timeline li[data-type="approval"][data-approval-status="rejected"]')
        expect(rejected).to_contain_text("Rejected by ada")
        expect(rejected.locator(".tl-quote")).to_have_text("Not today, thanks.")
        expect(page.locator('#timeline li[data-type="tool_end"]').last).to_contain_text(
            "rejected by ada: Not today, thanks."
        )
        expect(page.locator(".approval-card")).to_have_count(0)
        expect(page.locator("#rerun-form")).to_be_visible()
        expect(page.locator("#nav-approvals-count")).to_be_hidden()
        seqs = timeline_seqs(page)
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshots / "approval-done.png"), full_page=True)

        # The approvals page keeps the record.
        page.get_by_role("link", name="Approvals").click()
        expect(page.get_by_text("Nothing waiting for you")).to_be_visible()
        page.locator(".tabs").get_by_role("link", name="Decided").click()
        expect(page.locator(".approval-card")).to_have_count(2)
        page.screenshot(path=str(screenshots / "approvals-decided.png"), full_page=True)
        assert page_errors == []
    except Exception:
        page.screenshot(path=str(screenshots / "approval-failure.png"), full_page=True)
        raise
