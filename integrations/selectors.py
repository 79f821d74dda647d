"""Reads for the catalog and connections, scoped to the caller's organization and role.

Who sees a connection: everyone sees their own personal connections and the organization's
shared ones; `integrations.view_all_connections` (Admin, Auditor) also sees everyone else's.
Who acts on one: a personal connection's owner (with change/delete_connection), an organization
connection anyone with `integrations.manage_org_connections`. Nothing here reads `secret`.

`agent_integrations_clean` is the one check of an agent's per-integration settings (which
connection, which scopes), used by the builder's form and the REST serializer alike.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from accounts.models import Organization
from integrations import catalog
from integrations import tools as tool_registry
from integrations.catalog import AuthType, Integration
from integrations.models import Connection, ConnectionCall

if TYPE_CHECKING:
    from accounts.roles import Access
    from agents.models import Agent

RUNNER = "runner"  # the agent acts through the connection of whoever runs it (integrations.calls)
USABLE = (Connection.Status.ACTIVE, Connection.Status.ERROR)
OWNER_FILTERS = ("mine", "organization", "others")


# --------------------------------------------------------------------------- catalog


def integration_list(*, organization: Organization, category: str = "", status: str = "",
                     search: str = "") -> list[Integration]:
    """The catalog as this organization sees it (its own OpenAPI and MCP integrations included)."""
    found = catalog.all_integrations(organization.id)
    if category:
        found = [i for i in found if i.category == category]
    if status:
        found = [i for i in found if i.status == status]
    needle = search.strip().lower()
    if needle:
        found = [i for i in found if needle in i.name.lower() or needle in i.summary.lower()
                 or needle in i.slug.lower()]
    return found


def integration_get(*, organization: Organization, slug: str) -> Integration | None:
    return catalog.get(slug, organization.id)


def integration_tools(*, organization: Organization, integration: Integration) -> list[tool_registry.Tool]:
    return [t for t in tool_registry.for_organization(organization.id).values() if t.integration == integration.slug]


def needs_connection(integration: Integration) -> bool:
    return tuple(integration.auth_types) != (AuthType.NONE,)


# --------------------------------------------------------------------------- connections


def connection_visible_q(viewer: Access) -> Q:
    if viewer.can("integrations.view_all_connections"):
        return Q()
    return Q(owner__isnull=True) | Q(owner_id=viewer.user.pk)


def connection_list(*, viewer: Access, status: str = "", integration: str = "",
                    owner: str = "") -> QuerySet[Connection]:
    """Connections the viewer may see, newest first. `owner`: mine, organization or others."""
    qs = Connection.objects.filter(connection_visible_q(viewer), organization=viewer.organization)
    if status:
        qs = qs.filter(status=status)
    if integration:
        qs = qs.filter(integration=integration)
    if owner == "mine":
        qs = qs.filter(owner_id=viewer.user.pk)
    elif owner == "organization":
        qs = qs.filter(owner__isnull=True)
    elif owner == "others":
        qs = qs.filter(owner__isnull=False).exclude(owner_id=viewer.user.pk)
    return qs.select_related("owner").order_by("-created_at", "id")


def connection_get(*, viewer: Access, connection_id: Any) -> Connection | None:
    try:
        return (Connection.objects.select_related("owner", "revoked_by", "created_by")
                .filter(connection_visible_q(viewer), organization=viewer.organization, id=connection_id).first())
    except (ValueError, TypeError, ValidationError):
        return None


def _may_act(viewer: Access, connection: Connection, personal_perm: str) -> bool:
    if connection.owner_id is None:
        return viewer.can("integrations.manage_org_connections")
    return connection.owner_id == viewer.user.pk and viewer.can(personal_perm)


def connection_can_change(*, viewer: Access, connection: Connection) -> bool:
    """Test and reconnect."""
    return _may_act(viewer, connection, "integrations.change_connection")


def connection_can_delete(*, viewer: Access, connection: Connection) -> bool:
    """Revoke. Admins may also revoke a person's own connection (someone leaving, a leaked
    token); using or re-authorizing it stays with its owner."""
    if (connection.owner_id is not None and viewer.can("integrations.manage_org_connections")
            and viewer.can("integrations.view_all_connections")):
        return True
    return _may_act(viewer, connection, "integrations.delete_connection")


def connection_act_refusal(*, viewer: Access, connection: Connection, verb: str) -> str:
    """Why the viewer may not act on this connection, in words for the 403."""
    if connection.owner_id is None:
        return (f"Permission denied: only organization admins can {verb} the organization's shared connection "
                f"“{connection.name}”.")
    if connection.owner_id != viewer.user.pk:
        return f"Permission denied: “{connection.name}” is {connection.owner.get_username()}'s personal connection; " \
               f"only they can {verb} it."
    return f"Permission denied: your role ({viewer.role_label}) can't {verb} connections."


def connection_calls(*, connection: Connection) -> QuerySet[ConnectionCall]:
    return ConnectionCall.objects.filter(connection=connection).order_by("-created_at", "-id")


def connected_slugs(*, organization: Organization, user: AbstractBaseUser) -> dict[str, str]:
    """Integrations this person can use right now: slug -> "personal" or "organization"."""
    found: dict[str, str] = {}
    rows = (Connection.objects.filter(organization=organization, status__in=USABLE)
            .filter(Q(owner__isnull=True) | Q(owner_id=user.pk)).values_list("integration", "owner_id"))
    for slug, owner_id in rows:
        if owner_id is not None or slug not in found:
            found[slug] = "personal" if owner_id is not None else "organization"
    return found


def agents_using(*, connection: Connection, viewer: Access) -> QuerySet[Agent]:
    """Agents (that the viewer may see) bound to this connection; for a personal one also those
    that act through whoever runs them, since they use it when its owner runs them."""
    from agents import selectors as agent_selectors

    slug = connection.integration
    bound = Q(integrations__contains={slug: {"connection": str(connection.id)}})
    if connection.owner_id is not None:
        names = [name for name, t in tool_registry.for_organization(connection.organization_id).items()
                 if t.integration == slug]
        if names:
            runner = Q(integrations__contains={slug: {"connection": RUNNER}}) | ~Q(integrations__has_key=slug)
            bound |= Q(tools__overlap=names) & runner
    visible = agent_selectors.agent_list(organization=connection.organization, viewer=viewer, ordering="name")
    return visible.filter(bound)


# --------------------------------------------------------------------------- agents' settings


def tools_by_integration(*, organization: Organization, tools: list[str]) -> dict[str, list[tool_registry.Tool]]:
    """The agent's chosen connector tools, grouped by the integration they act through."""
    available = tool_registry.for_organization(organization.id)
    grouped: dict[str, list[tool_registry.Tool]] = {}
    for name in tools:
        found = available.get(name)
        if found is not None and found.integration:
            grouped.setdefault(found.integration, []).append(found)
    return grouped


