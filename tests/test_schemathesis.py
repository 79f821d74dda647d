"""The REST API against its own OpenAPI document, fuzzed in-process with Schemathesis.

The schema is the one drf-spectacular serves at /api/schema/, generated in this process; requests
go through the real WSGI stack (middleware, authentication, error envelope) on the test database.
Every built-in check runs: no 5xx, responses and their status codes, content types and headers
as documented, invalid input rejected, authentication enforced. "Valid input accepted" runs in a
narrower form (BUSINESS_RULES): a schema-valid request may only be refused over a rule the schema
can't state, each listed with its reason. Not sent: Server-Sent Events, and two kinds of invalid
input whose fixes are outside this module's reach (marked PENDING in _not_sent).

Each operation runs as an owner whose organization has one of everything, and most generated
path ids are swapped for ids of those objects, so detail endpoints answer with data rather than
only 404s. Runs are reproducible (derandomized) and bounded (see SETTINGS).
"""

from __future__ import annotations

import hashlib
import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts import services as account_services
from accounts import sso
from agents import approvals, events
from agents import services as agent_services
from agents.llm.base import ToolCall
from agents.models import Run
from automations import services as automation_services
from automations.models import Trigger, TriggerEvent
from integrations import crypto
from integrations.connectors.openapi import services as http_api_services
from integrations.models import Connection, McpServer
from tests.fakes import openapi_server


def _schema() -> dict:
    # The document exactly as served (same generator, same renderer), without an HTTP round trip
    # at collection time, when no database is available yet.
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document, renderer_context={}))


schema = schemathesis.openapi.from_dict(_schema())
schema.app = get_wsgi_application()

TOKEN: dict[str, str] = {}
PENDING = "pending"


@schema.auth(refresh_interval=None)
class OwnersToken:
    """Through Schemathesis's auth hook, not a blanket header, so the cases that test missing or
    malformed credentials keep theirs."""

    def get(self, case, context) -> str:
        # Cases generated at collection time, before the fixture made the token, get it in the test.
        return TOKEN.get("value", PENDING)

    def set(self, case, data: str, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)


@pytest.fixture
def unlimited(settings):
    """The fuzzer sends hundreds of requests a minute from one address, over any rate limit by design
    (and the anonymous bucket is shared with the rest of the suite); config/tests/test_ratelimit.py
    covers the limiter."""
    settings.RATE_LIMIT_ENABLED = False


