"""Server-rendered pages. Each view resolves the caller's organization, reads through
`agents.selectors`, writes through `agents.services`, and renders a template."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.timesince import timesince
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Organization
from accounts.selectors import organization_for_request
from agents import selectors, services
from agents.forms import AgentForm, RunForm
from agents.llm import registry as model_registry
from agents.models import Agent, Run, RunEvent
from integrations import tools as tool_registry

PAGE_SIZE = 20
RECENT_RUNS = 10
TERMINAL_STATUSES = {str(s) for s in Run.TERMINAL}


# --------------------------------------------------------------------------- helpers


def _organization(request: HttpRequest) -> Organization:
    organization = organization_for_request(request)
    if organization is None:
        raise PermissionDenied("You are not a member of any organization yet. Ask an owner to add you.")
    return organization


def _agent_or_404(organization: Organization, agent_id: uuid.UUID) -> Agent:
    agent = selectors.agent_get(organization=organization, agent_id=agent_id)
    if agent is None:
        raise Http404("No such agent.")
    return agent


def _run_or_404(organization: Organization, run_id: uuid.UUID) -> Run:
    run = selectors.run_get(organization=organization, run_id=run_id)
    if run is None:
        raise Http404("No such run.")
    return run


def _page(request: HttpRequest, items: Any) -> Page:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _full_or_fragment(request: HttpRequest, page: str, fragment: str, context: dict[str, Any]) -> HttpResponse:
    """htmx asks for just the results; everyone else gets the page. Same URL, so caches must vary."""
    response = render(request, fragment if _is_htmx(request) else page, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{int(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} m"


def format_cost(cost: Decimal | int | float) -> str:
    cost = Decimal(str(cost))
    if cost == 0:
        return "$0.00"
    if cost < Decimal("0.01"):
        return f"${cost:.6f}"
    return f"${cost:.4f}"


def format_ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment)} ago"


def _decorate_run(run: Run) -> Run:
    """Display values the templates need and the model doesn't provide."""
    model_id = (run.config or {}).get("model", "")
    run.model_id = model_id
    run.model_display = model_registry.model_label(model_id)
    run.is_demo = model_id == model_registry.DEMO_MODEL.id
    run.agent_name = run.agent.name if run.agent else (run.config or {}).get("name", "deleted agent")
    run.duration_display = format_duration(run.duration_seconds)
    run.created_ago = format_ago(run.created_at)
    return run


def _tool_catalog() -> dict[str, dict[str, str]]:
    return {
        t.name: {"name": t.name, "description": t.description, "side_effect": t.side_effect.value}
        for t in tool_registry.all_tools()
    }


