"""Connection credentials at rest: Fernet with a key list (settings.CREDENTIAL_KEYS, newest first).

The key lives in the environment (or, on the embedded default, a file under var/), never in the
database, so a database dump alone reveals no token. Decryption tries every key, which is what
makes rotation a background chore instead of an outage.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialsUnreadable(Exception):
    """No configured key opens these credentials (the key that wrote them was removed)."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.CREDENTIAL_KEYS))


def encrypt(data: dict[str, Any]) -> str:
    return _current().encrypt(json.dumps(data, separators=(",", ":")).encode()).decode("ascii")


def decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(_current().decrypt(token.encode("ascii")))
    except InvalidToken:
        raise CredentialsUnreadable(
            "the stored credentials can't be decrypted with any key in AGENTRY_CREDENTIAL_KEYS"
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt with the newest key (a no-op in meaning; the ciphertext changes)."""
    if not token:
        return token
    try:
        return _current().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise CredentialsUnreadable(
            "the stored credentials can't be decrypted with any key in AGENTRY_CREDENTIAL_KEYS"
        ) from None
