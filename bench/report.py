"""Turn the measurements into RESULTS.md: targets first (measured value, pass or miss), then
every scenario's figures."""

from __future__ import annotations

from typing import Any


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _get(data: dict, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "**miss**")


def targets(results: dict) -> list[dict]:
    s = results["scenarios"]
    rows: list[dict] = []
    floor = _get(s, "floor", "median")

    def add(name: str, measured: str, ok: bool | None) -> None:
        rows.append({"target": name, "measured": measured, "result": _verdict(ok)})

    for steps in (10, 100):
        step = _get(s, f"steps_{steps}", "per_step", "median")
        if step is not None and floor:
            add(f"Step overhead p50 ≤ 3× floor (N={steps})", f"{step / floor:.2f}× ({_ms(step)} vs {_ms(floor)})",
                step / floor <= 3)
        peer = _get(s, f"langgraph_{steps}_postgres_sync", "per_step", "median")
        if step is not None and peer:
            add(f"Step overhead ≤ 1.0× LangGraph + PostgresSaver sync (N={steps})",
                f"{step / peer:.2f}× ({_ms(step)} vs {_ms(peer)})", step / peer <= 1.0)
    c500 = s.get("concurrency_500")
    if c500:
        add("500 concurrent runs complete with no error", f"{c500['runs'] - c500['failed']}/{c500['runs']} succeeded",
            c500["failed"] == 0)
        add("500 concurrent: wall ≤ 1.3× ideal", f"{c500['wall_over_ideal']:.2f}× ({c500['wall_seconds']:.1f} s vs "
            f"{c500['ideal_seconds']:.0f} s)", c500["wall_over_ideal"] <= 1.3)
        add("500 concurrent: ≤ 40 Postgres connections", str(c500["peak_postgres_connections"]),
            c500["peak_postgres_connections"] <= 40)
        add("500 concurrent: < 2 GiB RSS (web + worker)", f"{c500['peak_rss_bytes'] / 2**20:.0f} MiB",
            c500["peak_rss_bytes"] < 2 * 2**30)
    for key, limit, label in (("ttfe_idle", 0.150, "idle"), ("ttfe_128", 0.300, "at C=128")):
        p95 = _get(s, key, "first_worker_event", "p95")
        if p95 is not None:
            add(f"Time to first event p95 ≤ {limit * 1000:.0f} ms {label}", _ms(p95), p95 <= limit)
    crash = s.get("crash_recovery")
    if crash:
        add("Crash recovery: 20 runs, worker killed 3×: all end, no duplicated step",
            f"{crash['outcomes']}, duplicates in {len(crash['runs_with_duplicates'])} runs",
            crash["all_ended"] and not crash["runs_with_duplicates"])
    load = s.get("api_load") or {}
    for endpoint, figures in (load.get("endpoints") or {}).items():
        if endpoint == "all" or figures.get("p95_ms") is None:
            continue
        p95 = figures["p95_ms"] / 1000
        add(f"{endpoint} p95 ≤ 100 ms at {load.get('rate_target', 100):g} req/s", _ms(p95), p95 <= 0.100)
    counts = s.get("query_counts")
    if counts:
        # api_load.query_counts raises when a count depends on the page or id, so reaching here means fixed.
        add("A fixed number of queries per request (same for different pages and ids)",
            ", ".join(f"{k}: {v}" for k, v in counts.items()), True)
    return rows


def _summary_row(name: str, summary: dict | None) -> str:
    if not summary:
        return f"| {name} | – | – | – |"
    return f"| {name} | {_ms(summary['median'])} | {_ms(summary['p95'])} | {summary['n']} |"