def _tool_chips(names: list[str], catalog: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    # A tool removed from the registry after the agent was saved still shows, flagged.
    return [catalog.get(name, {"name": name, "description": "No longer available.", "side_effect": "missing"})
            for name in names]


# --------------------------------------------------------------------------- agents


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("agents:agent-list")


@login_required
@require_GET
def agent_list(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    search = request.GET.get("q", "").strip()
    page = _page(request, selectors.agent_list(organization=organization, search=search, ordering="-created_at"))
    agents = list(page.object_list)
    # Newest run per agent in one query (Postgres DISTINCT ON), not one query per row.
    latest = (
        selectors.run_list(organization=organization)
        .filter(agent_id__in=[a.id for a in agents])
        .order_by("agent_id", "-created_at")
        .distinct("agent_id")
    )
    last_run = {run.agent_id: run for run in latest}
    catalog = _tool_catalog()
    for agent in agents:
        agent.model_display = model_registry.model_label(agent.model)
        agent.is_demo = agent.model == model_registry.DEMO_MODEL.id
        agent.tool_chips = _tool_chips(agent.tools, catalog)
        agent.last_run = last_run.get(agent.id)
        if agent.last_run is not None:
            _decorate_run(agent.last_run)
    context = {
        "organization": organization,
        "page": page,
        "agents": agents,
        "search": search,
        "page_query": urlencode({"q": search}) if search else "",
        # Distinguishes "no agents yet" (call to action) from "nothing matches the search".
        "has_any": page.paginator.count > 0
        or (bool(search) and selectors.agent_list(organization=organization).exists()),
    }
    return _full_or_fragment(request, "agents/agent_list.html", "agents/_agent_results.html", context)


def _save_agent(request: HttpRequest, form: AgentForm, organization: Organization, agent: Agent | None) -> Agent | None:
    if not form.is_valid():
        return None
    try:
        if agent is None:
            return services.agent_create(organization=organization, actor=request.user, **form.validated_data)
        return services.agent_update(agent=agent, actor=request.user, **form.validated_data)
    except ValidationError as exc:
        # Model-level rules (check constraints) the serializer didn't catch; shown, never a 500.
        form.add_error(None, exc)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def agent_create(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    form = AgentForm(request.POST or None)
    if request.method == "POST":
        agent = _save_agent(request, form, organization, None)
        if agent is not None:
            messages.success(request, f"Agent “{agent.name}” created.")
            return redirect("agents:agent-detail", agent_id=agent.id)
    return render(request, "agents/agent_form.html", {"organization": organization, "form": form, "agent": None})


@login_required
@require_http_methods(["GET", "POST"])
def agent_edit(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    agent = _agent_or_404(organization, agent_id)
    form = AgentForm(request.POST or None, instance=agent)
    if request.method == "POST":
        saved = _save_agent(request, form, organization, agent)
        if saved is not None:
            messages.success(request, f"Agent “{saved.name}” saved.")
            return redirect("agents:agent-detail", agent_id=saved.id)
        agent.refresh_from_db()  # the failed attempt may have set attributes on the instance
    return render(request, "agents/agent_form.html", {"organization": organization, "form": form, "agent": agent})


@login_required
@require_http_methods(["GET", "POST"])
def agent_delete(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    agent = _agent_or_404(organization, agent_id)
    if request.method == "POST":
        name = agent.name
        services.agent_delete(agent=agent, actor=request.user)
        messages.success(request, f"Agent “{name}” deleted. Its runs are kept.")
        return redirect("agents:agent-list")
    run_count = selectors.run_list(organization=organization, agent_id=agent.id).count()
    context = {"organization": organization, "agent": agent, "run_count": run_count}
    return render(request, "agents/agent_confirm_delete.html", context)


def _render_agent_detail(
    request: HttpRequest, organization: Organization, agent: Agent, run_form: RunForm
) -> HttpResponse:
    recent = [_decorate_run(r) for r in selectors.run_list(organization=organization, agent_id=agent.id)[:RECENT_RUNS]]
    agent.model_display = model_registry.model_label(agent.model)
    agent.is_demo = agent.model == model_registry.DEMO_MODEL.id
    agent.model_available = model_registry.is_available(agent.model)
    context = {
        "organization": organization,
        "agent": agent,
        "tool_chips": _tool_chips(agent.tools, _tool_catalog()),
        "run_form": run_form,
        "recent_runs": recent,
    }
    return render(request, "agents/agent_detail.html", context)


@login_required
@require_GET
def agent_detail(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    agent = _agent_or_404(organization, agent_id)
    return _render_agent_detail(request, organization, agent, RunForm())


@login_required
@require_POST
def agent_run(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    agent = _agent_or_404(organization, agent_id)
    form = RunForm(request.POST)
    if not form.is_valid():
        return _render_agent_detail(request, organization, agent, form)
    run = services.run_start(agent=agent, actor=request.user, **form.validated_data)
    return redirect("agents:run-detail", run_id=run.id)


# --------------------------------------------------------------------------- runs


@login_required
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    agent_filter = request.GET.get("agent", "")
    try:
        agent_id = str(uuid.UUID(agent_filter)) if agent_filter else None
    except ValueError:
        agent_id = None
    status = request.GET.get("status", "")
    if status not in Run.Status.values:
        status = ""
    page = _page(request, selectors.run_list(organization=organization, agent_id=agent_id, status=status))
    runs = [_decorate_run(r) for r in page.object_list]
    filtered = bool(agent_id or status)
    query = urlencode([(k, v) for k, v in (("agent", agent_id or ""), ("status", status)) if v])
    context = {
        "organization": organization,
        "page": page,
        "runs": runs,
        "agents": selectors.agent_list(organization=organization, ordering="name").only("id", "name"),
        "statuses": Run.Status.choices,
        "agent_filter": agent_id or "",
        "status_filter": status,
        "filtered": filtered,
        "page_query": query,
    }
    return _full_or_fragment(request, "runs/run_list.html", "runs/_run_results.html", context)


def _timeline(events: list[RunEvent]) -> list[dict[str, Any]]:
    """Events as timeline items; a tool call learns its outcome from the result with its call_id."""
    ends = {e.data.get("call_id"): e for e in events if e.type == RunEvent.Type.TOOL_END}
    answers = {(e.data.get("step"), e.data.get("content")) for e in events if e.type == RunEvent.Type.FINAL_ANSWER}
    items = []
    for event in events:
        data = event.data or {}
        item: dict[str, Any] = {"seq": event.seq, "type": event.type, "data": data, "created_at": event.created_at}
        if event.type == RunEvent.Type.TOOL_START:
            item["arguments_json"] = json.dumps(data.get("arguments"), indent=2, ensure_ascii=False, sort_keys=True)
            end = ends.get(data.get("call_id"))
            item["end"] = end.data if end else None
        elif event.type == RunEvent.Type.THOUGHT:
            # The last thought's text is the final answer; it is shown once, in the answer item.
            item["is_answer"] = bool(data.get("content")) and (data.get("step"), data.get("content")) in answers
        elif event.type == RunEvent.Type.STATUS:
            item["status_label"] = Run.Status(data["status"]).label if data.get("status") in Run.Status.values else ""
            item["stop_reason_label"] = (
                Run.StopReason(data["stop_reason"]).label if data.get("stop_reason") in Run.StopReason.values else ""
            )
        items.append(item)
    return items


def _usage_from_events(events: list[RunEvent]) -> dict[str, Any]:
    totals = {"input_tokens": 0, "output_tokens": 0, "cost_usd": Decimal("0")}
    for event in events:
        if event.type == RunEvent.Type.THOUGHT:
            usage = event.data.get("usage") or {}
            totals["input_tokens"] += int(usage.get("input_tokens") or 0)
            totals["output_tokens"] += int(usage.get("output_tokens") or 0)
            totals["cost_usd"] += Decimal(str(usage.get("cost_usd") or "0"))
    return totals


def _summary_context(run: Run, events: list[RunEvent] | None = None) -> dict[str, Any]:
    _decorate_run(run)
    if run.is_finished or events is None:
        usage = {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens, "cost_usd": run.cost_usd}
    else:
        # While running, the header counts only the rendered thoughts, so the live stream can add
        # the rest without counting one twice.
        usage = _usage_from_events(events)
    usage["cost_display"] = format_cost(usage["cost_usd"])
    return {
        "run": run,
        "usage": usage,
        "stop_reason_label": Run.StopReason(run.stop_reason).label if run.stop_reason else "",
        "cancellable": not run.is_finished,
    }


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    run = _run_or_404(organization, run_id)
    events = selectors.run_events(run=run)
    terminal_seen = any(e.type == RunEvent.Type.STATUS and e.data.get("status") in TERMINAL_STATUSES for e in events)
    if terminal_seen and not run.is_finished:
        run.refresh_from_db()
    context = {
        "organization": organization,
        **_summary_context(run, events),
        "timeline": _timeline(events),
        "last_seq": events[-1].seq if events else 0,
        "finished": run.is_finished or terminal_seen,
        "context_json": (
            json.dumps(run.context, indent=2, ensure_ascii=False, sort_keys=True) if run.context is not None else ""
        ),
        "api_url": f"/api/runs/{run.id}",
        "labels": {"status": dict(Run.Status.choices), "stop_reason": dict(Run.StopReason.choices)},
    }
    return render(request, "runs/run_detail.html", context)


@login_required
@require_GET
def run_summary(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """The run page's header and answer, reloaded by htmx when the run finishes."""
    organization = _organization(request)
    run = _run_or_404(organization, run_id)
    return render(request, "runs/_summary.html", _summary_context(run))


@login_required
@require_POST
def run_cancel(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    run = _run_or_404(organization, run_id)
    try:
        run = services.run_cancel(run=run, actor=request.user)
    except services.InvalidTransition as exc:
        messages.error(request, f"Could not cancel: {exc}")
    else:
        if run.status == Run.Status.CANCELLED:
            messages.success(request, "Run cancelled.")
        else:
            messages.info(request, "Cancellation requested; the run stops at its next checkpoint.")
    return redirect(reverse("agents:run-detail", kwargs={"run_id": run.id}))
