"""Single sign-on: OpenID Connect end to end against a real provider (django-oauth-toolkit in a
second process, tests/oidc_provider/), SAML 2.0 with signed responses, role mapping, the admin's
settings pages and API, and "Test connection" against loopback servers speaking the real formats."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts import sso
from accounts.models import AuditLog, IdentityProvider, Membership
from conftest import PASSWORD, client_for
from tests.browser.conftest import browser_context  # noqa: F401 - the Chromium fixture, CSP-watched
from tests.live import ARTIFACTS, ROOT, _stop, free_port

User = get_user_model()
CLIENT_ID = "agentry-test-client"
CLIENT_SECRET = "agentry-test-client-secret-0123456789"
SLUGS = ("acme-okta", "acme-other")
IDP_PASSWORD = "provider password 42"


# --------------------------------------------------------------------------- the servers


@dataclass
class OidcProvider:
    url: str
    issuer: str


def _wait_until_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    """Wait for the server to answer 200; stop it (it's ours) if it never does."""
    deadline = time.monotonic() + 90
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: the server exited with {process.returncode}; see {log}")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.3)
    _stop(process)
    pytest.fail(f"{url} not ready: {last}; see {log}")


@pytest.fixture(scope="module")
def sso_web(django_db_setup, django_db_blocker) -> Iterator[str]:
    """Agentry's web app as a real server on the test database, allowed to reach loopback
    identity providers (the token exchange is a server-to-server call)."""
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "DATABASE_URL": settings.DATABASE_URL,
           "REDIS_URL": settings.REDIS_URL, "AGENTRY_DB_NAME": connection.settings_dict["NAME"],
           "AGENTRY_SSO_ALLOWED_HOSTS": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    log_path = logs / "sso-web.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    start = log_path.stat().st_size
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    # Not /readyz: that one also wants a Celery worker, which single sign-on doesn't need.
    _wait_until_ready(f"{url}/accounts/login/", web, log_path)
    yield url
    _stop(web)
    log.close()
    served = log_path.read_text(errors="replace")[start:]
    assert "Internal Server Error" not in served, f"the web process answered a 500; see {log_path}"


def _admin_connection() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(dbname="postgres", user=db["USER"], password=db["PASSWORD"], host=db["HOST"],
                           port=db["PORT"] or None, autocommit=True)


@pytest.fixture(scope="module")
def oidc_provider(sso_web, tmp_path_factory) -> Iterator[OidcProvider]:
    """django-oauth-toolkit as an OpenID Connect provider (RS256, a "groups" claim) in its own
    process and its own Postgres database, with Agentry registered as a confidential client."""
    db = connection.settings_dict
    name = f"{db['NAME']}_oidc"
    with _admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path_factory.mktemp("oidc") / "signing-key.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings", "OP_DB_NAME": name,
           "OP_DB_USER": db["USER"], "OP_DB_PASSWORD": db["PASSWORD"], "OP_DB_HOST": db["HOST"],
           "OP_DB_PORT": str(db["PORT"] or ""), "OP_RSA_KEY_FILE": str(key_file), "OP_ISSUER": f"{url}/o",
           "PYTHONUNBUFFERED": "1"}
    manage = [sys.executable, "-m", "django"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    users = [f"fiona:{IDP_PASSWORD}:fiona@example.com:finance-admins,staff",
             f"gus:{IDP_PASSWORD}:gus@example.com:staff",
             f"hana:{IDP_PASSWORD}:hana@example.com:",
             f"otto:{IDP_PASSWORD}:otto@other.test:finance-admins"]
    callbacks = [arg for slug in SLUGS for arg in ("--redirect-uri", f"{sso_web}/accounts/oidc/{slug}/login/callback/")]
    subprocess.run([*manage, "oidc_bootstrap", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                    *callbacks, *[arg for spec in users for arg in ("--user", spec)]],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    log_path = ARTIFACTS / "logs" / "oidc-provider.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen([*manage, "runserver", f"127.0.0.1:{port}", "--noreload"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    _wait_until_ready(f"{url}/o/.well-known/openid-configuration", server, log_path)
    yield OidcProvider(url=url, issuer=f"{url}/o")
    _stop(server)
    log.close()
    with _admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _provider_subject(username: str) -> int:
    """The "sub" the test provider gives this person: their user id in its database."""
    db = connection.settings_dict
    with psycopg.connect(dbname=f"{db['NAME']}_oidc", user=db["USER"], password=db["PASSWORD"], host=db["HOST"],
                         port=db["PORT"] or None) as provider_db:
        return provider_db.execute("SELECT id FROM auth_user WHERE username = %s", [username]).fetchone()[0]


class DocumentServer:
    """A loopback HTTP server answering GETs from a path → (status, content type, body) table."""

    def __init__(self, routes: dict[str, tuple[int, str, bytes]]) -> None:
        self.routes = routes
        routes_ref = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                status, content_type, body = routes_ref.get(self.path, (404, "text/plain", b"not found"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DocumentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _loopback_providers_allowed(settings):
    """As the operator of an on-prem install would: the test providers all live on 127.0.0.1."""
    settings.SSO_ALLOWED_HOSTS = ["127.0.0.1"]


def _person(username: str, organization, role: str, email: str | None = None):
    user = User.objects.create_user(username=username, email=email or f"{username}@example.com", password=PASSWORD)
    account_services.membership_add(organization=organization, user=user, role=role)
    return user


def _oidc_provider(organization, server_url: str, **overrides) -> IdentityProvider:
    values = {"name": "Acme Okta", "server_url": server_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
              "role_claim": "groups", "role_mapping": {"finance-admins": "admin"},
              "default_role": Membership.Role.BUILDER, "email_domains": ["example.com"]}
    values.update(overrides)
    slug = values.pop("slug", SLUGS[0])
    return sso.identity_provider_create(organization=organization, actor=None, kind="oidc", slug=slug, **values)


def _onward(html: str) -> str | None:
    """Where the sign-in's hop page (accounts/sso_redirect.html) sends the browser."""
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', html)
    return unescape(found.group(1)) if found else None


def _identity_provider_url(response) -> str:
    """A sign-in start's answer: the hop page, whose destination is the identity provider."""
    assert response.status_code == 200, response.status_code
    assert response["Cache-Control"] == "no-store"
    url = _onward(response.content.decode())
    assert url, "not the hop page to the identity provider"
    return url


def _csrf(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def _sign_in_through_provider(web: str, slug: str, username: str, *, stop_at_callback: bool = False):
    """A browser's walk: our sign-in page → its SSO button → the provider's login form → back to us.
    Returns the cookie-carrying client and the last response (or the callback URL, if asked to stop)."""
    client = httpx.Client(timeout=30, follow_redirects=False)
    page = client.get(f"{web}/accounts/login/")
    assert page.status_code == 200
    action = f"/accounts/oidc/{slug}/login/"
    assert f'action="{action}' in page.text, "no sign-in button for the provider"
    response = client.post(f"{web}{action}", data={"csrfmiddlewaretoken": _csrf(page.text)})
    for _ in range(12):
        if response.status_code == 200 and (onward := _onward(response.text)):
            response = client.get(onward)
            continue
        if response.status_code == 200 and urlparse(str(response.url)).path == "/login/" \
                and 'name="password"' in response.text:
            next_value = parse_qs(urlparse(str(response.url)).query).get("next", [""])[0]
            response = client.post(str(response.url).split("?")[0], data={
                "username": username, "password": IDP_PASSWORD, "next": next_value,
                "csrfmiddlewaretoken": _csrf(response.text)})
            continue
        if not response.is_redirect:
            return client, response
        location = urljoin(str(response.url), response.headers["location"])
        if stop_at_callback and location.startswith(web) and "/login/callback/" in location:
            return client, location
        response = client.get(location)
    raise AssertionError(f"too many redirects, last at {response.url}")


def _session_of(client: httpx.Client) -> SessionStore:
    return SessionStore(session_key=client.cookies.get("sessionid"))


# --------------------------------------------------------------------------- OpenID Connect, end to end


def test_it_signs_a_new_person_in_through_the_oidc_provider_with_the_mapped_role(
        oidc_provider, sso_web, transactional_db, organization):
    provider = _oidc_provider(organization, oidc_provider.issuer)

    client, response = _sign_in_through_provider(sso_web, provider.slug, "fiona")

    assert response.status_code == 200, response.text[:500]
    fiona = User.objects.get(username="fiona")
    assert fiona.email == "fiona@example.com"
    session = _session_of(client)
    assert session["_auth_user_id"] == str(fiona.pk)
    assert session["organization_id"] == str(organization.id)
    assert Membership.objects.get(user=fiona, organization=organization).role == Membership.Role.ADMIN
    assert AuditLog.objects.get(action="auth.sign_in", actor=fiona).organization_id == organization.id
    joined = AuditLog.objects.get(action="membership.add", target_id=str(fiona.pk))
    assert joined.diff == {"role": [None, "admin"]}
    # The settings pages are an admin's: the session really carries the mapped role.
    assert client.get(f"{sso_web}/settings/sso/").status_code == 200


def test_an_sso_sign_in_is_audited_with_its_method_and_provider(oidc_provider, sso_web, transactional_db,
                                                                organization, other_organization):
    gus = _person("gus.local", other_organization, Membership.Role.OWNER, email="gus@elsewhere.test")
    provider = _oidc_provider(organization, oidc_provider.issuer)
    from allauth.socialaccount.models import SocialAccount

    # Someone already in another organization, linked earlier: the entry belongs to the provider's.
    SocialAccount.objects.create(user=gus, provider=provider.slug, uid=str(_provider_subject("gus")))

    _, response = _sign_in_through_provider(sso_web, provider.slug, "gus")

    assert response.status_code == 200
    signed_in = AuditLog.objects.get(action="auth.sign_in", actor=gus)
    assert signed_in.organization_id == organization.id
    assert signed_in.data == {"method": "oidc", "provider": provider.slug}


def _off_the_event_loop(query):
    """Playwright's sync API runs an event loop in this thread and Django refuses ORM calls there."""
    def run():
        try:
            return query()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def browser_provider(oidc_provider, sso_web, transactional_db, organization) -> IdentityProvider:
    return _oidc_provider(organization, oidc_provider.issuer)


@pytest.mark.browser
def test_a_person_signs_in_through_sso_in_a_real_browser(browser_provider, sso_web, browser_context):  # noqa: F811
    """Chromium, under our Content-Security-Policy (a violation fails the test): the button, the
    provider's own sign-in form, the way back; then the work-email route for someone else."""
    from playwright.sync_api import expect

    page = browser_context.new_page()
    page.goto(f"{sso_web}/accounts/login/")
    page.get_by_role("button", name="Sign in with Acme Okta").click()
    page.wait_for_url(re.compile(r"/login/\?next="))
    page.fill("input[name=username]", "fiona")
    page.fill("input[name=password]", IDP_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile("^" + re.escape(sso_web) + r"/(?!accounts/)"))
    expect(page.locator(".usermenu-name")).to_have_text("fiona")
    assert _off_the_event_loop(lambda: Membership.objects.get(user__username="fiona").role) == "admin"

    browser_context.clear_cookies()
    page.goto(f"{sso_web}/accounts/login/")
    page.fill("#sso-email", "gus@example.com")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/login/\?next="))
    page.fill("input[name=username]", "gus")
    page.fill("input[name=password]", IDP_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile("^" + re.escape(sso_web) + r"/(?!accounts/)"))
    expect(page.locator(".usermenu-name")).to_have_text("gus")
    assert _off_the_event_loop(lambda: Membership.objects.get(user__username="gus").role) == "builder"


def test_someone_in_no_mapped_group_lands_with_the_default_role(oidc_provider, sso_web, transactional_db,
                                                                 organization):
    _oidc_provider(organization, oidc_provider.issuer)

    client, response = _sign_in_through_provider(sso_web, SLUGS[0], "gus")

    assert response.status_code == 200
    gus = User.objects.get(username="gus")
    assert Membership.objects.get(user=gus, organization=organization).role == Membership.Role.BUILDER
    assert _session_of(client)["_auth_user_id"] == str(gus.pk)


def test_signing_in_again_updates_the_role_from_the_claims(oidc_provider, sso_web, transactional_db, organization):
    provider = _oidc_provider(organization, oidc_provider.issuer)
    _sign_in_through_provider(sso_web, provider.slug, "fiona")
    sso.identity_provider_update(provider=provider, actor=None, role_mapping={"staff": "operator"})

    _, response = _sign_in_through_provider(sso_web, provider.slug, "fiona")

    assert response.status_code == 200
    fiona = User.objects.get(username="fiona")
    assert User.objects.filter(email="fiona@example.com").count() == 1
    assert Membership.objects.get(user=fiona, organization=organization).role == Membership.Role.OPERATOR
    changed = AuditLog.objects.get(action="membership.role_change", target_id=str(fiona.pk))
    assert changed.diff == {"role": ["admin", "operator"]}


def test_a_disabled_provider_refuses_before_anyone_leaves_for_it(oidc_provider, sso_web, transactional_db,
                                                                   organization):
    provider = _oidc_provider(organization, oidc_provider.issuer, enabled=False)
    client = httpx.Client(timeout=30)

    page = client.get(f"{sso_web}/accounts/login/")
    response = client.post(f"{sso_web}/accounts/oidc/{provider.slug}/login/",
                           data={"csrfmiddlewaretoken": _csrf(page.text)})

    assert f"/accounts/oidc/{provider.slug}/login/" not in page.text  # no button for it
    assert response.status_code == 403
    assert "turned off" in response.text
    failed = AuditLog.objects.get(action="auth.sign_in_failed")
    assert failed.organization_id == organization.id
    assert failed.data["reason"] == "disabled"
    assert failed.data["provider"] == provider.slug


def test_a_provider_disabled_mid_sign_in_refuses_the_callback(oidc_provider, sso_web, transactional_db,
                                                                organization):
    provider = _oidc_provider(organization, oidc_provider.issuer)
    client, callback = _sign_in_through_provider(sso_web, provider.slug, "fiona", stop_at_callback=True)
    sso.identity_provider_update(provider=provider, actor=None, enabled=False)

    response = client.get(callback)

    assert response.status_code == 403
    assert "turned off" in response.text
    assert not User.objects.filter(username="fiona").exists()
    assert "_auth_user_id" not in _session_of(client)
    assert AuditLog.objects.get(action="auth.sign_in_failed").data["reason"] == "disabled"


def test_an_address_outside_the_providers_domains_is_refused(oidc_provider, sso_web, transactional_db,
                                                               organization):
    _oidc_provider(organization, oidc_provider.issuer, email_domains=["example.com"])

    _, response = _sign_in_through_provider(sso_web, SLUGS[0], "otto")  # otto@other.test

    assert response.status_code == 403
    assert "@example.com" in response.text
    assert not User.objects.filter(username="otto").exists()
    failed = AuditLog.objects.get(action="auth.sign_in_failed")
    assert failed.data == {"method": "oidc", "provider": SLUGS[0], "reason": "email_domain",
                           "login": "otto@other.test"}


def test_it_links_the_sign_in_to_an_existing_account_of_that_organization(oidc_provider, sso_web,
                                                                          transactional_db, organization):
    hana = _person("hana.local", organization, Membership.Role.VIEWER, email="hana@example.com")
    _oidc_provider(organization, oidc_provider.issuer)

    client, response = _sign_in_through_provider(sso_web, SLUGS[0], "hana")

    assert response.status_code == 200
    assert User.objects.filter(email__iexact="hana@example.com").count() == 1
    assert _session_of(client)["_auth_user_id"] == str(hana.pk)
    from allauth.socialaccount.models import SocialAccount

    assert SocialAccount.objects.get(provider=SLUGS[0]).user == hana
    hana.refresh_from_db()
    assert hana.has_usable_password()  # the address an admin typed counts as vouched for
    assert Membership.objects.get(user=hana, organization=organization).role == Membership.Role.BUILDER


def test_it_wont_link_an_account_that_also_belongs_to_another_organization(
        oidc_provider, sso_web, transactional_db, organization, other_organization):
    hana = _person("hana.local", organization, Membership.Role.VIEWER, email="hana@example.com")
    account_services.membership_add(organization=other_organization, user=hana, role=Membership.Role.OWNER)
    _oidc_provider(organization, oidc_provider.issuer)

    client, response = _sign_in_through_provider(sso_web, SLUGS[0], "hana")

    assert response.status_code == 403
    assert "already exists" in response.text
    assert User.objects.filter(email__iexact="hana@example.com").count() == 1
    assert "_auth_user_id" not in _session_of(client)
    assert AuditLog.objects.get(action="auth.sign_in_failed").data["reason"] == "email_taken"


def test_a_work_email_sends_the_person_to_their_companys_provider(oidc_provider, db, organization):
    _oidc_provider(organization, oidc_provider.issuer)
    client = Client()

    response = client.post("/accounts/sso/", {"email": "Fiona@Example.com"})

    target = urlparse(_identity_provider_url(response))
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{oidc_provider.issuer}/authorize/"
    query = parse_qs(target.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["login_hint"] == ["Fiona@Example.com"]
    assert query["code_challenge_method"] == ["S256"]


def test_a_work_email_without_a_provider_says_so(db, organization):
    response = Client().post("/accounts/sso/", {"email": "someone@nowhere.test"}, follow=True)

    assert response.redirect_chain[-1][0].startswith("/accounts/login/")
    assert "set up for nowhere.test" in response.content.decode()


def test_the_sign_in_page_offers_enabled_providers_only(db, organization):
    sso.identity_provider_create(organization=organization, actor=None, kind="oidc", slug="on", name="Okta",
                                 server_url="https://acme.okta.example", client_id="x", client_secret="y")
    sso.identity_provider_create(organization=organization, actor=None, kind="oidc", slug="off", name="Old IdP",
                                 server_url="https://old.example", client_id="x", client_secret="y", enabled=False)

    page = Client().get("/accounts/login/").content.decode()

    assert "Sign in with Okta" in page
    assert 'action="/accounts/oidc/on/login/?process=login"' in page
    assert "Old IdP" not in page
    assert 'action="/accounts/sso/"' in page


def test_the_linked_accounts_page_offers_only_the_organizations_own_providers(db, organization, other_organization,
                                                                             owner):
    sso.identity_provider_create(organization=organization, actor=None, kind="oidc", slug="acme-sso", name="Acme SSO",
                                 server_url="https://acme.okta.example", client_id="x", client_secret="y")
    sso.identity_provider_create(organization=other_organization, actor=None, kind="oidc", slug="globex-sso",
                                 name="Globex SSO", server_url="https://globex.okta.example", client_id="x",
                                 client_secret="y")
    client = Client()
    client.force_login(owner)

    page = client.get("/accounts/3rdparty/").content.decode()

    assert "Acme SSO" in page
    assert "Globex SSO" not in page


# --------------------------------------------------------------------------- Test connection


def test_connection_to_the_real_provider_passes(oidc_provider, db, organization, owner):
    provider = _oidc_provider(organization, oidc_provider.issuer)

    checks = sso.identity_provider_test(provider=provider, actor=owner)

    assert [check.name for check in checks if not check.ok] == []
    assert {check.name for check in checks} >= {"Discovery document", "Issuer", "Required fields",
                                                 "Authorization code flow", "ID token signing", "Signing keys"}
    provider.refresh_from_db()
    assert provider.last_test_ok is True
    assert provider.last_tested_at is not None
    entry = AuditLog.objects.get(action="identity_provider.test")
    assert entry.actor == owner
    assert entry.data == {"ok": True, "failed": []}


def test_connection_reports_a_broken_discovery_document(db, organization):
    document = {"issuer": "https://somewhere-else.example", "authorization_endpoint": "https://x/authorize",
                "response_types_supported": ["id_token"], "id_token_signing_alg_values_supported": ["none"]}
    with DocumentServer({"/.well-known/openid-configuration": (200, "application/json",
                                                               json.dumps(document).encode())}) as server:
        provider = _oidc_provider(organization, server.url)
        checks = {check.name: check for check in sso.identity_provider_test(provider=provider, actor=None)}

    assert not checks["Issuer"].ok
    assert "https://somewhere-else.example" in checks["Issuer"].message
    assert not checks["Required fields"].ok
    assert "token_endpoint" in checks["Required fields"].message and "jwks_uri" in checks["Required fields"].message
    assert not checks["Authorization code flow"].ok
    assert not checks["ID token signing"].ok
    provider.refresh_from_db()
    assert provider.last_test_ok is False
    assert provider.last_test_message.startswith("Issuer: ")


def test_connection_reports_a_document_that_is_not_json(db, organization):
    with DocumentServer({"/.well-known/openid-configuration": (200, "text/html", b"<html>login</html>")}) as server:
        provider = _oidc_provider(organization, server.url)
        checks = sso.identity_provider_test(provider=provider, actor=None)

    assert [(check.name, check.ok) for check in checks] == [("Discovery document", False)]
    assert "not JSON" in checks[0].message


def test_connection_to_a_loopback_provider_needs_the_operators_allowance(db, organization, settings):
    provider = _oidc_provider(organization, "http://127.0.0.1:9")
    settings.SSO_ALLOWED_HOSTS = []

    checks = sso.identity_provider_test(provider=provider, actor=None)

    assert not checks[0].ok
    assert "loopback" in checks[0].message and "AGENTRY_SSO_ALLOWED_HOSTS" in checks[0].message


def test_the_sign_in_calls_to_the_provider_pass_the_address_guard(settings):
    import requests

    settings.SSO_ALLOWED_HOSTS = []

    with pytest.raises(requests.ConnectionError, match="loopback"):
        sso.GuardedSession().get("http://127.0.0.1:9/.well-known/openid-configuration")


# --------------------------------------------------------------------------- SAML 2.0


def _certificate() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-idp.example")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def _cert_body(cert_pem: str) -> str:
    return "".join(line for line in cert_pem.splitlines() if "CERTIFICATE" not in line)


IDP_ENTITY = "https://idp.acme.example/saml"
IDP_SSO = "https://idp.acme.example/saml/sso"


def _metadata(cert_pem: str, entity_id: str = IDP_ENTITY) -> bytes:
    return f"""<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity_id}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data>
        <ds:X509Certificate>{_cert_body(cert_pem)}</ds:X509Certificate>
      </ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>""".encode()


def _saml_provider(organization, cert_pem: str, **overrides) -> IdentityProvider:
    values = {"name": "Acme ADFS", "idp_entity_id": IDP_ENTITY, "idp_sso_url": IDP_SSO, "idp_x509_cert": cert_pem,
              "role_claim": "groups", "role_mapping": {"auditors": "auditor"}, "email_domains": ["example.com"]}
    values.update(overrides)
    return sso.identity_provider_create(organization=organization, actor=None, kind="saml",
                                        slug=values.pop("slug", "acme-adfs"), **values)


def _signed_response(*, key_pem: str, cert_pem: str, acs: str, audience: str, in_response_to: str, email: str,
                     groups: list[str]) -> str:
    """A SAML Response as an identity provider sends it, its assertion signed (RSA-SHA256)."""
    from onelogin.saml2.constants import OneLogin_Saml2_Constants as Constants
    from onelogin.saml2.utils import OneLogin_Saml2_Utils

    now = datetime.now(UTC)

    def instant(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    values = "".join(f"<saml:AttributeValue>{group}</saml:AttributeValue>" for group in groups)
    assertion = f"""<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a{uuid.uuid4().hex}" \
Version="2.0" IssueInstant="{instant(now)}">
<saml:Issuer>{IDP_ENTITY}</saml:Issuer>
<saml:Subject>
<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{email}</saml:NameID>
<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
<saml:SubjectConfirmationData NotOnOrAfter="{instant(now + timedelta(minutes=5))}" Recipient="{acs}" \
InResponseTo="{in_response_to}"/>
</saml:SubjectConfirmation>
</saml:Subject>
<saml:Conditions NotBefore="{instant(now - timedelta(minutes=1))}" NotOnOrAfter="{instant(now + timedelta(minutes=5))}">
<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>
</saml:Conditions>
<saml:AuthnStatement AuthnInstant="{instant(now)}" SessionIndex="_s{uuid.uuid4().hex}">
<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport\
</saml:AuthnContextClassRef></saml:AuthnContext>
</saml:AuthnStatement>
<saml:AttributeStatement>
<saml:Attribute Name="email"><saml:AttributeValue>{email}</saml:AttributeValue></saml:Attribute>
<saml:Attribute Name="groups">{values}</saml:Attribute>
</saml:AttributeStatement>
</saml:Assertion>"""
    signed = OneLogin_Saml2_Utils.add_sign(assertion, key_pem, cert_pem, sign_algorithm=Constants.RSA_SHA256,
                                           digest_algorithm=Constants.SHA256)
    signed_text = signed.decode() if isinstance(signed, bytes) else signed
    signed_text = re.sub(r"^<\?xml[^>]*\?>\s*", "", signed_text)
    response = f"""<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" \
xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r{uuid.uuid4().hex}" Version="2.0" \
IssueInstant="{instant(now)}" Destination="{acs}" InResponseTo="{in_response_to}">
<saml:Issuer>{IDP_ENTITY}</saml:Issuer>
<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
{signed_text}
</samlp:Response>"""
    return base64.b64encode(response.encode()).decode()


def _authn_request(location: str) -> str:
    """The AuthnRequest XML in an HTTP-Redirect binding URL."""
    raw = parse_qs(urlparse(location).query)["SAMLRequest"][0]
    return zlib.decompress(base64.b64decode(raw), -15).decode()


def test_the_saml_sign_in_redirects_with_an_authn_request_to_the_idp(db, organization):
    _, cert = _certificate()
    provider = _saml_provider(organization, cert)
    client = Client(HTTP_HOST="testserver")

    response = client.post(f"/accounts/saml/{provider.slug}/login/")

    location = _identity_provider_url(response)
    assert location.startswith(IDP_SSO + "?SAMLRequest=")
    request = _authn_request(location)
    assert f'Destination="{IDP_SSO}"' in request
    assert f'AssertionConsumerServiceURL="http://testserver/accounts/saml/{provider.slug}/acs/"' in request
    assert f"<saml:Issuer>http://testserver/accounts/saml/{provider.slug}/metadata/</saml:Issuer>" in request


def test_a_signed_saml_response_signs_the_person_in_with_the_mapped_role(db, organization):
    key, cert = _certificate()
    provider = _saml_provider(organization, cert)
    client = Client(HTTP_HOST="testserver")  # browsers send Host; Django's test client doesn't
    start = client.post(f"/accounts/saml/{provider.slug}/login/")
    request_id = re.search(r' ID="([^"]+)"', _authn_request(_identity_provider_url(start))).group(1)
    acs = f"http://testserver/accounts/saml/{provider.slug}/acs/"

    saml_response = _signed_response(key_pem=key, cert_pem=cert, acs=acs,
                                     audience=f"http://testserver/accounts/saml/{provider.slug}/metadata/",
                                     in_response_to=request_id, email="ivy@example.com", groups=["auditors", "all"])
    response = client.post(f"/accounts/saml/{provider.slug}/acs/", {"SAMLResponse": saml_response}, follow=True)

    assert response.status_code == 200, response.content[:500]
    ivy = User.objects.get(email="ivy@example.com")
    assert response.wsgi_request.user == ivy
    assert client.session["organization_id"] == str(organization.id)
    assert Membership.objects.get(user=ivy, organization=organization).role == Membership.Role.AUDITOR
    failed = AuditLog.objects.filter(action="auth.sign_in_failed")
    assert not failed.exists(), [entry.data for entry in failed]


def test_a_saml_response_signed_by_another_key_is_rejected(db, organization):
    _, cert = _certificate()
    forger_key, forger_cert = _certificate()
    provider = _saml_provider(organization, cert)
    client = Client(HTTP_HOST="testserver")  # browsers send Host; Django's test client doesn't
    start = client.post(f"/accounts/saml/{provider.slug}/login/")
    request_id = re.search(r' ID="([^"]+)"', _authn_request(_identity_provider_url(start))).group(1)

    saml_response = _signed_response(key_pem=forger_key, cert_pem=forger_cert,
                                     acs=f"http://testserver/accounts/saml/{provider.slug}/acs/",
                                     audience=f"http://testserver/accounts/saml/{provider.slug}/metadata/",
                                     in_response_to=request_id, email="mallory@example.com", groups=["auditors"])
    response = client.post(f"/accounts/saml/{provider.slug}/acs/", {"SAMLResponse": saml_response}, follow=True)

    assert response.status_code == 401
    assert not User.objects.filter(email="mallory@example.com").exists()
    assert AuditLog.objects.filter(action="auth.sign_in_failed", data__provider=provider.slug).exists()


def test_saml_test_connection_reads_the_idp_metadata(db, organization):
    _, cert = _certificate()
    with DocumentServer({"/metadata": (200, "application/samlmetadata+xml", _metadata(cert))}) as server:
        provider = _saml_provider(organization, "", idp_entity_id="", idp_sso_url="",
                                  idp_metadata_url=f"{server.url}/metadata")
        checks = {check.name: check for check in sso.identity_provider_test(provider=provider, actor=None)}

    assert all(check.ok for check in checks.values()), checks
    assert checks["Entity ID"].message == IDP_ENTITY
    assert checks["Single sign-on URL"].message == IDP_SSO
    assert "test-idp.example" in checks["Signing certificate"].message


def test_saml_test_connection_reports_metadata_that_is_not_metadata(db, organization):
    with DocumentServer({"/metadata": (200, "text/xml", b"<html><body>Sign in</body></html>"),
                         "/broken": (200, "text/xml", b"<md:EntityDescriptor")}) as server:
        provider = _saml_provider(organization, "", idp_entity_id="", idp_sso_url="",
                                  idp_metadata_url=f"{server.url}/metadata")
        empty = {check.name: check for check in sso.identity_provider_test(provider=provider, actor=None)}
        provider = sso.identity_provider_update(provider=provider, actor=None, idp_metadata_url=f"{server.url}/broken")
        broken = sso.identity_provider_test(provider=provider, actor=None)

    assert not empty["Entity ID"].ok and not empty["Signing certificate"].ok
    assert [(check.name, check.ok) for check in broken] == [("Metadata", False)]
    assert "not SAML metadata" in broken[0].message


def test_saml_sign_in_reads_sso_url_and_certificate_from_the_metadata(db, organization):
    _, cert = _certificate()
    with DocumentServer({"/metadata": (200, "application/xml", _metadata(cert))}) as server:
        provider = _saml_provider(organization, "", idp_entity_id="", idp_sso_url="",
                                  idp_metadata_url=f"{server.url}/metadata")
        response = Client(HTTP_HOST="testserver").post(f"/accounts/saml/{provider.slug}/login/")

    assert _identity_provider_url(response).startswith(IDP_SSO + "?SAMLRequest=")


def test_saml_certificate_checks_catch_an_expired_certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old-idp")])
    now = datetime.now(UTC)
    expired = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now - timedelta(days=400)).not_valid_after(now - timedelta(days=1))
               .sign(key, hashes.SHA256())).public_bytes(serialization.Encoding.PEM).decode()

    check = sso._certificate_check(expired)

    assert not check.ok
    assert "expired" in check.message


# --------------------------------------------------------------------------- role mapping


def _mapping_provider(**values) -> IdentityProvider:
    return IdentityProvider(role_claim=values.pop("role_claim", "groups"), **values)


@pytest.mark.parametrize(("claims", "role"), [
    ({"groups": ["finance-admins"]}, "admin"),
    ({"groups": "finance-admins"}, "admin"),
    ({"groups": ["staff", "engineering"]}, "builder"),
    ({"groups": ["engineering", "finance-admins"]}, "admin"),  # the most privileged match wins
    ({"groups": ["support", "readers"]}, "operator"),
    ({"groups": ["strangers"]}, "viewer"),
    ({"groups": []}, "viewer"),
    ({}, "viewer"),
    ({"groups": {"finance-admins": True}}, "viewer"),
])
def test_claims_map_to_a_role(claims, role):
    provider = _mapping_provider(role_mapping={"finance-admins": "admin", "engineering": "builder",
                                               "support": "operator", "readers": "viewer"},
                                 default_role="viewer")

    assert sso.role_for_claims(provider=provider, claims=claims) == role


def test_a_role_claim_can_be_any_claim_name():
    provider = _mapping_provider(role_claim="http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
                                 role_mapping={"Agentry.Admin": "admin"}, default_role="operator")

    assert sso.role_for_claims(provider=provider, claims={
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/role": ["Agentry.Admin"]}) == "admin"
    assert sso.role_for_claims(provider=provider, claims={"groups": ["Agentry.Admin"]}) == "operator"


def test_single_sign_on_never_grants_owner_even_when_the_default_was_set_to_it():
    provider = _mapping_provider(role_mapping={"root": "owner"}, default_role="owner")

    assert sso.role_for_claims(provider=provider, claims={"groups": ["root"]}) == "viewer"


def test_an_owner_keeps_owner_whatever_the_claims_say(db, organization, owner):
    provider = _oidc_provider(organization, "https://acme.okta.example")

    sso.sign_in_apply(None, provider=provider, user=owner, claims={"groups": []})

    assert Membership.objects.get(user=owner, organization=organization).role == Membership.Role.OWNER


def test_oidc_claims_are_the_id_token_overlaid_with_userinfo():
    claims = sso.claims_of({"id_token": {"sub": "1", "groups": ["a"]}, "userinfo": {"groups": ["b"]}})

    assert claims == {"sub": "1", "groups": ["b"]}


# --------------------------------------------------------------------------- API


@pytest.fixture
def viewer(organization):
    return _person("vera", organization, Membership.Role.VIEWER)


@pytest.fixture
def auditor(organization):
    return _person("aude", organization, Membership.Role.AUDITOR)


OIDC_BODY = {"kind": "oidc", "name": "Okta", "slug": "acme-okta", "server_url": "https://acme.okta.example",
             "client_id": "0oa123", "client_secret": "s3cret", "role_claim": "groups",
             "role_mapping": {"finance-admins": "admin"}, "default_role": "viewer", "email_domains": ["Example.COM"]}


def test_an_owner_creates_a_provider_and_the_secret_is_never_returned(owner_api, owner, organization):
    response = owner_api.post("/api/identity-providers", OIDC_BODY, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert "client_secret" not in body
    assert body["has_client_secret"] is True
    assert body["email_domains"] == ["example.com"]
    assert body["callback_url"] == "http://testserver/accounts/oidc/acme-okta/login/callback/"
    provider = IdentityProvider.objects.get(id=body["id"])
    assert provider.organization == organization
    assert provider.client_secret == "s3cret"
    entry = AuditLog.objects.get(action="identity_provider.create")
    assert entry.actor == owner
    assert "s3cret" not in json.dumps(entry.data)
    assert "s3cret" not in json.dumps(owner_api.get(f"/api/identity-providers/{provider.id}").json())


def test_a_role_that_doesnt_exist_in_the_mapping_is_a_400_naming_the_field(owner_api):
    response = owner_api.post("/api/identity-providers", {**OIDC_BODY, "role_mapping": {"finance-admins": "god"}},
                              format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert "role_mapping" in body["details"]
    assert "god" in json.dumps(body["details"]["role_mapping"])


def test_owner_cant_be_granted_through_the_mapping(owner_api):
    response = owner_api.post("/api/identity-providers", {**OIDC_BODY, "role_mapping": {"root": "owner"}},
                              format="json")

    assert response.status_code == 400
    assert "role_mapping" in response.json()["details"]


@pytest.mark.parametrize(("field", "value"), [
    ("server_url", "not a url"),
    ("server_url", "http://acme.okta.example"),  # plain http only for hosts the operator allowed
    ("server_url", "ftp://acme.okta.example"),
    ("email_domains", ["not a domain"]),
    ("slug", "saml"),
    ("slug", "Has Spaces"),
    ("kind", "ldap"),
    ("default_role", "owner"),
])
def test_bad_input_is_a_400_with_field_errors(owner_api, field, value):
    response = owner_api.post("/api/identity-providers", {**OIDC_BODY, field: value}, format="json")

    assert response.status_code == 400
    assert field in response.json()["details"]


def test_oidc_needs_a_client_secret_and_saml_needs_where_to_send_people(owner_api):
    no_secret = owner_api.post("/api/identity-providers", {**OIDC_BODY, "client_secret": ""}, format="json")
    saml = owner_api.post("/api/identity-providers", {"kind": "saml", "name": "ADFS", "slug": "adfs"}, format="json")

    assert no_secret.status_code == 400 and "client_secret" in no_secret.json()["details"]
    assert saml.status_code == 400
    assert {"idp_entity_id", "idp_sso_url", "idp_x509_cert"} <= set(saml.json()["details"])


def test_an_email_domain_goes_to_one_provider_only(owner_api, outsider_api):
    assert owner_api.post("/api/identity-providers", OIDC_BODY, format="json").status_code == 201

    response = outsider_api.post("/api/identity-providers", {**OIDC_BODY, "slug": "globex"}, format="json")

    assert response.status_code == 400
    assert "example.com" in json.dumps(response.json()["details"]["email_domains"])


def test_patch_keeps_the_secret_when_none_is_sent_and_refuses_a_new_slug(owner_api, organization):
    provider_id = owner_api.post("/api/identity-providers", OIDC_BODY, format="json").json()["id"]

    renamed = owner_api.patch(f"/api/identity-providers/{provider_id}", {"name": "Okta SSO"}, format="json")
    reslugged = owner_api.patch(f"/api/identity-providers/{provider_id}", {"slug": "new-slug"}, format="json")

    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Okta SSO"
    assert IdentityProvider.objects.get(id=provider_id).client_secret == "s3cret"
    assert reslugged.status_code == 400 and "slug" in reslugged.json()["details"]
    entry = AuditLog.objects.get(action="identity_provider.update")
    assert entry.diff == {"name": ["Okta", "Okta SSO"]}


def test_a_new_secret_is_audited_without_its_value(owner_api):
    provider_id = owner_api.post("/api/identity-providers", OIDC_BODY, format="json").json()["id"]

    owner_api.patch(f"/api/identity-providers/{provider_id}", {"client_secret": "rotated"}, format="json")

    assert IdentityProvider.objects.get(id=provider_id).client_secret == "rotated"
    entry = AuditLog.objects.get(action="identity_provider.update")
    assert "client_secret" in entry.diff
    assert "rotated" not in json.dumps(entry.diff)


def test_deleting_a_provider_unlinks_its_accounts_and_is_audited(owner_api, organization, member):
    from allauth.socialaccount.models import SocialAccount

    provider_id = owner_api.post("/api/identity-providers", OIDC_BODY, format="json").json()["id"]
    SocialAccount.objects.create(user=member, provider="acme-okta", uid="00u1")

    response = owner_api.delete(f"/api/identity-providers/{provider_id}")

    assert response.status_code == 204
    assert not IdentityProvider.objects.filter(id=provider_id).exists()
    assert not SocialAccount.objects.filter(provider="acme-okta").exists()
    assert AuditLog.objects.get(action="identity_provider.delete").data["unlinked_accounts"] == 1


def test_the_api_test_action_reports_each_check(owner_api, db):
    with DocumentServer({}) as server:
        provider_id = owner_api.post("/api/identity-providers", {**OIDC_BODY, "server_url": server.url},
                                     format="json").json()["id"]
        response = owner_api.post(f"/api/identity-providers/{provider_id}/test")

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert body["checks"][0]["name"] == "Discovery document"
    assert "HTTP 404" in body["checks"][0]["message"]


@pytest.mark.parametrize(("role", "allowed"), [
    ("viewer", {"list": 403, "create": 403}),
    ("operator", {"list": 403, "create": 403}),
    ("builder", {"list": 403, "create": 403}),
    ("auditor", {"list": 200, "create": 403}),
    ("admin", {"list": 200, "create": 201}),
])
def test_who_may_see_and_change_providers(organization, role, allowed):
    api = client_for(_person(f"p-{role}", organization, role), organization)

    assert api.get("/api/identity-providers").status_code == allowed["list"]
    assert api.post("/api/identity-providers", OIDC_BODY, format="json").status_code == allowed["create"]


def test_an_auditor_can_read_but_not_test_or_delete(owner_api, organization, auditor):
    provider_id = owner_api.post("/api/identity-providers", OIDC_BODY, format="json").json()["id"]
    api = client_for(auditor, organization)

    assert api.get(f"/api/identity-providers/{provider_id}").status_code == 200
    assert api.post(f"/api/identity-providers/{provider_id}/test").status_code == 403
    assert api.patch(f"/api/identity-providers/{provider_id}", {"name": "x"}, format="json").status_code == 403
    assert api.delete(f"/api/identity-providers/{provider_id}").status_code == 403


def test_another_organizations_provider_is_not_found(owner_api, outsider_api):
    provider_id = owner_api.post("/api/identity-providers", OIDC_BODY, format="json").json()["id"]

    assert outsider_api.get(f"/api/identity-providers/{provider_id}").status_code == 404
    assert outsider_api.patch(f"/api/identity-providers/{provider_id}", {"name": "x"}, format="json").status_code \
        == 404
    assert outsider_api.get("/api/identity-providers").json()["results"] == []


def test_the_api_is_in_the_openapi_document(owner_api):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    if schema.status_code == 401:
        schema = owner_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    text = schema.content.decode()

    assert "/api/identity-providers/{id}/test" in text
    assert '"client_secret"' in text


# --------------------------------------------------------------------------- settings pages


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_owner_adds_a_provider_through_the_settings_form(owner, organization):
    client = _signed_in(owner)

    response = client.post("/settings/sso/new/", {
        "kind": "oidc", "name": "Okta", "slug": "acme-okta", "enabled": "on",
        "server_url": "https://acme.okta.example", "client_id": "0oa123", "client_secret": "s3cret",
        "role_claim": "groups", "role_mapping": '{"finance-admins": "admin"}', "default_role": "viewer",
        "email_domains": "example.com, example.org",
    })

    provider = IdentityProvider.objects.get(slug="acme-okta")
    assert response.status_code == 302
    assert response["Location"] == f"/settings/sso/{provider.id}/"
    assert provider.email_domains == ["example.com", "example.org"]
    assert provider.role_mapping == {"finance-admins": "admin"}
    detail = client.get(response["Location"]).content.decode()
    assert "http://testserver/accounts/oidc/acme-okta/login/callback/" in detail
    assert "s3cret" not in detail


def test_the_form_shows_what_is_wrong_next_to_the_field(owner):
    response = _signed_in(owner).post("/settings/sso/new/", {
        "kind": "oidc", "name": "Okta", "slug": "acme-okta", "server_url": "https://acme.okta.example",
        "client_id": "x", "client_secret": "y", "role_mapping": '{"finance-admins": "superuser"',
        "default_role": "viewer",
    })

    assert response.status_code == 400
    assert "Not valid JSON" in response.content.decode()
    assert not IdentityProvider.objects.exists()


def test_the_edit_form_never_shows_the_secret_and_blank_keeps_it(owner, organization):
    provider = _oidc_provider(organization, "https://acme.okta.example")
    client = _signed_in(owner)

    page = client.get(f"/settings/sso/{provider.id}/edit/").content.decode()
    response = client.post(f"/settings/sso/{provider.id}/edit/", {
        "name": "Okta (new)", "enabled": "on", "server_url": provider.server_url, "client_id": provider.client_id,
        "client_secret": "", "role_claim": "groups", "role_mapping": "", "default_role": "operator",
        "email_domains": "example.com",
    })

    assert CLIENT_SECRET not in page
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.client_secret == CLIENT_SECRET
    assert provider.name == "Okta (new)"
    assert provider.role_mapping == {}
    assert provider.default_role == "operator"


def test_test_connection_shows_each_check(owner, organization):
    with DocumentServer({"/.well-known/openid-configuration": (500, "text/plain", b"oops")}) as server:
        provider = _oidc_provider(organization, server.url)
        response = _signed_in(owner).post(f"/settings/sso/{provider.id}/test/", HTTP_HX_REQUEST="true")

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="sso-test-results"' in page
    assert "Discovery document" in page and "HTTP 500" in page
    assert "fail" in page


def test_deleting_through_the_page_asks_first(owner, organization):
    provider = _oidc_provider(organization, "https://acme.okta.example")
    client = _signed_in(owner)

    confirm = client.get(f"/settings/sso/{provider.id}/delete/")
    deleted = client.post(f"/settings/sso/{provider.id}/delete/")

    assert confirm.status_code == 200 and "Are you sure?" in confirm.content.decode()
    assert deleted.status_code == 302
    assert not IdentityProvider.objects.filter(id=provider.id).exists()


@pytest.mark.parametrize(("path", "method"), [
    ("/settings/sso/", "get"),
    ("/settings/sso/new/", "get"),
    ("/settings/sso/new/", "post"),
])
def test_a_viewer_gets_403_on_the_settings_pages(viewer, path, method):
    response = getattr(_signed_in(viewer), method)(path)

    assert response.status_code == 403


def test_an_auditor_sees_providers_but_no_buttons_to_change_them(auditor, organization):
    provider = _oidc_provider(organization, "https://acme.okta.example")
    client = _signed_in(auditor)

    page = client.get(f"/settings/sso/{provider.id}/").content.decode()

    assert client.get("/settings/sso/").status_code == 200
    assert "Acme Okta" in page
    assert 'id="test-connection"' not in page and 'id="edit-provider"' not in page
    assert client.get(f"/settings/sso/{provider.id}/edit/").status_code == 403
    assert client.post(f"/settings/sso/{provider.id}/test/").status_code == 403
    assert client.post(f"/settings/sso/{provider.id}/delete/").status_code == 403


def test_another_organizations_provider_page_is_a_404(outsider, organization):
    provider = _oidc_provider(organization, "https://acme.okta.example")

    assert _signed_in(outsider).get(f"/settings/sso/{provider.id}/").status_code == 404


def test_the_admin_never_shows_the_secret(db, organization):
    superuser = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    provider = _oidc_provider(organization, "https://acme.okta.example")

    page = _signed_in(superuser).get(f"/admin/accounts/identityprovider/{provider.id}/change/").content.decode()

    assert "Acme Okta" in page
    assert CLIENT_SECRET not in page
