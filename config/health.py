from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from config.celery import app as celery_app


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_postgres() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _check_worker() -> str:
    replies = celery_app.control.ping(timeout=1.0)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping")
    return f"ok ({len(replies)} worker{'s' if len(replies) != 1 else ''})"


def readyz(request):
    checks: dict[str, str] = {}
    down: list[str] = []
    for name, check in (("postgres", _check_postgres), ("redis", _check_redis), ("worker", _check_worker)):
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
            checks[name] = f"down: {type(exc).__name__}: {exc}"[:300]
            down.append(name)
    if down:
        return JsonResponse(
            {"status": "unavailable", "down": down, "checks": checks, "message": f"Not ready: {', '.join(down)} down."},
            status=503,
        )
    return JsonResponse({"status": "ready", "checks": checks})
