"""Each GitHub tool against the fake GitHub, called the way a run calls it (integrations.calls.call):
bound to the runner's OAuth connection, scope-checked, recorded in the connection's history."""

from __future__ import annotations

import json

import pytest

from integrations import crypto
from integrations.models import ConnectionCall

from .conftest import connect, run_tool

pytestmark = pytest.mark.django_db(transaction=True)

ALL_SCOPES = ["repo:read", "issues:write", "pull_requests:write"]


@pytest.fixture
def connection(github, organization, owner):
    made = connect(github, organization=organization, user=owner, scopes=ALL_SCOPES)
    github.clear()
    return made


@pytest.fixture
def call(organization, owner, connection):
    def run(name: str, **arguments):
        result, _ = run_tool(name, arguments, organization=organization, runner=owner)
        return result

    return run


def ok(result) -> dict:
    assert not result.is_error, result.output
    return json.loads(result.output)


def test_it_lists_repositories_page_by_page_and_says_when_there_is_more(github, call, connection):
    first = ok(call("github_list_repositories", per_page=2))

    assert [r["full_name"] for r in first["repositories"]] == ["octocat/secret-plans", "octocat/Hello-World"]
    assert first["next_page"] == 2 and first["last_page"] == 3
    assert "page=2" in first["more"]
    hello = first["repositories"][1]
    assert hello["private"] is False and hello["url"] == "https://github.com/octocat/Hello-World"
    assert hello["stars"] == 2700 and hello["default_branch"] == "main"

    last = ok(call("github_list_repositories", per_page=2, page=3))
    assert [r["full_name"] for r in last["repositories"]] == ["octocat/no-issues"]
    assert last["next_page"] is None and last["more"] == "This is the last page."

    sent = github.api_requests()[0]
    assert sent.path == "/user/repos"
    assert sent.query == {"visibility": "all", "sort": "updated", "page": "1", "per_page": "2"}
    access_token = crypto.decrypt(connection.secret)["access_token"]
    assert sent.headers["authorization"] == f"Bearer {access_token}"
    assert sent.headers["accept"] == "application/vnd.github+json"
    assert sent.headers["x-github-api-version"] == "2022-11-28"


def test_it_lists_only_private_repositories_when_asked(call):
    listed = ok(call("github_list_repositories", visibility="private"))

    assert [r["full_name"] for r in listed["repositories"]] == ["octocat/secret-plans"]


def test_it_gets_a_repository(call):
    repository = ok(call("github_get_repository", repo="octocat/Hello-World"))["repository"]

    assert repository["full_name"] == "octocat/Hello-World"
    assert repository["description"] == "My first repository on GitHub!"
    assert repository["license"] == "MIT" and repository["topics"] == ["octocat", "api"]
    assert repository["owner"] == "octocat" and "admin" in repository["your_permissions"]


def test_a_repository_the_connection_cannot_see_is_explained_as_such(call):
    result = call("github_get_repository", repo="hubot/private-thing")

    assert result.is_error
    assert "not found or not visible with this connection" in result.output
    assert "hubot/private-thing" in result.output


def test_a_malformed_repository_name_is_refused_before_any_request(github, call):
    result = call("github_get_repository", repo="not a repo")

    assert result.is_error and "invalid arguments" in result.output
    assert github.api_requests() == []


def test_it_lists_issues_without_the_pull_requests_github_mixes_in(github, call):
    listed = ok(call("github_list_issues", repo="octocat/Hello-World", state="all"))

    assert [i["number"] for i in listed["issues"]] == [4, 2, 1]
    assert listed["pull_requests_left_out"] == 2
    bug = listed["issues"][2]
    assert bug["title"] == "Found a bug" and bug["author"] == "monalisa" and bug["labels"] == ["bug"]
    assert bug["comments"] == 2 and bug["url"] == "https://github.com/octocat/Hello-World/issues/1"
    assert bug["body"].startswith("I'm having a problem")


