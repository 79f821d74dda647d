"""The Jira connector against a loopback Jira Cloud + Atlassian OAuth (tests/fakes/jira_server.py):
3LO with PKCE and the cloud id, JQL search paging, issues read/created/commented/transitioned,
rotating refresh on 401, Retry-After, a revoked grant, API tokens checked on save and scope
refusals before any request. Calls go through integrations.calls.call, as a run's do."""

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
from tests.fakes.jira_server import FakeJiraServer, adf

pytestmark = pytest.mark.django_db(transaction=True)

REDIRECT = "https://agentry.example/integrations/oauth/callback"
EVERYTHING = ["read:jira-work", "write:jira-work", "read:jira-user"]


@pytest.fixture
def jira(settings):
    server = FakeJiraServer().start()
    settings.INTEGRATION_APPS = {**settings.INTEGRATION_APPS, "jira": {
        "client_id": server.client_id, "client_secret": server.client_secret,
        "api_url": server.url, "auth_url": server.url,
    }}
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    yield server
    server.stop()


def authorize(organization, person, scopes: list[str]) -> httpx.URL:
    """Start a connection and play the person consenting at Atlassian; returns the redirect back."""
    url = oauth.start(organization=organization, actor=person, integration=catalog.get("jira"), scopes=scopes,
                      redirect_uri=REDIRECT)
    answer = httpx.get(url, follow_redirects=False, trust_env=False)
    assert answer.status_code == 302, answer.text
    return httpx.URL(answer.headers["location"])


def connect(organization, person, scopes: list[str] = EVERYTHING) -> Connection:
    back = authorize(organization, person, scopes)
    return oauth.finish(actor=person, state=back.params["state"], code=back.params["code"])


def with_api_token(jira, organization, person, scopes: list[str] | None = None) -> Connection:
    return services.connection_create(organization=organization, actor=person, integration="jira", scopes=scopes,
                                      values={"site_url": jira.url + "/", "email": "olivia@example.com",
                                              "api_token": jira.issue_api_token()})


def run(tool: str, organization, runner, arguments: dict, *, scopes: list[str] | None = None):
    setting: dict = {"connection": "runner"}
    if scopes is not None:
        setting["scopes"] = scopes
    result, _ = calls.call(config={"tools": [tool], "integrations": {"jira": setting}},
                           organization_id=organization.id, runner_id=runner.id, run_id=None,
                           tool=tool_registry.get(tool), arguments=arguments, timeout=30)
    return result


def test_it_connects_over_atlassian_oauth_and_remembers_the_site(jira, organization, owner):
    connection = connect(organization, owner)

    assert connection.auth_type == "oauth2" and connection.scopes == EVERYTHING
    assert connection.account == {"cloud_id": jira.cloud_id, "site_url": jira.url, "site": "acme",
                                  "name": "Olivia Owner", "account_id": jira.olivia, "email": "olivia@example.com"}
    assert connection.name == "Jira (Olivia Owner)"
    consent = next(r for r in jira.requests if r.path == "/authorize")
    assert consent.query["audience"] == "api.atlassian.com" and consent.query["prompt"] == "consent"
    assert set(consent.query["scope"].split()) == {*EVERYTHING, "offline_access"}
    exchange = jira.calls("/oauth/token", "POST")[0]
    assert exchange.headers["content-type"].startswith("application/json"), "Atlassian takes a JSON body"
    assert exchange.body["code_verifier"] and exchange.body["grant_type"] == "authorization_code"
    assert crypto.decrypt(connection.secret)["refresh_token"]
    replay = authorize(organization, owner, ["read:jira-work"])
    with pytest.raises(oauth.OAuthError, match="Invalid authorization code"):
        oauth.finish(actor=owner, state=replay.params["state"], code=exchange.body["code"])


