"""Peer scenario: the same scripted agent run on LangGraph's prebuilt ReAct agent.

The fake chat model follows bench.models.ScriptedToolModel's script (N calculator calls, one per
model call, then "Done after N steps."), the tool is Agentry's own calculator function, and the
checkpointer is PostgresSaver on the bench database of the same embedded Postgres the app uses.
Per step = wall time of one whole `invoke` / N, the same definition the Agentry scenarios use.

LangGraph is a bench-only dependency (bench/requirements-bench.txt); nothing in the app imports it.

    .venv/bin/python -m bench.peer_langgraph --steps 10 100 --repetitions 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from bench.stats import summary

CHECKPOINTERS = ("postgres_sync", "none")
PACKAGES = (
    "langgraph",
    "langgraph-prebuilt",
    "langgraph-checkpoint",
    "langgraph-checkpoint-postgres",
    "langchain-core",
    "psycopg",
)
CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def _ensure_django() -> None:
    from django.apps import apps

    if not apps.ready:
        from bench.stack import setup_django

        setup_django()
    from bench.stack import prepare_database

    prepare_database()


def _scripted_model() -> Any:
    # Defined lazily: langchain_core must not be imported until the caller asks for the peer,
    # and bench.models needs Django configured.
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from bench.models import steps_in

    class ScriptedChatModel(BaseChatModel):
        """bench.models.ScriptedToolModel's script as a LangChain chat model, zero latency."""

        @property
        def _llm_type(self) -> str:
            return "agentry-bench-scripted"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
            goal = next(m for m in messages if isinstance(m, HumanMessage))
            done = sum(1 for m in messages if isinstance(m, ToolMessage))
            usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
            if done < steps_in(goal.text):
                call = {"name": "calculator", "args": {"expression": f"{done} + 1"}, "id": f"call_{done}",
                        "type": "tool_call"}
                message = AIMessage(content="", tool_calls=[call], usage_metadata=usage)
            else:
                message = AIMessage(content=f"Done after {done} steps.", usage_metadata=usage)
            return ChatResult(generations=[ChatGeneration(message=message)])

        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
            # What real providers do: convert the tools to their wire format and bind them, so
            # the graph pays the same per-call cost as it would with a real chat model.
            return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    return ScriptedChatModel()


def _calculator_tool() -> Any:
    from langchain_core.tools import StructuredTool

    from integrations.tools import get

    calculator = get("calculator")
    # The model sees the same name, description and JSON Schema as Agentry's model does.
    # LangChain does not validate arguments against a dict schema, so this side skips the
    # jsonschema check Agentry's tools.invoke() does (tens of microseconds per call).
    return StructuredTool.from_function(
        func=calculator.func,
        name=calculator.name,
        description=calculator.description,
        args_schema=calculator.input_schema,
    )


def _conninfo() -> str:
    from django.conf import settings
    from psycopg.conninfo import make_conninfo

    db = settings.DATABASES["default"]
    params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
              "port": db["PORT"]}
    return make_conninfo(**{k: v for k, v in params.items() if v})


def _graph(checkpointer: Any) -> Any:
    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():
        # Deprecated in favour of langchain.agents.create_agent, which needs the `langchain`
        # package; create_react_agent is the graph langgraph itself still ships.
        warnings.simplefilter("ignore")
        return create_react_agent(_scripted_model(), [_calculator_tool()], checkpointer=checkpointer)


def _run_once(graph: Any, steps: int, durable: bool) -> tuple[float, str]:
    from langchain_core.messages import ToolMessage

    thread_id = f"bench-{uuid.uuid4()}"
    config = {"configurable": {"thread_id": thread_id}}
    inputs = {"messages": [("user", f"Count up one at a time. steps={steps}")]}
    kwargs = {"durability": "sync"} if durable else {}
    started = time.perf_counter()
    result = graph.invoke(inputs, config, **kwargs)
    elapsed = time.perf_counter() - started
    messages = result["messages"]
    observations = [m for m in messages if isinstance(m, ToolMessage)]
    expected = [str(i + 1) for i in range(steps)]
    if [m.content for m in observations] != expected or any(m.status == "error" for m in observations):
        raise RuntimeError(f"expected {steps} good calculator results, got {[m.content for m in observations]}")
    if messages[-1].text != f"Done after {steps} steps.":
        raise RuntimeError(f"unexpected final answer {messages[-1].text!r}")
    return elapsed, thread_id


