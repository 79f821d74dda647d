"""Seed the bench database with a realistic multi-tenant history for scenario 6 ("API under data").

Defaults: 100 organizations × 1 000 runs × 10 events = 100 000 runs and 1 000 000 events, spread
over 90 days. The organization with slug "bench" (owner: user "bench", the tenant
`bench.stack.api_client` hands out tokens for) is one of them, so the API load runs against one
tenant's ~1 000 runs inside a 100 000-run table.

Organizations, users and agents are few and go through the ORM and services; runs and events go
in with COPY, because ORM saves of a million rows would take longer than the benchmark itself.

Idempotent and additive: seeded runs are recognised by their seed agents, and each organization
is topped up to its share, so `--quick` followed by a full seed keeps the quick rows and adds the rest.
Other benchmarks' organizations and runs are left alone.

    python -m bench.seed [--quick] [--organizations N] [--runs N] [--events-per-run N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

SEED_MARK = "Seeded by bench/seed.py for the API-under-data benchmark."
HISTORY = timedelta(days=90)
AGENTS_PER_ORGANIZATION = 3

QUICK = {"organizations": 10, "runs": 10_000, "events_per_run": 10}

_AGENT_TEMPLATES = [
    ("Support triage", "claude-haiku-4-5", ["web_fetch", "current_time"],
     "You triage incoming support tickets. Classify the ticket, look up the relevant documentation page, "
     "and draft a short, friendly reply. Never promise refunds; escalate billing disputes to a human."),
    ("Research assistant", "claude-sonnet-5-5", ["web_fetch", "calculator"],
     "You research questions on the public web. Cite every source you use with its URL, prefer primary "
     "sources, and say plainly when the evidence is thin or contradictory."),
    ("Data analyst", "claude-sonnet-5-5", ["calculator", "current_time"],
     "You answer quantitative questions about the figures provided in the context. Show your arithmetic, "
     "round money to cents and percentages to one decimal place."),
]

_GOALS = [
    "Summarise ticket #{n} and propose a reply to the customer.",
    "What changed in release 4.{n} of the billing service? List breaking changes first.",
    "Compute the month-over-month growth for region {n} from the attached figures.",
    "Find the three most cited papers on retrieval-augmented generation published after {n}.",
    "Check whether order {n} qualifies for expedited shipping under the current policy.",
    "Draft an incident summary for outage #{n} suitable for the status page.",
]

_ANSWERS = [
    "The customer is asking about a duplicate charge on invoice {n}. The documentation confirms duplicate "
    "authorisations are released within 5 business days. Suggested reply: apologise, explain the hold, "
    "and offer to follow up if it is still visible after the window.",
    "Growth was 4.{n}% month over month, driven mostly by the enterprise segment (+7.2%), while self-serve "
    "was flat. Figures are rounded to one decimal place.",
    "Three changes matter: the v1 webhooks endpoint is removed, invoice ids are now prefixed, and retries "
    "use exponential backoff capped at {n} seconds.",
]

_ARGUMENTS = {
    "web_fetch": {"url": "https://docs.example.com/billing/refunds"},
    "calculator": {"expression": "(1284.5 - 1190.25) / 1190.25 * 100"},
    "current_time": {"timezone": "Europe/Berlin"},
}
_OUTPUTS = {
    "web_fetch": "Refunds are processed within 5 business days of approval. Duplicate authorisations are "
                 "released automatically by the card issuer.",
    "calculator": "7.918504515",
    "current_time": "2026-11-21T09:14:03+01:00 (Saturday)",
}

_STATUSES = [  # (status, stop_reason, weight): mostly successes, like a healthy production tenant
    ("succeeded", "final_answer", 88),
    ("failed", "model_error", 4),
    ("failed", "max_steps", 3),
    ("cancelled", "cancelled", 3),
    ("timed_out", "timeout", 2),
]


def organization_slugs(count: int) -> list[str]:
    """The bench tenant first, then seed-001 … seed-(count-1)."""
    return ["bench"] + [f"seed-{index:03d}" for index in range(1, count)]


def _copier(model, sample: dict):
    """A COPY statement for `model`'s table and a function turning a row dict (keyed by field name
    or attname, like `sample`) into the tuple COPY wants.

    Every stored column is written: those missing from the dict get the field's own default, so
    columns added later (Django drops their database default after migrating) get what the ORM
    would have written without this file knowing about them. An auto-increment key is left to
    its sequence."""
    columns, getters = [], []
    for field in model._meta.concrete_fields:
        key = field.name if field.name in sample else field.attname if field.attname in sample else None
        if key is None and field.primary_key and not field.has_default():
            continue
        columns.append(field.column)
        if key is not None:
            getters.append(lambda values, key=key: values[key])
        elif callable(field.default):  # uuid4 and the like: a fresh value per row
            getters.append(lambda values, field=field: _adapt(field.get_default()))
        else:
            getters.append(lambda values, constant=_adapt(field.get_default()): constant)

    def row(values: dict) -> tuple:
        return tuple(getter(values) for getter in getters)

    return f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN", row


def _adapt(value):
    return json.dumps(value) if isinstance(value, dict | list) else value


def _organization(slug: str):
    from django.contrib.auth import get_user_model

    from accounts import services
    from accounts.models import Organization

    # Same semantics as bench.stack.api_client: user "bench" owns org "bench".
    username = "bench" if slug == "bench" else f"{slug}-owner"
    user, _ = get_user_model().objects.get_or_create(username=username)
    organization = Organization.objects.filter(slug=slug).first() or services.organization_create(
        name=slug.replace("-", " ").title(), slug=slug, owner=user
    )
    return organization, user


def _seed_agents(organization, user) -> list:
    from agents.models import Agent

    agents = list(Agent.objects.filter(organization=organization, description=SEED_MARK).order_by("name"))
    if len(agents) >= AGENTS_PER_ORGANIZATION:
        return agents
    have = {agent.name for agent in agents}
    Agent.objects.bulk_create(
        Agent(organization=organization, name=name, description=SEED_MARK, system_prompt=prompt, model=model,
              tools=tools, max_steps=10, timeout_seconds=300, created_by=user)
        for name, model, tools, prompt in _AGENT_TEMPLATES[:AGENTS_PER_ORGANIZATION]
        if name not in have
    )
    return list(Agent.objects.filter(organization=organization, description=SEED_MARK).order_by("name"))


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _events(rng: random.Random, status: str, stop_reason: str, answer: str, error: str, tools: list[str],
            started: datetime, finished: datetime, count: int) -> list[tuple[str, str, datetime]]:
    """One run's trace in the loop's own shapes (agents/loop.py): two tool rounds, then the end."""
    tool_a, tool_b = tools[0], tools[-1]
    usage = {"input_tokens": rng.randint(400, 2400), "output_tokens": rng.randint(40, 400), "cost_usd": "0.004200"}
    call_a, call_b = f"toolu_{rng.getrandbits(48):012x}", f"toolu_{rng.getrandbits(48):012x}"
    trace = [
        ("status", {"status": "running"}),
        ("thought", {"content": "I should look this up first.", "step": 1, "duration_ms": rng.randint(300, 3000),
                     "usage": usage}),
        ("tool_start", {"tool": tool_a, "call_id": call_a, "arguments": _ARGUMENTS[tool_a], "step": 1}),
        ("tool_end", {"tool": tool_a, "call_id": call_a, "output": _OUTPUTS[tool_a], "is_error": False,
                      "duration_ms": rng.randint(20, 900), "step": 1}),
        ("thought", {"content": "One more check before answering.", "step": 2,
                     "duration_ms": rng.randint(300, 3000), "usage": usage}),
        ("tool_start", {"tool": tool_b, "call_id": call_b, "arguments": _ARGUMENTS[tool_b], "step": 2}),
        ("tool_end", {"tool": tool_b, "call_id": call_b, "output": _OUTPUTS[tool_b], "is_error": status == "failed",
                      "duration_ms": rng.randint(1, 50), "step": 2}),
        ("thought", {"content": "I have what I need.", "step": 3, "duration_ms": rng.randint(300, 3000),
                     "usage": usage}),
    ]
    if status == "succeeded":
        trace.append(("final_answer", {"content": answer, "step": 3}))
    else:
        trace.append(("error", {"message": error, "source": "model" if stop_reason == "model_error" else "loop"}))
    final = {"status": status, "stop_reason": stop_reason}
    if error:
        final["error"] = error
    trace.append(("status", final))
    # Other lengths keep the shape: pad with thoughts before the end, or cut before the final status.
    while len(trace) < count:
        trace.insert(-2, ("thought", {"content": "Checking again.", "step": 3, "duration_ms": 500, "usage": usage}))
    if len(trace) > count:
        trace = trace[: max(0, count - 1)] + trace[-1:] if count else []
    span = (finished - started) / max(1, len(trace))
    return [(kind, json.dumps(data), started + span * index) for index, (kind, data) in enumerate(trace)]


def _copy_organization(pg, organization, user, agents: list, runs: int, events_per_run: int,
                       rng: random.Random, now: datetime) -> None:
    """COPY one organization's runs and their events; `pg` is the psycopg connection."""
    from agents.models import Run, RunEvent

    configs = [(agent, json.dumps(agent.snapshot(), default=str)) for agent in agents]
    statuses = [s[:2] for s in _STATUSES]
    weights = [s[2] for s in _STATUSES]
    run_rows, event_rows = [], []
    for _ in range(runs):
        agent, config = rng.choice(configs)
        status, stop_reason = rng.choices(statuses, weights)[0]
        n = rng.randint(100, 99_999)
        created = now - HISTORY * rng.random()
        started = created + timedelta(milliseconds=rng.randint(20, 1500))
        finished = started + timedelta(seconds=rng.lognormvariate(2.3, 0.7))
        answer = rng.choice(_ANSWERS).format(n=n) if status == "succeeded" else ""
        error = {
            "model_error": "Model error: overloaded_error (529) after 4 retries.",
            "max_steps": "Stopped after 10 steps without a final answer.",
            "cancelled": "Cancelled by request.",
            "timeout": "Run exceeded its 300 s deadline.",
        }.get(stop_reason, "")
        input_tokens, output_tokens = rng.randint(1_500, 9_000), rng.randint(150, 1_500)
        cost = (Decimal(input_tokens) * Decimal("0.000003") + Decimal(output_tokens) * Decimal("0.000015"))
        context = json.dumps({"ticket": n, "priority": rng.choice(["low", "normal", "high"])}) if rng.random() < 0.3 \
            else None
        run_id = _uuid(rng)
        trace = _events(rng, status, stop_reason, answer, error, agent.tools, started, finished, events_per_run)
        run_rows.append({
            "id": run_id, "organization_id": organization.id, "agent_id": agent.id, "parent_id": None,
            "config": config, "goal": rng.choice(_GOALS).format(n=n), "context": context, "status": status,
            "stop_reason": stop_reason, "answer": answer, "error": error,
            "steps": 3 if status == "succeeded" else 2, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "cost_usd": cost.quantize(Decimal("0.000001")), "last_seq": len(trace),
            "cancel_requested_at": started if status == "cancelled" else None, "created_by_id": user.id,
            "created_at": created, "started_at": started, "finished_at": finished,
            # Fields the model may or may not have (yet); _copier ignores keys that aren't fields.
            "attempts": 1, "deadline_at": started + timedelta(seconds=300),
        })
        event_rows.extend({"run_id": run_id, "seq": seq, "type": kind, "data": data, "created_at": at}
                          for seq, (kind, data, at) in enumerate(trace, start=1))
    if not run_rows:
        return
    with pg.cursor() as cursor:
        for model, rows in ((Run, run_rows), (RunEvent, event_rows)):
            statement, as_tuple = _copier(model, rows[0])
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(as_tuple(row))


