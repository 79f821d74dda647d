"""Scenarios 1 and 2: the physical floor of one step, and Agentry's per-step overhead.

Floor: one raw psycopg `INSERT … COMMIT` of an event row plus one Redis `PUBLISH` of its JSON.
Step overhead: a run with N tool steps and a zero-latency scripted model, executed by the real
loop in this process (the worker's code path without the queue hop), timed per component by
wrapping the model call, the tool call, event persistence and publishing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager

import psycopg
import redis

from bench.stats import summary


def _agent(name: str, model: str, max_steps: int):
    from accounts import services as account_services
    from accounts.models import Organization
    from agents import services
    from agents.models import Agent

    organization = Organization.objects.filter(slug="bench-engine").first() or account_services.organization_create(
        name="Bench engine", slug="bench-engine"
    )
    agent = Agent.objects.filter(organization=organization, name=name).first()
    if agent is None:
        agent = services.agent_create(
            organization=organization, actor=None, name=name, system_prompt="Benchmark agent.", model=model,
            tools=["calculator"], max_steps=max_steps, timeout_seconds=3600,
        )
    return agent


def conninfo() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return psycopg.conninfo.make_conninfo(
        host=db["HOST"] or None, port=db["PORT"] or None, dbname=db["NAME"], user=db["USER"] or None,
        password=db["PASSWORD"] or None,
    )


def floor(iterations: int) -> dict:
    """INSERT one event row + COMMIT, then PUBLISH its JSON: one step's unavoidable I/O."""
    from django.conf import settings

    from agents import services

    agent = _agent("floor", "bench-zero", 1)
    with _quiet_enqueue():
        run = services.run_start(agent=agent, goal="floor", actor=None)
    client = redis.Redis.from_url(settings.REDIS_URL)
    samples: list[float] = []
    data = {"content": "", "step": 1, "duration_ms": 0, "usage": {"input_tokens": 10, "output_tokens": 5}}
    with psycopg.connect(conninfo()) as conn:
        for seq in range(1000, 1000 + iterations):
            started = time.perf_counter()
            payload = json.dumps(data)
            conn.execute(
                "INSERT INTO agents_runevent (run_id, seq, type, data, created_at) VALUES (%s, %s, %s, %s, now())",
                [run.id, seq, "thought", payload],
            )
            conn.commit()
            client.publish(f"bench.floor.{run.id}", json.dumps({"seq": seq, "type": "thought", "data": data}))
            samples.append(time.perf_counter() - started)
    client.close()
    return summary(samples[len(samples) // 10:])  # first 10% are warm-up


@contextmanager
def _quiet_enqueue():
    """Runs started for in-process measurement must not also be queued for a worker."""
    from agents import tasks

    original = tasks.execute_run.delay
    tasks.execute_run.delay = lambda *args, **kwargs: None
    try:
        yield
    finally:
        tasks.execute_run.delay = original


@contextmanager
def _timed(totals: dict[str, float]):
    """Wrap the loop's collaborators to split wall time by component (bench-only instrumentation)."""
    from agents import events, loop
    from agents.llm import registry
    from integrations import tools

    originals = {
        "provider": registry.get_provider,
        "invoke": tools.invoke,
        "record": events.record_many,
        "publish": events.publisher.publish,
    }

    def add(name, started):
        totals[name] += time.perf_counter() - started

    def get_provider(model_id):
        provider = originals["provider"](model_id)

        class Timed:
            def complete(self, **kwargs):
                started = time.perf_counter()
                try:
                    return provider.complete(**kwargs)
                finally:
                    add("model", started)

        return Timed()

    def invoke(*args, **kwargs):
        started = time.perf_counter()
        try:
            return originals["invoke"](*args, **kwargs)
        finally:
            add("tool", started)

    def record(*args, **kwargs):
        started = time.perf_counter()
        try:
            return originals["record"](*args, **kwargs)
        finally:
            add("persist", started)

    def publish(*args, **kwargs):
        started = time.perf_counter()
        try:
            return originals["publish"](*args, **kwargs)
        finally:
            add("publish", started)

    loop.get_provider = get_provider
    tools.invoke = invoke
    events.record_many = record
    events.publisher.publish = publish
    try:
        yield
    finally:
        loop.get_provider = originals["provider"]
        tools.invoke = originals["invoke"]
        events.record_many = originals["record"]
        events.publisher.publish = originals["publish"]


def step_overhead(steps: int, repetitions: int) -> dict:
    from agents import loop, services
    from agents.models import Run, RunEvent

    agent = _agent(f"steps-{steps}", "bench-zero", steps + 1)
    per_step: list[float] = []
    split: dict[str, list[float]] = defaultdict(list)
    for repetition in range(repetitions + 1):
        totals: dict[str, float] = defaultdict(float)
        with _quiet_enqueue():
            run = services.run_start(agent=agent, goal=f"steps={steps} {uuid.uuid4()}", actor=None)
        with _timed(totals):
            started = time.perf_counter()
            loop.execute_run(run.id)
            elapsed = time.perf_counter() - started
        run.refresh_from_db()
        if run.status != Run.Status.SUCCEEDED or RunEvent.objects.filter(run=run, type="tool_end").count() != steps:
            raise RuntimeError(f"benchmark run did not do {steps} steps: {run.status} {run.error}")
        if repetition == 0:
            continue  # warm-up
        per_step.append(elapsed / steps)
        # publish runs inside persist's on_commit, so persist's own share excludes it
        totals["persist"] -= totals["publish"]
        totals["other"] = elapsed - sum(totals[k] for k in ("model", "tool", "persist", "publish"))
        for key, value in totals.items():
            split[key].append(value / steps)
    return {"per_step": summary(per_step), "split_per_step": {k: summary(v) for k, v in split.items()}}