def analysis(results: dict) -> list[str]:
    """Why a missed target is missed, from this run's own figures."""
    s = results["scenarios"]
    notes: list[str] = []
    floor = _get(s, "floor", "median")
    step = _get(s, "steps_100")
    if floor and step and step["per_step"]["median"] > 3 * floor:
        split = step["split_per_step"]
        persist = _get(split, "persist", "median", default=0)
        notes.append(
            f"Step overhead vs floor ({step['per_step']['median'] / floor:.1f}×): a tool step makes two durable "
            f"commits, not one — the tool_start is committed before the tool runs and the tool_end before the "
            f"next model call, which is what lets a crashed run resume without repeating a side effect (scenario 7). "
            f"Persisting costs {persist * 1000:.2f} ms per step, {persist / 2 * 1000:.2f} ms per commit against "
            f"{floor * 1000:.2f} ms for the floor's INSERT+COMMIT+PUBLISH; the rest is the tool call itself "
            f"({_get(split, 'tool', 'median', default=0) * 1000:.2f} ms, run on a thread so its timeout can be "
            f"enforced) and the loop. Publishing is off the hot path "
            f"({_get(split, 'publish', 'median', default=0) * 1000:.2f} ms). Already done to get here (measured "
            f"before/after in the commit log): one statement per write with usage and the cancel flag folded in "
            f"(4 commits and 2 reads per step before), prepared statements, a non-blocking publisher. Meeting 3× would "
            f"take dropping a commit per step, i.e. giving up crash-safe tool calls; we keep them."
        )
    c500 = s.get("concurrency_500")
    if c500 and c500["wall_over_ideal"] > 1.3:
        notes.append(
            f"C=500 wall {c500['wall_seconds']:.1f} s vs ideal {c500['ideal_seconds']:.0f} s: "
            f"{c500['post_seconds']:.1f} s of it is spent accepting the 500 POSTs (the last run starts that late), "
            f"because the two cores are shared by two uvicorn processes, two worker processes, Postgres, Redis and "
            f"the load generator: {c500['post_seconds'] / c500['runs'] * 1000:.1f} ms of wall time per POST, each "
            f"doing authentication, a rate-limit check in Redis, a quota lookup, the run, its first event and an "
            f"audit entry in one transaction, and the enqueue. "
            f"Once started, runs take {c500['wall_seconds'] - c500['post_seconds']:.1f} s for 10 s of model time "
            f"(per-step overhead p95 {c500['per_step_overhead']['p95'] * 1000:.1f} ms). A batch start endpoint or "
            f"more cores would close the gap; on this 2-core machine we report the miss."
        )
    return notes


