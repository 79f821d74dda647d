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
from django.core.exceptions import ValidationError
from django.core.paginator import Page
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timesince, timeuntil
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import quotas
from accounts.models import Organization, Team
from accounts.roles import Access, Denied, access_for_request, access_or_403
from agents import approvals, selectors, services
from agents.forms import AgentForm, ApprovalDecisionForm, RunForm
from agents.llm import registry as model_registry
from agents.models import Agent, Approval, Run, RunEvent
from config.ui import found_or_404, organization_or_403, page_of, role_required
from integrations import selectors as integration_selectors
from integrations import tools as tool_registry

PAGE_SIZE = 20
RECENT_RUNS = 10
TERMINAL_STATUSES = {str(s) for s in Run.TERMINAL}
UNCERTAIN_WRITE = "uncertain_write:"
AWAITING_APPROVAL = "approval:"


# --------------------------------------------------------------------------- helpers


_organization = organization_or_403
_viewer = access_or_403


def _agent_or_404(request: HttpRequest, agent_id: uuid.UUID) -> Agent:
    access = access_or_403(request)
    agent = selectors.agent_get(organization=access.organization, viewer=access, agent_id=agent_id)
    return found_or_404(agent, "No such agent.")


def _editable_or_403(request: HttpRequest, agent: Agent) -> Agent:
    if not selectors.agent_can_edit(viewer=_viewer(request), agent=agent):
        raise Denied("Permission denied: this agent is shared with you to run, not to change.")
    return agent


def _owned_or_403(request: HttpRequest, agent: Agent, verb: str) -> Agent:
    if not selectors.agent_is_owner_or_manager(viewer=_viewer(request), agent=agent):
        raise Denied(f"Permission denied: only the agent's owner or an organization admin can {verb} it.")
    return agent


def _run_or_404(request: HttpRequest, run_id: uuid.UUID) -> Run:
    access = access_or_403(request)
    return found_or_404(selectors.run_get(organization=access.organization, viewer=access, run_id=run_id),
                        "No such run.")


def _page(request: HttpRequest, items: Any) -> Page:
    return page_of(request, items, PAGE_SIZE)


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


