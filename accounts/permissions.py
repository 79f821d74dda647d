"""API key scopes: what a key may do, below what its user may do.

read   — GET/HEAD/OPTIONS anywhere;
run    — start runs, steer them, decide approvals (views list these actions in `run_scope_actions`);
manage — every other write: agents, schedules, triggers, keys.
Session (browser) requests are not narrowed by scopes.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import ApiToken


def required_scope(request, view) -> str:
    if request.method in SAFE_METHODS:
        return ApiToken.Scope.READ
    if getattr(view, "action", None) in getattr(view, "run_scope_actions", ()):
        return ApiToken.Scope.RUN
    return ApiToken.Scope.MANAGE


class TokenScopes(BasePermission):
    message = "This API key's scopes don't allow that."

    def has_permission(self, request, view) -> bool:
        token = getattr(request, "auth", None)
        if not isinstance(token, ApiToken):
            return True
        needed = required_scope(request, view)
        if needed in token.scopes:
            return True
        self.message = f"This API key lacks the '{needed}' scope (it has: {', '.join(token.scopes) or 'none'})."
        return False
