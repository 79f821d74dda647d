"""The public webhook endpoint: signatures, timestamps, replays, content types and the event log."""

from __future__ import annotations

import json
import time

import pytest
from rest_framework.test import APIClient

from agents.models import Run
from automations import services, signing
from automations.models import Trigger, TriggerEvent


@pytest.fixture
def webhook(organization, owner, agent):
    created = services.trigger_create(
        organization=organization, agent=agent, actor=owner, kind=Trigger.Kind.WEBHOOK, name="Orders",
        goal_template="Handle order {{ payload.order }} for {{ payload.customer|default:'a customer' }}.",
    )
    return created.trigger, created.secret


@pytest.fixture
def client() -> APIClient:
    return APIClient()  # no credentials: the signature is the credential


def _url(trigger: Trigger) -> str:
    return f"/hooks/{trigger.public_id}"


def _post(client, trigger, body: bytes, *, secret: str | None, timestamp: int | str | None = None,
          signature: str | None = None, content_type: str = "application/json", omit: tuple[str, ...] = ()):
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    if signature is None and secret is not None:
        signature = signing.sign(secret=secret, timestamp=timestamp, body=body)
    headers = {signing.TIMESTAMP_HEADER: timestamp, signing.SIGNATURE_HEADER: signature or ""}
    headers = {k: v for k, v in headers.items() if k not in omit}
    return client.generic("POST", _url(trigger), body, content_type=content_type, headers=headers)


def _rejected(response, status: int, reason: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "message", "details", "request_id"}
    assert body["error"] == reason
    assert body["request_id"] == response["X-Request-ID"]
    return body


BODY = json.dumps({"order": 42, "customer": "ACME", "items": ["bolts"]}).encode()


def test_a_signed_json_call_starts_a_run_with_the_payload_as_context(client, webhook, owner, agent):
    trigger, secret = webhook

    response = _post(client, trigger, BODY, secret=secret)

    assert response.status_code == 202
    run = Run.objects.get(id=response.json()["run_id"])
    assert run.context == {"order": 42, "customer": "ACME", "items": ["bolts"]}
    assert run.goal == "Handle order 42 for ACME."
    assert (run.agent, run.created_by) == (agent, owner)
    event = TriggerEvent.objects.get()
    assert (event.outcome, event.reason, event.status_code, event.run_id) == ("accepted", "accepted", 202, run.id)
    assert event.remote_addr == "127.0.0.1" and '"order": 42' in event.payload_excerpt
    assert response.json()["event_id"] == event.id
    trigger.refresh_from_db()
    assert (trigger.accepted_count, trigger.rejected_count) == (1, 0) and trigger.last_called_at is not None


def test_a_wrong_signature_is_rejected_logged_and_counted(client, webhook):
    trigger, _ = webhook

    response = _post(client, trigger, BODY, secret="whsec_not-the-secret")

    _rejected(response, 401, "bad_signature")
    assert not Run.objects.exists()
    event = TriggerEvent.objects.get()
    assert (event.outcome, event.reason, event.status_code) == ("rejected", "bad_signature", 401)
    trigger.refresh_from_db()
    assert (trigger.accepted_count, trigger.rejected_count) == (0, 1)


def test_the_signature_covers_the_exact_bytes_sent(client, webhook):
    trigger, secret = webhook
    signed_for = signing.sign(secret=secret, timestamp=int(time.time()), body=BODY)
    reformatted = json.dumps(json.loads(BODY), indent=2).encode()

    _rejected(_post(client, trigger, reformatted, secret=None, signature=signed_for), 401, "bad_signature")


@pytest.mark.parametrize("omit, reason", [
    ((signing.TIMESTAMP_HEADER,), "missing_timestamp"),
    ((signing.SIGNATURE_HEADER,), "missing_signature"),
    ((signing.TIMESTAMP_HEADER, signing.SIGNATURE_HEADER), "missing_timestamp"),
])
def test_calls_without_the_signing_headers_are_rejected(client, webhook, omit, reason):
    trigger, secret = webhook

    _rejected(_post(client, trigger, BODY, secret=secret, omit=omit), 401, reason)
    assert TriggerEvent.objects.get().reason == reason


@pytest.mark.parametrize("signature", ["abc", "sha1=" + "0" * 40, "sha256=" + "z" * 64, "sha256=" + "0" * 64])
def test_malformed_signatures_are_rejected(client, webhook, signature):
    trigger, _ = webhook

    _rejected(_post(client, trigger, BODY, secret=None, signature=signature), 401, "bad_signature")


def test_a_timestamp_that_is_not_unix_seconds_is_rejected(client, webhook):
    trigger, secret = webhook

    _rejected(_post(client, trigger, BODY, secret=secret, timestamp="2026-01-01T00:00:00Z"), 401, "bad_timestamp")


# Some seconds beyond the window: the request is signed and checked a moment later, on a busy machine.
@pytest.mark.parametrize("offset", [-310, 310, -86400])
def test_a_timestamp_more_than_five_minutes_off_is_rejected_even_when_signed(client, webhook, offset):
    trigger, secret = webhook

    body = _rejected(_post(client, trigger, BODY, secret=secret, timestamp=int(time.time()) + offset), 401,
                     "stale_timestamp")
    assert "5 minutes" in body["message"]


def test_a_timestamp_within_five_minutes_is_accepted(client, webhook):
    trigger, secret = webhook

    assert _post(client, trigger, BODY, secret=secret, timestamp=int(time.time()) - 240).status_code == 202