@pytest.fixture
def in_process_requests():
    """What django.test.Client does around each request: the WSGI handler would otherwise close
    the test's connection (and its open transaction) when a request finishes."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(organization, owner) -> dict:
    """One of everything in the caller's organization, made through the services."""
    agent = agent_services.agent_create(organization=organization, actor=owner, name="Notes",
                                        system_prompt="Write notes.", model="scripted-notes", tools=["append_note"],
                                        max_steps=10, timeout_seconds=60)
    finished = agent_services.run_start(agent=agent, goal="Say hi", actor=owner)
    agent_services.run_transition(run_id=finished.id, to=Run.Status.RUNNING)
    agent_services.run_transition(run_id=finished.id, to=Run.Status.SUCCEEDED, stop_reason=Run.StopReason.FINAL_ANSWER,
                                  answer="hi")
    waiting = agent_services.run_start(agent=agent, goal="Two notes", actor=owner)
    # What the loop does when a write tool waits for a person (the loop itself isn't run here: its
    # short test leases can't be renewed from inside this test's transaction).
    approval = approvals.for_call(waiting, ToolCall(id="call-1", name="append_note", arguments={"text": "hi"}), 1,
                                  write=lambda items: events.record_many(run_id=waiting.id, items=items))
    schedule = automation_services.schedule_create(organization=organization, agent=agent, actor=owner,
                                                   name="Daily", goal="Report", cron="0 9 * * *")
    automation_services.schedule_fire(schedule=schedule, actor=owner)
    trigger = automation_services.trigger_create(organization=organization, agent=agent, actor=owner,
                                                 kind=Trigger.Kind.WEBHOOK, name="Hook").trigger
    result = automation_services.webhook_receive(public_id=trigger.public_id, body=b"{}", declared_length=2,
                                                 content_type="application/json", timestamp=None, signature=None,
                                                 remote_addr="127.0.0.1")
    key, _ = account_services.api_token_create(user=owner, organization=organization, name="CI")
    team = account_services.team_create(organization=organization, name="Finance", actor=owner)
    account_services.team_member_add(team=team, user=owner, actor=owner)
    membership = owner.memberships.get(organization=organization)
    idp = sso.identity_provider_create(organization=organization, actor=owner, kind="oidc", slug="fuzz-idp",
                                       name="Fuzz IdP", server_url="https://idp.invalid", client_id="c",
                                       client_secret="s")
    _, TOKEN["value"] = account_services.api_token_create(user=owner, organization=organization, name="fuzzer")
    # Made directly: saving through the service checks the token with GitHub, which isn't reachable here.
    connection = Connection.objects.create(
        organization=organization, integration="github", name="Shared GitHub", owner=None, auth_type="api_key",
        scopes=["repo:read"], secret=crypto.encrypt({"token": "ghp_fuzz"}), options={"api_url": "https://gh.invalid"},
        created_by=owner)
    mcp = McpServer.objects.create(organization=organization, slug="tracker", name="Tracker",
                                   url="https://mcp.invalid/mcp", created_by=owner)
    http_api = http_api_services.http_api_create(organization=organization, actor=owner, name="Pets",
                                                 spec=openapi_server.document("https://api.example.com"),
                                                 operations=["listPets"])
    return {
        "ids": {
            "/api/agents/": str(agent.id),
            "/api/runs/": str(finished.id),
            "/api/approvals/": str(approval.id),
            "/api/schedules/": str(schedule.id),
            "/api/triggers/": str(trigger.id),
            "/api/trigger-events/": TriggerEvent.objects.get(id=result.event_id).id,
            "/api/keys/": str(key.id),
            "/api/teams/": str(team.id),
            "/api/members/": membership.id,
            "/api/identity-providers/": str(idp.id),
            "/api/connections/": str(connection.id),
            "/api/mcp-servers/": str(mcp.id),
            "/api/http-apis/": str(http_api.id),
            "/api/integrations/": "github",
            "/hooks/": trigger.public_id,
        },
    }


def _aim_at_real_objects(case, ids: dict) -> None:
    """In valid cases, three generated path ids in four are replaced by an object that exists; the
    fourth keeps its random id (a 404). Chosen by a hash, so runs repeat. Cases built to be invalid
    keep what they were built with."""
    if not case.path_parameters or case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    digest = hashlib.sha256(repr(sorted(case.path_parameters.items())).encode()).digest()
    if digest[0] % 4 == 0:
        return
    for prefix, value in ids.items():
        if case.path.startswith(prefix):
            name = next(iter(case.path_parameters))
            case.path_parameters[name] = value
            return


