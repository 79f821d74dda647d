"""No credential appears in logs, API responses, run traces, model inputs or a database dump.

A GitHub personal access token is connected through the REST API, an agent on Claude (the loopback
fake, reached through the official SDK) lists issues through that connection on the real worker,
and then every place a token could escape to is searched for it: each API response the test
received, the web and worker logs, every stored run event, every request the model was sent, the
audit log, and a pg_dump of the whole database (where the credentials must be ciphertext).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection as db_connection

from accounts import services as account_services
from agents.models import RunEvent
from integrations.models import Connection
from tests.fakes import anthropic_server as fake


class _Recorder(httpx.Client):
    """An API client that keeps every response body it received."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bodies: list[str] = []

    def request(self, *args, **kwargs) -> httpx.Response:
        response = super().request(*args, **kwargs)
        self.bodies.append(f"{response.request.method} {response.request.url} {response.status_code}\n{response.text}")
        return response


def _pg_dump() -> str:
    import pgserver

    binary = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    if not binary.exists():
        binary = Path(shutil.which("pg_dump") or "pg_dump")
    db = db_connection.settings_dict
    env = dict(os.environ, PGPASSWORD=db.get("PASSWORD") or "")
    command = [str(binary), "--data-only", "--no-owner", "-d", db["NAME"], "-U", db.get("USER") or "postgres"]
    if db.get("HOST"):
        command += ["-h", db["HOST"]]
    if db.get("PORT"):
        command += ["-p", str(db["PORT"])]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=120).stdout


def test_a_connection_token_is_never_logged_returned_traced_or_sent_to_the_model(live, owner, organization):
    github = live.github
    repo = github.add_repo("acme", "widgets")
    github.add_issue(repo, "Saving crashes on large files")
    token = github.personal_token(scopes=("repo",))
    _, key = account_services.api_token_create(user=owner, organization=organization)

    with _Recorder(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        created = api.post("/api/connections", json={"integration": "github", "values": {"token": token},
                                                      "scopes": ["repo:read"]})
        assert created.status_code == 201, created.text
        connection_id = created.json()["id"]

        live.anthropic.enqueue(
            fake.tool_use("github_list_issues", {"repo": "acme/widgets"}, text="Let me look at the issues."),
            fake.text("There is one open issue: Saving crashes on large files."),
        )
        agent = api.post("/api/agents", json={
            "name": "Triage", "system_prompt": "Summarise open issues.", "model": "claude-sonnet-5-5",
            "tools": ["github_list_issues"], "max_steps": 4, "timeout_seconds": 60,
        }).json()
        run = api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "What is open in acme/widgets?"}).json()
        deadline = time.monotonic() + 60
        while (finished := api.get(f"/api/runs/{run['id']}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, finished
            time.sleep(0.2)
        assert finished["status"] == "succeeded", finished

        events = api.get(f"/api/runs/{run['id']}/events").json()
        assert "Saving crashes" in json.dumps(events)  # the tool's output is in the trace
        for path in ("/api/connections", f"/api/connections/{connection_id}",
                     f"/api/connections/{connection_id}/calls", "/api/integrations", "/api/integrations/github",
                     f"/api/agents/{agent['id']}", "/api/audit/logs", "/api/tools"):
            assert api.get(path).status_code == 200, path
        assert api.post(f"/api/connections/{connection_id}/test").status_code == 200
        calls = api.get(f"/api/connections/{connection_id}/calls").json()
        assert "github_list_issues" in json.dumps(calls)
        bodies = list(api.bodies)

    secret = Connection.objects.values_list("secret", flat=True).get(id=connection_id)
    assert secret and token not in secret
    places = {
        "API responses": "\n".join(bodies),
        "run events": json.dumps(list(RunEvent.objects.filter(run_id=run["id"]).values_list("data", flat=True))),
        "model inputs": json.dumps([r.body for r in live.anthropic.requests]),
        "logs": "\n".join(p.read_text(errors="replace") for p in sorted(live.logs.glob("*.log"))),
        "database dump": _pg_dump(),
    }
    assert "github_list_issues" in places["model inputs"]  # the model did see the tool and its result
    assert "Saving crashes" in places["model inputs"]
    for where, text in places.items():
        assert token not in text, f"the GitHub token leaked into {where}"
        if where != "database dump":
            assert secret not in text, f"the encrypted credentials leaked into {where}"
    # The token went where it belongs, and only there.
    assert any(r.headers.get("authorization") == f"Bearer {token}" for r in github.api_requests())


@pytest.fixture(autouse=True)
def _github_clean(live):
    yield
    live.github.clear()
