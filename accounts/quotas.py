"""Monthly quotas per organization and per user: runs, tokens and spend.

Checked when a run starts (a run already going is never cut off by a quota; its own budgets
bound it). At 80% of any limit callers get a warning; at 100% new runs are refused with a clear
error. Usage counts runs created this calendar month (UTC) and the tokens and cost they used.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.models import Organization, Quota

WARN_AT = Decimal("0.8")


class QuotaExceeded(Exception):
    def __init__(self, message: str, usage: list[dict]) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Line:
    scope: str  # "organization" or "user"
    metric: str  # runs, tokens, spend_usd
    used: Decimal
    limit: Decimal | None

    @property
    def ratio(self) -> Decimal | None:
        return None if not self.limit else self.used / self.limit

    def as_dict(self) -> dict:
        def number(value: Decimal | None):
            if value is None:
                return None
            return float(value) if self.metric == "spend_usd" else int(value)

        return {"scope": self.scope, "metric": self.metric, "used": number(self.used), "limit": number(self.limit),
                "percent": round(float(self.ratio) * 100, 1) if self.ratio is not None else None}


def month_start():
    now = timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _usage(organization: Organization, user=None) -> dict[str, Decimal]:
    from agents.models import Run

    runs = Run.objects.filter(organization=organization, created_at__gte=month_start())
    if user is not None:
        runs = runs.filter(created_by=user)
    totals = runs.aggregate(count=Count("id"), input=Sum("input_tokens"), output=Sum("output_tokens"),
                            cost=Sum("cost_usd"))
    return {
        "runs": Decimal(totals["count"] or 0),
        "tokens": Decimal((totals["input"] or 0) + (totals["output"] or 0)),
        "spend_usd": totals["cost"] or Decimal("0"),
    }


def usage_lines(*, organization: Organization, user=None, only_limited: bool = False) -> list[Line]:
    """Usage against limits. With `only_limited`, scopes without a quota are skipped (no counting):
    the check on every run start then costs one indexed lookup when no quotas are set."""
    quotas = {q.user_id: q for q in Quota.objects.filter(organization=organization).filter(
        Q(user__isnull=True) | Q(user=user) if user is not None else Q(user__isnull=True))}
    lines: list[Line] = []
    for scope, quota, who in (("organization", quotas.get(None), None), ("user", quotas.get(getattr(user, "pk", -1)),
                                                                         user)):
        if scope == "user" and user is None:
            continue
        if only_limited and quota is None:
            continue
        used = _usage(organization, who)
        limits = {
            "runs": quota.runs_per_month if quota else None,
            "tokens": quota.tokens_per_month if quota else None,
            "spend_usd": quota.spend_per_month_usd if quota else None,
        }
        for metric in ("runs", "tokens", "spend_usd"):
            limit = limits[metric]
            lines.append(Line(scope, metric, used[metric], Decimal(limit) if limit is not None else None))
    return lines


def check_run_allowed(*, organization: Organization, user) -> list[dict]:
    """Raise QuotaExceeded if a limit is reached; otherwise return warnings (>= 80%)."""
    lines = usage_lines(organization=organization, user=user, only_limited=True)
    over = [line for line in lines if line.limit is not None and line.used >= line.limit]
    if over:
        names = ", ".join(f"{line.scope} {line.metric.replace('_usd', '')} "
                          f"({line.used:g} of {line.limit:g} this month)" for line in over)
        raise QuotaExceeded(f"Monthly quota reached: {names}. It resets on the 1st; an owner or admin can raise it.",
                            [line.as_dict() for line in over])
    return [line.as_dict() for line in lines if line.ratio is not None and line.ratio >= WARN_AT]
