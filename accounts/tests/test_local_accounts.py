"""Local accounts through allauth: sign-up (closed unless AGENTRY_SIGNUP=open) with email verification,
password reset by email, two-factor authentication with an authenticator app, and the audit entries
each of them leaves. Emails go over real SMTP to a loopback sink and the tests follow their links."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from accounts.models import AuditLog, Membership
from conftest import PASSWORD
from tests.fakes.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
NEW_PASSWORD = "a brand new long passphrase"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # allauth counts failed sign-ins and sent emails in the cache; one test's count isn't another's.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def smtp_sink(settings):
    """Django's real SMTP backend, delivering to a loopback SMTP server."""
    sink = SmtpSink().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = sink.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "Agentry <agentry@test.local>"
    yield sink
    sink.stop()


@pytest.fixture
def open_signup(db, settings):
    settings.SIGNUP = "open"


def mail_to(sink: SmtpSink, address: str, subject_contains: str):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for mail in sink.wait_for(1, timeout=0.2):
            if address in mail.recipients and subject_contains.lower() in mail.message["Subject"].lower():
                return mail
    raise AssertionError(f"no email to {address} about {subject_contains!r}; got "
                         f"{[(m.recipients, m.message['Subject']) for m in sink.messages]}")


def link_in(mail, path_prefix: str) -> str:
    match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"\S+)", mail.body)
    assert match, f"no {path_prefix} link in:\n{mail.body}"
    return match.group(1)


def sign_in(client: Client, login: str, password: str = PASSWORD):
    return client.post("/accounts/login/", {"login": login, "password": password})


def signed_in_user(client: Client):
    return client.get("/accounts/email/").wsgi_request.user


def actions(user=None, **filters) -> list[str]:
    qs = AuditLog.objects.filter(**filters)
    if user is not None:
        qs = qs.filter(target_id=str(user.pk))
    return list(qs.order_by("id").values_list("action", flat=True))


def totp_code(secret: str) -> str:
    """The authenticator app's code for now, never one about to expire before the server checks it."""
    if 30 - time.time() % 30 < 1:
        time.sleep(30 - time.time() % 30 + 0.05)
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def a_wrong_code(secret: str) -> str:
    right = totp_code(secret)
    return "000000" if right != "000000" else "111111"


# ----------------------------------------------------------------------------- sign-up


def test_sign_up_is_closed_by_default_with_a_403_page_not_an_error(db):
    assert django_settings.SIGNUP == "closed"

    page = Client().get("/accounts/signup/")
    attempt = Client().post("/accounts/signup/", {"email": "m@example.com", "username": "mallory",
                                                  "password1": PASSWORD, "password2": PASSWORD})

    assert page.status_code == 403
    assert b"Sign-up is closed" in page.content
    assert attempt.status_code == 403
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_the_sign_in_page_offers_sign_up_only_when_it_is_open(db, settings):
    assert b"Create an account" not in Client().get("/accounts/login/").content

    settings.SIGNUP = "open"

    assert b"Create an account" in Client().get("/accounts/login/").content


@pytest.mark.parametrize("value, outcome", [("open", "open"), ("CLOSED", "closed"), ("", "closed")])
def test_the_signup_setting_reads_open_or_closed(value, outcome):
    result = _import_settings(AGENTRY_SIGNUP=value, probe="print(settings.SIGNUP)")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == outcome


def test_a_misspelt_signup_setting_stops_start_up():
    result = _import_settings(AGENTRY_SIGNUP="opne", probe="")

    assert result.returncode != 0
    assert "AGENTRY_SIGNUP must be one of closed/open, got 'opne'" in result.stderr


def _import_settings(*, probe: str, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, DATABASE_URL=django_settings.DATABASE_URL, REDIS_URL=django_settings.REDIS_URL,
                       **env)
    code = f"import config.settings as settings\n{probe}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=120)


