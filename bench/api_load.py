"""Scenario 6, "API under data": run list, run detail and event list on a seeded database.

Two measurements:

* `query_counts()`: in-process with Django's test client, the SQL queries each endpoint issues,
  taken for two different pages / ids. Equal counts mean the cost per request doesn't grow with
  what's on the page (no N+1).
* `drive()`: latency at a fixed request rate, from a separate process, against the real stack
  (uvicorn + Django under ASGI on the seeded bench database).

The load generator is open-loop: request *i* is sent at `t0 + i / rate` whatever happened to
the requests before it, and its latency runs from that scheduled time to the end of the
response. A closed-loop client (each virtual user waits for its response before sending the
next) slows down exactly when the server does, so it under-reports the tail: coordinated
omission. That rules out locust, whose users are closed-loop by default (its constant-throughput
wait times only pace a user *after* its previous response), and wrk, which is closed-loop too
and isn't on PyPI (wrk2 fixes the omission but is a C build). asyncio + httpx is enough at these
rates and keeps the bench in Python.

    python -m bench.api_load [--quick] [--rate 100] [--seconds 20] [--web-workers 1] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from bench.stats import percentile

ENDPOINTS = ("run list", "run detail", "event list")
# Not part of the scenario: /healthz touches neither the database nor DRF, so driving it alone
# measures the floor of uvicorn + Django's ASGI handler + middleware.
BASELINE = "healthz"
TARGET_P95_MS = 100  # reported against, never asserted: absolute times depend on the machine


# --------------------------------------------------------------------------- query counts (in-process)


@contextmanager
def _bench_tenant() -> Iterator[tuple]:
    """The seeded "bench" organization and a fresh token for its owner, deleted afterwards."""
    from django.contrib.auth import get_user_model

    from accounts import services
    from accounts.models import Organization

    user = get_user_model().objects.get(username="bench")
    organization = Organization.objects.get(slug="bench")
    row, token = services.api_token_create(user=user, organization=organization, name="bench query counts")
    try:
        yield organization, token
    finally:
        row.delete()


def _probes(organization) -> dict[str, tuple[str, str]]:
    """Each endpoint, twice: two pages or two ids whose contents differ."""
    from agents.models import Run

    first, second = (str(pk) for pk in Run.objects.filter(organization=organization)
                     .order_by("-created_at").values_list("id", flat=True)[:2])
    return {
        "run list": ("/api/runs", "/api/runs?page=2"),
        "run list status=succeeded": ("/api/runs?status=succeeded", "/api/runs?status=succeeded&page=3"),
        "run list page_size=100": ("/api/runs?page_size=100", "/api/runs?page_size=100&page=2"),
        "run detail": (f"/api/runs/{first}", f"/api/runs/{second}"),
        "event list": (f"/api/runs/{first}/events", f"/api/runs/{second}/events"),
        "agent list": ("/api/agents", "/api/agents?ordering=name"),
    }


def _capture(client, path: str) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}: {response.content[:300]!r}")
    return [query["sql"] for query in captured.captured_queries]


def query_counts(verbose: bool = False) -> dict[str, int]:
    """Queries per request for each endpoint; raises if two pages/ids of one endpoint differ."""
    from django.test import Client

    counts: dict[str, int] = {}
    mismatched = {}
    with _bench_tenant() as (organization, token):
        client = Client(headers={"Authorization": f"Bearer {token}"})
        # The token's first use writes last_used_at (then at most once a minute): not a per-request cost.
        client.get("/api/runs")
        for name, (a, b) in _probes(organization).items():
            first, second = _capture(client, a), _capture(client, b)
            counts[name] = len(first)
            if len(first) != len(second):
                mismatched[name] = {a: first, b: second}
            if verbose:
                print(f"-- {name}: {len(first)} queries", *first, sep="\n   ", file=sys.stderr)
    if mismatched:
        raise AssertionError(f"query count depends on the page or id: {json.dumps(mismatched, indent=2)}")
    return counts


def explain(verbose: bool = True) -> dict[str, list[dict]]:
    """EXPLAIN (ANALYZE, BUFFERS) of every query the three driven endpoints issue, slowest first."""
    from django.db import connection
    from django.test import Client

    plans: dict[str, list[dict]] = {}
    with _bench_tenant() as (organization, token):
        client = Client(headers={"Authorization": f"Bearer {token}"})
        client.get("/api/runs")
        probes = _probes(organization)
        captured = {name: _capture(client, probes[name][1])
                    for name in ("run list", "run list status=succeeded", "run detail", "event list")}
    for name, statements in captured.items():
        rows = []
        for sql in statements:
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
                plan = cursor.fetchone()[0][0]
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                text = "\n".join(row[0] for row in cursor.fetchall())
            rows.append({"sql": sql, "execution_ms": plan["Execution Time"], "planning_ms": plan["Planning Time"],
                         "plan": text})
        rows.sort(key=lambda row: -row["execution_ms"])
        plans[name] = rows
        if verbose:
            for row in rows:
                print(f"-- {name} ({row['execution_ms']:.3f} ms)\n{row['sql']}\n{row['plan']}\n", file=sys.stderr)
    return plans


# --------------------------------------------------------------------------- open-loop driver (own process)


async def _targets(client: httpx.AsyncClient, page_size: int = 20) -> tuple[int, list[str]]:
    """The bench tenant's run ids and page count, fetched before the clock starts."""
    ids: list[str] = []
    page, total = 1, 0
    while True:
        response = await client.get("/api/runs", params={"page": page, "page_size": 100})
        response.raise_for_status()
        body = response.json()
        total = body["count"]
        ids.extend(run["id"] for run in body["results"])
        if not body.get("next"):
            break
        page += 1
    if not ids:
        raise RuntimeError("the bench organization has no runs; seed first (python -m bench.seed)")
    return max(1, -(-total // page_size)), ids


async def _drive(url: str, token: str, rate: float, seconds: float, warmup: float, connections: int,
                 seed: int, endpoints: tuple[str, ...] = ENDPOINTS) -> dict:
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout would close them under
    # us, which otherwise shows up as the odd ReadError on a reused connection.
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=3.0)
    # No pool timeout: a request waiting for a free connection is part of its latency, not an error.
    timeout = httpx.Timeout(30.0, pool=None)
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=timeout, http1=True, http2=False) as client:
        pages, ids = await _targets(client) if set(endpoints) & set(ENDPOINTS) else (0, [])
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        lag: list[float] = []
        last_end = 0.0

        async def one(endpoint: str, path: str, scheduled: float, record: bool) -> None:
            nonlocal last_end
            try:
                response = await client.get(path)
                await response.aread()
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            end = time.perf_counter()
            if not record:
                return
            last_end = max(last_end, end)
            if outcome == "200":
                latencies[endpoint].append((end - scheduled) * 1000)
            else:
                errors[endpoint][outcome] += 1

        total = int((warmup + seconds) * rate)
        warm = int(warmup * rate)
        tasks = []
        # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if i >= warm:
                lag.append((time.perf_counter() - scheduled) * 1000)
            endpoint = endpoints[i % len(endpoints)]
            if endpoint == BASELINE:
                path = "/healthz"
            elif endpoint == "run list":
                path = f"/api/runs?page={rng.randint(1, pages)}"
            elif endpoint == "run detail":
                path = f"/api/runs/{rng.choice(ids)}"
            else:
                path = f"/api/runs/{rng.choice(ids)}/events"
            tasks.append(asyncio.create_task(one(endpoint, path, scheduled, i >= warm)))
        measured_start = start + warm / rate
        await asyncio.gather(*tasks)

    sent = total - warm
    completed = sum(len(v) for v in latencies.values())
    result: dict = {
        "rate_target": rate,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "connections": connections,
        "tenant_runs": len(ids),
        "requests": sent,
        "ok": completed,
        "errors": {k: dict(v) for k, v in errors.items()},
        # Responses per second over the time it took to finish everything that was scheduled.
        "achieved_rate": round(completed / max(1e-9, last_end - measured_start), 1),
        "send_lag_ms": {"p50": round(percentile(lag, 50), 2), "p95": round(percentile(lag, 95), 2),
                        "max": round(max(lag), 2) if lag else None},
        "endpoints": {},
    }
    everything = [value for values in latencies.values() for value in values]
    for endpoint in (*endpoints, "all"):
        values = everything if endpoint == "all" else latencies[endpoint]
        result["endpoints"][endpoint] = {
            "n": len(values),
            "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1) if values else None,
        }
    return result


