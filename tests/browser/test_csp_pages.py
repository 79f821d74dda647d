"""The pages whose behaviour moved from inline script to static/js under the Content-Security-Policy:
forms that show the fields for the current choice, copy buttons, confirmations, auto-submitting
filters, sized meters, plus the Swagger UI and the admin. The conftest fails any test that caused a
CSP violation, so each page here is also checked for that."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from accounts import services as account_services
from accounts.models import Quota
from agents import services as agent_services
from automations import services as automation_services

pytestmark = pytest.mark.browser

PASSWORD = "a long browser test password"


@pytest.fixture
def setup(live):
    user = get_user_model().objects.create_user(username="grace", password=PASSWORD, is_staff=True,
                                                 is_superuser=True)
    organization = account_services.organization_create(name="Compilers", owner=user)
    agent = agent_services.agent_create(organization=organization, actor=user, name="Summarizer",
                                        system_prompt="Summarize.", model="demo", tools=[])
    created = automation_services.trigger_create(organization=organization, agent=agent, actor=user,
                                                 kind="webhook", name="Tickets")
    Quota.objects.create(organization=organization, runs_per_month=40)
    agent_services.run_start(agent=agent, goal="Summarize nothing.", actor=user)  # 1 of 40, today's bar
    return created.trigger


def signed_in_page(browser_context, live):
    from playwright.sync_api import expect

    page = browser_context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live.url}/accounts/login/")
    page.fill("#id_login", "grace")
    page.fill("#id_password", PASSWORD)
    page.locator(".auth-card button[type=submit]").click()
    page.wait_for_url(re.compile(r"/agents/$"))
    expect(page.locator(".mainnav")).to_be_visible()
    return page, errors


def test_the_automation_forms_show_the_fields_for_the_current_choice(live, setup, browser_context):
    from playwright.sync_api import expect

    page, errors = signed_in_page(browser_context, live)

    page.goto(f"{live.url}/automations/triggers/new")
    expect(page.locator('#trigger-form [data-kind="webhook"]')).to_be_visible()
    expect(page.locator('#trigger-form [data-kind="run_finished"]')).to_be_hidden()
    page.check("input[name=kind][value=run_finished]")
    expect(page.locator('#trigger-form [data-kind="run_finished"]')).to_be_visible()
    expect(page.locator('#trigger-form [data-kind="webhook"]')).to_be_hidden()

    page.goto(f"{live.url}/automations/schedules/new")
    expect(page.locator('#schedule-form [data-mode="cron"]')).to_be_hidden()
    page.select_option("select[name=frequency]", "weekly")
    expect(page.locator('#schedule-form [data-frequency="weekly"]')).to_be_visible()
    expect(page.locator('#schedule-form [data-frequency="monthly"]')).to_be_hidden()
    page.check("input[name=mode][value=cron]")
    expect(page.locator('#schedule-form [data-mode="cron"]')).to_be_visible()
    expect(page.locator('#schedule-form [data-mode="plain"]')).to_be_hidden()
    # htmx still works without eval: the preview follows the cron field as it's typed.
    page.locator("#id_cron").press_sequentially("0 8 * * 1")
    expect(page.locator("#next-fire-times li")).to_have_count(5)
    assert errors == []


def test_the_webhook_page_copies_selects_and_confirms_without_inline_handlers(live, setup, browser_context):
    from playwright.sync_api import expect

    browser_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    page, errors = signed_in_page(browser_context, live)
    page.goto(f"{live.url}/automations/triggers/{setup.id}/")

    url_box = page.locator("#webhook-url")
    url_box.focus()
    assert url_box.evaluate("el => el.selectionStart === 0 && el.selectionEnd === el.value.length")
    copy = page.locator('[data-copy-target="webhook-url"]')
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == url_box.input_value()

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    assert page.url.endswith(f"/automations/triggers/{setup.id}/")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("The old secret no longer works")).to_be_visible()
    assert errors == []


def test_the_event_log_filter_submits_on_change(live, setup, browser_context):
    page, errors = signed_in_page(browser_context, live)
    page.goto(f"{live.url}/automations/events/")

    page.select_option("select[name=outcome]", index=1)

    page.wait_for_url(re.compile(r"\?outcome=\w+"))
    assert errors == []


def test_the_usage_meters_are_sized_without_style_attributes(live, setup, browser_context):
    from playwright.sync_api import expect

    page, errors = signed_in_page(browser_context, live)
    page.goto(f"{live.url}/usage/")
    expect(page.locator(".meter-fill").first).to_be_attached()

    sized = page.locator("[data-width], [data-height]").evaluate_all(
        "els => els.map(el => [el.dataset.width || el.dataset.height, el.style.width || el.style.height])"
    )
    assert len(sized) >= 31  # a meter for the runs quota and a bar per day
    assert all(float(wanted.rstrip("%")) == float(applied.rstrip("%")) for wanted, applied in sized), sized
    assert ["2.5%", "2.5%"] in sized and ["100%", "100%"] in sized  # the runs meter and today's bar
    assert page.locator(".bar span").last.evaluate("el => el.getBoundingClientRect().height") > 100
    assert errors == []


def test_the_api_docs_render_from_local_files(live, setup, browser_context):
    from playwright.sync_api import expect

    page, errors = signed_in_page(browser_context, live)
    outside: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(live.url) else outside.append(request.url))

    page.goto(f"{live.url}/api/docs/")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Agentry API")
    expect(page.locator(".opblock").first).to_be_visible()
    page.locator(".opblock-summary").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert outside == []
    assert errors == []


def test_the_admin_works_under_the_policy(live, setup, browser_context):
    from playwright.sync_api import expect

    page, errors = signed_in_page(browser_context, live)

    page.goto(f"{live.url}/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto(f"{live.url}/admin/agents/agent/")
    expect(page.locator("#result_list")).to_contain_text("Summarizer")
    page.locator("#result_list").get_by_role("link", name="Summarizer").click()
    expect(page.locator("#agent_form")).to_be_visible()
    assert errors == []