def test_open_sign_up_sends_a_verification_email_and_the_account_waits_for_it(open_signup, smtp_sink):
    browser = Client()

    response = browser.post("/accounts/signup/", {"email": "Nina@Example.com", "username": "nina",
                                                  "password1": PASSWORD, "password2": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    nina = get_user_model().objects.get(username="nina")
    assert not EmailAddress.objects.get(user=nina).verified
    mail = mail_to(smtp_sink, "nina@example.com", "confirm")
    confirm_path = link_in(mail, "/accounts/confirm-email/")

    # Until the link is followed, the password alone doesn't sign anyone in.
    elsewhere = Client()
    blocked = sign_in(elsewhere, "nina")
    assert blocked.status_code == 302 and blocked["Location"] == "/accounts/confirm-email/"
    assert not signed_in_user(elsewhere).is_authenticated
    assert not signed_in_user(Client()).is_authenticated

    confirm_page = Client().get(confirm_path)
    assert confirm_page.status_code == 200
    assert b"nina@example.com" in confirm_page.content
    confirmed = Client().post(confirm_path)
    assert confirmed.status_code == 302

    assert EmailAddress.objects.get(user=nina).verified
    signed_in = sign_in(Client(), "nina@example.com")
    assert signed_in.status_code == 302
    assert signed_in["Location"] == "/welcome/"  # no organization yet
    assert actions(nina) == ["auth.sign_up", "auth.email_verified", "auth.sign_in"]


def test_a_verified_newcomer_starts_an_organization_and_becomes_its_owner(open_signup, smtp_sink):
    browser = Client()
    browser.post("/accounts/signup/", {"email": "nina@example.com", "username": "nina",
                                       "password1": PASSWORD, "password2": PASSWORD})
    browser.post(link_in(mail_to(smtp_sink, "nina@example.com", "confirm"), "/accounts/confirm-email/"))
    sign_in(browser, "nina")

    welcome = browser.get("/welcome/")
    assert welcome.status_code == 200
    assert b"not in an organization yet" in welcome.content
    empty = browser.post("/welcome/", {"name": "   "})
    assert empty.status_code == 400
    assert b"This field is required" in empty.content or b"Give the organization a name" in empty.content
    created = browser.post("/welcome/", {"name": "Nina's Lab"})

    nina = get_user_model().objects.get(username="nina")
    membership = Membership.objects.get(user=nina)
    assert created.status_code == 302 and created["Location"] == "/"
    assert membership.role == Membership.Role.OWNER
    assert membership.organization.name == "Nina's Lab"
    assert membership.organization.slug == "ninas-lab"
    assert AuditLog.objects.filter(action="organization.create", organization=membership.organization,
                                   actor=nina).exists()
    assert browser.get("/welcome/")["Location"] == "/"  # done with welcoming


def test_a_second_organization_with_the_same_name_gets_its_own_slug(open_signup, organization):
    from accounts.onboarding import organization_start

    user = get_user_model().objects.create_user(username="acme2", email="acme2@example.com", password=PASSWORD)

    started = organization_start(name="Acme", actor=user)

    assert started.slug.startswith("acme-") and started.slug != organization.slug


def test_without_open_sign_up_the_welcome_page_only_says_ask_an_admin(db):
    loner = get_user_model().objects.create_user(username="loner", email="loner@example.com", password=PASSWORD)
    browser = Client()

    signed_in = sign_in(browser, "loner")
    page = browser.get("/welcome/")
    refused = browser.post("/welcome/", {"name": "Rogue Inc"})

    assert signed_in["Location"] == "/welcome/"
    assert b"only an\n      administrator can add you" in page.content
    assert b"Create organization" not in page.content
    assert refused.status_code == 403
    assert not Membership.objects.filter(user=loner).exists()


# ----------------------------------------------------------------------------- accounts made by admins


def test_an_account_an_admin_made_signs_in_and_its_address_counts_as_verified(owner):
    browser = Client()

    response = sign_in(browser, "olivia@example.com")

    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(browser) == owner
    address = EmailAddress.objects.get(user=owner)
    assert (address.email, address.verified, address.primary) == ("olivia@example.com", True, True)


def test_an_account_without_any_email_address_still_signs_in(db):
    get_user_model().objects.create_user(username="noemail", password=PASSWORD)
    browser = Client()

    response = sign_in(browser, "noemail")

    assert response.status_code == 302
    assert signed_in_user(browser).username == "noemail"


def test_an_address_another_account_already_verified_is_not_vouched_for(owner, smtp_sink):
    Client().post("/accounts/login/", {"login": "olivia", "password": PASSWORD})  # olivia@example.com is hers now
    impostor = get_user_model().objects.create_user(username="impostor", email="OLIVIA@example.com",
                                                    password=PASSWORD)

    response = sign_in(Client(), "impostor")

    assert response["Location"] == "/accounts/confirm-email/"
    assert not EmailAddress.objects.filter(user=impostor, verified=True).exists()


def test_the_bootstrap_admin_signs_in_with_the_password_it_was_given(db, monkeypatch):
    monkeypatch.setenv("AGENTRY_ADMIN_PASSWORD", "bootstrap admin passphrase")
    call_command("bootstrap", stdout=open(os.devnull, "w"))  # noqa: SIM115
    browser = Client()

    response = sign_in(browser, "admin", "bootstrap admin passphrase")

    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(browser).username == "admin"


# ----------------------------------------------------------------------------- password reset


def test_a_forgotten_password_is_reset_through_the_emailed_link(owner, smtp_sink):
    requested = Client().post("/accounts/password/reset/", {"email": "olivia@example.com"})
    assert requested.status_code == 302

    link = link_in(mail_to(smtp_sink, "olivia@example.com", "password reset"), "/accounts/password/reset/key/")
    browser = Client()
    form_page = browser.get(link, follow=True)
    assert form_page.status_code == 200
    set_path = form_page.redirect_chain[-1][0] if form_page.redirect_chain else link
    done = browser.post(set_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert done.status_code == 302 and done["Location"] == "/accounts/password/reset/key/done/"
    assert sign_in(Client(), "olivia").status_code == 200  # the old password is refused (form shown again)
    fresh = Client()
    assert sign_in(fresh, "olivia", NEW_PASSWORD)["Location"] == "/"
    assert "auth.password_reset" in actions(owner)
    entry = AuditLog.objects.get(action="auth.password_reset")
    assert entry.actor == owner and entry.organization == Membership.objects.get(user=owner).organization
    # And the account holder is told, in case it wasn't them.
    mail_to(smtp_sink, "olivia@example.com", "password reset")


def test_a_used_reset_link_does_not_work_twice(owner, smtp_sink):
    Client().post("/accounts/password/reset/", {"email": "olivia@example.com"})
    link = link_in(mail_to(smtp_sink, "olivia@example.com", "password reset"), "/accounts/password/reset/key/")
    browser = Client()
    page = browser.get(link, follow=True)
    browser.post(page.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    again = Client().get(link, follow=True)

    assert again.status_code == 200
    assert b"Bad token" in again.content or b"invalid" in again.content.lower()


def test_changing_the_password_is_audited(owner):
    browser = Client()
    sign_in(browser, "olivia")

    response = browser.post("/accounts/password/change/", {"oldpassword": PASSWORD, "password1": NEW_PASSWORD,
                                                           "password2": NEW_PASSWORD})

    assert response.status_code == 302
    assert actions(owner)[-1] == "auth.password_change"


def test_a_verified_email_address_is_audited_when_confirmed(owner, smtp_sink):
    browser = Client()
    sign_in(browser, "olivia")

    browser.post("/accounts/email/", {"action_add": "", "email": "olivia.work@example.com"})
    link = link_in(mail_to(smtp_sink, "olivia.work@example.com", "confirm"), "/accounts/confirm-email/")
    browser.post(link)

    assert EmailAddress.objects.get(email="olivia.work@example.com").verified
    assert actions(owner)[-2:] == ["auth.email_add", "auth.email_verified"]


def test_an_unverified_address_cannot_become_primary(owner, smtp_sink):
    browser = Client()
    sign_in(browser, "olivia")
    browser.post("/accounts/email/", {"action_add": "", "email": "olivia.new@example.com"})

    browser.post("/accounts/email/", {"action_primary": "", "email": "olivia.new@example.com"})

    assert EmailAddress.objects.get_primary(owner).email == "olivia@example.com"
    owner.refresh_from_db()
    assert owner.email == "olivia@example.com"


# ----------------------------------------------------------------------------- two-factor authentication
# allauth announces a new authenticator after its transaction commits, still inside the request (the
# notification email needs it), so these tests let requests really commit: transactional_db.


def confirm_password(browser: Client) -> None:
    """allauth asks for the password again before two-factor settings change, even right after sign-in."""
    response = browser.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 302, response.content.decode()


def turn_on_totp(browser: Client) -> str:
    confirm_password(browser)
    page = browser.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = page.context["form"].secret
    response = browser.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302, response.content.decode()
    return secret


def test_a_member_turns_on_totp_with_a_code_from_the_secret(owner, transactional_db):
    browser = Client()
    sign_in(browser, "olivia")

    assert browser.get("/accounts/2fa/totp/activate/")["Location"].startswith("/accounts/reauthenticate/")
    confirm_password(browser)
    page = browser.get("/accounts/2fa/totp/activate/")
    assert b'src="data:image/svg+xml;base64,' in page.content
    assert b'id="authenticator_secret"' in page.content
    turned_on = browser.post("/accounts/2fa/totp/activate/", {"code": a_wrong_code(page.context["form"].secret)})
    assert turned_on.status_code == 200  # the form again, with an error
    assert not Authenticator.objects.filter(user=owner).exists()

    turn_on_totp(browser)

    kinds = set(Authenticator.objects.filter(user=owner).values_list("type", flat=True))
    assert kinds == {"totp", "recovery_codes"}
    enabled = AuditLog.objects.filter(action="auth.mfa_enable", actor=owner)
    assert sorted(entry.data["type"] for entry in enabled) == ["recovery_codes", "totp"]
    assert b"Two-factor" in browser.get("/accounts/2fa/").content


def test_with_totp_on_sign_in_asks_for_the_code_and_refuses_a_wrong_one(owner, transactional_db):
    setup = Client()
    sign_in(setup, "olivia")
    secret = turn_on_totp(setup)
    browser = Client()

    password_step = sign_in(browser, "olivia")
    assert password_step.status_code == 302 and password_step["Location"] == "/accounts/2fa/authenticate/"
    assert not signed_in_user(browser).is_authenticated
    wrong = browser.post("/accounts/2fa/authenticate/", {"code": a_wrong_code(secret)})
    assert wrong.status_code == 200
    assert b"Incorrect code" in wrong.content
    right = browser.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})

    assert right.status_code == 302 and right["Location"] == "/"
    assert signed_in_user(browser) == owner
    failed = AuditLog.objects.filter(action="auth.sign_in_failed", target_id=str(owner.pk)).get()
    assert failed.actor is None
    assert failed.data == {"login": "olivia", "step": "mfa", "type": "totp"}
    assert failed.organization == Membership.objects.get(user=owner).organization
    assert actions(owner)[-2:] == ["auth.sign_in_failed", "auth.sign_in"]


def test_a_recovery_code_signs_in_once(owner, transactional_db):
    setup = Client()
    sign_in(setup, "olivia")
    turn_on_totp(setup)
    codes = RecoveryCodes(Authenticator.objects.get(user=owner, type="recovery_codes")).get_unused_codes()
    browser = Client()

    sign_in(browser, "olivia")
    response = browser.post("/accounts/2fa/authenticate/", {"code": codes[0]})

    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_user(browser) == owner
    assert "auth.mfa_recovery_code_use" in actions(owner)
    again = Client()
    sign_in(again, "olivia")
    assert again.post("/accounts/2fa/authenticate/", {"code": codes[0]}).status_code == 200
    assert not signed_in_user(again).is_authenticated


def test_turning_totp_off_is_audited_and_sign_in_stops_asking(owner, transactional_db):
    browser = Client()
    sign_in(browser, "olivia")
    turn_on_totp(browser)

    response = browser.post("/accounts/2fa/totp/deactivate/")

    assert response.status_code == 302
    assert not Authenticator.objects.filter(user=owner).exists()
    disabled = AuditLog.objects.filter(action="auth.mfa_disable", actor=owner)
    assert sorted(entry.data["type"] for entry in disabled) == ["recovery_codes", "totp"]
    assert sign_in(Client(), "olivia")["Location"] == "/"


def test_the_totp_qr_code_is_an_image_the_content_security_policy_allows(owner):
    browser = Client()
    sign_in(browser, "olivia")
    confirm_password(browser)

    response = browser.get("/accounts/2fa/totp/activate/")

    policy = response["Content-Security-Policy"]
    img_src = next(part for part in policy.split(";") if part.strip().startswith("img-src")).split()
    assert "data:" in img_src
    # An <img> with a data: URI, not inline <svg> markup carrying its own styles.
    assert re.search(rb'<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+" alt="[^"]+" class="totp-qr"',
                     response.content)


def test_with_totp_on_a_password_alone_gets_neither_an_api_token_nor_the_admin(owner, transactional_db):
    owner.is_staff = True
    owner.save()
    setup = Client()
    sign_in(setup, "olivia")
    turn_on_totp(setup)

    token = Client().post("/api/auth/token", {"username": "olivia", "password": PASSWORD},
                          content_type="application/json")
    admin = Client()
    login = admin.post("/admin/login/", {"username": "olivia", "password": PASSWORD})

    assert token.status_code == 401 and "two-factor" in token.json()["message"]
    assert admin.get("/admin/").status_code == 302  # still not in: the admin sends people to allauth's sign-in
    assert login.status_code == 302 and not signed_in_user(admin).is_authenticated
