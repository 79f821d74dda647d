from __future__ import annotations

import pytest
from django.test import Client

from config.env import ConfigError, env_bool, env_int


def test_healthz_answers_while_the_process_lives(db):
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_names_what_is_down(db, settings):
    # Nothing listens on port 1, so Redis is down by construction.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert "redis" in body["down"]
    assert body["checks"]["postgres"] == "ok"
    assert "redis" in body["message"]


def test_responses_carry_a_request_id(db):
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="abc-123")

    assert response["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_bad_boolean_settings_fail_at_start_up(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    with pytest.raises(ConfigError, match="SOME_FLAG"):
        env_bool("SOME_FLAG")


def test_bad_integer_settings_fail_at_start_up(monkeypatch):
    monkeypatch.setenv("SOME_NUMBER", "ten")
    with pytest.raises(ConfigError, match="SOME_NUMBER must be an integer"):
        env_int("SOME_NUMBER", 1)
    monkeypatch.setenv("SOME_NUMBER", "0")
    with pytest.raises(ConfigError, match=">= 1"):
        env_int("SOME_NUMBER", 1, minimum=1)
