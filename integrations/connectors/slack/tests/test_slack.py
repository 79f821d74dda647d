"""The Slack connector against a loopback Slack (tests/fakes/slack_server.py): OAuth with PKCE,
each tool with pagination, token rotation, rate limits, a revoked token, API-key checks on save
and scope refusals before any request. Calls go through integrations.calls.call, as a run's do."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from integrations import calls, catalog, crypto, oauth, services
from integrations import tools as tool_registry
from integrations.models import Connection, ConnectionCall
from tests.fakes.slack_server import FakeSlackServer

pytestmark = pytest.mark.django_db(transaction=True)

REDIRECT = "https://agentry.example/integrations/oauth/callback"
EVERYTHING = ["channels:read", "groups:read", "channels:history", "chat:write"]


@pytest.fixture
def slack(settings):
    server = FakeSlackServer().start()
    settings.INTEGRATION_APPS = {**settings.INTEGRATION_APPS, "slack": {
        "client_id": server.client_id, "client_secret": server.client_secret,
        "api_url": server.api_url, "auth_url": server.url,
    }}
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    yield server
    server.stop()


def authorize(organization, person, scopes: list[str]) -> httpx.URL:
    """Start a connection and play the person approving it at Slack; returns the redirect back."""
    url = oauth.start(organization=organization, actor=person, integration=catalog.get("slack"), scopes=scopes,
                      redirect_uri=REDIRECT)
    answer = httpx.get(url, follow_redirects=False, trust_env=False)
    assert answer.status_code == 302
    return httpx.URL(answer.headers["location"])


def connect(organization, person, scopes: list[str] = EVERYTHING) -> Connection:
    back = authorize(organization, person, scopes)
    return oauth.finish(actor=person, state=back.params["state"], code=back.params["code"])


def run(tool: str, organization, runner, arguments: dict, *, scopes: list[str] | None = None):
    setting: dict = {"connection": "runner"}
    if scopes is not None:
        setting["scopes"] = scopes
    result, _ = calls.call(config={"tools": [tool], "integrations": {"slack": setting}},
                           organization_id=organization.id, runner_id=runner.id, run_id=None,
                           tool=tool_registry.get(tool), arguments=arguments, timeout=30)
    return result


def test_it_connects_over_oauth_as_the_person_with_pkce_and_rotating_tokens(slack, organization, owner):
    connection = connect(organization, owner, ["channels:read", "chat:write"])

    assert connection.auth_type == "oauth2" and connection.owner == owner
    assert connection.scopes == ["channels:read", "chat:write"]
    assert connection.account == {"team": "Acme Workspace", "user": "olivia", "user_id": "U0OLIVIA01",
                                  "team_id": "T0ACME0001", "url": "https://acme.slack.com/"}
    assert connection.expires_at is not None
    credentials = crypto.decrypt(connection.secret)
    assert credentials["access_token"].startswith("xoxe.xoxp-") and credentials["refresh_token"].startswith("xoxe-1-")
    authorize_request = next(r for r in slack.requests if r.path == "/oauth/v2/authorize")
    assert authorize_request.params["user_scope"] == "channels:read,chat:write", "user scopes, not bot scopes"
    assert authorize_request.params["code_challenge_method"] == "S256"
    exchange = slack.calls("oauth.v2.access")[0]
    assert exchange.params["code_verifier"] and exchange.params["client_secret"] == slack.client_secret


def test_it_refuses_a_replayed_code_and_a_code_from_another_authorization(slack, organization, owner):
    first = authorize(organization, owner, ["channels:read"])
    second = authorize(organization, owner, ["channels:read"])

    # The second authorization's PKCE verifier doesn't match the first code's challenge.
    with pytest.raises(oauth.OAuthError, match="invalid_code_verifier"):
        oauth.finish(actor=owner, state=second.params["state"], code=first.params["code"])
    third = authorize(organization, owner, ["channels:read"])
    with pytest.raises(oauth.OAuthError, match="code_already_used"):
        oauth.finish(actor=owner, state=third.params["state"], code=first.params["code"])
    assert not Connection.objects.exists()


def test_it_lists_channels_page_by_page(slack, organization, owner):
    connect(organization, owner)
    slack.page_cap = 3  # Slack may answer fewer than asked; the tool keeps following the cursor

    first = run("slack_list_channels", organization, owner, {"limit": 5})

    assert not first.is_error, first.output
    page = json.loads(first.output)
    assert [c["name"] for c in page["channels"]] == ["general", "random", "engineering", "design", "support"]
    assert [r.params["limit"] for r in slack.calls("conversations.list")] == ["5", "2"]
    rest = json.loads(run("slack_list_channels", organization, owner, {"cursor": page["next_cursor"]}).output)
    assert [c["name"] for c in rest["channels"]] == ["sales", "incidents"]
    assert rest["next_cursor"] is None, "archived channels stay out unless asked for"
    private = json.loads(run("slack_list_channels", organization, owner, {"include_private": True},
                             scopes=["channels:read", "groups:read"]).output)
    assert {c["name"] for c in private["channels"] if c["private"]} == {"leadership"}, "only ones she is in"
    assert ConnectionCall.objects.filter(tool="slack_list_channels", outcome="ok").count() == 3


def test_it_reads_history_newest_first_with_a_cursor_and_a_time_window(slack, organization, owner):
    connect(organization, owner)
    general = slack.channel_id("general")

    page = json.loads(run("slack_read_history", organization, owner, {"channel": general, "limit": 5}).output)
    older = json.loads(run("slack_read_history", organization, owner,
                           {"channel": general, "cursor": page["next_cursor"], "limit": 100}).output)

    assert [m["text"] for m in page["messages"]] == [f"general message {n}" for n in (12, 11, 10, 9, 8)]
    assert page["has_more"] is True and page["messages"][0]["user"] == "U0MAX00002"
    assert page["messages"][0]["time"].endswith("Z")
    assert [m["text"] for m in older["messages"]] == [f"general message {n}" for n in range(7, 0, -1)]
    assert older["has_more"] is False
    third_ts = slack.messages[general][-3]["ts"]
    window = json.loads(run("slack_read_history", organization, owner,
                            {"channel": general, "oldest": third_ts}).output)
    assert len(window["messages"]) == 9, "strictly after `oldest`"
    missing = run("slack_read_history", organization, owner, {"channel": "C99999999"})
    assert missing.is_error and "can't find that channel" in missing.output
    private = run("slack_read_history", organization, owner, {"channel": slack.channel_id("leadership")})
    assert private.is_error and "groups:history" in private.output, "private history was never granted"


def test_it_posts_a_message_as_the_person(slack, organization, owner):
    connection = connect(organization, owner)
    general = slack.channel_id("general")

    result = run("slack_post_message", organization, owner, {"channel": general, "text": "Deploy finished :tada:"})

    assert not result.is_error, result.output
    newest = slack.messages[general][0]
    assert newest["text"] == "Deploy finished :tada:" and newest["user"] == "U0OLIVIA01"
    assert json.loads(result.output) == {"posted": True, "channel": general, "ts": newest["ts"], "thread_ts": None}
    post = slack.calls("chat.postMessage")[0]
    assert post.method == "POST" and post.headers["content-type"].startswith("application/json")
    assert post.token == crypto.decrypt(connection.secret)["access_token"]
    assert post.token not in result.output


def test_an_expired_token_is_refreshed_once_and_the_call_retried(slack, organization, owner):
    connection = connect(organization, owner)
    before = crypto.decrypt(connection.secret)
    slack.expire(before["access_token"])

    result = run("slack_list_channels", organization, owner, {"limit": 2})

    assert not result.is_error, result.output
    assert [r.token for r in slack.calls("conversations.list")][0] == before["access_token"]
    assert len(slack.calls("conversations.list")) == 2
    refresh = [r for r in slack.calls("oauth.v2.access") if r.params.get("grant_type") == "refresh_token"]
    assert len(refresh) == 1 and refresh[0].params["refresh_token"] == before["refresh_token"]
    connection.refresh_from_db()
    after = crypto.decrypt(connection.secret)
    assert connection.status == "active"
    assert after["access_token"] != before["access_token"] and after["refresh_token"] != before["refresh_token"]
    assert slack.calls("conversations.list")[-1].token == after["access_token"]


def test_it_waits_as_long_as_retry_after_says_when_rate_limited(slack, organization, owner):
    connect(organization, owner)
    slack.rate_limit("conversations.history", retry_after=1)
    started = time.monotonic()

    result = run("slack_read_history", organization, owner, {"channel": slack.channel_id("general"), "limit": 1})

    assert not result.is_error, result.output
    assert time.monotonic() - started >= 1.0
    assert len(slack.calls("conversations.history")) == 2


def test_a_revoked_token_fails_clearly_and_marks_the_connection_for_reauthorization(slack, organization, owner):
    connection = connect(organization, owner)
    slack.revoke(crypto.decrypt(connection.secret)["access_token"])

    result = run("slack_list_channels", organization, owner, {})

    assert result.is_error and "token_revoked" in result.output and "reconnect" in result.output
    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_REAUTH
    assert [m.to for m in mail.outbox] == [[owner.email]] and "Reconnect" in mail.outbox[0].subject
    assert not [r for r in slack.calls("oauth.v2.access") if r.params.get("grant_type") == "refresh_token"], \
        "a revoked token is not worth a refresh attempt"
    slack.clear_log()
    again = run("slack_list_channels", organization, owner, {})
    assert again.is_error and "needs re-authorization" in again.output
    assert slack.requests == [], "refused before any request"


def test_an_api_key_connection_is_checked_with_slack_before_it_is_saved(slack, organization, owner):
    bot = slack.issue_token(user_id="B0BOT00003", kind="bot")

    saved = services.connection_create(organization=organization, actor=owner, integration="slack",
                                       values={"token": bot}, for_organization=True)

    assert saved.auth_type == "api_key" and saved.owner is None
    assert saved.account["bot_id"] == "B0BOT00003" and saved.name == "Slack (Acme Workspace)"
    assert crypto.decrypt(saved.secret) == {"token": bot} and bot not in json.dumps(saved.account)
    with pytest.raises(ValidationError) as unknown:
        services.connection_create(organization=organization, actor=owner, integration="slack",
                                   values={"token": "xoxb-1-not-a-real-token"})
    assert "invalid_auth" in str(unknown.value.message_dict["credentials"])
    slack.clear_log()
    with pytest.raises(ValidationError) as malformed:
        services.connection_create(organization=organization, actor=owner, integration="slack",
                                   values={"token": "ghp_this_is_a_github_token"})
    assert "xoxb-" in str(malformed.value.message_dict["credentials"]) and slack.requests == []
    assert Connection.objects.count() == 1


def test_posting_without_chat_write_is_refused_before_any_request(slack, organization, owner):
    connect(organization, owner, ["channels:read", "channels:history"])
    slack.clear_log()

    not_granted = run("slack_post_message", organization, owner, {"channel": "C00000001", "text": "hi"},
                      scopes=["channels:read"])
    not_held = run("slack_post_message", organization, owner, {"channel": "C00000001", "text": "hi"},
                   scopes=["channels:read", "chat:write"])
    private = run("slack_list_channels", organization, owner, {"include_private": True}, scopes=["channels:read"])

    assert not_granted.is_error and "builder did not grant" in not_granted.output
    assert not_held.is_error and "does not hold" in not_held.output
    assert private.is_error and "groups:read" in private.output
    assert slack.requests == [], "no request reached Slack"
    assert list(ConnectionCall.objects.order_by("created_at").values_list("outcome", flat=True)) == [
        "refused", "refused", "error"]
