"""GitHub connections in trouble and at the door: expired and revoked tokens, rate limits, personal
access tokens checked on save, and calls outside the granted scopes refused before any request."""

from __future__ import annotations

import json
import time

import pytest
from django.core.exceptions import ValidationError

from integrations import crypto, services
from integrations.models import Connection, ConnectionCall

from .conftest import connect, run_tool

pytestmark = pytest.mark.django_db(transaction=True)

READ = ["repo:read"]
LIST_REPOS = ("github_list_repositories", {"per_page": 5})


@pytest.fixture
def connection(github, organization, owner):
    made = connect(github, organization=organization, user=owner, scopes=["repo:read", "issues:write"])
    github.clear()
    return made


def call(organization, runner, name: str, arguments: dict, **kwargs):
    result, _ = run_tool(name, arguments, organization=organization, runner=runner, **kwargs)
    return result


# --------------------------------------------------------------------------------- 401s


def test_an_expired_token_is_refreshed_once_and_the_call_goes_through(github, organization, owner, connection):
    before = crypto.decrypt(connection.secret)
    github.expire(before["access_token"])

    result = call(organization, owner, *LIST_REPOS)

    assert not result.is_error, result.output
    assert [(r.method, r.path, r.status) for r in github.requests] == [
        ("GET", "/user/repos", 401), ("POST", "/login/oauth/access_token", 200), ("GET", "/user/repos", 200)]
    assert github.requests[1].form["grant_type"] == "refresh_token"
    assert github.requests[1].form["refresh_token"] == before["refresh_token"]
    connection.refresh_from_db()
    after = crypto.decrypt(connection.secret)
    assert after["access_token"] != before["access_token"] and after["refresh_token"] != before["refresh_token"]
    assert github.requests[2].token == after["access_token"]
    assert connection.status == Connection.Status.ACTIVE
    assert ConnectionCall.objects.get(connection=connection).status_code == 200


def test_a_revoked_token_fails_clearly_marks_the_connection_and_tells_its_owner(github, organization, owner,
                                                                                connection, mailoutbox):
    github.revoke(crypto.decrypt(connection.secret)["access_token"])

    result = call(organization, owner, *LIST_REPOS)

    assert result.is_error
    assert "GitHub refused the token (HTTP 401 Bad credentials)" in result.output
    assert "needs re-authorization" in result.output
    assert [(r.path, r.status) for r in github.requests] == [("/user/repos", 401), ("/login/oauth/access_token", 400)]
    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_REAUTH
    assert "bad_refresh_token" in connection.last_error or "incorrect or expired" in connection.last_error
    history = ConnectionCall.objects.get(connection=connection)
    assert (history.outcome, history.status_code) == (ConnectionCall.Outcome.ERROR, 401)
    assert [m.to for m in mailoutbox] == [[owner.email]]
    assert "Reconnect" in mailoutbox[0].subject and connection.name in mailoutbox[0].body

    github.clear()
    again = call(organization, owner, *LIST_REPOS)

    assert again.is_error and "needs re-authorization" in again.output and "nothing was sent" in again.output
    assert github.requests == [], "a connection waiting for its owner sends nothing"
    assert len(mailoutbox) == 1, "the owner is told once"


def test_a_token_refused_even_after_a_good_refresh_still_marks_the_connection(github, organization, owner,
                                                                              connection, mailoutbox):
    github.fail_next(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                           "status": "401"}, count=2)

    result = call(organization, owner, *LIST_REPOS)

    assert result.is_error and "needs re-authorization" in result.output
    assert [(r.path, r.status) for r in github.requests] == [
        ("/user/repos", 401), ("/login/oauth/access_token", 200), ("/user/repos", 401)]
    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_REAUTH and "Bad credentials" in connection.last_error
    assert [m.to for m in mailoutbox] == [[owner.email]]


def test_a_revoked_personal_access_token_needs_reauthorization_without_a_refresh_attempt(github, organization, owner,
                                                                                         mailoutbox):
    token = github.personal_token("octocat")
    connection = services.connection_create(organization=organization, actor=owner, integration="github",
                                            values={"token": token}, scopes=READ)
    github.revoke(token)
    github.clear()

    result = call(organization, owner, *LIST_REPOS)

    assert result.is_error and "HTTP 401 Bad credentials" in result.output
    assert github.token_requests() == []
    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_REAUTH
    assert [m.to for m in mailoutbox] == [[owner.email]]


def test_the_connection_check_sees_a_revoked_token_as_needing_reauthorization(github, organization, owner):
    token = github.personal_token("octocat")
    connection = services.connection_create(organization=organization, actor=owner, integration="github",
                                            values={"token": token}, scopes=READ)
    github.revoke(token)

    checked = services.connection_test(connection=connection, actor=owner)

    assert checked.last_check_ok is False and checked.status == Connection.Status.NEEDS_REAUTH
    assert "Bad credentials" in checked.last_error


# --------------------------------------------------------------------------------- rate limits


def test_a_429_is_retried_after_the_wait_github_asks_for(github, organization, owner, connection):
    github.rate_limit(1, retry_after=1)
    started = time.monotonic()

    result = call(organization, owner, *LIST_REPOS)

    assert not result.is_error, result.output
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in github.api_requests()] == [429, 200]