def format_timeout(seconds: int) -> str:
    """A configured span in the unit it was most likely chosen in: 3600 → "1 hour"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} s"


def format_cost(cost: Decimal | int | float) -> str:
    cost = Decimal(str(cost))
    if cost == 0:
        return "$0.00"
    if cost < Decimal("0.01"):
        return f"${cost:.6f}"
    return f"${cost:.4f}"


def format_budget(amount: Decimal | str | None) -> str:
    """A configured dollar budget as written: $0.25, $2.00, $0.0001."""
    if amount in (None, ""):
        return ""
    value = Decimal(str(amount)).normalize()
    return f"${value:.2f}" if -value.as_tuple().exponent <= 2 else f"${value:f}"


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


def _tool_catalog(organization_id) -> dict[str, dict[str, str]]:
    return {
        t.name: {"name": t.name, "description": t.description, "side_effect": t.side_effect.value}
        for t in tool_registry.for_organization(organization_id).values()
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
@role_required("agents.view_agent")
def agent_list(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    search = request.GET.get("q", "").strip()
    page = _page(request, selectors.agent_list(organization=organization, viewer=_viewer(request), search=search,
                                               ordering="-created_at"))
    agents = list(page.object_list)
    # Newest run per agent in one query (Postgres DISTINCT ON), not one query per row.
    latest = (
        selectors.run_list(organization=organization, viewer=_viewer(request))
        .filter(agent_id__in=[a.id for a in agents])
        .order_by("agent_id", "-created_at")
        .distinct("agent_id")
    )
    last_run = {run.agent_id: run for run in latest}
    catalog = _tool_catalog(organization.id)
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
        or (bool(search) and selectors.agent_list(organization=organization, viewer=_viewer(request)).exists()),
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
@role_required("agents.add_agent")
def agent_create(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    form = AgentForm(request.POST or None, organization=organization, actor=request.user)
    if request.method == "POST":
        agent = _save_agent(request, form, organization, None)
        if agent is not None:
            messages.success(request, f"Agent “{agent.name}” created.")
            return redirect("agents:agent-detail", agent_id=agent.id)
    return render(request, "agents/agent_form.html", {"organization": organization, "form": form, "agent": None})


@login_required
@require_http_methods(["GET", "POST"])
@role_required("agents.change_agent")
def agent_edit(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    agent = _editable_or_403(request, _agent_or_404(request, agent_id))
    form = AgentForm(request.POST or None, instance=agent, organization=organization, actor=request.user)
    if request.method == "POST":
        saved = _save_agent(request, form, organization, agent)
        if saved is not None:
            messages.success(request, f"Agent “{saved.name}” saved.")
            return redirect("agents:agent-detail", agent_id=saved.id)
        agent.refresh_from_db()  # the failed attempt may have set attributes on the instance
    return render(request, "agents/agent_form.html", {"organization": organization, "form": form, "agent": agent})


@login_required
@require_http_methods(["GET", "POST"])
@role_required("agents.delete_agent")
def agent_delete(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    agent = _owned_or_403(request, _agent_or_404(request, agent_id), "delete")
    if request.method == "POST":
        name = agent.name
        services.agent_delete(agent=agent, actor=request.user)
        messages.success(request, f"Agent “{name}” deleted. Its runs are kept.")
        return redirect("agents:agent-list")
    run_count = selectors.run_list(organization=organization, viewer=_viewer(request), agent_id=agent.id).count()
    context = {"organization": organization, "agent": agent, "run_count": run_count}
    return render(request, "agents/agent_confirm_delete.html", context)


def _tool_policy_rows(tools: list[str], policies: dict[str, str], catalog: dict[str, dict[str, str]]) -> list[dict]:
    """Each tool with the policy that applies to it and whether that is the default."""
    rows = []
    for chip in _tool_chips(tools, catalog):
        explicit = (policies or {}).get(chip["name"])
        default = Agent.Policy.ASK if chip["side_effect"] == "write" else Agent.Policy.AUTO
        policy = Agent.Policy(explicit) if explicit in Agent.Policy.values else default
        rows.append(chip | {"policy": policy.value, "policy_label": policy.label, "is_default": not explicit})
    return rows


def _render_agent_detail(
    request: HttpRequest, organization: Organization, agent: Agent, run_form: RunForm
) -> HttpResponse:
    runs = selectors.run_list(organization=organization, viewer=_viewer(request), agent_id=agent.id)
    recent = [_decorate_run(r) for r in runs[:RECENT_RUNS]]
    agent.model_display = model_registry.model_label(agent.model)
    agent.is_demo = agent.model == model_registry.DEMO_MODEL.id
    agent.model_available = model_registry.is_available(agent.model)
    catalog = _tool_catalog(organization.id)
    access = _viewer(request)
    can_share = access.can("agents.share_agent") and selectors.agent_is_owner_or_manager(viewer=access, agent=agent)
    context = {
        "organization": organization,
        "agent": agent,
        "can_run": access.can("agents.run_agent"),
        "can_edit": access.can("agents.change_agent") and selectors.agent_can_edit(viewer=access, agent=agent),
        "can_delete": access.can("agents.delete_agent")
        and selectors.agent_is_owner_or_manager(viewer=access, agent=agent),
        "can_share": can_share,
        "shares": list(selectors.agent_shares(agent=agent)),
        "share_teams": list(Team.objects.filter(organization=organization).order_by("name")) if can_share else [],
        "tool_chips": _tool_chips(agent.tools, catalog),
        "tool_policies": _tool_policy_rows(agent.tools, agent.tool_policies, catalog),
        # Connector tools: the connection each integration acts through, and what would stop it.
        "integration_rows": integration_selectors.agent_integration_rows(agent=agent),
        "connection_warnings": integration_selectors.agent_integration_warnings(agent=agent, viewer=access),
        "approval_timeout_display": format_timeout(agent.approval_timeout_seconds),
        "max_cost_display": format_budget(agent.max_cost_usd),
        "run_form": run_form,
        "recent_runs": recent,
    }
    return render(request, "agents/agent_detail.html", context)


@login_required
@require_GET
@role_required("agents.view_agent")
def agent_detail(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    agent = _agent_or_404(request, agent_id)
    return _render_agent_detail(request, organization, agent, RunForm(agent=agent))


@login_required
@require_POST
@role_required("agents.run_agent")
def agent_run(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    agent = _agent_or_404(request, agent_id)
    data = request.POST.copy()
    if request.POST.get("test"):
        # The Test button: the same form, always a dry run.
        data["dry_run"] = "on"
    form = RunForm(data, agent=agent)
    if not form.is_valid():
        return _render_agent_detail(request, organization, agent, form)
    try:
        warnings = quotas.check_run_allowed(organization=organization, user=request.user)
    except quotas.QuotaExceeded as exc:
        form.add_error(None, str(exc))
        return _render_agent_detail(request, organization, agent, form)
    run = services.run_start(agent=agent, actor=request.user, **form.validated_data)
    for warning in warnings:
        messages.warning(request, f"You have used {warning['percent']:g}% of the {warning['scope']}'s monthly "
                                  f"{warning['metric'].replace('_usd', '')} quota.")
    if run.dry_run:
        messages.info(request, "Dry run started: read tools run for real, write tools are only simulated.")
    return redirect("agents:run-detail", run_id=run.id)


@login_required
@require_POST
@role_required("agents.share_agent")
def agent_share(request: HttpRequest, agent_id: uuid.UUID) -> HttpResponse:
    """Share with a team or the whole organization (`team` = "organization"), or stop (`remove`)."""
    agent = _owned_or_403(request, _agent_or_404(request, agent_id), "share")
    raw = request.POST.get("team", "")
    team = None
    if raw != "organization":
        try:
            team = Team.objects.filter(organization=agent.organization, id=uuid.UUID(raw)).first()
        except ValueError:
            team = None
        if team is None:
            messages.error(request, "Choose a team of this organization, or the whole organization.")
            return redirect("agents:agent-detail", agent_id=agent.id)
    who = team.name if team else "the whole organization"
    if request.POST.get("remove"):
        services.agent_unshare(agent=agent, team=team, actor=request.user)
        messages.success(request, f"No longer shared with {who}.")
    else:
        can_edit = bool(request.POST.get("can_edit"))
        services.agent_share(agent=agent, team=team, can_edit=can_edit, actor=request.user)
        messages.success(request, f"Shared with {who}: they can run it" + (" and change it." if can_edit else "."))
    return redirect("agents:agent-detail", agent_id=agent.id)


# --------------------------------------------------------------------------- runs


@login_required
@require_GET
@role_required("agents.view_run")
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
    page = _page(request, selectors.run_list(organization=organization, viewer=_viewer(request), agent_id=agent_id,
                                             status=status))
    runs = [_decorate_run(r) for r in page.object_list]
    filtered = bool(agent_id or status)
    query = urlencode([(k, v) for k, v in (("agent", agent_id or ""), ("status", status)) if v])
    context = {
        "organization": organization,
        "page": page,
        "runs": runs,
        "agents": selectors.agent_list(organization=organization, viewer=_viewer(request), ordering="name").only(
            "id", "name"
        ),
        "statuses": Run.Status.choices,
        "agent_filter": agent_id or "",
        "status_filter": status,
        "filtered": filtered,
        "page_query": query,
    }
    return _full_or_fragment(request, "runs/run_list.html", "runs/_run_results.html", context)


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def pause_reason_text(reason: str, *, history: bool = False) -> str:
    """A run's pause reason in plain words (the stored value is for machines). `history`: as the
    timeline tells it, after the fact."""
    if reason.startswith(UNCERTAIN_WRITE):
        if history:
            return "The worker stopped in the middle of a write call; a person decides whether to run it again."
        return "The worker stopped in the middle of a write call — decide: Retry or Skip."
    if reason.startswith(AWAITING_APPROVAL):
        return "Waiting for approval." if history else "Waiting for your approval."
    return reason


def _status_note(data: dict[str, Any], previous: str = "") -> str:
    """What a status event says beyond the status: who did it, and how the run got there.
    `previous` is the status before this one. static/js/run.js (statusNote) mirrors this."""
    parts = []
    if data.get("attempt"):
        # Running straight after running: the first worker's lease ran out and another took over.
        # After queued it is an ordinary pick-up (a resume, a retry, an approval).
        if previous == Run.Status.RUNNING:
            parts.append(f"resumed on another worker (attempt {data['attempt']})")
        else:
            parts.append(f"picked up again (attempt {data['attempt']})")
    elif data.get("resumed"):
        parts.append("resumed")
    if data.get("retry"):
        parts.append("retried")
    if data.get("decision") == "retry":
        parts.append("the interrupted call runs again")
    elif data.get("decision") == "skip":
        parts.append("the interrupted call is not repeated")
    if data.get("by"):
        parts.append(f"by {data['by']}")
    return " ".join(parts)


def _tool_start_note(data: dict[str, Any]) -> str:
    if data.get("approved_retry"):
        return f"run again after a crash, as {data.get('approved_by') or 'someone'} decided"
    notes = []
    if data.get("retry"):
        notes.append("retried after a crash")
    if data.get("approved_by"):
        notes.append(f"approved by {data['approved_by']}")
    return " · ".join(notes)


def _timeline(events: list[RunEvent]) -> list[dict[str, Any]]:
    """Events as timeline items; a tool call learns its outcome from the result with its call_id."""
    ends = {e.data.get("call_id"): e for e in events if e.type == RunEvent.Type.TOOL_END}
    answers = {(e.data.get("step"), e.data.get("content")) for e in events if e.type == RunEvent.Type.FINAL_ANSWER}
    items = []
    previous_status = ""
    for event in events:
        data = event.data or {}
        item: dict[str, Any] = {"seq": event.seq, "type": event.type, "data": data, "created_at": event.created_at}
        if event.type == RunEvent.Type.TOOL_START:
            item["arguments_json"] = _pretty_json(data.get("arguments"))
            end = ends.get(data.get("call_id"))
            item["end"] = end.data if end else None
            item["note"] = _tool_start_note(data)
        elif event.type == RunEvent.Type.THOUGHT:
            # The last thought's text is the final answer; it is shown once, in the answer item.
            item["is_answer"] = bool(data.get("content")) and (data.get("step"), data.get("content")) in answers
        elif event.type == RunEvent.Type.STATUS:
            item["status_label"] = Run.Status(data["status"]).label if data.get("status") in Run.Status.values else ""
            item["stop_reason_label"] = (
                Run.StopReason(data["stop_reason"]).label if data.get("stop_reason") in Run.StopReason.values else ""
            )
            item["note"] = _status_note(data, previous_status)
            item["pause_text"] = pause_reason_text(data.get("pause_reason") or "", history=True)
            item["is_approval_wait"] = data.get("status") == Run.Status.AWAITING_APPROVAL
            previous_status = data.get("status", "")
        elif event.type == RunEvent.Type.APPROVAL:
            item["arguments_json"] = _pretty_json(data.get("arguments"))
            if data.get("edited_arguments") is not None:
                item["edited_arguments_json"] = _pretty_json(data.get("edited_arguments"))
            expires = data.get("expires_at")
            item["expires_at"] = datetime.fromisoformat(expires) if expires else None
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


def _waiting_for(approval: Approval) -> str:
    return "Waiting for someone who may approve tool calls (an Operator, Builder, Admin or Owner) to decide."


def _decorate_approval(approval: Approval, access: Access, form: ApprovalDecisionForm | None = None) -> Approval:
    approval.arguments_json = _pretty_json(approval.arguments)
    approval.edited_arguments_json = (
        _pretty_json(approval.edited_arguments) if approval.edited_arguments is not None else ""
    )
    approval.is_pending = approval.status == Approval.Status.PENDING
    approval.run_finished = approval.run.is_finished
    approval.actionable = (
        approval.is_pending and not approval.run_finished and approvals.can_decide(access=access, approval=approval)
    )
    approval.waiting_for = _waiting_for(approval)
    approval.agent_name = (approval.run.config or {}).get("name", "")
    approval.expires_in = timeuntil(approval.expires_at) if approval.expires_at > timezone.now() else ""
    tool = tool_registry.get(approval.tool)
    approval.side_effect = tool.side_effect.value if tool else "missing"
    approval.form = form or ApprovalDecisionForm(initial={"arguments": approval.arguments_json})
    return approval


def _uncertain_call(run: Run) -> dict[str, Any] | None:
    """The write call a crash interrupted, as its tool_start event recorded it."""
    if run.status != Run.Status.PAUSED or not run.pause_reason.startswith(UNCERTAIN_WRITE):
        return None
    call_id = run.pause_reason[len(UNCERTAIN_WRITE):]
    start = (
        RunEvent.objects.filter(run=run, type=RunEvent.Type.TOOL_START, data__call_id=call_id).order_by("seq").last()
    )
    data = start.data if start else {}
    return {
        "call_id": call_id,
        "tool": data.get("tool", "unknown tool"),
        "step": data.get("step"),
        "arguments_json": _pretty_json(data.get("arguments")) if start else "",
        "started_at": start.created_at if start else None,
    }


def _controls_context(request: HttpRequest, run: Run) -> dict[str, Any]:
    """What the run page offers a person right now: the steering buttons, what the run waits for,
    and the approval cards. Reloaded by run.js on every status and approval event."""
    status = run.status
    finished = run.is_finished
    uncertain = _uncertain_call(run)
    pending = []
    if not finished:
        pending = [
            _decorate_approval(a, access_or_403(request))
            for a in selectors.approval_list(organization=run.organization, viewer=_viewer(request), run_id=run.id,
                                             status="pending")
            .select_related("run__agent__created_by")
            .order_by("created_at", "id")
        ]
    notice = ""
    if status == Run.Status.PAUSED:
        notice = pause_reason_text(run.pause_reason) or "Paused."
    elif status == Run.Status.AWAITING_APPROVAL:
        if pending and not any(a.actionable for a in pending):
            notice = "Waiting for approval. " + pending[0].waiting_for
        else:
            notice = "Waiting for your approval."
    elif not finished and run.cancel_requested_at:
        notice = "Cancellation requested; the run stops at its next step."
    elif not finished and run.pause_requested_at:
        notice = "Pause requested; the run pauses at its next step."
    return {
        "run": run,
        "notice": notice,
        "uncertain": uncertain,
        "pending_approvals": pending,
        "can_cancel": not finished,
        "can_pause": status in (Run.Status.QUEUED, Run.Status.RUNNING) and not run.pause_requested_at
        and not run.cancel_requested_at,
        "can_resume": status == Run.Status.PAUSED and uncertain is None
        and not run.pause_reason.startswith(UNCERTAIN_WRITE),
        "can_retry": status in (Run.Status.FAILED, Run.Status.TIMED_OUT),
        "can_rerun": finished,
        "next_url": reverse("agents:run-detail", kwargs={"run_id": run.id}),
    }


def _summary_context(request: HttpRequest, run: Run, events: list[RunEvent] | None = None) -> dict[str, Any]:
    _decorate_run(run)
    if run.is_finished or events is None:
        usage = {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens, "cost_usd": run.cost_usd}
    else:
        # While running, the header counts only the rendered thoughts, so the live stream can add
        # the rest without counting one twice.
        usage = _usage_from_events(events)
    usage["cost_display"] = format_cost(usage["cost_usd"])
    return {
        **_controls_context(request, run),
        "usage": usage,
        "stop_reason_label": Run.StopReason(run.stop_reason).label if run.stop_reason else "",
    }


def _last_status(events: list[RunEvent]) -> str:
    for event in reversed(events):
        if event.type == RunEvent.Type.STATUS:
            return event.data.get("status", "")
    return ""


def _config_rows(run: Run) -> dict[str, Any]:
    config = run.config or {}
    catalog = _tool_catalog(run.organization_id)
    cost = config.get("max_cost_usd")
    return {
        "tool_policies": _tool_policy_rows(config.get("tools") or [], config.get("tool_policies") or {}, catalog),
        "max_cost_display": format_budget(cost),
        "approval_timeout_display": format_timeout(config["approval_timeout_seconds"])
        if config.get("approval_timeout_seconds") else "",
    }


@login_required
@require_GET
@role_required("agents.view_run")
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = _run_or_404(request, run_id)
    events = selectors.run_events(run=run)
    # A retried run has an old terminal status in its trace; only the latest status counts.
    terminal_seen = _last_status(events) in TERMINAL_STATUSES
    if terminal_seen and not run.is_finished:
        run.refresh_from_db()
    context = {
        "organization": run.organization,
        **_summary_context(request, run, events),
        **_config_rows(run),
        "timeline": _timeline(events),
        "last_seq": events[-1].seq if events else 0,
        "finished": run.is_finished or terminal_seen,
        "context_json": _pretty_json(run.context) if run.context is not None else "",
        "api_url": f"/api/runs/{run.id}",
        "labels": {"status": dict(Run.Status.choices), "stop_reason": dict(Run.StopReason.choices)},
    }
    return render(request, "runs/run_detail.html", context)


@login_required
@require_GET
@role_required("agents.view_run")
def run_summary(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """The run page's header and answer, reloaded by htmx when the run finishes."""
    run = _run_or_404(request, run_id)
    return render(request, "runs/_summary.html", _summary_context(request, run))


