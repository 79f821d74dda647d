"""Helpers shared by the server-rendered views of every app."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest

from accounts.models import Organization
from accounts.roles import access_or_403
from accounts.selectors import organization_for_request

PAGE_SIZE = 20
T = TypeVar("T")


def organization_or_403(request: HttpRequest) -> Organization:
    organization = organization_for_request(request)
    if organization is None:
        raise PermissionDenied("You are not a member of any organization yet. Ask an owner to add you.")
    return organization


def found_or_404(value: T | None, message: str) -> T:
    """A selector's result, or the page's 404 (selectors return None for other organizations' objects)."""
    if value is None:
        raise Http404(message)
    return value


def page_of(request: HttpRequest, items: Any, size: int = PAGE_SIZE) -> Page:
    return Paginator(items, size).get_page(request.GET.get("page"))


def role_required(perm: str) -> Callable:
    """A page needs this role permission in the organization the person acts in; without it they
    get the 403 page saying what their role can't do, with a way back. Use under login_required."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any):
            access_or_403(request).require(perm)
            return view(request, *args, **kwargs)

        wrapped.required_perm = perm  # type: ignore[attr-defined]
        return wrapped

    return decorate
