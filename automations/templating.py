"""Goal templates: Django template syntax with a deliberately small vocabulary.

Anyone who can reach a webhook controls the payload, and templates are rendered inside the web
process, so the engine has no loaders (no include/extends), no {% load %}, no {% debug %}, no
loops (nested loops over a large payload would burn CPU) and no filters that pad or format to a
caller-chosen width. Autoescaping is off: the output is a goal for a model, not HTML. The context
is a fresh copy of plain JSON data, so a template can't change what the run receives.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from django.template import Context, Engine, Library, TemplateSyntaxError, defaultfilters, defaulttags

from automations.models import GOAL_TEMPLATE_MAX, MAX_GOAL

register = Library()

for _tag in ("if", "firstof", "with", "comment", "verbatim", "spaceless", "templatetag"):
    register.tag(_tag, defaulttags.register.tags[_tag])

for _filter in (
    "default", "default_if_none", "length", "first", "last", "lower", "upper", "title", "capfirst",
    "truncatechars", "truncatewords", "slice", "yesno", "cut", "striptags", "wordcount", "urlencode",
    "add", "pluralize",
):
    register.filter(_filter, defaultfilters.register.filters[_filter])


@register.filter(name="join")
def join(value: Any, separator: str) -> str:
    """Like Django's join, but stops once the text is longer than any goal can be."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        return str(value)
    parts: list[str] = []
    size = 0
    for item in value:
        text = str(item)
        size += len(text) + len(separator)
        parts.append(text)
        if size > MAX_GOAL:
            break
    return str(separator).join(parts)


@register.filter(name="json")
def to_json(value: Any) -> str:
    """A value as compact JSON, e.g. {{ payload|json }}."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


class _GoalEngine(Engine):
    default_builtins = ["automations.templating"]


_engine = _GoalEngine(autoescape=False, debug=False, string_if_invalid="", libraries={}, dirs=[], app_dirs=False)


class TemplateError(ValueError):
    pass


def check(source: str) -> None:
    """Raise TemplateError when `source` is not a usable goal template."""
    if not source or not source.strip():
        raise TemplateError("The goal template is empty.")
    if len(source) > GOAL_TEMPLATE_MAX:
        raise TemplateError(f"The goal template is too long ({GOAL_TEMPLATE_MAX} characters at most).")
    try:
        _engine.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"Template error: {exc}") from None


def render(source: str, context: dict[str, Any]) -> str:
    """The goal for `context`; raises TemplateError if it can't be rendered or comes out empty."""
    check(source)
    try:
        text = _engine.from_string(source).render(Context(copy.deepcopy(context), autoescape=False))
    except (TemplateSyntaxError, TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
        raise TemplateError(f"Could not render the goal template: {exc}") from None
    text = text.strip()
    if not text:
        raise TemplateError("The goal template rendered an empty goal.")
    return text[:MAX_GOAL]
