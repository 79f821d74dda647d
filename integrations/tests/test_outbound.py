from __future__ import annotations

import time

import pytest

from integrations.builtin.netguard import BlockedAddress
from integrations.http import HttpError, Outbound, Unauthorized, retry_after_seconds
from tests.fakes.http_script import ScriptedHTTPServer


@pytest.fixture
def server(settings):
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    fake = ScriptedHTTPServer().start()
    yield fake
    fake.stop()


class _Auth:
    def __init__(self, token: str, fresh: str | None = None) -> None:
        self.token = token
        self.fresh = fresh
        self.refreshes = 0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self) -> bool:
        self.refreshes += 1
        if self.fresh is None:
            return False
        self.token = self.fresh
        return True


def test_it_refuses_loopback_unless_an_operator_allows_it(settings):
    settings.INTEGRATIONS_ALLOWED_HOSTS = []
    with pytest.raises(BlockedAddress, match="AGENTRY_INTEGRATIONS_ALLOWED_HOSTS"):
        Outbound().get("http://127.0.0.1:9/anything")


def test_it_waits_as_long_as_retry_after_says_on_429(server):
    server.script("/items", [(429, {"Retry-After": "1"}, {"message": "slow down"}), (200, {}, {"ok": True})])
    started = time.monotonic()
    response = Outbound().get(f"{server.url}/items")
    assert response.json() == {"ok": True}
    assert time.monotonic() - started >= 1.0
    assert len(server.seen("/items")) == 2


def test_it_gives_up_when_retry_after_is_longer_than_it_may_wait(server, settings):
    settings.INTEGRATIONS_MAX_RETRY_AFTER = 2
    server.script("/items", [(429, {"Retry-After": "120"}, {})])
    with pytest.raises(HttpError, match="asked us to wait 120 s"):
        Outbound().get(f"{server.url}/items")
    assert len(server.seen("/items")) == 1


def test_it_retries_server_errors_for_reads_but_not_for_posts(server, settings):
    settings.INTEGRATIONS_MAX_RETRIES = 2
    server.script("/read", [(503, {"Retry-After": "0"}, {}), (200, {}, {"n": 1})])
    assert Outbound().get(f"{server.url}/read").json() == {"n": 1}
    server.script("/write", [(503, {"Retry-After": "0"}, {}), (201, {}, {"n": 2})])
    assert Outbound().post(f"{server.url}/write", json={"a": 1}).status == 503
    assert len(server.seen("/write")) == 1  # a POST may have happened: never repeated blindly


def test_it_stops_retrying_after_the_configured_attempts(server, settings):
    settings.INTEGRATIONS_MAX_RETRIES = 2
    server.script("/down", [(502, {"Retry-After": "0"}, {})])
    with pytest.raises(HttpError, match="HTTP 502 after 3 attempts"):
        Outbound().get(f"{server.url}/down")
    assert len(server.seen("/down")) == 3


def test_it_refreshes_once_on_401_and_retries_with_the_new_credentials(server):
    server.script("/me", [(401, {}, {"message": "Bad credentials"}), (200, {}, {"login": "octocat"})])
    auth = _Auth("old-token", fresh="new-token")
    assert Outbound(auth=auth).get(f"{server.url}/me").json() == {"login": "octocat"}
    assert auth.refreshes == 1
    assert [r.headers["authorization"] for r in server.seen("/me")] == ["Bearer old-token", "Bearer new-token"]


def test_a_second_401_is_reported_without_the_credentials(server):
    server.script("/me", [(401, {}, {"message": "Bad credentials"})])
    auth = _Auth("secret-token-value", fresh="another-secret-value")
    with pytest.raises(Unauthorized) as caught:
        Outbound(auth=auth).get(f"{server.url}/me")
    assert auth.refreshes == 1
    assert "secret" not in str(caught.value) and "reconnect" in str(caught.value)


def test_it_caps_the_response_size(server, settings):
    server.script("/big", [(200, {"Content-Type": "text/plain"}, b"x" * 5000)])
    with pytest.raises(HttpError, match="more than the 2048-byte limit"):
        Outbound(max_bytes=2048).get(f"{server.url}/big")


def test_it_never_carries_credentials_to_another_origin_on_redirect(server):
    other = ScriptedHTTPServer().start()
    try:
        other.script("/landing", [(200, {}, {"here": True})])
        server.script("/go", [(302, {"Location": f"{other.url}/landing"}, b"")])
        response = Outbound(auth=_Auth("tok-abcdefgh")).get(f"{server.url}/go")
        assert response.json() == {"here": True}
        assert server.seen("/go")[0].headers["authorization"] == "Bearer tok-abcdefgh"
        assert "authorization" not in other.seen("/landing")[0].headers
    finally:
        other.stop()


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    assert retry_after_seconds("soon") is None
