"""The whole stack, for real: uvicorn, a Celery worker process, Postgres, Redis, the Channels
layer, websockets and Server-Sent Events."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts import services as account_services
from tests.fakes import anthropic_server as fake

pytestmark = pytest.mark.django_db(transaction=True)

CALCULATOR_AGENT = {
    "name": "Calc",
    "system_prompt": "Use the calculator for arithmetic.",
    "tools": ["calculator"],
    "max_steps": 5,
    "timeout_seconds": 60,
}


@pytest.fixture
def api(live, owner, organization) -> httpx.Client:
    _, token = account_services.api_token_create(user=owner, organization=organization)
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        client.token = token  # type: ignore[attr-defined]
        yield client


def _wait_finished(api: httpx.Client, run_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/api/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def _ws_events(live, token: str, run_id: str, after: int = 0) -> list[dict]:
    frames = []
    with connect(
        f"{live.ws_url}/ws/runs/{run_id}/?after={after}",
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    ) as ws:
        for message in ws:  # the server closes after the terminal status
            frames.append(json.loads(message))
    return frames


def test_a_run_goes_from_post_to_final_answer_live_over_the_websocket(live, api):
    agent = api.post("/api/agents", json=CALCULATOR_AGENT).json()
    run = api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "What is 17 * 23?"}).json()

    frames = _ws_events(live, api.token, run["id"])

    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(1, len(seqs) + 1)), "no gap, no duplicate"
    assert [f["type"] for f in frames] == [
        "status", "status", "thought", "tool_start", "tool_end", "thought", "final_answer", "status",
    ]
    assert frames[3]["data"]["tool"] == "calculator"
    assert frames[4]["data"]["output"] == "391"
    assert "391" in frames[6]["data"]["content"]
    assert frames[-1]["data"]["status"] == "succeeded"
    finished = api.get(f"/api/runs/{run['id']}").json()
    assert finished["status"] == "succeeded" and "391" in finished["answer"]


def test_a_client_joining_mid_run_gets_only_what_it_has_not_seen(live, api):
    agent = api.post("/api/agents", json=CALCULATOR_AGENT).json()
    run = api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "What is 6 * 7?"}).json()
    _wait_finished(api, run["id"])

    frames = _ws_events(live, api.token, run["id"], after=3)

    assert [f["seq"] for f in frames] == list(range(4, 9))


def test_many_runs_stream_complete_traces_at_once(live, api):
    agent = api.post("/api/agents", json=CALCULATOR_AGENT).json()
    runs = [api.post(f"/api/agents/{agent['id']}/runs", json={"goal": f"What is {n} * 3?"}).json() for n in range(8)]

    for n, run in enumerate(runs):
        frames = _ws_events(live, api.token, run["id"])
        assert [f["seq"] for f in frames] == list(range(1, 9))
        assert str(n * 3) in frames[6]["data"]["content"]


def test_the_websocket_refuses_strangers(live, api, outsider, other_organization):
    agent = api.post("/api/agents", json=CALCULATOR_AGENT).json()
    run = api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "What is 1 + 1?"}).json()
    _, stranger = account_services.api_token_create(user=outsider, organization=other_organization)

    for headers, code in (({}, 4401), ({"Authorization": f"Bearer {stranger}"}, 4404)):
        with connect(f"{live.ws_url}/ws/runs/{run['id']}/", additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.close_code == code


def test_server_sent_events_replay_and_resume_with_last_event_id(live, api):
    agent = api.post("/api/agents", json=CALCULATOR_AGENT).json()
    run = api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "What is 17 * 23?"}).json()

    def read(headers: dict) -> list[tuple[str, str, dict]]:
        frames = []
        with api.stream("GET", f"/api/runs/{run['id']}/events", headers={"Accept": "text/event-stream"} | headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            block: dict[str, str] = {}
            for line in r.iter_lines():
                if not line:
                    if "id" in block:
                        frames.append((block["id"], block["event"], json.loads(block["data"])))
                    block = {}
                    continue
                key, _, value = line.partition(": ")
                block[key] = value
        return frames

    frames = read({})
    assert [event for _, event, _ in frames] == [
        "status", "status", "thought", "tool_start", "tool_end", "thought", "final_answer", "status",
    ]
    assert [int(i) for i, _, _ in frames] == list(range(1, 9))
    assert "391" in frames[6][2]["content"]

    resumed = read({"Last-Event-ID": "6"})
    assert [int(i) for i, _, _ in resumed] == [7, 8]


def test_cancel_stops_a_running_run(live, api):
    agent = api.post("/api/agents", json=CALCULATOR_AGENT | {"model": "scripted-slow", "max_steps": 50}).json()
    run = api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "loop"}).json()
    deadline = time.monotonic() + 10
    while api.get(f"/api/runs/{run['id']}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)

    assert api.post(f"/api/runs/{run['id']}/cancel").status_code == 200

    finished = _wait_finished(api, run["id"], timeout=10)
    assert finished["status"] == "cancelled"
    assert finished["stop_reason"] == "cancelled"


def test_claude_runs_through_the_official_sdk_with_tool_results_and_usage(live, api):
    live.anthropic.enqueue(
        fake.tool_use("calculator", {"expression": "17 * 23"}, text="Let me compute that."),
        fake.text("17 * 23 = 391."),
    )
    agent = api.post("/api/agents", json=CALCULATOR_AGENT | {"model": "claude-sonnet-5-5"}).json()
    assert agent.get("model") == "claude-sonnet-5-5", agent
    run = api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "What is 17 * 23?"}).json()

    finished = _wait_finished(api, run["id"])

    assert finished["status"] == "succeeded", finished
    assert "391" in finished["answer"]
    assert finished["usage"]["input_tokens"] > 0 and finished["usage"]["output_tokens"] > 0
    assert finished["usage"]["cost_usd"] > 0
    second = live.anthropic.message_requests[1]
    assert second.tool_results and "391" in json.dumps(second.tool_results[0]["content"])
    assert second.tool_names == ["calculator"]
    assert second.system == "Use the calculator for arithmetic."


def test_a_provider_that_keeps_failing_fails_the_run_with_its_message(live, api):
    live.anthropic.enqueue(*[fake.error(529, "overloaded_error", "Overloaded") for _ in range(5)])
    agent = api.post("/api/agents", json=CALCULATOR_AGENT | {"model": "claude-sonnet-5-5"}).json()
    run = api.post(f"/api/agents/{agent['id']}/runs", json={"goal": "What is 1 + 1?"}).json()

    finished = _wait_finished(api, run["id"], timeout=60)

    assert finished["status"] == "failed"
    assert finished["stop_reason"] == "model_error"
    assert "Overloaded" in finished["error"]
    events = api.get(f"/api/runs/{run['id']}/events").json()
    assert [e["type"] for e in events][-2:] == ["error", "status"]


def test_readyz_reports_ready_with_a_worker(live):
    response = httpx.get(f"{live.url}/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["worker"].startswith("ok")