def test_a_secondary_rate_limit_answered_with_403_is_also_waited_out(github, organization, owner, connection):
    github.rate_limit(1, retry_after=1, status=403)
    started = time.monotonic()

    result = call(organization, owner, *LIST_REPOS)

    assert not result.is_error, result.output
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in github.api_requests()] == [403, 200]


def test_a_used_up_rate_limit_is_reported_with_its_reset_time_instead_of_waited_for(github, organization, owner,
                                                                                    connection):
    github.exhaust_rate_limit(reset_in=600)
    started = time.monotonic()

    result = call(organization, owner, *LIST_REPOS)

    assert result.is_error and "rate limit for this connection is used up until" in result.output
    assert "about 10 min" in result.output
    assert time.monotonic() - started < 1.0 and len(github.api_requests()) == 1


# --------------------------------------------------------------------------------- scopes


def test_a_call_outside_the_connections_scopes_is_refused_without_any_request(github, organization, owner):
    connection = connect(github, organization=organization, user=owner, scopes=READ)
    github.clear()

    result = call(organization, owner, "github_create_issue", {"repo": "octocat/Hello-World", "title": "Nope"})

    assert result.is_error and result.output.startswith("Refused:")
    assert "issues:write" in result.output and "does not hold" in result.output
    assert github.requests == [], "refused before any network request"
    assert ConnectionCall.objects.get(connection=connection).outcome == ConnectionCall.Outcome.REFUSED


def test_a_call_the_builder_did_not_grant_is_refused_without_any_request(github, organization, owner, connection):
    result = call(organization, owner, "github_create_issue", {"repo": "octocat/Hello-World", "title": "Nope"},
                  scopes=READ)

    assert result.is_error and "did not grant" in result.output
    assert github.requests == []


def test_read_tools_need_only_the_read_scope(github, organization, owner):
    connect(github, organization=organization, user=owner, scopes=READ)
    reads = [("github_list_repositories", {}), ("github_get_repository", {"repo": "octocat/Hello-World"}),
             ("github_list_issues", {"repo": "octocat/Hello-World"}),
             ("github_get_issue", {"repo": "octocat/Hello-World", "number": 1}),
             ("github_list_pull_requests", {"repo": "octocat/Hello-World"}),
             ("github_get_pull_request", {"repo": "octocat/Hello-World", "number": 3})]

    for name, arguments in reads:
        result = call(organization, owner, name, arguments, scopes=READ)
        assert not result.is_error, (name, result.output)


# --------------------------------------------------------------------------------- personal access tokens


def test_a_personal_access_token_is_checked_with_github_when_saved(github, organization, owner):
    token = github.personal_token("octocat")

    connection = services.connection_create(organization=organization, actor=owner, integration="github",
                                            values={"token": token}, scopes=["repo:read", "issues:write"])

    assert connection.account == {"login": "octocat", "name": "The Octocat", "id": 583231, "github_scopes": "repo"}
    assert connection.name == "GitHub (octocat)" and connection.auth_type == "api_key"
    assert connection.options == {} and token not in connection.secret
    assert crypto.decrypt(connection.secret) == {"token": token}
    assert [(r.path, r.token) for r in github.requests] == [("/user", token)]

    result = call(organization, owner, "github_get_repository", {"repo": "octocat/secret-plans"})
    assert json.loads(result.output)["repository"]["private"] is True


def test_a_bad_personal_access_token_is_refused_on_save_and_nothing_is_stored(github, organization, owner):
    with pytest.raises(ValidationError) as refused:
        services.connection_create(organization=organization, actor=owner, integration="github",
                                   values={"token": "ghp_not_a_real_token_at_all_000000000000"}, scopes=READ)

    assert "GitHub refused the token (HTTP 401 Bad credentials)" in refused.value.message_dict["credentials"][0]
    assert not Connection.objects.exists()


def test_a_github_enterprise_token_uses_its_own_api_url(github, organization, owner, settings):
    settings.INTEGRATION_APPS = {**settings.INTEGRATION_APPS,
                                 "github": {**settings.INTEGRATION_APPS["github"], "api_url": "http://127.0.0.1:9"}}
    token = github.personal_token("octocat")

    connection = services.connection_create(organization=organization, actor=owner, integration="github",
                                            values={"token": token, "api_url": f"{github.url}/api/v3"}, scopes=READ)
    result = call(organization, owner, "github_get_repository", {"repo": "octocat/Hello-World"})

    assert connection.options == {"api_url": f"{github.url}/api/v3"} and connection.account["login"] == "octocat"
    assert not result.is_error, result.output
    assert {r.prefix for r in github.requests} == {"/api/v3"}


def test_an_api_url_that_is_not_githubs_api_is_refused_on_save(github, organization, owner):
    with pytest.raises(ValidationError) as refused:
        services.connection_create(organization=organization, actor=owner, integration="github",
                                   values={"token": github.personal_token(), "api_url": f"{github.url}/nothing/here"},
                                   scopes=READ)

    assert "https://HOST/api/v3" in refused.value.message_dict["credentials"][0]