def test_it_searches_with_jql_page_by_page(jira, organization, owner):
    connect(organization, owner)
    jira.page_cap = 3  # Jira may answer fewer than maxResults; the tool asks for the rest
    jira.clear_log()

    first = run("jira_search_issues", organization, owner, {"jql": "project = ENG ORDER BY key ASC", "max_results": 5})

    assert not first.is_error, first.output
    page = json.loads(first.output)
    assert [i["key"] for i in page["issues"]] == ["ENG-1", "ENG-2", "ENG-3", "ENG-4", "ENG-5"]
    assert page["issues"][2] | {"updated": None} == {"key": "ENG-3", "summary": "Engineering task 3",
                                                     "status": "In Progress", "type": "Task", "priority": "Medium",
                                                     "assignee": "Olivia Owner", "updated": None}
    searches = jira.calls("/search/jql", "POST")
    assert [s.path for s in searches] == [f"/ex/jira/{jira.cloud_id}/rest/api/3/search/jql"] * 2
    assert [s.body["maxResults"] for s in searches] == [5, 2] and "summary" in searches[0].body["fields"]
    rest = json.loads(run("jira_search_issues", organization, owner,
                          {"jql": "project = ENG ORDER BY key ASC", "next_page_token": page["next_page_token"]}).output)
    assert [i["key"] for i in rest["issues"]] == ["ENG-6", "ENG-7"] and rest["is_last"] is True
    assert rest["next_page_token"] is None
    wrong = run("jira_search_issues", organization, owner, {"jql": "colour = red"})
    assert wrong.is_error and "Field 'colour' does not exist" in wrong.output


def test_it_reads_an_issue_with_an_api_token_at_the_site(jira, organization, owner):
    with_api_token(jira, organization, owner)
    jira.issue("ENG-2")["comments"].append({"id": "20001", "author": jira.max, "created": 1_714_100_000,
                                             "body": adf("LGTM")})

    result = run("jira_get_issue", organization, owner, {"issue_key": "eng-2"})

    assert not result.is_error, result.output
    issue = json.loads(result.output)
    assert issue["key"] == "ENG-2" and issue["description"] == "Details of task 2."
    assert issue["assignee"] == "Max Builder" and issue["project"] == "ENG"
    assert issue["comments"] == [{"author": "Max Builder", "created": "2024-04-26T02:53:20.000+0000", "body": "LGTM"}]
    assert issue["url"] == f"{jira.url}/browse/ENG-2"
    read = jira.calls("/rest/api/3/issue/ENG-2", "GET")[0]
    assert read.path == "/rest/api/3/issue/ENG-2" and read.headers["authorization"].startswith("Basic ")
    missing = run("jira_get_issue", organization, owner, {"issue_key": "ENG-999"})
    assert missing.is_error and "Issue does not exist or you do not have permission to see it." in missing.output


def test_it_creates_an_issue_with_an_adf_description_and_comments_on_it(jira, organization, owner):
    connect(organization, owner)

    created = run("jira_create_issue", organization, owner, {
        "project_key": "ENG", "summary": "Flaky login test", "issue_type": "Bug",
        "description": "Fails one run in ten.\nOnly on CI.\n\nSee build 512.", "labels": ["ci"]})
    commented = run("jira_add_comment", organization, owner, {"issue_key": "ENG-8", "body": "Reproduced."})

    assert not created.is_error, created.output
    assert json.loads(created.output) == {"created": True, "key": "ENG-8", "id": jira.issue("ENG-8")["id"],
                                          "url": f"{jira.url}/browse/ENG-8"}
    issue = jira.issue("ENG-8")
    assert issue["type"] == "Bug" and issue["labels"] == ["ci"] and issue["reporter"] == jira.olivia
    assert issue["description"]["content"] == [
        {"type": "paragraph", "content": [{"type": "text", "text": "Fails one run in ten."}, {"type": "hardBreak"},
                                          {"type": "text", "text": "Only on CI."}]},
        {"type": "paragraph", "content": [{"type": "text", "text": "See build 512."}]},
    ]
    assert not commented.is_error and issue["comments"][0]["body"]["content"][0]["content"][0]["text"] == "Reproduced."
    invalid = run("jira_create_issue", organization, owner,
                  {"project_key": "ENG", "summary": "x", "issue_type": "Epic"})
    assert invalid.is_error and "issuetype: Specify a valid issue type" in invalid.output


def test_it_moves_an_issue_by_target_status_and_lists_what_is_possible(jira, organization, owner):
    connect(organization, owner)

    listed = json.loads(run("jira_list_transitions", organization, owner, {"issue_key": "ENG-1"}).output)
    moved = run("jira_transition_issue", organization, owner,
                {"issue_key": "ENG-1", "transition": "done", "comment": "Shipped in 2.3."})

    assert listed["transitions"] == [{"id": "21", "name": "Start progress", "to": "In Progress"},
                                     {"id": "31", "name": "Done", "to": "Done"}]
    assert json.loads(moved.output) == {"issue": "ENG-1", "transition": "Done", "status": "Done"}
    assert jira.issue("ENG-1")["status"] == "Done" and len(jira.issue("ENG-1")["comments"]) == 1
    jira.clear_log()
    impossible = run("jira_transition_issue", organization, owner, {"issue_key": "ENG-1", "transition": "Done"})
    assert impossible.is_error and "available: To Do (id 11, to To Do), Start progress" in impossible.output
    assert not jira.calls("/transitions", "POST"), "nothing was attempted"