@login_required
@require_GET
@role_required("agents.view_run")
def run_controls(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """The run page's buttons and what the run waits for (approvals, a decision), reloaded by
    run.js whenever the run's status changes or an approval is asked for or decided."""
    run = _run_or_404(request, run_id)
    _decorate_run(run)
    return render(request, "runs/_controls.html", _controls_context(request, run))


def _back_to_run(run: Run) -> HttpResponse:
    return redirect(reverse("agents:run-detail", kwargs={"run_id": run.id}))


def _steer(request: HttpRequest, run_id: uuid.UUID, service, verb: str, done: str, *,
           settled: str | None = None, requested: str = "") -> HttpResponse:
    """Cancel, pause, resume or retry: call the service, say what happened, go back to the run.
    `settled` is the status meaning the action already took effect; otherwise `requested` is shown."""
    run = _run_or_404(request, run_id)
    try:
        run = service(run=run, actor=request.user)
    except services.InvalidTransition as exc:
        messages.error(request, f"Could not {verb}: {exc}")
    else:
        if settled is None or run.status == settled:
            messages.success(request, done)
        else:
            messages.info(request, requested)
    return _back_to_run(run)


@login_required
@require_POST
@role_required("agents.steer_run")
def run_cancel(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    return _steer(request, run_id, services.run_cancel, "cancel", "Run cancelled.", settled=Run.Status.CANCELLED,
                  requested="Cancellation requested; the run stops at its next checkpoint.")


@login_required
@require_POST
@role_required("agents.steer_run")
def run_pause(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    return _steer(request, run_id, services.run_pause, "pause",
                  "Run paused. Resume it to carry on from where it stopped.", settled=Run.Status.PAUSED,
                  requested="Pause requested; the run pauses at its next step.")


@login_required
@require_POST
@role_required("agents.steer_run")
def run_resume(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    return _steer(request, run_id, services.run_resume, "resume",
                  "Run resumed; it carries on from its last stored step.")


@login_required
@require_POST
@role_required("agents.steer_run")
def run_retry(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    return _steer(request, run_id, services.run_retry, "retry", "Retrying from the last good step.")


@login_required
@require_POST
@role_required("agents.run_agent")
def run_rerun(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = _run_or_404(request, run_id)
    if not run.is_finished:
        messages.error(request, "Could not re-run: this run hasn't finished yet.")
        return _back_to_run(run)
    new = services.run_rerun(run=run, actor=request.user)
    messages.success(request, "Started a new run with the same goal, context and configuration.")
    return _back_to_run(new)


@login_required
@require_POST
@role_required("agents.steer_run")
def run_uncertain_write(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = _run_or_404(request, run_id)
    decision = request.POST.get("decision", "")
    if decision not in ("retry", "skip"):
        messages.error(request, "Choose whether to run the call again or not.")
        return _back_to_run(run)
    try:
        run = services.run_resolve_uncertain_write(run=run, decision=decision, actor=request.user)
    except services.InvalidTransition as exc:
        messages.error(request, f"Could not decide: {exc}")
    else:
        messages.success(request, "The call runs again; the run carries on." if decision == "retry" else
                         "The call is not repeated; the agent is told it may or may not have taken effect.")
    return _back_to_run(run)


# --------------------------------------------------------------------------- approvals

APPROVAL_FILTERS = {
    "pending": "Pending",
    "decided": "Decided",
    "all": "All",
}


def _approval_or_404(request: HttpRequest, approval_id: uuid.UUID) -> Approval:
    access = access_or_403(request)
    approval = selectors.approval_get(organization=access.organization, viewer=access, approval_id=approval_id)
    if approval is None:
        raise Http404("No such approval.")
    return approval


def _pending_approvals(access: Access):
    # A run cancelled while it waited leaves its approval pending until it expires; there is
    # nothing left to decide about it, so it is neither listed nor counted.
    return selectors.approval_list(
        organization=access.organization, viewer=access, status=Approval.Status.PENDING
    ).exclude(
        run__status__in=TERMINAL_STATUSES
    )


def pending_approval_count(access: Access) -> int:
    return _pending_approvals(access).count()


@login_required
@require_GET
@role_required("agents.view_approval")
def approval_list(request: HttpRequest) -> HttpResponse:
    organization = _organization(request)
    show = request.GET.get("show", "pending")
    if show not in APPROVAL_FILTERS:
        show = "pending"
    qs = selectors.approval_list(organization=organization, viewer=_viewer(request))
    if show == "pending":
        # Soonest to expire first: that is the order they need a decision in.
        qs = _pending_approvals(access_or_403(request)).order_by("expires_at", "id")
    elif show == "decided":
        qs = qs.exclude(status=Approval.Status.PENDING).order_by("-decided_at", "-created_at", "id")
    qs = qs.select_related("run__agent__created_by")
    page = _page(request, qs)
    items = [_decorate_approval(a, access_or_403(request)) for a in page.object_list]
    for approval in items:
        _decorate_run(approval.run)
    context = {
        "organization": organization,
        "page": page,
        "approvals": items,
        "show": show,
        "filters": APPROVAL_FILTERS,
        "pending_count": pending_approval_count(access_or_403(request)),
        "page_query": urlencode({"show": show}),
        "next_url": request.get_full_path(),
    }
    return render(request, "agents/approval_list.html", context)


@login_required
@require_GET
@role_required("agents.view_approval")
def approval_detail(request: HttpRequest, approval_id: uuid.UUID) -> HttpResponse:
    organization = _organization(request)
    approval = _approval_or_404(request, approval_id)
    return _render_approval_detail(request, organization, _decorate_approval(approval, access_or_403(request)))


def _render_approval_detail(
    request: HttpRequest, organization: Organization, approval: Approval, next_url: str = ""
) -> HttpResponse:
    _decorate_run(approval.run)
    context = {
        "organization": organization,
        "approval": approval,
        "next_url": next_url or reverse("agents:approval-detail", kwargs={"approval_id": approval.id}),
    }
    return render(request, "agents/approval_detail.html", context)


@login_required
@require_GET
def approval_badge(request: HttpRequest) -> HttpResponse:
    """The nav's count of pending approvals; fetched (and refreshed) by htmx on every page."""
    access = access_for_request(request)
    count = pending_approval_count(access) if access is not None and access.can("agents.view_approval") else 0
    return render(request, "includes/approval_badge.html", {"pending_approval_count": count})


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


DECISION_DONE = {
    "approve": "Approved: the call runs now.",
    "edit": "Approved with your edits: the call runs with the new arguments.",
    "reject": "Rejected: the call won't run, and the agent is told why.",
}


@login_required
@require_POST
@role_required("agents.decide_approval")
def approval_decide(request: HttpRequest, approval_id: uuid.UUID) -> HttpResponse:
    """Approve, approve with edits, or reject. htmx gets the card back (decided, or with the
    problem shown in it); a plain form post is redirected with a message."""
    organization = _organization(request)
    approval = _approval_or_404(request, approval_id)
    next_url = _safe_next(request, reverse("agents:run-detail", kwargs={"run_id": approval.run_id}))
    form = ApprovalDecisionForm(request.POST)
    outcome = ""
    conflict = "The run has already finished; there is nothing left to decide." if approval.run.is_finished else ""
    if form.is_valid() and not conflict:
        decision = form.cleaned_data["decision"]
        try:
            approval = approvals.approval_decide(
                approval=approval, decision=decision, actor=request.user,
                arguments=form.cleaned_data["arguments"], message=form.cleaned_data["message"].strip(),
            )
        except approvals.InvalidArguments as exc:
            form.add_error("arguments", f"These arguments don't fit the tool: {exc}")
        except approvals.ApprovalConflict as exc:
            conflict = str(exc)
        else:
            outcome = DECISION_DONE[decision]
    if _is_htmx(request):
        approval = _approval_or_404(request, approval.id)
        card_form = form if form.errors else None
        context = {"approval": _decorate_approval(approval, access_or_403(request), card_form), "next_url": next_url,
                   "outcome": outcome, "conflict": conflict}
        response = render(request, "includes/approval_card.html", context)
        if outcome or conflict:
            response["HX-Trigger"] = "approvals-changed"
        return response
    if form.errors:
        # Shown on the approval's own page, whichever page the form came from; fixing it there
        # still leads back to where the person started.
        approval = _decorate_approval(approval, access_or_403(request), form)
        return _render_approval_detail(request, organization, approval, next_url)
    if conflict:
        messages.error(request, f"Could not decide: {conflict}")
    else:
        messages.success(request, outcome)
    return redirect(next_url)
