"""Scenarios 4 and 5: many runs in flight at once, and time to first event.

Both go through the real stack: runs are started with HTTP POSTs to uvicorn, queued in Redis,
executed by a Celery worker process (thread pool), persisted in Postgres and streamed over the
Channels Redis layer to websocket clients.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from websockets.sync.client import connect

from bench.stats import summary

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


def _agent(client: httpx.Client, model: str, max_steps: int) -> str:
    response = client.post(
        "/api/agents",
        json={"name": f"bench {model}", "system_prompt": "Benchmark agent.", "model": model,
              "tools": ["calculator"], "max_steps": max_steps, "timeout_seconds": 3600},
    )
    response.raise_for_status()
    return response.json()["id"]


class _Sampler:
    """Samples Postgres connections and the app's RSS while a scenario runs."""

    def __init__(self, stack, database: str) -> None:
        self.stack, self.database = stack, database
        self.peak_connections = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        from bench.engine import conninfo

        with psycopg.connect(conninfo(), autocommit=True) as conn:
            while not self._stop.is_set():
                count = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    [self.database],
                ).fetchone()[0]
                self.peak_connections = max(self.peak_connections, count)
                self.peak_rss = max(self.peak_rss, self.stack.rss_bytes())
                self._stop.wait(0.1)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def _post_runs(client: httpx.Client, agent_id: str, count: int, goal: str) -> list[str]:
    with ThreadPoolExecutor(max_workers=min(32, count)) as pool:
        responses = list(pool.map(lambda _: client.post(f"/api/agents/{agent_id}/runs", json={"goal": goal}),
                                  range(count)))
    for response in responses:
        response.raise_for_status()
    return [r.json()["id"] for r in responses]


def _wait_all(run_ids: list[str], timeout: float) -> float:
    from agents.models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Run.objects.filter(id__in=run_ids).exclude(status__in=TERMINAL).exists():
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"{len(run_ids)} runs did not finish within {timeout} s")


def concurrency(stack, client: httpx.Client, level: int, *, model_calls: int = 5, latency: float) -> dict:
    """`level` runs started at once, each `model_calls` model calls (tool steps then an answer)."""
    from django.conf import settings

    from agents.models import Run, RunEvent

    agent_id = _agent(client, "bench-latency", model_calls)
    with _Sampler(stack, settings.DATABASES["default"]["NAME"]) as sampler:
        started = time.monotonic()
        run_ids = _post_runs(client, agent_id, level, f"steps={model_calls - 1}")
        posted = time.monotonic()
        finished = _wait_all(run_ids, timeout=600)
    wall = finished - started
    ideal = model_calls * latency
    runs = list(Run.objects.filter(id__in=run_ids))
    failed = [r for r in runs if r.status != "succeeded"]
    queue_hops = [(r.started_at - r.created_at).total_seconds() for r in runs if r.started_at]
    overheads = []
    for run in runs:
        if not (run.started_at and run.finished_at):
            continue
        waited = 0.0
        for data in RunEvent.objects.filter(run=run, type__in=["thought", "tool_end"]).values_list("data", flat=True):
            waited += data.get("duration_ms", 0) / 1000
        overheads.append(((run.finished_at - run.started_at).total_seconds() - waited) / model_calls)
    steps_done = RunEvent.objects.filter(run_id__in=run_ids, type="thought").count()
    return {
        "level": level,
        "runs": len(runs),
        "failed": len(failed),
        "failures": sorted({f"{r.status}: {r.error[:120]}" for r in failed})[:5],
        "wall_seconds": wall,
        "post_seconds": posted - started,
        "ideal_seconds": ideal,
        "wall_over_ideal": wall / ideal,
        "steps_per_second": steps_done / wall,
        "peak_postgres_connections": sampler.peak_connections,
        "peak_rss_bytes": sampler.peak_rss,
        "queue_hop": summary(queue_hops),
        "per_step_overhead": summary(overheads),
    }


def time_to_first_event(stack, client: httpx.Client, token: str, samples: int) -> dict:
    """POST a run, open its websocket at once, and time the first frame (the stored `queued`
    event, replayed) and the first frame the worker produced (`running`, which includes the
    queue hop)."""
    agent_id = _agent(client, "bench-zero", 2)
    first_frame, first_live = [], []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.post(f"/api/agents/{agent_id}/runs", json={"goal": "steps=1"})
        response.raise_for_status()
        run_id = response.json()["id"]
        with connect(f"{stack.ws_url}/ws/runs/{run_id}/", additional_headers={"Authorization": f"Bearer {token}"},
                     open_timeout=30) as ws:
            first = True
            for message in ws:
                event = json.loads(message)
                now = time.perf_counter() - started
                if first:
                    first_frame.append(now)
                    first = False
                if event["type"] == "status" and event["data"]["status"] == "running":
                    first_live.append(now)
                    break
    return {"first_frame": summary(first_frame), "first_worker_event": summary(first_live)}


def time_to_first_event_under_load(stack, client: httpx.Client, token: str, *, level: int, samples: int,
                                   latency: float) -> dict:
    """The same, while `level` slow runs are in flight."""
    agent_id = _agent(client, "bench-latency", 5)
    background = _post_runs(client, agent_id, level, "steps=4")
    time.sleep(min(2.0, latency))  # let them all get going
    result = time_to_first_event(stack, client, token, samples)
    _wait_all(background, timeout=600)
    return result