def render(results: dict) -> tuple[str, list[dict]]:
    s = results["scenarios"]
    m = results["machine"]
    verdicts = targets(results)
    out: list[str] = []
    w = out.append
    w("# Agentry benchmark results\n")
    w(f"Mode: **{results['mode']}** · started {results['started']} · finished {results['finished']}\n")
    w("Written by `make bench` (or `make bench-quick`); every figure below was measured in this one run. "
      "Ratios compare figures from the same run; absolute times depend on the machine and are never asserted.\n")
    w("## Machine\n")
    w(f"- {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, Python {m['python']}")
    w(f"- {m['postgres']} (fsync={m['fsync']}, synchronous_commit={m['synchronous_commit']}), Redis {m['redis']}")
    w("- " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + "\n")
    w("## Targets\n")
    w("| Target | Measured | Result |\n|---|---|---|")
    for row in verdicts:
        w(f"| {row['target']} | {row['measured']} | {row['result']} |")
    w("")
    w("## 1. Floor: one event row INSERT + COMMIT and one Redis PUBLISH (raw psycopg, redis-py)\n")
    w("| | median | p95 | samples |\n|---|---|---|---|")
    w(_summary_row("per step", s.get("floor")))
    w("")
    w("## 2. Agentry step overhead (zero-latency scripted model, calculator tool, the real loop in-process)\n")
    w("Per tool step: thought + tool_start in one write, tool_end in another, each published after commit. "
      "The split wraps the model call, the tool call, persistence and publishing; *other* is the loop itself "
      "(conversation building, checks, connection hand-back). The queue hop is measured in scenario 4.\n")
    w("| N | per step median | p95 | model | tool | persist | publish | other |\n|---|---|---|---|---|---|---|---|")
    for steps in (10, 100):
        d = s.get(f"steps_{steps}")
        if d:
            split = d["split_per_step"]
            w(f"| {steps} | {_ms(d['per_step']['median'])} | {_ms(d['per_step']['p95'])} | "
              + " | ".join(_ms(_get(split, k, "median", default=0)) for k in ("model", "tool", "persist", "publish",
                                                                              "other")) + " |")
    w("")
    w("## 3. LangGraph ReAct agent, same scripted model and calculator, same Postgres\n")
    w("| N | checkpointer | per step median | p95 | Agentry / LangGraph (median) |\n|---|---|---|---|---|")
    for steps in (10, 100):
        ours = _get(s, f"steps_{steps}", "per_step", "median")
        for variant in ("postgres_sync", "none"):
            d = s.get(f"langgraph_{steps}_{variant}")
            if d:
                theirs = d["per_step"]["median"]
                ratio = f"{ours / theirs:.2f}×" if ours else "–"
                label = "PostgresSaver, durability=sync" if variant == "postgres_sync" else "none"
                w(f"| {steps} | {label} | {_ms(theirs)} | {_ms(d['per_step']['p95'])} | {ratio} |")
    w("")
    w("## 4. Concurrency: C runs started through the API at once, 5 model calls each at 2 s latency\n")
    w("| C | failed | wall | ideal | wall/ideal | steps/s | peak PG conns | peak RSS | queue hop p95 | "
      "per-step overhead p50 / p95 |\n|---|---|---|---|---|---|---|---|---|---|")
    for level in (1, 32, 128, 500):
        d = s.get(f"concurrency_{level}")
        if d:
            w(f"| {level} | {d['failed']} | {d['wall_seconds']:.2f} s | {d['ideal_seconds']:.0f} s | "
              f"{d['wall_over_ideal']:.2f}× | {d['steps_per_second']:.1f} | {d['peak_postgres_connections']} | "
              f"{d['peak_rss_bytes'] / 2**20:.0f} MiB | {_ms(d['queue_hop']['p95'])} | "
              f"{_ms(d['per_step_overhead']['median'])} / {_ms(d['per_step_overhead']['p95'])} |")
    w("")
    w("## 5. Time to first event (POST a run, open its websocket)\n")
    w("*first frame*: the stored `queued` event replayed on connect; *first worker event*: the `running` status "
      "published by the worker, which includes the queue hop.\n")
    w("| load | first frame p50 | p95 | first worker event p50 | p95 |\n|---|---|---|---|---|")
    for key, label in (("ttfe_idle", "idle"), ("ttfe_128", "C=128")):
        d = s.get(key)
        if d:
            w(f"| {label} | {_ms(d['first_frame']['median'])} | {_ms(d['first_frame']['p95'])} | "
              f"{_ms(d['first_worker_event']['median'])} | {_ms(d['first_worker_event']['p95'])} |")
    w("")
    w("## 6. API under data\n")
    seed = s.get("seed") or {}
    if seed:
        w("Seeded: " + ", ".join(f"{k} {v}" for k, v in seed.items() if not isinstance(v, dict)) + "\n")
    load = s.get("api_load") or {}
    if load:
        w(f"Open-loop load from a separate process (latency measured from each request's scheduled send time) at "
          f"{load.get('rate_target', '?')} req/s for {load.get('seconds', '?')} s over the bench tenant's "
          f"{load.get('tenant_runs', '?')} runs: achieved {load.get('achieved_rate', 0):.1f} req/s, "
          f"{load.get('ok', '?')} ok, errors {load.get('errors') or 'none'}.\n")
        w("| endpoint | p50 | p95 | p99 | max | requests |\n|---|---|---|---|---|---|")
        for endpoint, d in (load.get("endpoints") or {}).items():
            w(f"| {endpoint} | {d['p50_ms']} ms | {d['p95_ms']} ms | {d['p99_ms']} ms | {d['max_ms']} ms | {d['n']} |")
        w("")
    if s.get("query_counts"):
        w("Queries per request: `" + str(s["query_counts"]) + "`\n")
    crash = s.get("crash_recovery")
    if crash:
        w("## 7. Crash recovery (issue: durable runs)\n")
        w(f"{crash['runs']} runs of 12 model calls at 0.5 s on two worker processes with celery-beat running the "
          f"watchdog; lease {crash['lease_seconds']:g} s. A worker was killed with SIGKILL three times and replaced.\n")
        w("| kill | worker pid | runs it held |\n|---|---|---|")
        for n, kill in enumerate(crash["kills"], start=1):
            w(f"| {n} | {kill['pid']} | {kill['runs_held']} |")
        k = crash["kill_to_resume"]
        w(f"\nOutcomes: {crash['outcomes']}; runs with a duplicated step or event: "
          f"{len(crash['runs_with_duplicates'])}; most claims of one run: {crash['max_attempts']}.\n")
        w(f"Time from kill to the run resuming on another worker: median {k['median']:.2f} s, p95 {k['p95']:.2f} s, "
          f"max {k['max']:.2f} s over {k['n']} runs (bounded by the lease plus one watchdog tick).\n")
    notes = (results.get("notes") or []) + analysis(results)
    if notes:
        w("## Where a target is missed\n")
        for note in notes:
            w(f"- {note}")
    return "\n".join(out) + "\n", verdicts