def test_an_expired_token_is_refreshed_once_and_the_refresh_token_rotates(jira, organization, owner):
    connection = connect(organization, owner)
    before = crypto.decrypt(connection.secret)
    jira.expire(before["access_token"])
    jira.clear_log()

    result = run("jira_search_issues", organization, owner, {"jql": "project = OPS", "max_results": 1})

    assert not result.is_error, result.output
    searches = jira.calls("/search/jql")
    assert len(searches) == 2 and searches[0].headers["authorization"] == f"Bearer {before['access_token']}"
    refresh = jira.calls("/oauth/token", "POST")
    assert len(refresh) == 1 and refresh[0].body["grant_type"] == "refresh_token"
    assert refresh[0].body["refresh_token"] == before["refresh_token"]
    connection.refresh_from_db()
    after = crypto.decrypt(connection.secret)
    assert connection.status == "active" and after["refresh_token"] != before["refresh_token"]
    assert searches[1].headers["authorization"] == f"Bearer {after['access_token']}"


def test_it_waits_as_long_as_retry_after_says_when_rate_limited(jira, organization, owner):
    connect(organization, owner)
    jira.rate_limit("/issue/OPS-1", retry_after=1)
    started = time.monotonic()

    result = run("jira_get_issue", organization, owner, {"issue_key": "OPS-1"})

    assert not result.is_error, result.output
    assert time.monotonic() - started >= 1.0 and len(jira.calls("/issue/OPS-1")) == 2


def test_a_revoked_grant_fails_clearly_and_marks_the_connection_for_reauthorization(jira, organization, owner):
    connection = connect(organization, owner)
    jira.revoke_grant(jira.olivia)

    result = run("jira_get_issue", organization, owner, {"issue_key": "ENG-1"})

    assert result.is_error and "HTTP 401" in result.output and "reconnect" in result.output
    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_REAUTH and "refresh_token is invalid" in connection.last_error
    assert [m.to for m in mail.outbox] == [[owner.email]]
    jira.clear_log()
    again = run("jira_get_issue", organization, owner, {"issue_key": "ENG-1"})
    assert again.is_error and "needs re-authorization" in again.output and jira.requests == []


def test_an_api_token_connection_is_checked_with_jira_before_it_is_saved(jira, organization, owner):
    saved = with_api_token(jira, organization, owner)

    assert saved.auth_type == "api_key" and saved.options == {"site_url": jira.url + "/", "email": "olivia@example.com"}
    assert saved.account == {"name": "Olivia Owner", "email": "olivia@example.com", "account_id": jira.olivia,
                             "site_url": jira.url}
    assert set(crypto.decrypt(saved.secret)) == {"api_token"}

    def attempt(**values):
        with pytest.raises(ValidationError) as refused:
            services.connection_create(organization=organization, actor=owner, integration="jira",
                                       values={"site_url": jira.url, "email": "olivia@example.com",
                                               "api_token": "ATATT3xWRONG"} | values)
        return refused.value.message_dict

    assert "HTTP 401" in str(attempt()["credentials"])
    jira.clear_log()
    assert "https://" in str(attempt(site_url="http://jira.example.com")["credentials"])
    assert "your-team.atlassian.net" in str(attempt(site_url="https://acme.atlassian.net/jira?x=1")["credentials"])
    assert attempt(email="")["email"] == ["This field is required."]
    assert jira.requests == [] and Connection.objects.count() == 1


def test_an_out_of_scope_write_is_refused_before_any_request(jira, organization, owner):
    connect(organization, owner, ["read:jira-work"])
    jira.clear_log()
    arguments = {"project_key": "ENG", "summary": "Should never exist"}

    not_held = run("jira_create_issue", organization, owner, arguments)
    not_granted = run("jira_transition_issue", organization, owner, {"issue_key": "ENG-1", "transition": "Done"},
                      scopes=["read:jira-work"])

    assert not_held.is_error and "does not hold" in not_held.output
    assert not_granted.is_error and "builder did not grant" in not_granted.output
    assert jira.requests == [] and len(jira.issues) == 9
    assert list(ConnectionCall.objects.values_list("outcome", flat=True)) == ["refused", "refused"]
