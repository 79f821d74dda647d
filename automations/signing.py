"""Webhook signing: each trigger has a secret; callers send

    X-Agentry-Timestamp: <unix seconds>
    X-Agentry-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

The secret is not stored. It is HMAC(SECRET_KEY, public id + a random salt kept on the trigger),
recomputed to verify, so reading the database is not enough to forge calls. Rotating a trigger's
secret changes the salt. Rotating SECRET_KEY changes every webhook secret unless the old key is
kept in SECRET_KEY_FALLBACKS, which verification also tries (as Django does for sessions).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings
from django.utils.crypto import salted_hmac

TIMESTAMP_HEADER = "X-Agentry-Timestamp"
SIGNATURE_HEADER = "X-Agentry-Signature"
TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"
_KEY_SALT = "agentry.automations.webhook-secret"


def new_public_id() -> str:
    return secrets.token_urlsafe(24)


def new_salt() -> str:
    return secrets.token_urlsafe(24)


def derive_secret(*, public_id: str, salt: str, key: str | None = None) -> str:
    digest = salted_hmac(_KEY_SALT, f"{public_id}:{salt}", secret=key or settings.SECRET_KEY,
                         algorithm="sha256").digest()
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def candidate_secrets(*, public_id: str, salt: str) -> list[str]:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [derive_secret(public_id=public_id, salt=salt, key=key) for key in keys]


def sign(*, secret: str, timestamp: int | str, body: bytes) -> str:
    """The X-Agentry-Signature value for a request."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def hint(secret: str) -> str:
    return secret[: len(SECRET_PREFIX) + 4]
