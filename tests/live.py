"""The real stack for end-to-end tests: uvicorn (HTTP + websockets) and a Celery worker process,
both on the test database, the test Redis database and a loopback fake Anthropic server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.github_server import FakeGitHub

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveStack:
    url: str
    ws_url: str
    anthropic: FakeAnthropicServer
    github: FakeGitHub
    env: dict[str, str]
    worker: subprocess.Popen
    web: subprocess.Popen
    logs: Path
    worker_name: str = ""

    def start_worker(self, name: str) -> subprocess.Popen:
        """Another worker process on the same queue, named `name@<host>`."""
        return _start_worker(self.env, self.logs, name)


def _start_worker(env: dict[str, str], logs: Path, name: str) -> subprocess.Popen:
    log = open(logs / f"worker-{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--pool", "threads", "--concurrency", "16",
            "--queues", settings.CELERY_TASK_DEFAULT_QUEUE,
            "--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropicServer]:
    server = FakeAnthropicServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_github() -> Iterator[FakeGitHub]:
    server = FakeGitHub(client_secret="live-stack-github-secret").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker, fake_anthropic, fake_github) -> Iterator[LiveStack]:
    ARTIFACTS.mkdir(exist_ok=True)
    logs = ARTIFACTS / "logs"
    logs.mkdir(exist_ok=True)
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "AGENTRY_DB_NAME": connection.settings_dict["NAME"],
            "AGENTRY_TEST_ANTHROPIC_API_KEY": "sk-ant-test-key",
            "AGENTRY_TEST_ANTHROPIC_BASE_URL": fake_anthropic.url,
            "AGENTRY_ANTHROPIC_MAX_RETRIES": "2",
            # Claude is reachable (through the fake) but the default stays the offline demo model.
            "AGENTRY_DEFAULT_MODEL": "demo",
            # GitHub (its OAuth app and API) is the loopback fake, which the address guard must let through.
            "AGENTRY_GITHUB_CLIENT_ID": fake_github.client_id,
            "AGENTRY_GITHUB_CLIENT_SECRET": fake_github.client_secret,
            "AGENTRY_GITHUB_API_URL": fake_github.url,
            "AGENTRY_GITHUB_AUTH_URL": fake_github.url,
            "AGENTRY_INTEGRATIONS_ALLOWED_HOSTS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    worker_name = f"main-{uuid.uuid4().hex[:6]}"
    worker = _start_worker(env, logs, worker_name)
    web_log = open(logs / "web.log", "ab")  # noqa: SIM115
    web = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=web_log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    last = ""
    while True:
        for process, name in ((worker, "worker"), (web, "web")):
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}; see {logs}")
        try:
            response = httpx.get(f"{url}/readyz", timeout=5)
            if response.status_code == 200:
                break
            last = response.text
        except httpx.HTTPError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            _stop(worker)
            _stop(web)
            pytest.fail(f"live stack not ready: {last}; see {logs}")
        time.sleep(0.3)
    stack = LiveStack(
        url=url, ws_url=f"ws://127.0.0.1:{port}", anthropic=fake_anthropic, github=fake_github, env=env, worker=worker,
        web=web, logs=logs,
        worker_name=f"{worker_name}@{socket.gethostname()}",
    )
    web_log.flush()
    started_at = (logs / "web.log").stat().st_size
    yield stack
    _stop(worker)
    _stop(web)
    served = (logs / "web.log").read_text(errors="replace")[started_at:]
    assert "Internal Server Error" not in served, f"the web process answered a 500; see {logs / 'web.log'}"


@pytest.fixture
def live(live_stack, transactional_db) -> LiveStack:
    """The live stack with a database whose rows the worker and web processes can see."""
    live_stack.anthropic.reset()
    return live_stack