def test_it_filters_issues_by_state_and_labels(github, call):
    listed = ok(call("github_list_issues", repo="octocat/Hello-World", state="all", labels=["bug"]))

    assert [i["number"] for i in listed["issues"]] == [4, 1]
    assert github.api_requests()[-1].query["labels"] == "bug"
    assert [i["number"] for i in ok(call("github_list_issues", repo="octocat/Hello-World"))["issues"]] == [2, 1]


def test_it_pages_through_issues(github, call):
    for n in range(45):  # newer than the seeded ones, which come last
        github.add_issue("octocat/Hello-World", f"Generated issue {n}", created_at=f"2024-04-10T00:00:{n:02d}Z")

    first = ok(call("github_list_issues", repo="octocat/Hello-World", per_page=20))
    third = ok(call("github_list_issues", repo="octocat/Hello-World", per_page=20, page=3))

    assert first["count"] == 20 and first["next_page"] == 2 and first["last_page"] == 3
    assert third["next_page"] is None
    # 45 + 2 open issues + 1 open pull request in GitHub's list; the pull request is left out of ours.
    assert third["count"] == 7 and third["pull_requests_left_out"] == 1


def test_issues_turned_off_in_a_repository_are_reported(call):
    result = call("github_list_issues", repo="octocat/no-issues")

    assert result.is_error and "Issues are disabled for this repo" in result.output


def test_it_gets_an_issue_with_its_comment_count_and_optionally_its_comments(call):
    plain = ok(call("github_get_issue", repo="octocat/Hello-World", number=1))
    assert plain["issue"]["comments"] == 2 and "comments" not in plain
    assert plain["issue"]["body"] == "I'm having a problem with this.\n\nSteps: run it."

    detailed = ok(call("github_get_issue", repo="octocat/Hello-World", number=1, include_comments=True))
    assert [(c["author"], c["body"]) for c in detailed["comments"]] == [
        ("octocat", "Thanks, looking into it."), ("monalisa", "It happens on every run.")]


def test_getting_a_pull_request_as_an_issue_points_to_the_pull_request_tool(call):
    got = ok(call("github_get_issue", repo="octocat/Hello-World", number=3))

    assert got["issue"]["title"] == "Amazing new feature"
    assert "github_get_pull_request" in got["note"]


def test_a_missing_issue_is_reported(call):
    result = call("github_get_issue", repo="octocat/Hello-World", number=99)

    assert result.is_error and "issue #99 not found in octocat/Hello-World" in result.output


def test_it_lists_pull_requests(call):
    open_ = ok(call("github_list_pull_requests", repo="octocat/Hello-World"))
    every = ok(call("github_list_pull_requests", repo="octocat/Hello-World", state="all"))

    assert [p["number"] for p in open_["pull_requests"]] == [3]
    assert [p["number"] for p in every["pull_requests"]] == [5, 3]
    feature = open_["pull_requests"][0]
    assert feature["head"] == "monalisa:new-feature" and feature["base"] == "main"
    assert feature["author"] == "monalisa" and feature["url"] == "https://github.com/octocat/Hello-World/pull/3"


def test_it_gets_a_pull_request_with_its_merge_state_and_size(call):
    feature = ok(call("github_get_pull_request", repo="octocat/Hello-World", number=3))["pull_request"]
    typo = ok(call("github_get_pull_request", repo="octocat/Hello-World", number=5))["pull_request"]

    assert feature["merged"] is False and feature["mergeable"] is True
    assert (feature["commits"], feature["additions"], feature["deletions"], feature["changed_files"]) == (2, 120, 4, 3)
    assert typo["merged"] is True and typo["merged_by"] == "octocat" and typo["state"] == "closed"


def test_an_issue_number_is_not_a_pull_request(call):
    result = call("github_get_pull_request", repo="octocat/Hello-World", number=1)

    assert result.is_error and "it may be an issue" in result.output


