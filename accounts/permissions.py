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


ANY_MEMBER = None  # a role_perms value: any member of the organization may do it


class RolePermission(BasePermission):
    """Checks the caller's role (accounts/roles.py) against the view's `role_perms`.

    `role_perms` maps a viewset action (or, for plain views, the lowercase HTTP method; "*" for
    all; "action:method" when one action serves several methods) to a permission such as
    "agents.add_agent", or ANY_MEMBER. It fails closed: a view or an action without a rule is
    refused, so a new endpoint can't be reachable before someone decides who may use it.
    Object-level rules (sharing, ownership) are the selectors' and services' job.
    """

    message = "Permission denied."

    def has_permission(self, request, view) -> bool:
        if request.method == "OPTIONS":
            return True
        rules = getattr(view, "role_perms", None)
        if rules is None:
            self.message = "Permission denied: this endpoint declares no role rule."
            return False
        method = "get" if request.method == "HEAD" else request.method.lower()
        action_map = getattr(view, "action_map", None)
        if (
            method not in getattr(view, "http_method_names", ())
            or (action_map is not None and method not in action_map)
            or (action_map is None and not hasattr(view, method))
        ):
            return True  # no such method here: the view answers 405, there is nothing to protect
        action = getattr(view, "action", None) or method
        for key in (f"{action}:{method}", action, "*"):
            if key in rules:
                perm = rules[key]
                break
        else:
            self.message = f"Permission denied: no role rule for '{action}'."
            return False
        from accounts.roles import access_for_request, permission_label

        access = access_for_request(request)
        if access is None:
            self.message = "You are not a member of any organization."
            return False
        if perm is ANY_MEMBER or access.can(perm):
            return True
        self.message = f"Permission denied: your role ({access.role_label}) can't {permission_label(perm)}."
        return False
