from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from accounts.models import Quota
from agents import services
from conftest import PASSWORD


@pytest.fixture
def agent(organization, owner):
    return services.agent_create(organization=organization, actor=owner, name="Calc", system_prompt="x",
                                 model="demo", tools=["calculator"])


def _start(api, agent):
    return api.post(f"/api/agents/{agent.id}/runs", {"goal": "What is 1 + 1?"}, format="json")


def test_runs_are_refused_at_the_organizations_monthly_limit_with_a_warning_first(owner_api, agent, organization):
    Quota.objects.create(organization=organization, runs_per_month=5)
    for _ in range(4):
        assert _start(owner_api, agent).status_code == 201

    warned = _start(owner_api, agent)
    refused = _start(owner_api, agent)

    assert warned.status_code == 201
    assert warned["X-Quota-Warning"] == "organization runs at 80% of the monthly quota"
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "quota_exceeded"
    assert "Monthly quota reached: organization runs (5 of 5 this month)" in body["message"]
    assert body["details"]["usage"][0]["metric"] == "runs"


def test_a_users_quota_is_separate_from_the_organizations(owner_api, member_api, agent, organization, member,
                                                          owner):
    Quota.objects.create(organization=organization, user=member, runs_per_month=1)
    services.agent_share(agent=agent, team=None, can_edit=False, actor=owner)  # runs count for the runner

    assert _start(member_api, agent).status_code == 201
    assert _start(member_api, agent).status_code == 429
    assert _start(owner_api, agent).status_code == 201


def test_token_and_spend_quotas_count_what_runs_used(owner_api, agent, organization, owner):
    Quota.objects.create(organization=organization, tokens_per_month=100, spend_per_month_usd=Decimal("1.00"))
    run = services.run_start(agent=agent, goal="x", actor=owner)
    services.run_add_usage(run_id=run.id, input_tokens=90, output_tokens=20, cost_usd=Decimal("0.10"))

    refused = _start(owner_api, agent)

    assert refused.status_code == 429 and "tokens (110 of 100" in refused.json()["message"]


def test_the_usage_endpoint_shows_this_month_against_the_limits(owner_api, agent, organization, owner):
    Quota.objects.create(organization=organization, runs_per_month=10)
    services.run_start(agent=agent, goal="x", actor=owner)

    lines = owner_api.get("/api/usage").json()["lines"]

    org_runs = next(line for line in lines if line["scope"] == "organization" and line["metric"] == "runs")
    assert (org_runs["used"], org_runs["limit"], org_runs["percent"]) == (1, 10, 10.0)


def test_the_run_form_explains_a_refusal(agent, organization, owner):
    Quota.objects.create(organization=organization, runs_per_month=0)
    client = Client()
    client.login(username="olivia", password=PASSWORD)

    page = client.post(f"/agents/{agent.id}/run", {"goal": "x"}).content.decode()

    assert "Monthly quota reached" in page


def test_the_usage_page_shows_quotas_and_a_chart(agent, organization, owner):
    Quota.objects.create(organization=organization, runs_per_month=10)
    services.run_start(agent=agent, goal="x", actor=owner)
    client = Client()
    client.login(username="olivia", password=PASSWORD)

    html = client.get("/usage/").content.decode()

    assert "This month against the quotas" in html and 'aria-valuenow="10.0"' in html
    assert html.count('class="bar"') == 30
