from __future__ import annotations

from django.conf import settings
from django.urls import Resolver404, resolve
from django.utils.functional import SimpleLazyObject
from django.utils.http import url_has_allowed_host_and_scheme


def agentry(request) -> dict:
    return {"ANTHROPIC_ENABLED": bool(settings.ANTHROPIC_API_KEY), "DEFAULT_MODEL": settings.DEFAULT_MODEL,
            **access(request)}


def access(request) -> dict:
    """What the signed-in person may do where they act, for templates to hide what their role can't use:
    `access` (role_label, organization), `role_perms` (a set: {% if "accounts.view_auditlog" in role_perms %}),
    `my_memberships` and `switch_next` (the organization switcher) and `back_url` (a safe way back, for
    the 403 page).

    Not Django's `perms`: that one (through accounts.backends.RoleBackend) unites the roles of all the
    person's organizations, while a page acts in one of them. Everything is lazy, so pages that don't
    ask cost no query."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"access": None, "role_perms": frozenset(), "my_memberships": (), "back_url": lambda: _back(request)}
    from accounts.roles import access_for_request
    from accounts.selectors import memberships_of

    current = SimpleLazyObject(lambda: access_for_request(request))

    def role_perms():
        found = access_for_request(request)
        return found.perms if found is not None else frozenset()

    def memberships():
        found = access_for_request(request)
        current_id = found.organization.id if found is not None else None
        rows = list(memberships_of(user=user))
        for row in rows:
            row.is_current = row.organization_id == current_id
        return rows

    return {
        "access": current,
        "role_perms": SimpleLazyObject(role_perms),
        "my_memberships": SimpleLazyObject(memberships),
        "back_url": lambda: _back(request),
        "switch_next": lambda: list_page_or_home(request.path),
    }


def list_page_or_home(path: str) -> str:
    """Where switching organizations lands: the page the person is on if it is a list or a form
    without an object in its path (it exists in every organization), else the home page. An object
    page of the old organization would be a 404 in the new one; and a page never echoes an object
    id into the switcher (the 404 page for another organization's object must not show it)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/") or path.startswith("//"):
        return "/"
    try:
        match = resolve(path)
    except Resolver404:
        return "/"
    if match.kwargs or match.args or match.url_name == "org-switch":
        return "/"
    return path


def _back(request) -> str:
    referer = request.META.get("HTTP_REFERER", "")
    if referer and referer != request.build_absolute_uri() and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return referer
    return "/"
