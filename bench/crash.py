"""Scenario 7: runs survive their workers being killed.

20 runs in flight on two worker processes (thread pools) with celery-beat running the watchdog;
a worker is killed with SIGKILL three times (and replaced, as a supervisor would). Every run must
end — succeeded, or paused for a person on an uncertain write — with no duplicated steps, and we
report how long it took from each kill until the killed worker's runs resumed elsewhere.
"""

from __future__ import annotations

import socket
import time

from bench.stats import summary

RUNS = 20
MODEL_CALLS = 12  # 11 tool steps + the answer
LATENCY = 0.5


def crash_recovery(stack_cls, *, kills: int = 3, lease_seconds: float = 3.0) -> dict:
    from agents.models import Run, RunEvent

    env = {"AGENTRY_BENCH_MODEL_LATENCY": str(LATENCY), "AGENTRY_RUN_LEASE_SECONDS": str(lease_seconds),
           "AGENTRY_WATCHDOG_SECONDS": "1"}
    with stack_cls(worker_concurrency=64, worker_processes=2, beat=True, extra_env=env) as live:
        from bench.stack import api_client

        client, _, _ = api_client(live.url)
        agent = client.post("/api/agents", json={
            "name": "bench crash", "system_prompt": "Benchmark agent.", "model": "bench-latency",
            "tools": ["calculator"], "max_steps": MODEL_CALLS, "timeout_seconds": 600,
        }).json()
        start = f"/api/agents/{agent['id']}/runs"
        run_ids = [client.post(start, json={"goal": f"steps={MODEL_CALLS - 1}"}).json()["id"] for _ in range(RUNS)]
        host = socket.gethostname()
        recoveries: list[float] = []
        killed = []
        time.sleep(1.5)
        for kill in range(kills):
            index = kill % 2
            pid = live.processes[f"worker{index}"].pid
            held = list(Run.objects.filter(id__in=run_ids, status="running", lease_holder=f"{host}:{pid}")
                        .values_list("id", flat=True))
            live.kill_worker(index)
            killed_at = time.time()
            killed.append({"worker": index, "pid": pid, "runs_held": len(held)})
            live.start_worker(index)  # the supervisor brings a fresh worker up
            deadline = time.monotonic() + 60
            pending = set(held)
            while pending and time.monotonic() < deadline:
                for run_id in list(pending):
                    resumed = RunEvent.objects.filter(run_id=run_id, type="status", data__resumed=True,
                                                      created_at__gte=_dt(killed_at)).order_by("seq").first()
                    finished = Run.objects.filter(id=run_id).exclude(status__in=["running", "queued"]).exists()
                    if resumed is not None:
                        recoveries.append(resumed.created_at.timestamp() - killed_at)
                        pending.discard(run_id)
                    elif finished:
                        pending.discard(run_id)
                time.sleep(0.1)
            time.sleep(1.0)
        deadline = time.monotonic() + 180
        while Run.objects.filter(id__in=run_ids, status__in=["queued", "running"]).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)

        outcomes: dict[str, int] = {}
        duplicated = []
        for run in Run.objects.filter(id__in=run_ids):
            key = run.status if run.status != "paused" else f"paused ({run.pause_reason.split(':')[0]})"
            outcomes[key] = outcomes.get(key, 0) + 1
            steps = list(RunEvent.objects.filter(run=run, type="thought").values_list("data__step", flat=True))
            ends = list(RunEvent.objects.filter(run=run, type="tool_end").values_list("data__call_id", flat=True))
            seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
            if len(steps) != len(set(steps)) or len(ends) != len(set(ends)) or seqs != list(range(1, len(seqs) + 1)):
                duplicated.append(str(run.id))
        attempts = list(Run.objects.filter(id__in=run_ids).values_list("attempts", flat=True))
    return {
        "runs": RUNS,
        "kills": killed,
        "outcomes": outcomes,
        "all_ended": sum(v for k, v in outcomes.items() if k not in ("running", "queued")) == RUNS,
        "runs_with_duplicates": duplicated,
        "max_attempts": max(attempts),
        "lease_seconds": lease_seconds,
        "kill_to_resume": summary(recoveries),
    }


def _dt(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC)