# A schema-valid request may still be refused (400) for a rule JSON Schema can't state. Those
# fields, and why; a 400 naming any other field fails like Schemathesis's positive_data_acceptance.
BUSINESS_RULES = {
    "agent": "must name an agent of the caller's organization",
    "source_agent": "must name an agent of the caller's organization, other than the trigger's own",
    "source_schedule": "must name a schedule of the caller's organization",
    "model": "must be a model available now, which depends on the configured providers",
    "tools": "must be registered tools (plugins extend the registry; GET /api/tools lists it)",
    "tool_policies": "keys must be tools the agent has",
    "kind": "a trigger's kind is fixed once it exists",
    "arguments": "edited tool-call arguments must fit that tool's own input schema",
    "expires_at": "must be in the future",
    "max_cost_usd": "at most 4 decimal places (JSON Schema's multipleOf can't say that reliably for numbers)",
    "cron": "must be a cron expression (five fields with valid ranges)",
    "plain": "a plain-words timetable must name a valid time and day",
    "timezone": "must be an IANA time zone name",
    "goal_template": "must be a template that renders",
    "source_statuses": "only for run_finished triggers",
    "non_field_errors": "combinations of fields (e.g. what each trigger kind requires)",
    "user": "must name someone with an account, or be an email address to invite",
    "parent": "a team of the organization, neither the team itself nor one below it",
    "member": "must name a member of the organization",
    "team": "must name a team of the caller's organization",
    "server_url": "an identity provider's issuer: a public https URL (or a host in AGENTRY_SSO_ALLOWED_HOSTS)",
    "client_id": "required for OpenID Connect providers",
    "client_secret": "required for OpenID Connect providers (blank keeps the stored one on update)",
    "idp_metadata_url": "SAML: a public https URL (or a host in AGENTRY_SSO_ALLOWED_HOSTS)",
    "idp_sso_url": "SAML: required with the entity id and certificate unless metadata is given",
    "idp_entity_id": "SAML: required with the SSO URL and certificate unless metadata is given",
    "idp_x509_cert": "SAML: must be a PEM certificate that parses",
    "role_claim": "required when a role mapping is given",
    "email_domains": "must be domain names, each served by one provider only",
    "slug": "must be unused (it is in the sign-in and callback URLs) and can't change later",
    "role_mapping": "values must be roles below Owner (SSO never grants Owner)",
    "default_role": "a role below Owner (SSO never grants Owner)",
    "integration": "must name an integration of the catalog (GET /api/integrations) that connects this way",
    "values": "the integration's own credential fields (GET /api/integrations/<slug> lists them)",
    "credentials": "the provider must accept them: they are checked with it before anything is saved",
    "scopes": "must be scopes of that integration (and, for an agent, cover what its tools need)",
    "integrations": "per integration an agent's tools use: a connection of the organization, not revoked, and "
    "that integration's scopes",
    "organization": "an organization-wide connection needs the role that manages shared connections",
    "spec": "must be an OpenAPI 3 document",
    "operations": "must be operationIds of the document that can be offered as tools",
    "base_url": "a public http(s) URL, or a host in AGENTRY_INTEGRATIONS_ALLOWED_HOSTS",
    "auth_config": "what the chosen authentication needs (where the key goes, OAuth endpoints and client)",
    "url": "an MCP server's URL: a public http(s) URL, or a host in AGENTRY_INTEGRATIONS_ALLOWED_HOSTS",
    "command": "a local MCP server must be one the operator listed in AGENTRY_MCP_STDIO_SERVERS",
    "token": "the MCP server must accept the token (it is checked before anything is saved)",
    "auth": "a registered API's or MCP server's authentication must fit its other settings",
    "transport": "http needs a URL, stdio a listed command",
}
# Text rules that hold for every field, which the schema leaves unsaid: a trimmed string must not be
# empty ("  " has minLength 1), and Postgres stores neither U+0000 nor lone surrogates.
TEXT_RULES = ("This field may not be blank.", "Null characters are not allowed.",
              "Surrogate characters are not allowed")


def _messages(detail) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


def _unexplained(details: dict) -> list[str]:
    return sorted(
        field for field, detail in details.items()
        if field.split(".")[0] not in BUSINESS_RULES and not all(m.startswith(TEXT_RULES) for m in _messages(detail))
    )


def _not_sent(case) -> str | None:
    """Cases that are not sent, each with the reason."""
    query = case.query or {}
    if case.operation.path == "/api/runs/{id}/events" and (
        query.get("format") == "sse" or "text/event-stream" in (case.headers or {}).get("Accept", "")
    ):
        # A stream consumed through WSGI inside the test's transaction reads from another thread's
        # connection; tests/test_e2e.py drives the Server-Sent Events endpoint on the live stack.
        return "Server-Sent Events"
    return None


@schema.parametrize()
@SETTINGS
def test_the_api_honours_its_schema(case, world, in_process_requests, unlimited):
    if _not_sent(case):
        return
    _aim_at_real_objects(case, world["ids"])
    if (case.headers or {}).get("Authorization") == f"Bearer {PENDING}":
        case.headers["Authorization"] = f"Bearer {TOKEN['value']}"

    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])

    if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE and response.status_code == 400:
        details = response.json().get("details") or {}
        unexplained = _unexplained(details)
        assert details and not unexplained, (
            f"{case.operation.label} refused a schema-valid request over {sorted(unexplained) or 'nothing named'}: "
            f"{response.text}\nReproduce with: {case.as_curl_command()}"
        )