def _seeded_counts() -> dict:
    from django.db.models import Count

    from agents.models import Run

    rows = (
        Run.objects.filter(agent__description=SEED_MARK)
        .values("organization__slug")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["organization__slug"]: row["n"] for row in rows}


def seed(organizations: int = 100, runs: int = 100_000, events_per_run: int = 10, quick: bool = False) -> dict:
    """Top the bench database up to the requested volume; returns counts and timings (seconds)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import Organization

    if quick:
        organizations, runs, events_per_run = QUICK["organizations"], QUICK["runs"], QUICK["events_per_run"]
    slugs = organization_slugs(organizations)
    share = [runs // organizations + (1 if index < runs % organizations else 0) for index in range(organizations)]
    started = time.perf_counter()
    existing = _seeded_counts()
    report = {
        "organizations": organizations, "runs": runs, "events_per_run": events_per_run,
        "seeded_runs_before": sum(existing.get(slug, 0) for slug in slugs),
    }
    if Organization.objects.filter(slug=slugs[-1]).exists() and all(
        existing.get(slug, 0) >= want for slug, want in zip(slugs, share, strict=True)
    ):
        report.update(skipped=True, check_seconds=round(time.perf_counter() - started, 2))
        return report

    now = timezone.now()
    inserted = 0
    copy_started = time.perf_counter()
    for index, (slug, want) in enumerate(zip(slugs, share, strict=True)):
        missing = want - existing.get(slug, 0)
        organization, user = _organization(slug)
        agents = _seed_agents(organization, user)
        if missing <= 0:
            continue
        # Seeded per (organization, rows already there) so a top-up never regenerates existing ids.
        rng = random.Random(f"{slug}:{existing.get(slug, 0)}")
        with transaction.atomic():
            # The psycopg connection under Django's wrapper (inside its transaction): COPY isn't
            # something the ORM offers.
            _copy_organization(connection.connection, organization, user, agents, missing, events_per_run, rng, now)
        inserted += missing
        if (index + 1) % 10 == 0:
            elapsed = time.perf_counter() - copy_started
            print(f"  seeded {index + 1}/{organizations} organizations, {inserted} runs in {elapsed:.1f} s",
                  file=sys.stderr, flush=True)
    report["copy_seconds"] = round(time.perf_counter() - copy_started, 2)

    analyze_started = time.perf_counter()
    with connection.cursor() as cursor:
        # VACUUM as well as ANALYZE: it sets hint bits and the visibility map, which autovacuum
        # would have done long ago on a real 90-day history; the first benchmark requests
        # shouldn't pay for it.
        cursor.execute("VACUUM (ANALYZE) agents_run, agents_runevent, agents_agent, accounts_organization")
    report["analyze_seconds"] = round(time.perf_counter() - analyze_started, 2)
    report.update(skipped=False, runs_inserted=inserted, events_inserted=inserted * events_per_run,
                  total_seconds=round(time.perf_counter() - started, 2))
    return report


def table_sizes() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples::bigint, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relname IN ('agents_run', 'agents_runevent') ORDER BY relname"
        )
        return {name: {"rows_estimate": rows, "total_size": size} for name, rows, size in cursor.fetchall()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 organizations × 1 000 runs × 10 events")
    parser.add_argument("--organizations", type=int, default=100)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--events-per-run", type=int, default=10)
    args = parser.parse_args(argv)

    from bench.stack import prepare_database, setup_django

    setup_django()
    prepare_database()
    report = seed(organizations=args.organizations, runs=args.runs, events_per_run=args.events_per_run,
                  quick=args.quick)
    report["tables"] = table_sizes()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