def _checkpoint_rows(conn: Any, thread_id: str) -> dict[str, int]:
    rows: dict[str, int] = {}
    for table in CHECKPOINT_TABLES:
        row = conn.execute(f"SELECT count(*) AS n FROM {table} WHERE thread_id = %s", (thread_id,)).fetchone()  # noqa: S608
        rows[table] = row["n"]
    row = conn.execute("SELECT coalesce(sum(octet_length(blob)), 0) AS n FROM checkpoint_blobs WHERE thread_id = %s",
                       (thread_id,)).fetchone()
    rows["blob_bytes"] = int(row["n"])
    return rows


def versions() -> dict[str, str]:
    found = {name: version(name) for name in PACKAGES}
    found["python"] = platform.python_version()
    found["langsmith_tracing"] = os.environ.get("LANGSMITH_TRACING") or os.environ.get("LANGCHAIN_TRACING_V2") or "off"
    return found


def measure(steps: int, repetitions: int, checkpointer: str) -> dict[str, Any]:
    """Wall time of `repetitions` full runs of `steps` tool steps each, after one warm-up run."""
    if checkpointer not in CHECKPOINTERS:
        raise ValueError(f"checkpointer must be one of {CHECKPOINTERS}, got {checkpointer!r}")
    _ensure_django()
    durable = checkpointer == "postgres_sync"
    found = versions()
    if not durable:
        return _measure(_graph(None), steps, repetitions, durable=False, conn=None, found=found)

    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import dict_row

    # As PostgresSaver.from_conn_string connects: one autocommit connection, dict rows and no
    # server-side prepared statements.
    with Connection.connect(_conninfo(), autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        found["postgres_server"] = str(conn.info.server_version)
        found["fsync"] = conn.execute("SHOW fsync").fetchone()["fsync"]
        found["synchronous_commit"] = conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"]
        return _measure(_graph(saver), steps, repetitions, durable=True, conn=conn, found=found)


def _measure(graph: Any, steps: int, repetitions: int, *, durable: bool, conn: Any,
             found: dict[str, str]) -> dict[str, Any]:
    _run_once(graph, steps, durable)  # warm-up: imports, graph compilation caches, first connection use
    totals: list[float] = []
    rows: dict[str, int] | None = None
    for _ in range(repetitions):
        elapsed, thread_id = _run_once(graph, steps, durable)
        totals.append(elapsed)
        if conn is not None and rows is None:
            rows = _checkpoint_rows(conn, thread_id)
    per_step = [t / steps for t in totals]
    return {
        "steps": steps,
        "checkpointer": "postgres_sync" if durable else "none",
        # Same shape as engine.step_overhead's result, so the report reads both alike.
        "per_step": summary(per_step),
        "total": summary(totals),
        "per_step_seconds": per_step,
        "total_seconds": totals,
        "checkpoint_rows": rows,
        "versions": found,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--checkpointer", choices=CHECKPOINTERS, nargs="+", default=list(CHECKPOINTERS))
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON instead")
    args = parser.parse_args(argv)

    results = [measure(n, args.repetitions, c) for n in args.steps for c in args.checkpointer]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(json.dumps(results[0]["versions"]))
    for result in results:
        per_step, total = result["per_step"], result["total"]
        print(
            f"langgraph {result['checkpointer']:<13} N={result['steps']:<4} "
            f"per step median {per_step['median'] * 1000:8.3f} ms  p95 {per_step['p95'] * 1000:8.3f} ms  "
            f"min {per_step['min'] * 1000:8.3f} ms  | run median {total['median'] * 1000:9.1f} ms  "
            f"(n={per_step['n']})"
        )
        if result["checkpoint_rows"]:
            print(f"    checkpoint rows for one run: {result['checkpoint_rows']}")


if __name__ == "__main__":
    main()
