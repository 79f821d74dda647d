from __future__ import annotations

import logging
import uuid

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Membership
from config import ratelimit
from config.env import ConfigError
from config.settings import _rate_limit, _rate_limit_tiers
from conftest import PASSWORD, client_for

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture(autouse=True)
def _own_buckets(settings):
    """Fresh buckets for every test: the anonymous bucket is keyed by 127.0.0.1 and user ids
    repeat between runs, so a shared namespace would carry counts from test to test."""
    settings.RATE_LIMIT_NAMESPACE = f"test-rl-{uuid.uuid4().hex}"
    ratelimit.clear_caches()
    yield
    ratelimit.clear_caches()


def _headers(response) -> dict[str, int]:
    return {name: int(response[name]) for name in HEADERS}


def test_a_successful_api_response_carries_the_rate_limit_headers(owner_api):
    response = owner_api.get("/api/models")

    assert response.status_code == 200
    assert _headers(response) == {"X-RateLimit-Limit": 1000, "X-RateLimit-Remaining": 199, "X-RateLimit-Reset": 1}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/api/agents", 400),
        ("get", f"/api/agents/{uuid.uuid4()}", 404),
        ("get", "/api/no-such-endpoint", 404),
    ],
)
def test_error_responses_carry_the_headers_too(owner_api, method, path, status):
    response = owner_api.post(path, {"name": ""}, format="json") if method == "post" else owner_api.get(path)

    assert response.status_code == status
    assert set(HEADERS) <= set(response.headers)


def test_an_unauthenticated_request_carries_the_headers_of_its_address(db, settings):
    settings.RATE_LIMIT_ANONYMOUS = (30, 10)
    response = APIClient().get("/api/agents")

    assert response.status_code == 401
    assert _headers(response)["X-RateLimit-Limit"] == 30


def test_remaining_counts_down_with_each_request(owner_api):
    remaining = [int(owner_api.get("/api/models")["X-RateLimit-Remaining"]) for _ in range(4)]

    assert remaining == [199, 198, 197, 196]


def test_the_request_past_the_limit_gets_a_429_in_the_error_envelope(owner_api, settings):
    settings.RATE_LIMIT_DEFAULT = (3, 3)
    allowed = [owner_api.get("/api/models") for _ in range(3)]

    refused = owner_api.get("/api/models", HTTP_X_REQUEST_ID="req-429")

    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [int(r["X-RateLimit-Remaining"]) for r in allowed] == [2, 1, 0]
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert body["request_id"] == "req-429"
    assert body["details"] == {"limit": 3, "burst": 3, "counted_per": "token"}
    assert "3 per minute" in body["message"]
    # 3 per minute is one every 20 s; the refused request may go once the oldest is 20 s old.
    assert body["retry_after"] in (19, 20)
    assert int(refused["Retry-After"]) == body["retry_after"]
    assert _headers(refused)["X-RateLimit-Limit"] == 3
    assert _headers(refused)["X-RateLimit-Remaining"] == 0
    assert _headers(refused)["X-RateLimit-Reset"] in (59, 60)


def test_a_refused_request_does_not_reach_the_view(owner_api, owner, organization, settings):
    from agents.models import Agent

    settings.RATE_LIMIT_DEFAULT = (1, 1)
    owner_api.get("/api/models")

    response = owner_api.post("/api/agents", {"name": "Too many", "system_prompt": "Hi.", "model": "demo"},
                              format="json")

    assert response.status_code == 429
    assert not Agent.objects.filter(name="Too many").exists()


def test_each_token_has_its_own_bucket(owner, organization, settings):
    settings.RATE_LIMIT_DEFAULT = (2, 2)
    first, second = client_for(owner, organization), client_for(owner, organization)
    first.get("/api/models")
    first.get("/api/models")

    assert first.get("/api/models").status_code == 429
    assert second.get("/api/models").status_code == 200