def scopes_needed(integration: Integration, tools: list[tool_registry.Tool]) -> list[str]:
    wanted = {s for t in tools for s in t.scopes}
    return [s for s in integration.scope_names if s in wanted]


@dataclass
class ConnectionChoice:
    value: str
    label: str


def connection_choices(*, organization: Organization, actor: AbstractBaseUser, integration: Integration,
                       current: str = "") -> list[ConnectionChoice]:
    """What an agent builder may pick for an integration: whoever runs the agent, one of the
    organization's connections, or one of the builder's own (which only works when they run it).
    The agent's current choice stays listed even if it is someone else's."""
    choices = [ConnectionChoice(RUNNER, "The person running the agent")]
    rows = (Connection.objects.filter(organization=organization, integration=integration.slug)
            .exclude(status=Connection.Status.REVOKED)
            .filter(Q(owner__isnull=True) | Q(owner_id=actor.pk) | Q(id=_uuid_or_none(current)))
            .select_related("owner").order_by("owner_id", "name"))
    for row in rows:
        state = "" if row.status == Connection.Status.ACTIVE else f" ({row.get_status_display().lower()})"
        if row.owner_id is None:
            label = f"Organization: {row.name}{state}"
        elif row.owner_id == actor.pk:
            label = f"{row.name}{state}, only works when you ({actor.get_username()}) run it"
        else:
            who = row.owner.get_username()
            label = f"{who}'s {row.name}{state}, only works when {who} runs it"
        choices.append(ConnectionChoice(str(row.id), label))
    return choices


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def agent_integrations_clean(*, organization: Organization, tools: list[str], value: Any,
                             actor: AbstractBaseUser | None, current: dict | None = None) -> dict:
    """Check an agent's `integrations` setting against its tools and return it normalised:
    {slug: {"connection": "runner" | "<uuid>", "scopes": [...]}}.

    Raises ValidationError keyed `integrations` (shape) or `integrations.<slug>.connection` /
    `integrations.<slug>.scopes`. The connection must be one of this organization's connections
    for that integration and not revoked; a personal connection must be the builder's own (or
    already the agent's). Scopes must be the integration's, and cover what the chosen tools need;
    left out, they default to exactly that. Settings for integrations none of the tools use are
    dropped: they would mean nothing. `current` is the agent's saved setting (when editing)."""
    if value in (None, ""):
        value = {}
    if not isinstance(value, dict):
        raise ValidationError({"integrations": ['Must be an object: {"<integration>": {"connection": "runner" | '
                                                '"<connection id>", "scopes": [...]}}.']})
    current = current if isinstance(current, dict) else {}
    used = tools_by_integration(organization=organization, tools=list(tools or []))
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, dict] = {}
    for slug, setting in value.items():
        integration = catalog.get(slug, organization.id) if isinstance(slug, str) else None
        if integration is None:
            errors[f"integrations.{slug}"] = [f"Unknown integration {slug!r}."]
            continue
        if slug not in used:
            continue
        if not isinstance(setting, dict):
            errors[f"integrations.{slug}"] = ['Must be an object: {"connection": ..., "scopes": [...]}.']
            continue
        stray = sorted(set(setting) - {"connection", "scopes"})
        if stray:
            errors[f"integrations.{slug}"] = [f"Unknown key(s) {', '.join(map(str, stray))}; "
                                              "use connection and scopes."]
            continue
        saved = current.get(slug) if isinstance(current.get(slug), dict) else {}
        connection_error = _connection_problem(
            organization=organization, integration=integration, choice=setting.get("connection") or RUNNER,
            actor=actor, kept=saved.get("connection"),
        )
        if connection_error:
            errors[f"integrations.{slug}.connection"] = [connection_error]
        scopes, scope_error = _scopes_problem(integration, used[slug], setting.get("scopes"))
        if scope_error:
            errors[f"integrations.{slug}.scopes"] = [scope_error]
        if not connection_error and not scope_error:
            choice = str(setting.get("connection") or RUNNER)
            cleaned[slug] = {"connection": choice if needs_connection(integration) else RUNNER, "scopes": scopes}
    if errors:
        raise ValidationError(errors)
    return cleaned


