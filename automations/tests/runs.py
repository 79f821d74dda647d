"""Ending runs the way the worker does, through agents.services.run_transition."""

from __future__ import annotations

from agents import services as agent_services
from agents.models import Run

_STOP = {
    Run.Status.SUCCEEDED: Run.StopReason.FINAL_ANSWER,
    Run.Status.CANCELLED: Run.StopReason.CANCELLED,
    Run.Status.TIMED_OUT: Run.StopReason.TIMEOUT,
    Run.Status.FAILED: Run.StopReason.MODEL_ERROR,
}


def finish(run: Run, status: str, *, error: str = "", answer: str = "") -> Run:
    agent_services.run_transition(run_id=run.id, to=Run.Status.RUNNING)
    assert agent_services.run_transition(run_id=run.id, to=status, stop_reason=_STOP[status], error=error,
                                         answer=answer)
    run.refresh_from_db()
    return run