def test_anonymous_token_and_session_callers_are_counted_separately(owner, organization, settings):
    settings.RATE_LIMIT_DEFAULT = (2, 2)
    settings.RATE_LIMIT_ANONYMOUS = (2, 2)
    anonymous, token = APIClient(), client_for(owner, organization)
    session = APIClient()
    session.force_login(owner)
    for _ in range(2):
        anonymous.get("/api/models")
        token.get("/api/models")

    assert anonymous.get("/api/models").status_code == 429
    assert token.get("/api/models").status_code == 429
    assert session.get("/api/models").status_code == 200
    assert session.get("/api/models")["X-RateLimit-Remaining"] == "0"
    assert session.get("/api/models").json()["details"]["counted_per"] == "user"


def test_each_session_user_has_their_own_bucket(owner, member, settings):
    settings.RATE_LIMIT_DEFAULT = (1, 1)
    olivia, max_ = APIClient(), APIClient()
    olivia.force_login(owner)
    max_.force_login(member)
    olivia.get("/api/models")

    assert olivia.get("/api/models").status_code == 429
    assert max_.get("/api/models").status_code == 200


def test_a_token_takes_its_organizations_tier(owner_api, outsider_api, settings):
    settings.RATE_LIMIT_ORGANIZATIONS = {"acme": (60, 10)}

    assert _headers(owner_api.get("/api/models"))["X-RateLimit-Limit"] == 60
    assert _headers(owner_api.get("/api/models"))["X-RateLimit-Remaining"] == 8
    assert _headers(outsider_api.get("/api/models"))["X-RateLimit-Limit"] == 1000  # globex: the default


def test_a_session_user_gets_the_most_generous_tier_of_their_organizations(owner, other_organization, settings):
    account_services.membership_add(organization=other_organization, user=owner, role=Membership.Role.BUILDER)
    settings.RATE_LIMIT_ORGANIZATIONS = {"acme": (60, 10), "globex": (300, 60)}
    client = APIClient()
    client.force_login(owner)

    assert _headers(client.get("/api/models"))["X-RateLimit-Limit"] == 300


def test_a_known_token_costs_no_extra_query_after_its_first_request(owner_api, settings):
    settings.RATE_LIMIT_ORGANIZATIONS = {"acme": (300, 60)}
    owner_api.get("/api/models")  # looks the token up once, and writes last_used_at
    with CaptureQueriesContext(connection) as limited:
        owner_api.get("/api/models")
    settings.RATE_LIMIT_ENABLED = False
    with CaptureQueriesContext(connection) as unlimited:
        owner_api.get("/api/models")

    assert len(limited) == len(unlimited)


def test_password_guessing_is_limited_per_address(owner, settings):
    settings.RATE_LIMIT_ANONYMOUS = (3, 3)
    client = APIClient()
    guesses = [client.post("/api/auth/token", {"username": "olivia", "password": f"guess {i}"}, format="json")
               for i in range(4)]

    assert [g.status_code for g in guesses] == [401, 401, 401, 429]
    # Another address has its own bucket.
    other = APIClient(REMOTE_ADDR="203.0.113.9")
    response = other.post("/api/auth/token", {"username": "olivia", "password": PASSWORD}, format="json")
    assert response.status_code == 201


def test_made_up_tokens_count_against_the_callers_address(db, settings):
    settings.RATE_LIMIT_ANONYMOUS = (2, 2)
    responses = []
    for _ in range(3):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer agt_{uuid.uuid4().hex}")
        responses.append(client.get("/api/models"))

    assert [r.status_code for r in responses] == [401, 401, 429]


