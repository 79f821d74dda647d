"""Benchmark settings: the app's own settings on a separate database, Redis database, queue and
channel prefix, with the scripted benchmark models plugged in through the provider boundary."""

from __future__ import annotations

import os

os.environ.setdefault("AGENTRY_DB_NAME", "agentry_bench")
os.environ.setdefault("AGENTRY_REDIS_DB", "2")
os.environ.setdefault("AGENTRY_CHANNEL_PREFIX", "agentry-bench")
os.environ.setdefault("AGENTRY_QUEUE", "agentry-bench")
os.environ.setdefault("AGENTRY_MODEL_PLUGINS", "bench.models.register")
os.environ.setdefault("AGENTRY_LOG_LEVEL", "WARNING")
# The API load drives 100 req/s with one key: lift its tier (the Redis round trip is still measured).
os.environ.setdefault("AGENTRY_RATE_LIMIT_TIERS", "bench=1000000")
os.environ["ANTHROPIC_API_KEY"] = ""

from config.settings import *  # noqa: E402,F403
