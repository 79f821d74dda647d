"""Server-rendered account pages: usage against quotas, the organization switcher, members, teams,
API keys and the audit log. Reads go through accounts.selectors, writes through accounts.services;
each page declares the role permission it needs (config.ui.role_required) and hides what the
caller's role can't do."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Sum
from django.db.models.functions import TruncDay
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import audit, quotas, selectors, services
from accounts.forms import (
    ROLE_HELP,
    ApiKeyForm,
    AuditFilterForm,
    MemberAddForm,
    MemberRoleForm,
    TeamForm,
    TeamMemberAddForm,
)
from accounts.models import ApiToken, Membership, Team
from accounts.roles import Access, Denied, access_or_403
from accounts.services import AccountRuleError, LastOwner
from config.context_processors import list_page_or_home
from config.ui import found_or_404, page_of, role_required

LABELS = {"runs": "Runs", "tokens": "Tokens", "spend_usd": "Spend (USD)"}
PAGE_SIZE = 25


# --------------------------------------------------------------------------- usage


@login_required
@require_GET
@role_required("accounts.view_quota")
def usage(request):
    organization = access_or_403(request).organization
    lines = [line.as_dict() | {"label": LABELS[line.metric]}
             for line in quotas.usage_lines(organization=organization, user=request.user)]
    from agents.models import Run

    since = timezone.now() - timedelta(days=29)
    daily = {
        row["day"].date(): row
        for row in Run.objects.filter(organization=organization, created_at__gte=since)
        .annotate(day=TruncDay("created_at")).values("day")
        .annotate(runs=Count("id"), tokens=Sum("input_tokens") + Sum("output_tokens"))
    }
    days = [(since + timedelta(days=offset)).date() for offset in range(30)]
    peak = max([daily[d]["runs"] for d in days if d in daily] or [1])
    chart = [
        {"day": day, "runs": daily.get(day, {}).get("runs", 0), "tokens": daily.get(day, {}).get("tokens") or 0,
         "height": round(100 * daily.get(day, {}).get("runs", 0) / peak)}
        for day in days
    ]
    return render(request, "accounts/usage.html", {
        "organization": organization, "lines": lines, "chart": chart, "peak": peak,
        "month_start": quotas.month_start(),
    })


# --------------------------------------------------------------------------- switching organizations


@login_required
@require_POST
def org_switch(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("organization", "")
    try:
        organization_id = uuid.UUID(raw)
    except ValueError:
        raise Http404("No such organization.") from None
    membership = selectors.membership_for(user=request.user, organization_id=organization_id)
    if membership is None:
        raise Http404("No such organization.")
    request.session["organization_id"] = str(membership.organization_id)
    messages.success(request, f"You are now working in {membership.organization.name} as "
                              f"{membership.get_role_display()}.")
    target = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure())
    return redirect(list_page_or_home(target) if safe else "/")


@login_required
@require_GET
def settings_home(request: HttpRequest) -> HttpResponse:
    return redirect("accounts:member-list")


# --------------------------------------------------------------------------- members


def _membership_or_404(access: Access, membership_id: int) -> Membership:
    return found_or_404(selectors.membership_get(organization=access.organization, membership_id=membership_id),
                        "No such member in this organization.")


def _team_or_404(access: Access, team_id: uuid.UUID) -> Team:
    return found_or_404(selectors.team_get(organization=access.organization, team_id=team_id),
                        "No such team in this organization.")


def _rule_error(form, exc: AccountRuleError, aliases: dict[str, str] | None = None) -> None:
    field = (aliases or {}).get(exc.field or "", exc.field)
    form.add_error(field if field in form.fields else None, exc.message)


@login_required
@require_GET
@role_required("accounts.view_membership")
def member_list(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    organization = access.organization
    role = request.GET.get("role", "")
    role = role if role in Membership.Role.values else ""
    teams = list(selectors.team_list(organization=organization))
    team_ids = {str(t.id) for t in teams}
    team = request.GET.get("team", "")
    team = team if team in team_ids else ""
    search = request.GET.get("q", "").replace("\x00", "").strip()
    members = selectors.membership_list(organization=organization, role=role, team_id=team or None, search=search)
    page = page_of(request, members, PAGE_SIZE)
    query = {k: v for k, v in (("q", search), ("role", role), ("team", team)) if v}
    return render(request, "accounts/member_list.html", {
        "organization": organization, "page": page, "members": page.object_list, "search": search,
        "role": role, "team": team, "teams": teams, "roles": Membership.Role.choices,
        "page_query": urlencode(query), "filtered": bool(query), "section": "members",
    })


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.add_membership")
def member_add(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    organization = access.organization
    form = MemberAddForm(request.POST or None, can_grant_owner=access.can(services.OWNER_PERM))
    if request.method == "POST" and form.is_valid():
        login, role = form.cleaned_data["login"], form.cleaned_data["role"]
        user = selectors.user_find(login=login)
        try:
            if user is not None:
                membership = services.member_add(organization=organization, user=user, role=role,
                                                 actor=request.user)
                messages.success(request, f"{user.get_username()} is now a member of {organization.name} "
                                          f"({membership.get_role_display()}).")
            elif "@" in login:
                membership = services.member_invite(organization=organization, email=login, role=role,
                                                    actor=request.user)
                messages.success(request, f"Invitation sent to {login}: they choose a password from the email, "
                                          f"then sign in as {membership.user.get_username()}.")
            else:
                raise AccountRuleError("Nobody has that username. To invite someone new, enter their email "
                                       "address.", field="login")
        except AccountRuleError as exc:
            _rule_error(form, exc, {"user": "login", "email": "login"})
        else:
            return redirect("accounts:member-detail", membership_id=membership.id)
    return render(request, "accounts/member_add.html", {
        "organization": organization, "form": form, "role_help": _role_help(access), "section": "members",
    })


def _role_help(access: Access) -> list[tuple[str, str]]:
    can_owner = access.can(services.OWNER_PERM)
    return [(label, ROLE_HELP[value]) for value, label in Membership.Role.choices
            if value != Membership.Role.OWNER or can_owner]


def _member_context(request: HttpRequest, access: Access, membership: Membership, form=None) -> dict[str, Any]:
    is_self = membership.user_id == request.user.pk
    touches_owner = membership.role == Membership.Role.OWNER
    can_owner = access.can(services.OWNER_PERM)
    may_manage = not is_self and (can_owner or not touches_owner)
    teams = Team.objects.filter(organization=access.organization, memberships__user=membership.user).order_by("name")
    return {
        "organization": access.organization, "member": membership, "teams": teams, "is_self": is_self,
        "can_change_role": may_manage and access.can("accounts.change_membership"),
        "can_remove": may_manage and access.can("accounts.delete_membership"),
        "owner_locked": touches_owner and not can_owner,
        "form": form or MemberRoleForm(initial={"role": membership.role}, can_grant_owner=can_owner),
        "role_help": _role_help(access), "section": "members",
    }


@login_required
@require_GET
@role_required("accounts.view_membership")
def member_detail(request: HttpRequest, membership_id: int) -> HttpResponse:
    access = access_or_403(request)
    membership = _membership_or_404(access, membership_id)
    return render(request, "accounts/member_detail.html", _member_context(request, access, membership))


@login_required
@require_POST
@role_required("accounts.change_membership")
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    access = access_or_403(request)
    membership = _membership_or_404(access, membership_id)
    form = MemberRoleForm(request.POST, can_grant_owner=access.can(services.OWNER_PERM))
    status = 400
    if form.is_valid():
        before = membership.get_role_display()
        try:
            services.membership_role_change(membership=membership, role=form.cleaned_data["role"], actor=request.user)
        except AccountRuleError as exc:
            _rule_error(form, exc)
            status = 409 if isinstance(exc, LastOwner) else 400
        else:
            messages.success(request, f"{membership.user.get_username()}: {before} → "
                                      f"{membership.get_role_display()}.")
            return redirect("accounts:member-detail", membership_id=membership.id)
        membership.refresh_from_db()
    response = render(request, "accounts/member_detail.html", _member_context(request, access, membership, form))
    response.status_code = status
    return response


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.delete_membership")
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    access = access_or_403(request)
    membership = _membership_or_404(access, membership_id)
    problem = ""
    if request.method == "POST":
        try:
            services.membership_remove(membership=membership, actor=request.user)
        except AccountRuleError as exc:
            problem = exc.message
        else:
            messages.success(request, f"{membership.user.get_username()} was removed from "
                                      f"{access.organization.name}.")
            return redirect("accounts:member-list")
    else:
        # Refuse on the confirmation page already, rather than after "Yes".
        if membership.user_id == request.user.pk:
            raise Denied("Permission denied: you can't remove yourself from the organization; ask another owner "
                         "or admin.")
        if membership.role == Membership.Role.OWNER and not access.can(services.OWNER_PERM):
            raise Denied(f"Permission denied: your role ({access.role_label}) can't remove an Owner.",
                         perm=services.OWNER_PERM)
    keys = ApiToken.objects.filter(user=membership.user, organization=access.organization,
                                   revoked_at__isnull=True).count()
    teams = Team.objects.filter(organization=access.organization, memberships__user=membership.user).count()
    response = render(request, "accounts/member_confirm_remove.html", {
        "organization": access.organization, "member": membership, "keys": keys, "team_count": teams,
        "problem": problem, "section": "members",
    })
    if problem:
        response.status_code = 409
    return response


# --------------------------------------------------------------------------- teams


@login_required
@require_GET
@role_required("accounts.view_team")
def team_list(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    return render(request, "accounts/team_list.html", {
        "organization": access.organization, "tree": selectors.team_tree(organization=access.organization),
        "section": "teams",
    })


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.add_team")
def team_create(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    initial = {"parent": request.GET.get("parent", "")}
    form = TeamForm(request.POST or None, organization=access.organization, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create(organization=access.organization, actor=request.user, **form.cleaned_data)
        except AccountRuleError as exc:
            _rule_error(form, exc)
        else:
            messages.success(request, f"Team “{team.name}” created.")
            return redirect("accounts:team-detail", team_id=team.id)
    return render(request, "accounts/team_form.html", {
        "organization": access.organization, "form": form, "team": None, "section": "teams",
    })


@login_required
@require_GET
@role_required("accounts.view_team")
def team_detail(request: HttpRequest, team_id: uuid.UUID) -> HttpResponse:
    access = access_or_403(request)
    team = _team_or_404(access, team_id)
    return _render_team_detail(request, access, team, None)


def _render_team_detail(request: HttpRequest, access: Access, team: Team, form: TeamMemberAddForm | None,
                        status: int = 200) -> HttpResponse:
    children = selectors.team_list(organization=access.organization).filter(parent=team)
    can_change = access.can("accounts.change_team")
    response = render(request, "accounts/team_detail.html", {
        "organization": access.organization, "team": team, "children": children,
        "members": selectors.team_members(team=team),
        "form": form or (TeamMemberAddForm(team=team) if can_change else None),
        "can_change": can_change, "can_delete": access.can("accounts.delete_team"),
        "can_add": access.can("accounts.add_team"), "section": "teams",
    })
    response.status_code = status
    return response


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.change_team")
def team_edit(request: HttpRequest, team_id: uuid.UUID) -> HttpResponse:
    access = access_or_403(request)
    team = _team_or_404(access, team_id)
    initial = {"name": team.name, "description": team.description, "parent": str(team.parent_id or "")}
    form = TeamForm(request.POST or None, organization=access.organization, team=team, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.team_update(team=team, actor=request.user, **form.cleaned_data)
        except AccountRuleError as exc:
            _rule_error(form, exc)
            team.refresh_from_db()
        else:
            messages.success(request, f"Team “{team.name}” saved.")
            return redirect("accounts:team-detail", team_id=team.id)
    return render(request, "accounts/team_form.html", {
        "organization": access.organization, "form": form, "team": team, "section": "teams",
    })


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.delete_team")
def team_delete(request: HttpRequest, team_id: uuid.UUID) -> HttpResponse:
    access = access_or_403(request)
    team = _team_or_404(access, team_id)
    if request.method == "POST":
        name = team.name
        services.team_delete(team=team, actor=request.user)
        messages.success(request, f"Team “{name}” deleted.")
        return redirect("accounts:team-list")
    from agents.models import AgentShare

    return render(request, "accounts/team_confirm_delete.html", {
        "organization": access.organization, "team": team, "member_count": team.members.count(),
        "children": list(team.children.order_by("name")),
        "share_count": AgentShare.objects.filter(team=team).count(), "section": "teams",
    })


@login_required
@require_POST
@role_required("accounts.change_team")
def team_member_add(request: HttpRequest, team_id: uuid.UUID) -> HttpResponse:
    access = access_or_403(request)
    team = _team_or_404(access, team_id)
    form = TeamMemberAddForm(request.POST, team=team)
    if form.is_valid():
        membership = form.cleaned_data["member"]
        try:
            services.team_member_add(team=team, user=membership.user, actor=request.user)
        except AccountRuleError as exc:
            _rule_error(form, exc)
        else:
            messages.success(request, f"{membership.user.get_username()} joined {team.name}.")
            return redirect("accounts:team-detail", team_id=team.id)
    return _render_team_detail(request, access, team, form, status=400)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.change_team")
def team_member_remove(request: HttpRequest, team_id: uuid.UUID, membership_id: int) -> HttpResponse:
    access = access_or_403(request)
    team = _team_or_404(access, team_id)
    membership = _membership_or_404(access, membership_id)
    if not team.memberships.filter(user_id=membership.user_id).exists():
        raise Http404("That person is not in this team.")
    if request.method == "POST":
        services.team_member_remove(team=team, user=membership.user, actor=request.user)
        messages.success(request, f"{membership.user.get_username()} left {team.name}.")
        return redirect("accounts:team-detail", team_id=team.id)
    return render(request, "accounts/team_confirm_member_remove.html", {
        "organization": access.organization, "team": team, "member": membership, "section": "teams",
    })


# --------------------------------------------------------------------------- API keys


def _visible_keys(request: HttpRequest, access: Access):
    return selectors.api_key_list(user=request.user, organization=access.organization,
                                  include_service=access.can("accounts.manage_service_keys"))


def _key_status(key: ApiToken) -> str:
    if key.revoked_at:
        return "revoked"
    if key.expires_at and key.expires_at <= timezone.now():
        return "expired"
    return "active"


@login_required
@require_GET
def key_list(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    keys = list(_visible_keys(request, access))
    for key in keys:
        key.status = _key_status(key)
    return render(request, "accounts/key_list.html", {
        "organization": access.organization,
        "personal": [k for k in keys if k.kind == ApiToken.Kind.PERSONAL],
        "service": [k for k in keys if k.kind == ApiToken.Kind.SERVICE],
        "can_create": access.can("accounts.add_apitoken") or access.can("accounts.manage_service_keys"),
        "can_manage_service": access.can("accounts.manage_service_keys"), "section": "keys",
    })


@login_required
@require_http_methods(["GET", "POST"])
def key_create(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    can_service = access.can("accounts.manage_service_keys")
    if not can_service:
        access.require("accounts.add_apitoken")
    form = ApiKeyForm(request.POST or None, can_manage_service_keys=can_service)
    if not access.can("accounts.add_apitoken"):
        # Allowed service keys only: no personal choice to offer.
        form.fields["kind"].choices = [(ApiToken.Kind.SERVICE, ApiToken.Kind.SERVICE.label)]
        form.fields["kind"].initial = ApiToken.Kind.SERVICE
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        kind = data.get("kind") or ApiToken.Kind.PERSONAL
        access.require("accounts.manage_service_keys" if kind == ApiToken.Kind.SERVICE else "accounts.add_apitoken")
        token, raw = services.api_token_create(user=request.user, organization=access.organization, name=data["name"],
                                               kind=kind, scopes=data["scopes"], expires_at=data["expires_on"])
        # Rendered in the POST response itself and never stored: reloading doesn't show it again.
        response = render(request, "accounts/key_created.html", {
            "organization": access.organization, "key": token, "raw": raw, "section": "keys",
        })
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "accounts/key_form.html", {
        "organization": access.organization, "form": form, "section": "keys",
    })


@login_required
@require_http_methods(["GET", "POST"])
def key_revoke(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    access = access_or_403(request)
    # Someone else's personal key, or a service key without the right to manage them, isn't found.
    key = found_or_404(_visible_keys(request, access).filter(id=key_id).first(), "No such API key.")
    if request.method == "POST":
        services.api_token_revoke(token=key, actor=request.user)
        messages.success(request, f"Key “{key.name}” ({key.hint}…) revoked: it no longer works.")
        return redirect("accounts:key-list")
    return render(request, "accounts/key_confirm_revoke.html", {
        "organization": access.organization, "key": key, "status": _key_status(key), "section": "keys",
    })


# --------------------------------------------------------------------------- audit log


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) if value is not None else ""


@login_required
@require_GET
@role_required("accounts.view_auditlog")
def audit_list(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    organization = access.organization
    form = AuditFilterForm(request.GET or None)
    filters = form.filters() if form.is_bound else {}
    entries = audit.audit_list(organization=organization, **filters)
    page = page_of(request, entries, PAGE_SIZE)
    query = {k: v for k, v in request.GET.items() if k in AuditFilterForm.base_fields and v and "\x00" not in v}
    export = {k: v for k, v in (("actor", filters.get("actor")), ("action", filters.get("action")),
                                ("target", filters.get("target_id"))) if v}
    for name in ("since", "until"):
        if filters.get(name):
            export[name] = filters[name].isoformat()
    known_actions = sorted(set(audit.AuditLog.objects.filter(organization=organization)
                               .values_list("action", flat=True).distinct()[:200]))
    retention = settings.AUDIT_RETENTION_DAYS
    return render(request, "accounts/audit_list.html", {
        "organization": organization, "form": form, "page": page, "entries": page.object_list,
        "page_query": urlencode(query), "filtered": bool(query),
        "export_url": reverse("api-audit-export") + (f"?{urlencode(export)}" if export else ""),
        "can_export": access.can("accounts.export_auditlog"), "known_actions": known_actions,
        "retention_days": retention, "section": "audit",
    })


@login_required
@require_GET
@role_required("accounts.view_auditlog")
def audit_detail(request: HttpRequest, entry_id: int) -> HttpResponse:
    access = access_or_403(request)
    entry = found_or_404(selectors.audit_entry_get(organization=access.organization, entry_id=entry_id),
                         "No such audit log entry.")
    diff_rows = []
    if isinstance(entry.diff, dict):
        for field, change in entry.diff.items():
            old, new = (change + [None, None])[:2] if isinstance(change, list) else (None, change)
            diff_rows.append({"field": field, "old": _pretty(old), "new": _pretty(new)})
    return render(request, "accounts/audit_detail.html", {
        "organization": access.organization, "entry": entry, "diff_rows": diff_rows,
        "diff_json": _pretty(entry.diff), "data_json": _pretty(entry.data), "section": "audit",
    })