def test_it_comments_on_an_issue(github, call, connection):
    result = ok(call("github_comment_on_issue", repo="octocat/Hello-World", number=1, body="Fixed in #5."))

    assert result["commented"]["number"] == 1 and result["commented"]["author"] == "octocat"
    assert result["commented"]["url"].startswith("https://github.com/octocat/Hello-World/issues/1#issuecomment-")
    posted = [r for r in github.api_requests() if r.method == "POST"]
    assert [(r.path, r.json()) for r in posted] == [("/repos/octocat/Hello-World/issues/1/comments",
                                                     {"body": "Fixed in #5."})]
    assert github.repos["octocat/hello-world"].issues[1].comments[-1].body == "Fixed in #5."
    assert ConnectionCall.objects.get(connection=connection).outcome == ConnectionCall.Outcome.OK


def test_it_comments_on_a_pull_request(github, call):
    result = ok(call("github_comment_on_pull_request", repo="octocat/Hello-World", number=3, body="Ship it"))

    assert result["commented"]["kind"] == "pull request"
    assert github.repos["octocat/hello-world"].issues[3].comments[-1].body == "Ship it"


def test_the_issue_comment_tool_will_not_post_on_a_pull_request(github, call):
    result = call("github_comment_on_issue", repo="octocat/Hello-World", number=3, body="Sneaky")

    assert result.is_error and "is a pull request" in result.output
    assert "github_comment_on_pull_request" in result.output
    assert [r.method for r in github.api_requests()] == ["GET"], "nothing was posted"


def test_it_creates_an_issue(github, call):
    created = ok(call("github_create_issue", repo="octocat/Hello-World", title="Docs are stale",
                      body="The README mentions v1.", labels=["documentation"], assignees=["hubot"]))["created"]

    assert created["number"] == 6 and created["state"] == "open" and created["author"] == "octocat"
    assert created["labels"] == ["documentation"] and created["assignees"] == ["hubot"]
    assert created["url"] == "https://github.com/octocat/Hello-World/issues/6"
    sent = [r for r in github.api_requests() if r.method == "POST"][0]
    assert sent.json() == {"title": "Docs are stale", "body": "The README mentions v1.", "labels": ["documentation"],
                           "assignees": ["hubot"]}
    assert github.repos["octocat/hello-world"].issues[6].title == "Docs are stale"


def test_githubs_validation_errors_name_the_field(call):
    result = call("github_create_issue", repo="octocat/Hello-World", title="Assign to a ghost", assignees=["nobody"])

    assert result.is_error
    assert "Validation Failed" in result.output and "assignees invalid nobody" in result.output


def test_labels_github_drops_for_an_account_without_push_access_are_reported(github, organization, member):
    connect(github, organization=organization, user=member, scopes=ALL_SCOPES, login="monalisa")

    result, _ = run_tool("github_create_issue", {"repo": "octocat/Hello-World", "title": "Please triage",
                                                 "labels": ["bug"]}, organization=organization, runner=member)

    created = ok(result)
    assert created["created"]["author"] == "monalisa" and created["created"]["labels"] == []
    assert "did not apply the labels" in created["note"]


def test_no_output_contains_the_token(github, call, connection):
    secret = crypto.decrypt(connection.secret)
    outputs = [
        call("github_list_repositories").output,
        call("github_get_repository", repo="octocat/Hello-World").output,
        call("github_get_repository", repo="hubot/private-thing").output,
        call("github_list_issues", repo="octocat/Hello-World").output,
        call("github_get_issue", repo="octocat/Hello-World", number=1, include_comments=True).output,
        call("github_list_pull_requests", repo="octocat/Hello-World").output,
        call("github_get_pull_request", repo="octocat/Hello-World", number=3).output,
    ]
    for value in secret.values():
        assert all(value not in output for output in outputs)
    assert all(value not in detail for detail in ConnectionCall.objects.values_list("detail", flat=True)
               for value in secret.values())
