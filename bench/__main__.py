"""`make bench` / `make bench-quick`: run every scenario and write bench/RESULTS.md and results.json.

Numbers are compared as ratios measured in the same run; absolute times are reported, never
asserted. Each figure is a median and p95 over repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _versions() -> dict[str, str]:
    names = ["django", "celery", "channels", "channels-redis", "psycopg", "uvicorn", "langgraph",
             "langgraph-checkpoint-postgres", "langchain-core"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _machine() -> dict:
    import psutil
    import redis
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        postgres = cursor.fetchone()[0].split(" on ")[0]
        cursor.execute("SHOW fsync")
        fsync = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        synchronous_commit = cursor.fetchone()[0]
    client = redis.Redis.from_url(settings.REDIS_URL)
    redis_version = client.info("server")["redis_version"]
    client.close()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "postgres": postgres,
        "fsync": fsync,
        "synchronous_commit": synchronous_commit,
        "redis": redis_version,
        "packages": _versions(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a short pass: fewer repetitions, smaller data")
    parser.add_argument("--skip", action="append", default=[], help="skip a scenario by number (debugging only)")
    args = parser.parse_args(argv)
    quick = args.quick
    latency = 2.0
    os.environ["AGENTRY_BENCH_MODEL_LATENCY"] = str(latency)

    from bench import stack

    stack.setup_django()
    stack.prepare_database()
    from bench import api_load, crash, engine, load, peer_langgraph, report, seed

    results: dict = {"mode": "quick" if quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     "machine": _machine(), "scenarios": {}}
    scenarios = results["scenarios"]
    reps = 3 if quick else 7

    def say(message: str) -> None:
        print(f"[bench] {message}", flush=True)

    if "1" not in args.skip:
        say("1 floor")
        scenarios["floor"] = engine.floor(300 if quick else 3000)
    if "2" not in args.skip:
        for steps in (10, 100):
            say(f"2 step overhead N={steps}")
            scenarios[f"steps_{steps}"] = engine.step_overhead(steps, reps)
    if "3" not in args.skip:
        for steps in (10, 100):
            for variant in ("postgres_sync", "none"):
                say(f"3 LangGraph N={steps} checkpointer={variant}")
                scenarios[f"langgraph_{steps}_{variant}"] = peer_langgraph.measure(steps, reps, variant)
    # Two worker processes and two web processes: one per core on the reference machine.
    with stack.Stack(worker_concurrency=256, worker_processes=2, web_workers=2,
                     extra_env={"AGENTRY_BENCH_MODEL_LATENCY": str(latency)}) as live:
        client, token, _ = stack.api_client(live.url)
        if "4" not in args.skip:
            for level in (1, 32, 128, 500):
                say(f"4 concurrency C={level}")
                scenarios[f"concurrency_{level}"] = load.concurrency(live, client, level, latency=latency)
        if "5" not in args.skip:
            say("5 time to first event, idle")
            scenarios["ttfe_idle"] = load.time_to_first_event(live, client, token, 20 if quick else 50)
            say("5 time to first event at C=128")
            scenarios["ttfe_128"] = load.time_to_first_event_under_load(
                live, client, token, level=128, samples=20 if quick else 50, latency=latency
            )
    if "6" not in args.skip:
        say("6 API under data: seeding")
        scenarios["seed"] = seed.seed(quick=quick)
        scenarios["query_counts"] = api_load.query_counts()
        with stack.Stack(worker_concurrency=8, web_workers=2) as live:
            _, token, _ = stack.api_client(live.url)
            say("6 API under data: driving 100 requests/s")
            scenarios["api_load"] = api_load.drive(live.url, token, rate=100, seconds=15 if quick else 60)

    if "7" not in args.skip:
        say("7 crash recovery: 20 runs, a worker killed with SIGKILL three times")
        scenarios["crash_recovery"] = crash.crash_recovery(stack.Stack)

    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    markdown, verdicts = report.render(results)
    results["targets"] = verdicts
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (HERE / "RESULTS.md").write_text(markdown)
    say(f"wrote {HERE / 'RESULTS.md'}")
    failed_runs = sum(v.get("failed", 0) for k, v in scenarios.items() if k.startswith("concurrency_"))
    crashed = scenarios.get("crash_recovery", {})
    broken = crashed and (not crashed["all_ended"] or crashed["runs_with_duplicates"])
    return 1 if failed_runs or broken else 0


if __name__ == "__main__":
    sys.exit(main())
