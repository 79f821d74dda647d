"""The OAuth 2.0 dance through our own code (integrations.oauth) against the fake GitHub
authorization server: a person clicks Connect, authorizes on "GitHub", comes back with a code.
Forged, replayed, tampered and stale responses are all refused, and refused ones store nothing."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.db import connection as db
from django.utils import timezone

from integrations import calls, catalog, crypto, oauth
from integrations import tools as tool_registry
from integrations.models import Connection, OAuthGrant
from tests.fakes.github_server import FakeGitHub

REDIRECT_URI = "http://testserver/connections/oauth/callback"
SCOPES = ["repo:read", "issues:write"]

pytestmark = pytest.mark.django_db


@pytest.fixture
def github(settings) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(callback_url=REDIRECT_URI).start()
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.INTEGRATION_APPS = {**settings.INTEGRATION_APPS, "github": {
        "client_id": fake.client_id, "client_secret": fake.client_secret, "api_url": fake.url, "auth_url": fake.url}}
    yield fake
    fake.stop()


def start(organization, user, scopes: list[str] = SCOPES, **kwargs) -> str:
    return oauth.start(organization=organization, actor=user, integration=catalog.get("github"), scopes=scopes,
                       redirect_uri=REDIRECT_URI, **kwargs)


def test_the_whole_dance_ends_in_an_active_connection_with_encrypted_tokens(github, organization, owner):
    url = start(organization, owner)
    asked = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{github.url}/login/oauth/authorize?")
    assert asked["client_id"] == github.client_id and asked["redirect_uri"] == REDIRECT_URI
    assert asked["scope"] == "repo" and asked["code_challenge_method"] == "S256"
    assert asked["state"] and asked["code_challenge"]

    back = github.approve(url)
    assert back["state"] == asked["state"]
    connection = oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert connection.status == Connection.Status.ACTIVE and connection.auth_type == "oauth2"
    assert connection.owner == owner and connection.organization == organization
    assert connection.scopes == SCOPES
    assert connection.account["login"] == "octocat" and connection.name == "GitHub (octocat)"
    assert timedelta(hours=7) < connection.expires_at - timezone.now() <= timedelta(hours=8)
    exchange = github.token_requests()[0].form
    assert exchange["grant_type"] == "authorization_code" and exchange["code"] == back["code"]
    assert exchange["client_secret"] == github.client_secret and exchange["redirect_uri"] == REDIRECT_URI
    verifier = exchange["code_verifier"]
    assert base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode() == \
        asked["code_challenge"]
    issued = github.token_of("octocat")
    stored = crypto.decrypt(connection.secret)
    assert stored == {"access_token": issued.value, "refresh_token": issued.refresh_token}
    with db.cursor() as cursor:  # what a database dump would show
        cursor.execute("SELECT secret, account::text, options::text FROM integrations_connection")
        dumped = " ".join(cursor.fetchone())
        cursor.execute("SELECT secret FROM integrations_oauthgrant")
        dumped += " ".join(row[0] for row in cursor.fetchall())
    assert issued.value not in dumped and issued.refresh_token not in dumped and verifier not in dumped
    assert OAuthGrant.objects.get(state=back["state"]).used_at is not None


def test_an_organization_connection_has_no_owner(github, organization, owner):
    back = github.approve(start(organization, owner, for_organization=True, name="Acme bot"))

    connection = oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert connection.owner is None and connection.name == "Acme bot"


def test_an_unknown_state_is_refused_without_asking_github(github, organization, owner):
    back = github.approve(start(organization, owner))
    github.clear()

    with pytest.raises(oauth.OAuthError, match="doesn't match a connection you started"):
        oauth.finish(actor=owner, state="forged-" + back["state"], code=back["code"])

    assert github.requests == [] and not Connection.objects.exists()


def test_another_persons_state_is_refused_and_stays_theirs(github, organization, owner, member):
    back = github.approve(start(organization, owner))
    github.clear()

    with pytest.raises(oauth.OAuthError, match="doesn't match a connection you started"):
        oauth.finish(actor=member, state=back["state"], code=back["code"])

    assert github.requests == [] and not Connection.objects.exists()
    assert oauth.finish(actor=owner, state=back["state"], code=back["code"]).owner == owner


def test_a_replayed_response_is_refused_without_asking_github_again(github, organization, owner):
    back = github.approve(start(organization, owner))
    oauth.finish(actor=owner, state=back["state"], code=back["code"])

    with pytest.raises(oauth.OAuthError, match="already used"):
        oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert len(github.token_requests()) == 1 and Connection.objects.count() == 1


def test_a_used_code_under_a_fresh_state_is_refused_by_github(github, organization, owner):
    first = github.approve(start(organization, owner))
    oauth.finish(actor=owner, state=first["state"], code=first["code"])
    second = github.approve(start(organization, owner))

    with pytest.raises(oauth.OAuthError, match="incorrect or expired"):
        oauth.finish(actor=owner, state=second["state"], code=first["code"])

    assert github.token_requests()[-1].status == 200, "GitHub answers token errors with 200 and an error field"
    assert Connection.objects.count() == 1


def test_a_pkce_verifier_that_does_not_match_the_challenge_is_refused(github, organization, owner):
    back = github.approve(start(organization, owner))
    # Someone who intercepted the code but not the verifier: the exchange carries another verifier.
    OAuthGrant.objects.filter(state=back["state"]).update(secret=crypto.encrypt({"code_verifier": "x" * 64}))

    with pytest.raises(oauth.OAuthError, match="code_verifier does not match"):
        oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert github.token_requests()[0].form["code_verifier"] == "x" * 64
    assert not Connection.objects.exists()


def test_a_code_without_any_verifier_is_refused_by_the_fake_authorization_server(github, organization, owner):
    back = github.approve(start(organization, owner))

    answer = httpx.post(f"{github.url}/login/oauth/access_token", headers={"Accept": "application/json"}, data={
        "client_id": github.client_id, "client_secret": github.client_secret, "code": back["code"],
        "redirect_uri": REDIRECT_URI}, trust_env=False).json()

    assert answer["error"] == "bad_verification_code" and "access_token" not in answer


def test_an_expired_authorization_is_refused_without_asking_github(github, organization, owner):
    back = github.approve(start(organization, owner))
    OAuthGrant.objects.filter(state=back["state"]).update(
        created_at=timezone.now() - timedelta(seconds=OAuthGrant.LIFETIME_SECONDS + 1))
    github.clear()

    with pytest.raises(oauth.OAuthError, match="expired"):
        oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert github.requests == [] and not Connection.objects.exists()


def test_a_code_github_considers_expired_is_refused(github, organization, owner):
    back = github.approve(start(organization, owner))
    github.expire_codes()

    with pytest.raises(oauth.OAuthError, match="incorrect or expired"):
        oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert not Connection.objects.exists()


def test_a_person_who_cancels_on_github_gets_a_clear_refusal(github, organization, owner):
    back = github.approve(start(organization, owner), deny=True)

    with pytest.raises(oauth.OAuthError, match="did not authorize the connection: access_denied"):
        oauth.finish(actor=owner, state=back["state"], code=back.get("code", ""), error=back["error"])

    assert github.token_requests() == [] and not Connection.objects.exists()


def test_a_wrong_client_secret_is_refused(github, organization, owner, settings):
    settings.INTEGRATION_APPS = {**settings.INTEGRATION_APPS, "github": {
        **settings.INTEGRATION_APPS["github"], "client_secret": "not-the-secret"}}
    back = github.approve(start(organization, owner))

    with pytest.raises(oauth.OAuthError, match="client_id and/or client_secret passed are incorrect"):
        oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert not Connection.objects.exists()


def test_the_fake_shows_a_consent_page_with_an_authorize_button(github, organization, owner):
    page = httpx.get(start(organization, owner), trust_env=False)

    assert page.status_code == 200 and 'id="js-oauth-authorize-btn"' in page.text
    assert "Authorize Agentry" in page.text and "<li>repo</li>" in page.text


def test_a_github_app_token_without_scopes_keeps_the_scopes_that_were_asked_for(github, organization, owner):
    github.report_scopes = False  # GitHub App user tokens answer "scope": ""
    back = github.approve(start(organization, owner))

    connection = oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert connection.scopes == SCOPES


def test_a_token_granted_without_the_repo_scope_is_refused_and_nothing_is_stored(github, organization, owner):
    github.grant_scopes = ("read:user",)
    back = github.approve(start(organization, owner))

    with pytest.raises(oauth.OAuthError, match="granted none of the access asked for"):
        oauth.finish(actor=owner, state=back["state"], code=back["code"])

    assert not Connection.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_connection_past_its_expiry_is_refreshed_before_the_call(github, organization, owner):
    back = github.approve(start(organization, owner))
    connection = oauth.finish(actor=owner, state=back["state"], code=back["code"])
    old = crypto.decrypt(connection.secret)
    Connection.objects.filter(id=connection.id).update(expires_at=timezone.now() - timedelta(minutes=5))
    github.clear()

    result, _ = calls.call(config={"tools": ["github_list_repositories"]}, organization_id=organization.id,
                           runner_id=owner.id, run_id=None, tool=tool_registry.get("github_list_repositories"),
                           arguments={}, timeout=30)

    assert not result.is_error, result.output
    assert [(r.method, r.path) for r in github.requests] == [("POST", "/login/oauth/access_token"),
                                                             ("GET", "/user/repos")]
    assert github.requests[0].form["refresh_token"] == old["refresh_token"]
    connection.refresh_from_db()
    fresh = crypto.decrypt(connection.secret)
    assert github.requests[1].token == fresh["access_token"] != old["access_token"]
    assert connection.expires_at > timezone.now() + timedelta(hours=7)
