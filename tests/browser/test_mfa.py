"""Two-factor authentication in a real browser: a member turns on an authenticator app from the account
pages (the QR code is a data: image the Content-Security-Policy must allow), signs out, and signs back
in with a code. The conftest fails the test on any CSP violation along the way."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.contrib.auth import get_user_model
from django.db import connection

from accounts import services as account_services
from accounts.models import AuditLog

pytestmark = pytest.mark.browser

PASSWORD = "a long browser test password"


@pytest.fixture
def member(live):
    user = get_user_model().objects.create_user(username="hedy", email="hedy@example.com", password=PASSWORD)
    account_services.organization_create(name="Frequency Hopping", owner=user)
    return user


def current_code(secret: str) -> str:
    """The app's code for now, never one about to expire before the server checks it."""
    if 30 - time.time() % 30 < 2:
        time.sleep(30 - time.time() % 30 + 0.1)
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def off_the_event_loop(query):
    """Playwright's sync API keeps an event loop running in this thread and Django refuses ORM calls
    there, so database checks run in a thread of their own."""

    def run():
        try:
            return query()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def sign_in(page, live) -> None:
    page.goto(f"{live.url}/accounts/login/")
    page.fill("#id_login", "hedy")
    page.fill("#id_password", PASSWORD)
    page.locator(".auth-card button[type=submit]").click()


def test_a_member_turns_on_an_authenticator_app_and_signs_in_with_a_code(live, member, browser_context, screenshots):
    from playwright.sync_api import expect

    errors: list[str] = []
    page = browser_context.new_page()
    page.set_default_timeout(20_000)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        sign_in(page, live)
        page.wait_for_url(re.compile(r"/agents/$"))

        # The account pages: two-factor authentication is off.
        page.goto(f"{live.url}/accounts/2fa/")
        expect(page.locator(".account-nav a[aria-current=page]")).to_have_text("Two-factor authentication")
        expect(page.locator(".auth-manage")).to_contain_text("An authenticator app is not active.")
        page.screenshot(path=str(screenshots / "mfa-index.png"), full_page=True)
        page.locator(".auth-panel").first.get_by_role("link", name="Activate").click()

        # allauth asks for the password again before changing how the account signs in.
        page.wait_for_url(re.compile(r"/accounts/reauthenticate/"))
        page.fill("#id_password", PASSWORD)
        page.locator(".auth-card button[type=submit]").click()

        page.wait_for_url(re.compile(r"/accounts/2fa/totp/activate/$"))
        qr = page.locator("img.totp-qr")
        expect(qr).to_be_visible()
        # Decoded and drawn, i.e. not blocked by img-src.
        assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
        secret = page.locator("#authenticator_secret").input_value()
        assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
        page.screenshot(path=str(screenshots / "mfa-activate.png"), full_page=True)
        page.fill("#id_code", "000000" if current_code(secret) != "000000" else "111111")
        page.get_by_role("button", name="Turn on two-factor authentication").click()
        expect(page.locator(".field-error")).to_contain_text("Incorrect code")
        page.fill("#id_code", current_code(secret))
        page.get_by_role("button", name="Turn on two-factor authentication").click()

        # Recovery codes come with it, for the day the phone is lost.
        page.wait_for_url(re.compile(r"/accounts/2fa/recovery-codes/$"))
        codes = page.locator("#recovery_codes").input_value().split()
        assert len(codes) == 10, codes
        page.screenshot(path=str(screenshots / "mfa-recovery-codes.png"), full_page=True)

        # Sign out, then back in: the password is no longer enough.
        page.goto(f"{live.url}/accounts/logout/")
        page.locator("main button[type=submit]").click()
        page.wait_for_url(re.compile(r"/accounts/login/$|/$"))
        sign_in(page, live)
        page.wait_for_url(re.compile(r"/accounts/2fa/authenticate/$"))
        expect(page.locator(".auth-card h1")).to_contain_text("Two-factor authentication")
        page.fill("#id_code", "000000" if current_code(secret) != "000000" else "111111")
        page.locator(".auth-card button.btn-primary").click()
        expect(page.locator(".auth-card")).to_contain_text("Incorrect code")
        page.screenshot(path=str(screenshots / "mfa-authenticate.png"), full_page=True)
        page.fill("#id_code", current_code(secret))
        page.locator(".auth-card button.btn-primary").click()
        page.wait_for_url(re.compile(r"/agents/$"))
        expect(page.locator(".mainnav")).to_be_visible()
        assert errors == []
    except Exception:
        page.screenshot(path=str(screenshots / "mfa-failure.png"), full_page=True)
        raise

    trail = off_the_event_loop(lambda: list(
        AuditLog.objects.filter(target_id=str(member.pk)).order_by("id").values_list("action", "data")))
    actions = [action for action, _ in trail]
    assert actions[0] == "auth.sign_in"
    assert {"auth.mfa_enable", "auth.sign_out", "auth.sign_in_failed"} <= set(actions)
    assert actions[-2:] == ["auth.sign_in_failed", "auth.sign_in"]
    assert trail[-2][1] == {"login": "hedy", "step": "mfa", "type": "totp"}