def drive(url: str, token: str, rate: float = 100, seconds: float = 20, *, warmup: float = 3,
          connections: int = 64, seed: int = 6, endpoints: tuple[str, ...] = ENDPOINTS) -> dict:
    """Run the open-loop driver in a child process (so it doesn't share a GIL with anything here).

    Requests go round-robin over `endpoints`: run list (a random page of the tenant's runs), run
    detail and event list (a random run of the tenant's)."""
    command = [sys.executable, "-m", "bench.api_load", "--drive", url, "--token", token, "--rate", str(rate),
               "--seconds", str(seconds), "--warmup", str(warmup), "--connections", str(connections),
               "--seed", str(seed), "--endpoints", ",".join(endpoints)]
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module, arguments we built
        command, capture_output=True, text=True, timeout=seconds + warmup + 300, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"driver failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout)


def _run_driver(args: argparse.Namespace) -> None:
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(_drive(args.drive, args.token, args.rate, args.seconds, args.warmup, args.connections,
                           args.seed, _endpoints(args.endpoints)))
    print(json.dumps(result))


# --------------------------------------------------------------------------- entry point


def _endpoints(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = set(names) - {*ENDPOINTS, BASELINE}
    if unknown or not names:
        raise SystemExit(f"unknown endpoints {sorted(unknown)}; choose from {[*ENDPOINTS, BASELINE]}")
    return names


def _server_cpu(stack, sample: Callable[[], dict]) -> tuple[dict, dict]:
    """CPU seconds used by the web processes (and Postgres) while `sample()` runs."""
    import psutil
    from django.conf import settings

    web = psutil.Process(stack.processes["web"].pid)

    def web_cpu() -> float:
        total = 0.0
        for process in [web, *web.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    database = settings.DATABASES["default"]["NAME"]

    def postgres_cpu() -> float:
        # Backends serving the bench database only (their title names it); other people's test
        # databases may share the server. A backend that exits mid-sample takes its CPU with it.
        total = 0.0
        for process in psutil.process_iter(["cmdline", "cpu_times"]):
            title = " ".join(process.info["cmdline"] or [])
            if title.startswith("postgres:") and f" {database} " in title and process.info["cpu_times"]:
                total += process.info["cpu_times"].user + process.info["cpu_times"].system
        return total

    web_before, pg_before, wall = web_cpu(), postgres_cpu(), time.monotonic()
    result = sample()
    wall = time.monotonic() - wall
    cpu = {"web_cpu_seconds": round(web_cpu() - web_before, 2), "postgres_cpu_seconds": round(
        postgres_cpu() - pg_before, 2), "wall_seconds": round(wall, 2)}
    return result, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seed 10 organizations × 1 000 runs")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (all endpoints together)")
    parser.add_argument("--seconds", type=float, help="measured seconds (default 20, 10 with --quick)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS),
                        help=f"comma-separated, round-robin; any of {', '.join([*ENDPOINTS, BASELINE])}")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each endpoint's queries")
    parser.add_argument("--verbose", action="store_true", help="print each endpoint's SQL")
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.seconds is None:
        args.seconds = 10.0 if args.quick else 20.0
    if args.drive:
        _run_driver(args)
        return

    from bench.stack import Stack, api_client, prepare_database, setup_django

    setup_django()
    prepare_database()
    from bench import seed

    report: dict = {"seed": seed.seed(quick=args.quick)}
    report["tables"] = seed.table_sizes()
    report["queries_per_request"] = query_counts(verbose=args.verbose)
    if args.explain:
        report["explain_ms"] = {name: [round(row["execution_ms"], 3) for row in rows]
                                for name, rows in explain().items()}
    with Stack(web_workers=args.web_workers) as stack:
        client, token, _ = api_client(stack.url)
        client.close()
        report["drive"], report["server_cpu"] = _server_cpu(
            stack, lambda: drive(stack.url, token, args.rate, args.seconds, warmup=args.warmup,
                                 connections=args.connections, seed=args.seed,
                                 endpoints=_endpoints(args.endpoints))
        )
        report["web_workers"] = args.web_workers
        # Everything the driver sent, warm-up and its up-front id fetch (~1 request per 100 runs) included.
        sent = report["drive"]["requests"] + int(args.warmup * args.rate) + report["drive"]["tenant_runs"] // 100 + 1
        report["server_cpu"]["web_cpu_ms_per_request"] = round(report["server_cpu"]["web_cpu_seconds"] * 1000 / sent, 2)
        report["server_cpu"]["postgres_cpu_ms_per_request"] = round(
            report["server_cpu"]["postgres_cpu_seconds"] * 1000 / sent, 2
        )
        report["load_average"] = [round(value, 2) for value in os.getloadavg()]
    drove = report["drive"]
    report["target"] = {
        "p95_ms": TARGET_P95_MS, "rate": args.rate,
        "met": not drove["errors"] and drove["achieved_rate"] >= 0.98 * args.rate
        and all(drove["endpoints"][name]["p95_ms"] <= TARGET_P95_MS for name in _endpoints(args.endpoints)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