def test_the_same_signed_request_is_accepted_once(client, webhook):
    trigger, secret = webhook
    timestamp = int(time.time())

    first = _post(client, trigger, BODY, secret=secret, timestamp=timestamp)
    replay = _post(client, trigger, BODY, secret=secret, timestamp=timestamp)

    assert first.status_code == 202
    _rejected(replay, 401, "replayed")
    assert Run.objects.count() == 1
    assert list(TriggerEvent.objects.order_by("id").values_list("reason", flat=True)) == ["accepted", "replayed"]


def test_a_new_timestamp_makes_a_new_request(client, webhook):
    trigger, secret = webhook
    now = int(time.time())

    assert _post(client, trigger, BODY, secret=secret, timestamp=now).status_code == 202
    assert _post(client, trigger, BODY, secret=secret, timestamp=now + 1).status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_bodies_that_are_not_declared_json_are_refused(client, webhook, content_type):
    trigger, secret = webhook

    _rejected(_post(client, trigger, BODY, secret=secret, content_type=content_type), 415, "unsupported_media_type")
    assert not Run.objects.exists()


def test_json_with_a_charset_or_a_json_suffix_type_is_fine(client, webhook):
    trigger, secret = webhook

    with_charset = _post(client, trigger, BODY, secret=secret, content_type="application/json; charset=utf-8")
    assert with_charset.status_code == 202
    assert _post(client, trigger, BODY, secret=secret, timestamp=int(time.time()) + 1,
                 content_type="application/cloudevents+json").status_code == 202


def test_signed_bodies_that_are_not_json_objects_are_bad_requests(client, webhook):
    trigger, secret = webhook

    _rejected(_post(client, trigger, b'{"order": 42', secret=secret), 400, "invalid_json")
    _rejected(_post(client, trigger, b"[1, 2, 3]", secret=secret), 400, "not_an_object")
    _rejected(_post(client, trigger, b"\xff\xfe", secret=secret), 400, "invalid_json")
    assert not Run.objects.exists()
    assert TriggerEvent.objects.filter(outcome="rejected").count() == 3


def test_a_body_over_one_megabyte_is_refused_unread(client, webhook):
    trigger, secret = webhook
    body = b'{"blob": "' + b"x" * (1024 * 1024) + b'"}'

    _rejected(_post(client, trigger, body, secret=secret), 413, "too_large")


def test_a_disabled_trigger_refuses_calls_and_logs_them(client, webhook, owner):
    trigger, secret = webhook
    services.trigger_set_enabled(trigger=trigger, enabled=False, actor=owner)

    _rejected(_post(client, trigger, BODY, secret=secret), 403, "disabled")
    assert TriggerEvent.objects.get().reason == "disabled"
    assert not Run.objects.exists()


def test_an_unknown_url_is_not_found_and_not_logged(client, webhook):
    response = client.post("/hooks/not-a-real-id", BODY, content_type="application/json")

    _rejected(response, 404, "unknown_trigger")
    assert not TriggerEvent.objects.exists()


def test_only_post_is_allowed(client, webhook):
    trigger, _ = webhook

    assert client.get(_url(trigger)).status_code == 405


def test_a_goal_template_that_renders_nothing_is_a_bad_request(client, webhook, owner):
    trigger, secret = webhook
    services.trigger_update(trigger=trigger, actor=owner, goal_template="{{ payload.missing }}")

    body = _rejected(_post(client, trigger, BODY, secret=secret), 400, "template_error")
    assert "empty goal" in body["message"]


def test_rotating_the_secret_retires_the_old_one(client, webhook, owner):
    trigger, old = webhook

    new = services.trigger_rotate_secret(trigger=trigger, actor=owner)

    assert new != old
    _rejected(_post(client, trigger, BODY, secret=old), 401, "bad_signature")
    assert _post(client, trigger, BODY, secret=new).status_code == 202


def test_the_secret_is_not_stored_anywhere(client, webhook):
    trigger, secret = webhook
    _post(client, trigger, BODY, secret=secret)

    rows = [*Trigger.objects.values(), *TriggerEvent.objects.values()]
    stored = json.dumps(rows, default=str)
    assert secret not in stored
    assert trigger.secret_hint == secret[:10] and len(secret) > 40


def test_secrets_survive_a_secret_key_rotation_while_the_old_key_is_a_fallback(client, webhook, settings):
    trigger, secret = webhook
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-brand-new-secret-key-for-this-deployment-0123456789"

    _rejected(_post(client, trigger, BODY, secret=secret), 401, "bad_signature")
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert _post(client, trigger, BODY, secret=secret, timestamp=int(time.time()) + 1).status_code == 202


def test_a_signed_body_with_a_nul_character_is_refused_and_logged(client, webhook):
    """Postgres can't store NUL: the call gets a 400 and an event row instead of a 500."""
    trigger, secret = webhook

    response = _post(client, trigger, b'{"note": "a\\u0000b"}', secret=secret)

    _rejected(response, 400, "invalid_json")
    assert "NUL" in response.json()["message"]
    assert TriggerEvent.objects.get().reason == "invalid_json"
    assert not Run.objects.exists()


def test_a_webhook_respects_the_organizations_run_quota(client, webhook):
    from accounts.models import Quota

    trigger, secret = webhook
    Quota.objects.create(organization=trigger.organization, runs_per_month=0)

    response = _post(client, trigger, BODY, secret=secret)

    body = _rejected(response, 429, "quota_exceeded")
    assert "Monthly quota reached" in body["message"]
    assert TriggerEvent.objects.get().reason == "quota_exceeded"
    assert not Run.objects.exists()
