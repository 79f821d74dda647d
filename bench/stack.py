"""Bring up the real stack for a benchmark: the bench database, uvicorn and a Celery worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "var" / "bench-logs"


def setup_django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()


def prepare_database() -> None:
    """Create the bench database if needed and migrate it (idempotent)."""
    from django.conf import settings
    from django.db import connections

    name = settings.DATABASES["default"]["NAME"]
    with connections["default"]._nodb_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    worker_concurrency: int = 64
    worker_processes: int = 1
    web_workers: int = 1
    # Postgres pool size per process: web requests are short, worker threads hand their
    # connection back before every model call, so small pools serve hundreds of runs.
    web_pool: int = 4
    worker_pool: int = 16
    beat: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    ws_url: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        from django.conf import settings

        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "DATABASE_URL": settings.DATABASE_URL,
                "REDIS_URL": settings.REDIS_URL,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def __enter__(self) -> Stack:

        LOGS.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = self.env()
        self.url, self.ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        self._port = port
        for index in range(self.worker_processes):
            self.start_worker(index)
        if self.beat:
            self.processes["beat"] = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING",
                 "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
                cwd=ROOT, env=env, stdout=open(LOGS / "beat.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
            )
        self.processes["web"] = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log", "--log-level", "warning", "--workers", str(self.web_workers)],
            cwd=ROOT, env=env | {"AGENTRY_DB_POOL_MAX": str(self.web_pool)},
            stdout=open(LOGS / "web.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes.values()):
                self.__exit__()
                raise RuntimeError(f"bench stack did not become ready; see {LOGS}")
            time.sleep(0.2)

    def __exit__(self, *exc_info) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    def start_worker(self, index: int) -> subprocess.Popen:
        from django.conf import settings

        self.processes[f"worker{index}"] = process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "threads",
             "--concurrency", str(self.worker_concurrency), "--queues", settings.CELERY_TASK_DEFAULT_QUEUE,
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--hostname", f"bench-{self._port}-{index}-{time.monotonic_ns()}@%h"],
            cwd=ROOT, env=self.env() | {"AGENTRY_DB_POOL_MAX": str(self.worker_pool)},
            stdout=open(LOGS / "worker.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        return process

    def kill_worker(self, index: int) -> int:
        """kill -9, as a crashed host would; returns the pid."""
        process = self.processes[f"worker{index}"]
        process.kill()
        process.wait(10)
        return process.pid

    def rss_bytes(self) -> int:
        """Resident memory of the app's processes (web, worker and their children)."""
        total = 0
        for process in self.processes.values():
            try:
                parent = psutil.Process(process.pid)
                total += sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
            except psutil.NoSuchProcess:
                pass
        return total


def api_client(url: str):
    """A token for a bench user in a bench organization, and an httpx client using it."""
    from django.contrib.auth import get_user_model

    from accounts import services
    from accounts.models import Organization

    user, _ = get_user_model().objects.get_or_create(username="bench")
    organization = Organization.objects.filter(slug="bench").first() or services.organization_create(
        name="Bench", slug="bench", owner=user
    )
    _, token = services.api_token_create(user=user, organization=organization)
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60), token, organization
