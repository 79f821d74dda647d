"""The role matrix: each of the six roles against each action, allowed or 403.

MATRIX below is the specification, written by hand and independent of accounts/roles.py: which
roles may do what. Every action is tried by a member of each role, through the REST API with a
key carrying every scope, or through the UI with a session. Allowed means the check let the
request through (it may still be refused for its content: 400, 409), denied means exactly 403
with the reason. A check removed from a view, a permission dropped from a role's defaults, or a
route added without an entry here fails these tests by name.

The agent everyone acts on is owned by someone else and shared with the whole organization with
edit rights, so visibility (sharing) is never the reason for a refusal: the role is. The rules
sharing adds (an agent private to its owner is invisible, deleting and sharing are the owner's
or an admin's) are checked at the end of this module and in agents/tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import ApiToken, AuditLog, IdentityProvider, Membership, Team
from accounts.roles import role_permissions
from agents import approvals, events
from agents import services as agent_services
from agents.llm.base import ToolCall
from agents.models import Agent, Run
from automations import services as automation_services
from automations.models import Trigger, TriggerEvent
from integrations import crypto
from integrations.connectors.openapi import services as http_api_services
from integrations.models import Connection, McpServer
from tests.fakes import openapi_server
from tests.test_tenant_isolation import NO_TENANT_OBJECT, NO_TENANT_OBJECT_PREFIXES, http_routes

ROLES = ["owner", "admin", "builder", "operator", "viewer", "auditor"]
EVERYONE = frozenset(ROLES)
MANAGERS = frozenset({"owner", "admin"})
BUILDERS = MANAGERS | {"builder"}
OPERATORS = BUILDERS | {"operator"}
READ_ALL = MANAGERS | {"auditor"}
OWNERS = frozenset({"owner"})


@dataclass
class World:
    organization: Any
    owner: Any
    agent: Agent
    run: Run
    approval: Any
    schedule: Any
    trigger: Trigger
    event: TriggerEvent
    team: Team
    service_key: ApiToken
    target: Membership | None = None  # a Viewer everyone may act on (never the acting person)
    entry: AuditLog | None = None
    provider: IdentityProvider | None = None
    others: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    route: str
    method: str
    allowed: frozenset[str]
    kwargs: Callable[[World], dict] = lambda w: {}
    body: Callable[[World], dict] | None = None
    query: str = ""
    refused: int = 403  # 404 where a refusal means the object isn't yours to see (others' keys)

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}"


def agent(w: World) -> dict:
    return {"pk": w.agent.id}


def run(w: World) -> dict:
    return {"pk": w.run.id}


def schedule(w: World) -> dict:
    return {"pk": w.schedule.id}


def trigger(w: World) -> dict:
    return {"pk": w.trigger.id}


def A(route: str, method: str, allowed, kwargs=lambda w: {}, body=None, query="", refused=403) -> Action:  # noqa: N802
    return Action(route, method, frozenset(allowed), kwargs, body, query, refused)


def member(w: World) -> dict:
    return {"pk": w.target.id}


def team(w: World) -> dict:
    return {"pk": w.team.id}


MATRIX: list[Action] = [
    # ------------------------------------------------------------------ REST API: agents and runs
    A("agent-list", "GET", EVERYONE),
    A("agent-list", "POST", BUILDERS, body=lambda w: {"name": "New", "system_prompt": "x", "model": "demo"}),
    A("agent-detail", "GET", EVERYONE, agent),
    A("agent-detail", "PATCH", BUILDERS, agent, body=lambda w: {"description": "changed"}),
    A("agent-detail", "DELETE", MANAGERS, agent),  # builders may delete only their own agents
    A("agent-runs", "GET", EVERYONE, agent),
    A("agent-runs", "POST", OPERATORS, agent, body=lambda w: {"goal": "go"}),
    A("agent-shares", "GET", EVERYONE, agent),
    A("agent-shares", "POST", MANAGERS, agent, body=lambda w: {"team": str(w.team.id)}),  # or the owner
    A("agent-shares", "DELETE", MANAGERS, agent, query="team=organization"),
    A("run-list", "GET", EVERYONE),
    A("run-detail", "GET", EVERYONE, run),
    A("run-events", "GET", EVERYONE, run),
    A("run-cancel", "POST", OPERATORS, run),
    A("run-pause", "POST", OPERATORS, run),
    A("run-resume", "POST", OPERATORS, run),
    A("run-retry", "POST", OPERATORS, run),
    A("run-rerun", "POST", OPERATORS, run),
    A("run-uncertain-write", "POST", OPERATORS, run, body=lambda w: {"decision": "skip"}),
    A("approval-list", "GET", EVERYONE),
    A("approval-detail", "GET", EVERYONE, lambda w: {"pk": w.approval.id}),
    A("approval-decide", "POST", OPERATORS, lambda w: {"pk": w.approval.id},
      body=lambda w: {"decision": "reject", "message": "no"}),
    A("api-models", "GET", EVERYONE),
    A("api-tools", "GET", EVERYONE),
    # ------------------------------------------------------------------ REST API: automations
    A("automations:api-schedule-list", "GET", EVERYONE),
    A("automations:api-schedule-list", "POST", OPERATORS,
      body=lambda w: {"agent": str(w.agent.id), "name": "Nightly", "goal": "go", "cron": "0 3 * * *"}),
    A("automations:api-schedule-detail", "GET", EVERYONE, schedule),
    A("automations:api-schedule-detail", "PATCH", OPERATORS, schedule, body=lambda w: {"name": "Renamed"}),
    A("automations:api-schedule-detail", "DELETE", OPERATORS, schedule),
    A("automations:api-schedule-fire", "POST", OPERATORS, schedule),
    A("automations:api-schedule-firings", "GET", EVERYONE, schedule),
    A("automations:api-trigger-list", "GET", EVERYONE),
    A("automations:api-trigger-list", "POST", OPERATORS,
      body=lambda w: {"agent": str(w.agent.id), "kind": "webhook", "name": "Hook 2", "goal_template": "go"}),
    A("automations:api-trigger-detail", "GET", EVERYONE, trigger),
    A("automations:api-trigger-detail", "PATCH", OPERATORS, trigger, body=lambda w: {"name": "Renamed"}),
    A("automations:api-trigger-detail", "DELETE", OPERATORS, trigger),
    A("automations:api-trigger-rotate-secret", "POST", OPERATORS, trigger),
    A("automations:api-trigger-events", "GET", EVERYONE, trigger),
    A("automations:api-trigger-event-list", "GET", EVERYONE),
    A("automations:api-trigger-event-detail", "GET", EVERYONE, lambda w: {"pk": w.event.id}),
    # ------------------------------------------------------------------ REST API: governance
    A("api-audit-logs", "GET", READ_ALL),
    A("api-audit-export", "GET", READ_ALL),
    A("api-usage", "GET", EVERYONE),
    A("member-list", "GET", EVERYONE),
    A("member-list", "POST", MANAGERS, body=lambda w: {"user": "newcomer@example.com", "role": "viewer"}),
    A("member-detail", "GET", EVERYONE, member),
    A("member-detail", "PATCH", MANAGERS, member, body=lambda w: {"role": "operator"}),
    A("member-detail", "DELETE", MANAGERS, member),
    A("team-list", "GET", EVERYONE),
    A("team-list", "POST", MANAGERS, body=lambda w: {"name": "Legal"}),
    A("team-detail", "GET", EVERYONE, team),
    A("team-detail", "PATCH", MANAGERS, team, body=lambda w: {"description": "changed"}),
    A("team-detail", "DELETE", MANAGERS, team),
    A("team-members", "GET", EVERYONE, team),
    A("team-members", "POST", MANAGERS, team, body=lambda w: {"member": w.target.id}),
    A("team-member-remove", "DELETE", MANAGERS, lambda w: {"pk": w.team.id, "membership_id": w.target.id}),
    A("api-key-list", "GET", EVERYONE),
    A("api-key-list", "POST", EVERYONE, body=lambda w: {"name": "mine", "scopes": ["read"]}),
    A("api-key-list", "POST", MANAGERS, body=lambda w: {"name": "svc", "kind": "service", "scopes": ["read"]}),
    # Others' keys: only those who manage service keys see the organization's; to the rest they don't exist.
    A("api-key-detail", "GET", MANAGERS, lambda w: {"pk": w.service_key.id}, refused=404),
    A("api-key-detail", "DELETE", MANAGERS, lambda w: {"pk": w.service_key.id}, refused=404),
    # ------------------------------------------------------------------ UI: agents and runs
    A("agents:agent-list", "GET", EVERYONE),
    A("agents:agent-create", "GET", BUILDERS),
    A("agents:agent-create", "POST", BUILDERS, body=lambda w: {"name": "New"}),
    A("agents:agent-detail", "GET", EVERYONE, lambda w: {"agent_id": w.agent.id}),
    A("agents:agent-edit", "GET", BUILDERS, lambda w: {"agent_id": w.agent.id}),
    A("agents:agent-edit", "POST", BUILDERS, lambda w: {"agent_id": w.agent.id}, body=lambda w: {"name": ""}),
    A("agents:agent-delete", "GET", MANAGERS, lambda w: {"agent_id": w.agent.id}),
    A("agents:agent-delete", "POST", MANAGERS, lambda w: {"agent_id": w.agent.id}),
    A("agents:agent-run", "POST", OPERATORS, lambda w: {"agent_id": w.agent.id}, body=lambda w: {"goal": "go"}),
    A("agents:agent-share", "POST", MANAGERS, lambda w: {"agent_id": w.agent.id},
      body=lambda w: {"team": str(w.team.id)}),
    A("agents:run-list", "GET", EVERYONE),
    A("agents:run-detail", "GET", EVERYONE, lambda w: {"run_id": w.run.id}),
    A("agents:run-summary", "GET", EVERYONE, lambda w: {"run_id": w.run.id}),
    A("agents:run-controls", "GET", EVERYONE, lambda w: {"run_id": w.run.id}),
    A("agents:run-cancel", "POST", OPERATORS, lambda w: {"run_id": w.run.id}),
    A("agents:run-pause", "POST", OPERATORS, lambda w: {"run_id": w.run.id}),
    A("agents:run-resume", "POST", OPERATORS, lambda w: {"run_id": w.run.id}),
    A("agents:run-retry", "POST", OPERATORS, lambda w: {"run_id": w.run.id}),
    A("agents:run-rerun", "POST", OPERATORS, lambda w: {"run_id": w.run.id}),
    A("agents:run-uncertain-write", "POST", OPERATORS, lambda w: {"run_id": w.run.id},
      body=lambda w: {"decision": "skip"}),
    A("agents:approval-list", "GET", EVERYONE),
    A("agents:approval-badge", "GET", EVERYONE),
    A("agents:approval-detail", "GET", EVERYONE, lambda w: {"approval_id": w.approval.id}),
    A("agents:approval-decide", "POST", OPERATORS, lambda w: {"approval_id": w.approval.id},
      body=lambda w: {"decision": "reject", "message": "no"}),
    # ------------------------------------------------------------------ UI: automations
    A("automations:schedule-list", "GET", EVERYONE),
    A("automations:schedule-create", "GET", OPERATORS),
    A("automations:schedule-create", "POST", OPERATORS, body=lambda w: {"name": ""}),
    A("automations:schedule-preview", "GET", EVERYONE, query="mode=cron&cron=0+9+*+*+*&timezone=UTC"),
    A("automations:schedule-detail", "GET", EVERYONE, lambda w: {"schedule_id": w.schedule.id}),
    A("automations:schedule-edit", "GET", OPERATORS, lambda w: {"schedule_id": w.schedule.id}),
    A("automations:schedule-edit", "POST", OPERATORS, lambda w: {"schedule_id": w.schedule.id},
      body=lambda w: {"name": ""}),
    A("automations:schedule-delete", "GET", OPERATORS, lambda w: {"schedule_id": w.schedule.id}),
    A("automations:schedule-delete", "POST", OPERATORS, lambda w: {"schedule_id": w.schedule.id}),
    A("automations:schedule-toggle", "POST", OPERATORS, lambda w: {"schedule_id": w.schedule.id}),
    A("automations:schedule-fire", "POST", OPERATORS, lambda w: {"schedule_id": w.schedule.id}),
    A("automations:trigger-list", "GET", EVERYONE),
    A("automations:trigger-create", "GET", OPERATORS),
    A("automations:trigger-create", "POST", OPERATORS, body=lambda w: {"name": ""}),
    A("automations:trigger-detail", "GET", EVERYONE, lambda w: {"trigger_id": w.trigger.id}),
    A("automations:trigger-edit", "GET", OPERATORS, lambda w: {"trigger_id": w.trigger.id}),
    A("automations:trigger-edit", "POST", OPERATORS, lambda w: {"trigger_id": w.trigger.id},
      body=lambda w: {"name": ""}),
    A("automations:trigger-delete", "GET", OPERATORS, lambda w: {"trigger_id": w.trigger.id}),
    A("automations:trigger-delete", "POST", OPERATORS, lambda w: {"trigger_id": w.trigger.id}),
    A("automations:trigger-toggle", "POST", OPERATORS, lambda w: {"trigger_id": w.trigger.id}),
    A("automations:trigger-rotate", "POST", OPERATORS, lambda w: {"trigger_id": w.trigger.id}),
    A("automations:event-list", "GET", EVERYONE),
    # ------------------------------------------------------------------ UI: governance
    A("accounts:usage", "GET", EVERYONE),
    A("accounts:settings", "GET", EVERYONE),
    A("accounts:member-list", "GET", EVERYONE),
    A("accounts:member-add", "GET", MANAGERS),
    A("accounts:member-add", "POST", MANAGERS, body=lambda w: {"user": "newcomer@example.com", "role": "viewer"}),
    A("accounts:member-detail", "GET", EVERYONE, lambda w: {"membership_id": w.target.id}),
    A("accounts:member-role", "POST", MANAGERS, lambda w: {"membership_id": w.target.id},
      body=lambda w: {"role": "operator"}),
    A("accounts:member-remove", "GET", MANAGERS, lambda w: {"membership_id": w.target.id}),
    A("accounts:member-remove", "POST", MANAGERS, lambda w: {"membership_id": w.target.id}),
    A("accounts:team-list", "GET", EVERYONE),
    A("accounts:team-create", "GET", MANAGERS),
    A("accounts:team-create", "POST", MANAGERS, body=lambda w: {"name": "Legal"}),
    A("accounts:team-detail", "GET", EVERYONE, lambda w: {"team_id": w.team.id}),
    A("accounts:team-edit", "GET", MANAGERS, lambda w: {"team_id": w.team.id}),
    A("accounts:team-edit", "POST", MANAGERS, lambda w: {"team_id": w.team.id}, body=lambda w: {"name": "Fin"}),
    A("accounts:team-delete", "GET", MANAGERS, lambda w: {"team_id": w.team.id}),
    A("accounts:team-delete", "POST", MANAGERS, lambda w: {"team_id": w.team.id}),
    A("accounts:team-member-add", "POST", MANAGERS, lambda w: {"team_id": w.team.id},
      body=lambda w: {"member": w.target.id}),
    A("accounts:team-member-remove", "GET", MANAGERS, lambda w: {"team_id": w.team.id, "membership_id": w.target.id}),
    A("accounts:team-member-remove", "POST", MANAGERS,
      lambda w: {"team_id": w.team.id, "membership_id": w.target.id}),
    A("accounts:key-list", "GET", EVERYONE),
    A("accounts:key-create", "GET", EVERYONE),
    A("accounts:key-create", "POST", EVERYONE, body=lambda w: {"name": "mine", "kind": "personal", "scopes": "read"}),
    A("accounts:key-revoke", "GET", MANAGERS, lambda w: {"key_id": w.service_key.id}, refused=404),
    A("accounts:key-revoke", "POST", MANAGERS, lambda w: {"key_id": w.service_key.id}, refused=404),
    A("identity-provider-list", "GET", READ_ALL),
    A("identity-provider-list", "POST", MANAGERS,
      body=lambda w: {"kind": "oidc", "name": "Okta", "slug": "okta-2", "server_url": "https://okta.example.com",
                      "client_id": "c", "client_secret": "s"}),
    A("identity-provider-detail", "GET", READ_ALL, lambda w: {"pk": w.provider.id}),
    A("identity-provider-detail", "PATCH", MANAGERS, lambda w: {"pk": w.provider.id}, body=lambda w: {"name": "X"}),
    A("identity-provider-detail", "DELETE", MANAGERS, lambda w: {"pk": w.provider.id}),
    A("identity-provider-test", "POST", MANAGERS, lambda w: {"pk": w.provider.id}),
    A("sso:list", "GET", READ_ALL),
    A("sso:create", "GET", MANAGERS),
    A("sso:create", "POST", MANAGERS, body=lambda w: {"name": ""}),
    A("sso:detail", "GET", READ_ALL, lambda w: {"provider_id": w.provider.id}),
    A("sso:edit", "GET", MANAGERS, lambda w: {"provider_id": w.provider.id}),
    A("sso:edit", "POST", MANAGERS, lambda w: {"provider_id": w.provider.id}, body=lambda w: {"name": ""}),
    A("sso:delete", "GET", MANAGERS, lambda w: {"provider_id": w.provider.id}),
    A("sso:delete", "POST", MANAGERS, lambda w: {"provider_id": w.provider.id}),
    A("sso:test", "POST", MANAGERS, lambda w: {"provider_id": w.provider.id}),
    A("accounts:audit-list", "GET", READ_ALL),
    A("accounts:audit-detail", "GET", READ_ALL, lambda w: {"entry_id": w.entry.id}),
    # ------------------------------------------------------------------ integrations and connections
    # Personal connections are for anyone who runs agents; the organization's shared ones, registered
    # APIs and MCP servers are managed by owners and admins. `w.others["connection"]` is shared.
    A("api-integration-list", "GET", EVERYONE),
    A("api-integration-detail", "GET", EVERYONE, lambda w: {"slug": "github"}),
    A("api-integration-authorize", "POST", OPERATORS, lambda w: {"slug": "github"},
      body=lambda w: {"scopes": ["repo:read"]}),
    A("api-connection-list", "GET", EVERYONE),
    A("api-connection-list", "POST", OPERATORS, body=lambda w: {"integration": "github", "values": {}}),
    A("api-connection-detail", "GET", EVERYONE, lambda w: {"connection_id": w.others["connection"].id}),
    A("api-connection-calls", "GET", EVERYONE, lambda w: {"connection_id": w.others["connection"].id}),
    A("api-connection-test", "POST", MANAGERS, lambda w: {"connection_id": w.others["connection"].id}),
    A("api-connection-revoke", "POST", MANAGERS, lambda w: {"connection_id": w.others["connection"].id}),
    A("api-connection-credentials", "POST", MANAGERS, lambda w: {"connection_id": w.others["connection"].id},
      body=lambda w: {"values": {}}),
    A("integrations:catalog", "GET", EVERYONE),
    A("integrations:integration-detail", "GET", EVERYONE, lambda w: {"slug": "github"}),
    A("integrations:integration-connect", "POST", OPERATORS, lambda w: {"slug": "github"}, body=lambda w: {}),
    A("integrations:integration-authorize", "POST", OPERATORS, lambda w: {"slug": "github"},
      body=lambda w: {"scopes": "repo:read"}),
    A("integrations:connection-list", "GET", EVERYONE),
    A("integrations:connection-detail", "GET", EVERYONE, lambda w: {"connection_id": w.others["connection"].id}),
    A("integrations:connection-test", "POST", MANAGERS, lambda w: {"connection_id": w.others["connection"].id}),
    A("integrations:connection-revoke", "GET", MANAGERS, lambda w: {"connection_id": w.others["connection"].id}),
    A("integrations:connection-revoke", "POST", MANAGERS, lambda w: {"connection_id": w.others["connection"].id}),
    A("integrations:connection-credentials", "GET", MANAGERS,
      lambda w: {"connection_id": w.others["connection"].id}),
    A("integrations:connection-credentials", "POST", MANAGERS,
      lambda w: {"connection_id": w.others["connection"].id}, body=lambda w: {}),
    A("integrations:connection-reconnect", "POST", MANAGERS,
      lambda w: {"connection_id": w.others["connection"].id}),
    A("mcp-server-list", "GET", EVERYONE),
    A("mcp-server-list", "POST", MANAGERS, body=lambda w: {"name": ""}),
    A("mcp-server-detail", "GET", EVERYONE, lambda w: {"pk": w.others["mcp"].id}),
    A("mcp-server-detail", "PATCH", MANAGERS, lambda w: {"pk": w.others["mcp"].id}, body=lambda w: {"name": "X"}),
    A("mcp-server-detail", "DELETE", MANAGERS, lambda w: {"pk": w.others["mcp"].id}),
    A("mcp-server-refresh", "POST", MANAGERS, lambda w: {"pk": w.others["mcp"].id}),
    A("mcp_servers:list", "GET", EVERYONE),
    A("mcp_servers:create", "GET", MANAGERS),
    A("mcp_servers:create", "POST", MANAGERS, body=lambda w: {"name": ""}),
    A("mcp_servers:detail", "GET", EVERYONE, lambda w: {"server_id": w.others["mcp"].id}),
    A("mcp_servers:edit", "GET", MANAGERS, lambda w: {"server_id": w.others["mcp"].id}),
    A("mcp_servers:edit", "POST", MANAGERS, lambda w: {"server_id": w.others["mcp"].id}, body=lambda w: {"name": ""}),
    A("mcp_servers:refresh", "POST", MANAGERS, lambda w: {"server_id": w.others["mcp"].id}),
    A("mcp_servers:delete", "GET", MANAGERS, lambda w: {"server_id": w.others["mcp"].id}),
    A("mcp_servers:delete", "POST", MANAGERS, lambda w: {"server_id": w.others["mcp"].id}),
    A("http-api-list", "GET", EVERYONE),
    A("http-api-list", "POST", MANAGERS, body=lambda w: {"name": ""}),
    A("http-api-detail", "GET", EVERYONE, lambda w: {"pk": w.others["http_api"].id}),
    A("http-api-detail", "PATCH", MANAGERS, lambda w: {"pk": w.others["http_api"].id},
      body=lambda w: {"name": "X"}),
    A("http-api-detail", "DELETE", MANAGERS, lambda w: {"pk": w.others["http_api"].id}),
    A("http_apis:list", "GET", EVERYONE),
    A("http_apis:create", "GET", MANAGERS),
    A("http_apis:create", "POST", MANAGERS, body=lambda w: {"name": ""}),
    A("http_apis:detail", "GET", EVERYONE, lambda w: {"http_api_id": w.others["http_api"].id}),
    A("http_apis:operations", "POST", MANAGERS, lambda w: {"http_api_id": w.others["http_api"].id},
      body=lambda w: {"operations": "listPets"}),
    A("http_apis:edit", "GET", MANAGERS, lambda w: {"http_api_id": w.others["http_api"].id}),
    A("http_apis:edit", "POST", MANAGERS, lambda w: {"http_api_id": w.others["http_api"].id},
      body=lambda w: {"name": ""}),
    A("http_apis:delete", "GET", MANAGERS, lambda w: {"http_api_id": w.others["http_api"].id}),
    A("http_apis:delete", "POST", MANAGERS, lambda w: {"http_api_id": w.others["http_api"].id}),
]

# Routes outside the matrix, each with the reason no role decides about them.
NOT_ROLE_CHECKED: dict[str, str] = {
    "api-me": "the caller's own profile, organizations and permissions: any signed-in person",
    "accounts:org-switch": "switches among the caller's own memberships (404 for others); no role involved",
    "accounts:welcome": "for a signed-in person in no organization yet: create one (open sign-up only)",
}


def _route_methods() -> set[tuple[str, str]]:
    found = set()
    for route in http_routes():
        if route.id in NO_TENANT_OBJECT or route.id in NOT_ROLE_CHECKED:
            continue
        if any(route.name.startswith(p) or f"{route.namespace}:".startswith(p) for p in NO_TENANT_OBJECT_PREFIXES):
            continue
        if route.name.startswith(("mfa_", "socialaccount_", "openid_connect_", "saml_")) or route.pattern.startswith(
                "accounts/"):
            continue  # allauth: the caller's own sign-in, sign-up and account security pages
        for method in route.declared_methods() - {"HEAD", "OPTIONS", "PUT"}:
            found.add((route.id, method))
    return found


def test_every_route_and_method_is_in_the_matrix():
    """A route added without deciding which roles may use it fails here, by name."""
    covered = {(a.route, a.method) for a in MATRIX}
    missing = sorted(_route_methods() - covered)
    assert not missing, (
        "These routes and methods have no entry in tests/test_role_matrix.py MATRIX (or NOT_ROLE_CHECKED with a "
        "reason):\n  " + "\n  ".join(f"{m} {r}" for r, m in missing)
    )


def test_the_roles_are_the_six_groups_operators_edit_in_the_admin(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {"Owner", "Admin", "Builder", "Operator", "Viewer",
                                                                 "Auditor"}
    assert set(Membership.Role.values) == set(ROLES)


# ----------------------------------------------------------------------------- the world


@pytest.fixture
def world(organization, owner) -> World:
    agent_ = agent_services.agent_create(organization=organization, actor=owner, name="Shared agent",
                                         system_prompt="x", model="scripted-notes", tools=["append_note"])
    agent_services.agent_share(agent=agent_, team=None, can_edit=True, actor=owner)
    run_ = agent_services.run_start(agent=agent_, goal="go", actor=owner)
    call = ToolCall(id="call-1", name="append_note", arguments={"text": "hi"})
    approval = approvals.for_call(run_, call, 1, write=lambda items: events.record_many(run_id=run_.id, items=items))
    schedule_ = automation_services.schedule_create(organization=organization, agent=agent_, actor=owner,
                                                    name="Daily", goal="go", cron="0 9 * * *")
    trigger_ = automation_services.trigger_create(organization=organization, agent=agent_, actor=owner,
                                                  kind=Trigger.Kind.WEBHOOK, name="Hook", goal_template="go").trigger
    received = automation_services.webhook_receive(
        public_id=trigger_.public_id, body=b"{}", declared_length=None, content_type="application/json",
        timestamp=None, signature=None, remote_addr="127.0.0.1")
    team = Team.objects.create(organization=organization, name="Finance")
    key = account_services.api_token_create(user=owner, organization=organization, name="CI",
                                            kind=ApiToken.Kind.SERVICE)[0]
    target_user = get_user_model().objects.create_user(username="target", email="target@example.com", password="x")
    target = account_services.membership_add(organization=organization, user=target_user, role="viewer", actor=owner)
    account_services.team_member_add(team=team, user=target_user, actor=owner)
    return World(organization=organization, owner=owner, agent=agent_, run=run_, approval=approval,
                 schedule=schedule_, trigger=trigger_, event=TriggerEvent.objects.get(id=received.event_id),
                 team=team, service_key=key, target=target,
                 entry=AuditLog.objects.filter(organization=organization).latest("id"),
                 # Unreachable on purpose: "Test connection" fails fast with a message, without network.
                 provider=IdentityProvider.objects.create(organization=organization, name="Okta", slug="okta",
                                                          server_url="https://idp.invalid", client_id="c"),
                 others=_integration_objects(organization, owner))


def _integration_objects(organization, owner) -> dict[str, Any]:
    """A shared connection, an MCP server and a registered API. Their hosts don't resolve, so Test
    and Refresh fail fast with a message, without network."""
    connection = Connection.objects.create(
        organization=organization, integration="github", name="Shared GitHub", owner=None, auth_type="api_key",
        scopes=["repo:read"], secret=crypto.encrypt({"token": "ghp_matrix"}), options={"api_url": "https://gh.invalid"},
        created_by=owner)
    mcp = McpServer.objects.create(organization=organization, slug="tracker", name="Tracker",
                                   url="https://mcp.invalid/mcp", created_by=owner)
    http_api = http_api_services.http_api_create(organization=organization, actor=owner, name="Pets",
                                                 spec=openapi_server.document("https://api.example.com"),
                                                 operations=["listPets"])
    return {"connection": connection, "mcp": mcp, "http_api": http_api}


def _person(world: World, role: str):
    user = get_user_model().objects.create_user(username=f"as-{role}", email=f"as-{role}@example.com",
                                                password="x" * 20)
    account_services.membership_add(organization=world.organization, user=user, role=role)
    return user


def _is_api(route: str) -> bool:
    return ":" not in route or route.split(":")[1].startswith("api-")


def attempt(world: World, action: Action, role: str):
    user = _person(world, role)
    path = reverse(action.route, kwargs=action.kwargs(world))
    if action.query:
        path += "?" + action.query
    body = action.body(world) if action.body else {}
    if _is_api(action.route):
        _, raw = account_services.api_token_create(user=user, organization=world.organization)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return api.generic(action.method, path, json.dumps(body) if body else "", content_type="application/json")
    ui = Client()
    ui.force_login(user)
    return ui.generic(action.method, path, urlencode(body), content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", MATRIX, ids=lambda a: a.id)
def test_each_role_may_do_exactly_what_the_matrix_says(world, action: Action, role: str):
    response = attempt(world, action, role)

    text = response.content.decode(errors="replace") if not getattr(response, "streaming", False) else ""
    if role in action.allowed:
        assert response.status_code not in (401, 403, 404), (
            f"{role} should be allowed to {action.id} but got {response.status_code}: {text[:300]}")
    else:
        assert response.status_code == action.refused, (
            f"{role} must be refused {action.id} with {action.refused}, got {response.status_code}: {text[:300]}")
        if action.refused != 403:
            return
        if _is_api(action.route):
            assert response.json()["error"] == "permission_denied"
        else:
            assert "Permission denied" in text


# ----------------------------------------------------------------------------- the admin

ADMIN_PAGES = [
    ("admin:agents_agent_changelist", READ_ALL),
    ("admin:agents_agent_add", BUILDERS),
    ("admin:agents_run_changelist", READ_ALL),
    ("admin:agents_approval_changelist", READ_ALL),
    ("admin:accounts_auditlog_changelist", READ_ALL),
    ("admin:accounts_membership_changelist", EVERYONE),
    ("admin:accounts_membership_add", MANAGERS),
    ("admin:accounts_team_add", MANAGERS),
    ("admin:accounts_apitoken_changelist", MANAGERS),
    ("admin:accounts_quota_add", MANAGERS),
    ("admin:automations_schedule_add", OPERATORS),
    ("admin:automations_trigger_changelist", EVERYONE),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("page", "allowed"), ADMIN_PAGES, ids=[p for p, _ in ADMIN_PAGES])
def test_the_admin_applies_the_same_roles_to_staff(world, page, allowed, role):
    user = _person(world, role)
    user.is_staff = True
    user.save()
    ui = Client()
    ui.force_login(user)

    response = ui.get(reverse(page))

    assert response.status_code == (200 if role in allowed else 403), f"{role} on {page}: {response.status_code}"


def test_the_admin_shows_staff_only_their_own_organizations_objects(world, other_organization, outsider):
    agent_services.agent_create(organization=other_organization, actor=outsider, name="Globex secret",
                                system_prompt="x", model="demo")
    user = _person(world, "admin")
    user.is_staff = True
    user.save()
    ui = Client()
    ui.force_login(user)

    html = ui.get(reverse("admin:agents_agent_changelist")).content.decode()

    assert "Shared agent" in html and "Globex secret" not in html


def test_an_audit_entry_cannot_be_changed_or_deleted_in_the_admin_even_by_an_owner(world):
    user = _person(world, "owner")
    user.is_staff = True
    user.save()
    ui = Client()
    ui.force_login(user)
    entry = AuditLog.objects.filter(organization=world.organization).first()

    change = ui.post(reverse("admin:accounts_auditlog_change", args=[entry.id]), {"action": "forged"})
    delete = ui.post(reverse("admin:accounts_auditlog_delete", args=[entry.id]), {"post": "yes"})

    assert change.status_code == 403 and delete.status_code == 403
    assert AuditLog.objects.get(id=entry.id).action == entry.action


# ----------------------------------------------------------------------------- operators edit the roles


def test_a_permission_taken_from_a_role_in_the_admin_is_refused_at_once(world):
    viewer = Group.objects.get(name="Viewer")
    viewer.permissions.remove(Permission.objects.get(content_type__app_label="agents", codename="view_run"))
    # The m2m signal clears this process's cache; other processes follow within CACHE_SECONDS.
    response = attempt(world, A("run-list", "GET", ()), "viewer")

    assert response.status_code == 403
    assert "view run" in response.json()["message"]


def test_a_permission_given_to_a_role_in_the_admin_is_granted(world):
    viewer = Group.objects.get(name="Viewer")
    viewer.permissions.add(Permission.objects.get(content_type__app_label="agents", codename="run_agent"))

    response = attempt(world, MATRIX[6], "viewer")  # POST agent-runs

    assert MATRIX[6].id == "POST agent-runs"
    assert response.status_code == 201


# ----------------------------------------------------------------------------- sharing


def test_an_agent_private_to_its_owner_is_invisible_to_everyone_below_admin(world, organization, owner):
    private = agent_services.agent_create(organization=organization, actor=owner, name="Private",
                                          system_prompt="x", model="demo")
    seen = {}
    for role in ROLES:
        user = _person(world, role)
        _, raw = account_services.api_token_create(user=user, organization=organization)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        names = {a["name"] for a in api.get("/api/agents").json()["results"]}
        seen[role] = ("Private" in names, api.get(f"/api/agents/{private.id}").status_code)

    assert seen == {"owner": (True, 200), "admin": (True, 200), "auditor": (True, 200),
                    "builder": (False, 404), "operator": (False, 404), "viewer": (False, 404)}


def test_sharing_with_a_department_reaches_its_teams_and_runs_count_for_the_runner(world, organization, owner):
    department = Team.objects.create(organization=organization, name="Operations")
    team = Team.objects.create(organization=organization, name="Night shift", parent=department)
    agent_ = agent_services.agent_create(organization=organization, actor=owner, name="Ops agent",
                                         system_prompt="x", model="demo")
    agent_services.agent_share(agent=agent_, team=department, can_edit=False, actor=owner)
    inside, outside = _person(world, "builder"), _person(world, "operator")
    team.memberships.create(user=inside)

    def api_for(user):
        raw = account_services.api_token_create(user=user, organization=organization)[1]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    started = api_for(inside).post(f"/api/agents/{agent_.id}/runs", {"goal": "go"}, format="json")
    edit = api_for(inside).patch(f"/api/agents/{agent_.id}", {"description": "x"}, format="json")

    assert started.status_code == 201
    assert Run.objects.get(id=started.json()["id"]).created_by == inside  # their quota, their name
    assert edit.status_code == 403 and "run, not to change" in edit.json()["message"]
    assert api_for(outside).get(f"/api/agents/{agent_.id}").status_code == 404


# ----------------------------------------------------------------------------- websocket


@pytest.mark.django_db(transaction=True)
def test_the_websocket_follows_the_role_too(live, organization, owner):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    agent_ = agent_services.agent_create(organization=organization, actor=owner, name="Shared", system_prompt="x",
                                         model="demo")
    agent_services.agent_share(agent=agent_, team=None, can_edit=False, actor=owner)
    private = agent_services.agent_create(organization=organization, actor=owner, name="Private",
                                          system_prompt="x", model="demo")
    shared_run = agent_services.run_start(agent=agent_, goal="go", actor=owner)
    private_run = agent_services.run_start(agent=private, goal="go", actor=owner)
    world_ = World(organization, owner, agent_, shared_run, None, None, None, None, None, None)

    def outcome(user, run_) -> str:
        raw = account_services.api_token_create(user=user, organization=organization)[1]
        with connect(f"{live.ws_url}/ws/runs/{run_.id}/", additional_headers={"Authorization": f"Bearer {raw}"},
                     open_timeout=10) as ws:
            try:
                ws.recv(timeout=10)
                return "streams"
            except ConnectionClosed:
                return f"closed {ws.close_code}"

    people = {role: _person(world_, role) for role in ROLES}
    assert {role: outcome(user, shared_run) for role, user in people.items()} == dict.fromkeys(ROLES, "streams")
    assert outcome(people["viewer"], private_run) == "closed 4404"
    assert outcome(people["auditor"], private_run) == "streams"

    Group.objects.get(name="Viewer").permissions.remove(
        Permission.objects.get(content_type__app_label="agents", codename="view_run"))
    deadline = time.monotonic() + role_permissions_cache_seconds() + 5
    while outcome(people["viewer"], shared_run) != "closed 4403":
        assert time.monotonic() < deadline, "the web process never picked up the role change"
        time.sleep(0.5)


def role_permissions_cache_seconds() -> float:
    from accounts import roles

    role_permissions.clear()
    return roles.CACHE_SECONDS