def _connection_problem(*, organization: Organization, integration: Integration, choice: Any,
                        actor: AbstractBaseUser | None, kept: Any) -> str:
    if choice == RUNNER:
        return ""
    if not needs_connection(integration):
        return f"{integration.name} needs no connection; leave it at \"runner\"."
    connection_id = _uuid_or_none(choice) if isinstance(choice, str) else None
    found = None
    if connection_id is not None:
        found = (Connection.objects.select_related("owner")
                 .filter(organization=organization, integration=integration.slug, id=connection_id).first())
    if found is None:
        return (f"No {integration.name} connection with that id in this organization; use \"runner\" or the id of "
                "one of its connections.")
    if found.status == Connection.Status.REVOKED:
        return f"The connection “{found.name}” was revoked; pick another one or connect {integration.name} again."
    if found.owner_id is not None and (actor is None or found.owner_id != actor.pk) and str(kept) != str(found.id):
        return (f"“{found.name}” is {found.owner.get_username()}'s personal connection; pick an organization "
                "connection, one of your own, or the person running the agent.")
    return ""


def _scopes_problem(integration: Integration, tools: list[tool_registry.Tool], scopes: Any) -> tuple[list[str], str]:
    needed = scopes_needed(integration, tools)
    if scopes is None:
        return needed, ""
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return [], "Must be a list of scope names."
    unknown = [s for s in scopes if integration.scope(s) is None]
    if unknown:
        return [], (f"{integration.name} has no scope {', '.join(unknown)}; choose from "
                    f"{', '.join(integration.scope_names) or 'none'}.")
    missing = [f"{t.name} needs {', '.join(s for s in t.scopes if s not in scopes)}"
               for t in tools if any(s not in scopes for s in t.scopes)]
    if missing:
        return [], f"The chosen tools need scopes that aren't selected: {'; '.join(missing)}."
    return [s for s in integration.scope_names if s in scopes], ""