def test_a_revoked_token_keeps_its_own_bucket(owner, organization, settings):
    settings.RATE_LIMIT_ANONYMOUS = (1, 1)
    token, raw = account_services.api_token_create(user=owner, organization=organization)
    account_services.api_token_revoke(token=token, actor=owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    responses = [client.get("/api/models") for _ in range(2)]

    assert [r.status_code for r in responses] == [401, 401]
    assert responses[0]["X-RateLimit-Limit"] == "1000"


def test_webhooks_are_limited_per_trigger(db, settings):
    settings.RATE_LIMIT_WEBHOOK = (1, 1)
    client = APIClient()

    first = client.post("/hooks/not-a-real-id", b"{}", content_type="application/json")
    again = client.post("/hooks/not-a-real-id", b"{}", content_type="application/json")
    other = client.post("/hooks/another-id", b"{}", content_type="application/json")

    assert first.status_code == 404
    assert set(HEADERS) <= set(first.headers)
    assert again.status_code == 429
    assert again.json()["details"]["counted_per"] == "webhook"
    assert other.status_code == 404


@pytest.mark.parametrize("path", ["/healthz", "/accounts/login/"])
def test_pages_outside_the_api_are_not_limited(db, settings, path):
    settings.RATE_LIMIT_ANONYMOUS = (1, 1)
    client = APIClient()
    responses = [client.get(path) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert not set(HEADERS) & set(responses[0].headers)


def test_the_api_is_served_without_headers_while_redis_is_down(owner_api, settings, caplog, monkeypatch):
    monkeypatch.setattr(ratelimit, "_last_warning", 0.0)
    settings.RATE_LIMIT_DEFAULT = (1, 1)
    # Nothing listens on port 1.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    with caplog.at_level(logging.WARNING, logger="config.ratelimit"):
        responses = [owner_api.get("/api/models") for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert not set(HEADERS) & set(responses[0].headers)
    warnings = [r for r in caplog.records if r.name == "config.ratelimit"]
    assert len(warnings) == 1
    assert "Redis" in warnings[0].getMessage()


def test_limits_can_be_switched_off(owner_api, settings):
    settings.RATE_LIMIT_ENABLED = False
    settings.RATE_LIMIT_DEFAULT = (1, 1)

    responses = [owner_api.get("/api/models") for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "X-RateLimit-Limit" not in responses[0].headers


@pytest.mark.parametrize(
    ("remote", "forwarded", "proxies", "expected"),
    [
        ("198.51.100.7", "", 0, "198.51.100.7"),
        ("10.0.0.2", "203.0.113.5", 0, "10.0.0.2"),  # no trusted proxy: the header is the client's word
        ("10.0.0.2", "1.2.3.4, 203.0.113.5", 1, "203.0.113.5"),  # the entry our proxy appended
        ("10.0.0.2", "203.0.113.5, 10.0.0.1", 2, "203.0.113.5"),
        ("10.0.0.2", "", 1, "10.0.0.2"),
        ("2001:db8:1:2:3:4:5:6", "", 0, "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "", 0, "192.0.2.1"),
    ],
)
def test_the_client_address_trusts_only_our_own_proxies(settings, remote, forwarded, proxies, expected):
    settings.RATE_LIMIT_TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/api/models", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    assert ratelimit.client_address(request) == expected


def test_rate_settings_read_limit_and_optional_burst():
    assert _rate_limit("X", "300") == (300, 60)
    assert _rate_limit("X", "60:5") == (60, 5)
    assert _rate_limit("X", "3") == (3, 1)


@pytest.mark.parametrize("value", ["fast", "0", "100:0", "100:x", "-5"])
def test_bad_rate_settings_fail_at_start_up(value):
    with pytest.raises(ConfigError, match="AGENTRY_RATE_LIMIT_TIER"):
        _rate_limit("AGENTRY_RATE_LIMIT_TIER", value)


def test_organization_tiers_are_read_by_slug(monkeypatch):
    monkeypatch.setenv("AGENTRY_RATE_LIMIT_TIERS", "acme=1000, globex=300:100")
    assert _rate_limit_tiers("AGENTRY_RATE_LIMIT_TIERS") == {"acme": (1000, 200), "globex": (300, 100)}
    monkeypatch.setenv("AGENTRY_RATE_LIMIT_TIERS", "acme")
    with pytest.raises(ConfigError, match="acme=1000"):
        _rate_limit_tiers("AGENTRY_RATE_LIMIT_TIERS")
