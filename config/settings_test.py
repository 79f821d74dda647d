"""Settings for the test suite: the same real services, isolated from a running dev instance."""

from __future__ import annotations

import os

# Own Redis database, channel prefix and Celery queue, so `make run` and `make test` can share
# the embedded servers without seeing each other's messages.
# Two suites at once on one machine (AGENTRY_TEST_DB_NAME differing) also get their own queue
# and channel prefix, so neither's worker takes the other's runs.
_test_db = os.environ.setdefault("AGENTRY_TEST_DB_NAME", "test_agentry")
os.environ.setdefault("AGENTRY_REDIS_DB", "1")
os.environ.setdefault("AGENTRY_CHANNEL_PREFIX", f"agentry-{_test_db}")
os.environ.setdefault("AGENTRY_QUEUE", f"agentry-{_test_db}")
os.environ.setdefault("AGENTRY_MODEL_PLUGINS", "tests.fakes.scripted.register")
# Short leases so crash tests see a takeover in seconds (the worker processes inherit these).
os.environ.setdefault("AGENTRY_RUN_LEASE_SECONDS", "2")
os.environ.setdefault("AGENTRY_WATCHDOG_SECONDS", "1")
# Every anonymous request of a suite comes from 127.0.0.1; rate-limit tests set small limits themselves.
os.environ.setdefault("AGENTRY_RATE_LIMIT_ANONYMOUS", "100000")
# A developer's real key must never reach the tests; tests that want Claude point the real SDK
# at the loopback fake server through these two variables.
os.environ["ANTHROPIC_API_KEY"] = os.environ.get("AGENTRY_TEST_ANTHROPIC_API_KEY", "")
if os.environ.get("AGENTRY_TEST_ANTHROPIC_BASE_URL"):
    os.environ["ANTHROPIC_BASE_URL"] = os.environ["AGENTRY_TEST_ANTHROPIC_BASE_URL"]
else:
    os.environ.pop("ANTHROPIC_BASE_URL", None)

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast fixture users