def agent_integration_warnings(*, agent: Agent, viewer: Access) -> list[dict[str, str]]:
    """What stands between this agent and its connector tools, for the agent's page: a chosen
    connection that is gone, revoked or needs re-authorization, someone else's personal one, or
    (acting as whoever runs it) the viewer having no usable connection of their own."""
    organization = agent.organization
    warnings: list[dict[str, str]] = []
    settings = agent.integrations or {}
    for slug in tools_by_integration(organization=organization, tools=list(agent.tools)):
        integration = catalog.get(slug, organization.id)
        if integration is None:
            warnings.append({"slug": slug, "level": "error", "integration": slug,
                             "message": f"The integration {slug!r} is no longer available; its tools will be refused."})
            continue
        if not needs_connection(integration):
            continue
        choice = str((settings.get(slug) or {}).get("connection") or RUNNER)
        if choice == RUNNER:
            mine = (Connection.objects.filter(organization=organization, integration=slug, owner_id=viewer.user.pk)
                    .exclude(status=Connection.Status.REVOKED).order_by("-created_at").first())
            revoked = None if mine else (
                Connection.objects.filter(organization=organization, integration=slug, owner_id=viewer.user.pk,
                                          status=Connection.Status.REVOKED).order_by("-revoked_at").first())
            if revoked is not None:
                warnings.append({"slug": slug, "level": "warning", "integration": integration.name,
                                 "message": f"This agent acts through the {integration.name} connection of whoever "
                                            f"runs it, and yours (“{revoked.name}”) was revoked: its "
                                            f"{integration.name} tools will be refused in your runs until you connect "
                                            "again."})
            elif mine is None:
                warnings.append({"slug": slug, "level": "warning", "integration": integration.name,
                                 "message": f"This agent acts through the {integration.name} connection of whoever "
                                            f"runs it, and you have none: its {integration.name} tools will be "
                                            "refused in your runs until you connect one."})
            elif mine.status == Connection.Status.NEEDS_REAUTH:
                warnings.append({"slug": slug, "level": "warning", "integration": integration.name,
                                 "connection": str(mine.id),
                                 "message": f"Your {integration.name} connection “{mine.name}” needs "
                                            "re-authorization: reconnect it, or its tools will be refused in your "
                                            "runs."})
            continue
        found = Connection.objects.select_related("owner").filter(
            organization=organization, integration=slug, id=_uuid_or_none(choice)).first()
        if found is None:
            warnings.append({"slug": slug, "level": "error", "integration": integration.name,
                             "message": f"The {integration.name} connection chosen for this agent no longer exists; "
                                        "its tools will be refused until its builder picks another."})
        elif found.status == Connection.Status.REVOKED:
            warnings.append({"slug": slug, "level": "error", "integration": integration.name,
                             "connection": str(found.id),
                             "message": f"The {integration.name} connection “{found.name}” this agent uses was "
                                        "revoked: its tools will be refused until someone connects again and the "
                                        "agent is switched to the new connection."})
        elif found.status == Connection.Status.NEEDS_REAUTH:
            warnings.append({"slug": slug, "level": "warning", "integration": integration.name,
                             "connection": str(found.id),
                             "message": f"The {integration.name} connection “{found.name}” this agent uses needs "
                                        "re-authorization: its tools will be refused until it is reconnected."})
        elif found.owner_id is not None and found.owner_id != viewer.user.pk:
            warnings.append({"slug": slug, "level": "info", "integration": integration.name,
                             "connection": str(found.id),
                             "message": f"This agent uses {found.owner.get_username()}'s personal {integration.name} "
                                        f"connection “{found.name}”: its {integration.name} tools only work when they "
                                        "run it."})
    return warnings


def agent_integration_rows(*, agent: Agent) -> list[dict[str, Any]]:
    """For the agent's page: each integration its tools use, the connection it acts through and
    the scopes its builder granted."""
    organization = agent.organization
    settings = agent.integrations or {}
    rows = []
    for slug, used in tools_by_integration(organization=organization, tools=list(agent.tools)).items():
        integration = catalog.get(slug, organization.id)
        setting = settings.get(slug) or {}
        choice = str(setting.get("connection") or RUNNER)
        if integration is None:
            rows.append({"slug": slug, "name": slug, "connection": "no longer available", "scopes": []})
            continue
        scopes = setting.get("scopes")
        scopes = list(scopes) if isinstance(scopes, list) else scopes_needed(integration, used)
        if not needs_connection(integration):
            label = "none needed"
        elif choice == RUNNER:
            label = "the person running the agent"
        else:
            found = (Connection.objects.select_related("owner")
                     .filter(organization=organization, id=_uuid_or_none(choice)).first())
            if found is None:
                label = "a connection that no longer exists"
            elif found.owner_id is None:
                label = f"organization connection “{found.name}”"
            else:
                label = f"{found.owner.get_username()}'s connection “{found.name}”"
        rows.append({"slug": slug, "name": integration.name, "connection": label, "scopes": scopes,
                     "connection_id": choice if choice != RUNNER else ""})
    return rows
