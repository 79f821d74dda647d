"""Template helpers for the sign-in and account pages."""

from __future__ import annotations

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def signup_open() -> bool:
    """Whether anyone may create an account here (AGENTRY_SIGNUP=open): the sign-in page offers it only then."""
    return settings.SIGNUP == "open"
