"""Server-rendered account pages: usage against quotas."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.db.models.functions import TruncDay
from django.shortcuts import render
from django.utils import timezone

from accounts import quotas
from accounts.selectors import membership_for_request

LABELS = {"runs": "Runs", "tokens": "Tokens", "spend_usd": "Spend (USD)"}


@login_required
def usage(request):
    membership = membership_for_request(request)
    if membership is None:
        raise PermissionDenied("You are not a member of any organization yet.")
    organization = membership.organization
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
