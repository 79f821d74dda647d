"""Tenant isolation, generated from the URL conf.

Every HTTP route, every method and every websocket route is found by walking the resolvers, not
listed by hand. A route whose path names an object (`pk`, `agent_id`, …) is called by a member of
organization B with the id of an object that lives in organization A: every method must answer
exactly as it does for an id that exists nowhere (404, or 405 where the method isn't allowed),
show nothing of A, and change nothing in A. A route without an object parameter is a list or a
page: what B sees must not change when A's objects come into existence, and filtering it by A's
ids must look the same as filtering by ids that don't exist.

A route added later is picked up automatically. If its parameter names something this module
can't create, the route's test fails and says which factory to add; routes that legitimately
carry no tenant object are allow-listed below, each with its reason.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts import services as account_services
from accounts.audit import audit_record
from accounts.models import ApiToken, AuditLog, IdentityProvider, Membership, Organization, Team
from agents import approvals, events
from agents import services as agent_services
from agents.llm.base import ToolCall
from agents.models import Agent, Approval, Run, RunEvent
from automations import services as automation_services
from automations.models import Schedule, Trigger, TriggerEvent
from conftest import PASSWORD
from integrations import crypto
from integrations.connectors.openapi import services as http_api_services
from integrations.models import Connection, ConnectionCall, HttpApi, McpServer
from tests.fakes import openapi_server

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# What a hijacking request would send: enough for any write view to act if it ever found A's
# object (a rename, a decision, a goal), so "nothing changed" is a real check.
HIJACK = {"name": "hijacked", "goal": "hijacked", "decision": "reject", "message": "hijacked", "enabled": "false",
          "system_prompt": "hijacked", "cron": "0 3 * * *"}
# Views that validate the body before looking the object up answer 400 to a body they don't
# like, for any id; these are tried in turn until one gets past validation.
HIJACK_VARIANTS = [HIJACK, HIJACK | {"decision": "skip"}, HIJACK | {"decision": "approve"}]
WRITES = ("POST", "PUT", "PATCH")

# ----------------------------------------------------------------------------- allow-list

# Routes with no tenant object behind them, by route name (or pattern, when unnamed), each with the
# reason it is safe. Everything else is checked.
NO_TENANT_OBJECT: dict[str, str] = {
    "healthz": "liveness probe: process up, no data",
    "readyz": "readiness probe: reports database, Redis and worker health, no tenant data",
    "api-token": "exchanges the caller's own username and password for a token; no object in the path",
    "api-schema": "the OpenAPI document: the same for everyone, describes shapes, holds no data",
    "api-docs": "Swagger UI page that loads the schema; holds no data",
    "automations:webhook": "public by design: the unguessable public_id plus the HMAC signature are the "
    "credentials (automations/tests/test_webhooks.py covers unknown ids, bad signatures and replays)",
    "agents:home": "redirects to the agent list, which is checked",
    "socialaccount_login_error": "allauth's fixed sign-in error page (401), no data",
    "integrations:oauth-callback": "the OAuth redirect target: it can only finish the caller's own pending "
    "authorization (the state is bound to the person and single-use); another's state or none is a 400 that stores "
    "nothing (integrations/tests/test_oauth.py)",
}
# Whole families, by name prefix or namespace (`admin:` also covers the admin's unnamed routes).
NO_TENANT_OBJECT_PREFIXES: dict[str, str] = {
    "admin:": "Django admin: staff only, for operators; test_the_admin_is_closed_to_members_who_are_not_staff "
    "proves an organization member without is_staff gets nowhere in it",
    "account_": "allauth: sign-in, sign-up, password and e-mail management of the caller's own account; "
    "the `key`/`uidb36` parameters are one-time secrets mailed to the user, not organization objects",
    "saml_": "SAML sign-in protocol endpoints (login, ACS, SLS, metadata) addressed by the organization's public "
    "slug; they only start or finish a sign-in (accounts/tests/test_sso.py)",
    "openid_connect_": "OpenID Connect sign-in and callback, addressed by the provider's public slug; they only "
    "start or finish a sign-in (accounts/tests/test_sso.py covers the whole flow)",
    "sso:oidc-login": "starts an OIDC sign-in for a provider's public slug (before anyone is signed in)",
    "sso:saml-login": "starts a SAML sign-in for an organization's public slug (before anyone is signed in)",
    "sso:discover": "the sign-in page's 'use my company's SSO' form: an email domain in, a redirect out",
    "mfa_": "allauth MFA: the caller's own second factors; no organization object",
    "socialaccount_": "allauth: the caller's own linked sign-in accounts and the SSO sign-up/error pages",
    "accounts/social/": "allauth: the caller's own linked sign-in accounts and the SSO sign-up/error pages",
}

# Path parameters that name an object, and the model they name. `pk` (DRF routers) is resolved
# through the view's queryset or serializer model instead.
PARAMETER_MODELS: dict[str, type[Model]] = {
    "agent_id": Agent,
    "run_id": Run,
    "approval_id": Approval,
    "schedule_id": Schedule,
    "trigger_id": Trigger,
    "membership_id": Membership,
    "team_id": Team,
    "key_id": ApiToken,
    "entry_id": AuditLog,
    "provider_id": IdentityProvider,
    "connection_id": Connection,
    "server_id": McpServer,
    "http_api_id": HttpApi,
    # The catalog names integrations by slug; an organization's own (a registered MCP server or
    # OpenAPI document) is a tenant object, named "mcp-<slug>" (see PATH_VALUES).
    "slug": McpServer,
}

# Parameters whose value is not the object's primary key: how to name the object, and a name that
# exists nowhere.
PATH_VALUES: dict[str, tuple[Callable[[Model], Any], Callable[[], Any]]] = {
    "slug": (lambda obj: obj.integration_slug, lambda: f"mcp-missing-{uuid.uuid4().hex[:8]}"),
}

# Lists whose every GET adds a row of its own to what it lists, so two looks never match; for these
# only the markers check (nothing of A's shows) applies.
SELF_RECORDING: dict[str, str] = {
    "api-audit-export": "each export is itself audited, so the CSV grows by a row per call",
}

# Query parameters lists filter by, and the object of A each one is given.
FILTER_PARAMETERS: dict[str, type[Model]] = {
    "agent": Agent,
    "run": Run,
    "trigger": Trigger,
    "schedule": Schedule,
    "source_agent": Agent,
}


# ----------------------------------------------------------------------------- tenants


def _create_agent(tenant: Tenant) -> Agent:
    return agent_services.agent_create(
        organization=tenant.organization, actor=tenant.user, name=f"{tenant.label} agent",
        description=f"{tenant.label} description", system_prompt=f"{tenant.label} prompt", model="scripted-notes",
        tools=["append_note"], max_steps=10, timeout_seconds=60,
    )


def _create_run(tenant: Tenant) -> Run:
    return agent_services.run_start(agent=tenant.get(Agent), goal=f"{tenant.label} goal", actor=tenant.user,
                                    context={"secret": f"{tenant.label} context"})


def _create_approval(tenant: Tenant) -> Approval:
    # What the run loop does when a write tool waits for a person (without running the loop here,
    # whose short test leases can't be renewed from inside this test's transaction).
    run = tenant.get(Run)
    call = ToolCall(id=f"{tenant.label}-call", name="append_note", arguments={"text": f"{tenant.label} note"})
    return approvals.for_call(run, call, 1, write=lambda items: events.record_many(run_id=run.id, items=items))


def _create_schedule(tenant: Tenant) -> Schedule:
    return automation_services.schedule_create(
        organization=tenant.organization, agent=tenant.get(Agent), actor=tenant.user, name=f"{tenant.label} schedule",
        goal=f"{tenant.label} scheduled goal", cron="0 9 * * *",
    )


def _create_trigger(tenant: Tenant) -> Trigger:
    return automation_services.trigger_create(
        organization=tenant.organization, agent=tenant.get(Agent), actor=tenant.user, kind=Trigger.Kind.WEBHOOK,
        name=f"{tenant.label} trigger", goal_template=f"{tenant.label} template {{{{ payload }}}}",
    ).trigger


def _create_api_key(tenant: Tenant) -> ApiToken:
    # A service key: the kind every owner and admin of the organization may list.
    return account_services.api_token_create(user=tenant.user, organization=tenant.organization,
                                             name=f"{tenant.label} key", kind=ApiToken.Kind.SERVICE)[0]


def _create_trigger_event(tenant: Tenant) -> TriggerEvent:
    # An unsigned call: rejected and logged, which is how most events come to exist.
    trigger = tenant.get(Trigger)
    result = automation_services.webhook_receive(
        public_id=trigger.public_id, body=json.dumps({"secret": tenant.label}).encode(), declared_length=None,
        content_type="application/json", timestamp=None, signature=None, remote_addr="127.0.0.1",
    )
    return TriggerEvent.objects.get(id=result.event_id)


def _create_membership(tenant: Tenant) -> Membership:
    user = get_user_model().objects.create_user(username=f"{tenant.label}-member", password=PASSWORD,
                                                email=f"{tenant.label}-member@example.com")
    return account_services.membership_add(organization=tenant.organization, user=user, role=Membership.Role.VIEWER,
                                           actor=tenant.user)


def _create_team(tenant: Tenant) -> Team:
    team = account_services.team_create(organization=tenant.organization, name=f"{tenant.label} team",
                                        actor=tenant.user)
    account_services.team_member_add(team=team, user=tenant.get(Membership).user, actor=tenant.user)
    return team


def _create_audit_entry(tenant: Tenant) -> AuditLog:
    audit_record(action="test.marker", actor=tenant.user, organization=tenant.organization,
                 data={"label": tenant.label})
    return AuditLog.objects.filter(organization=tenant.organization, action="test.marker").latest("id")


def _create_identity_provider(tenant: Tenant) -> IdentityProvider:
    return IdentityProvider.objects.create(organization=tenant.organization, name=f"{tenant.label} SSO",
                                           slug=f"{tenant.label}-sso", server_url="https://idp.example.com",
                                           client_id=f"{tenant.label}-client")


def _create_connection(tenant: Tenant) -> Connection:
    # Made directly: the service checks credentials with the provider, which a loopback-only test
    # can't reach; the row is what a saved organization connection looks like, call history included.
    connection = Connection.objects.create(
        organization=tenant.organization, integration="github", name=f"{tenant.label} connection", owner=None,
        auth_type="api_key", scopes=["repo:read"], secret=crypto.encrypt({"token": f"{tenant.label}-token"}),
        account={"login": f"{tenant.label}-login"}, options={"api_url": "https://github.invalid/api"},
        created_by=tenant.user)
    ConnectionCall.objects.create(connection=connection, tool="github_list_issues", outcome="ok", status_code=200,
                                  detail=f"{tenant.label} call")
    return connection


def _create_mcp_server(tenant: Tenant) -> McpServer:
    return McpServer.objects.create(organization=tenant.organization, slug=f"{tenant.label}-mcp",
                                    name=f"{tenant.label} MCP", url="https://mcp.invalid/mcp", created_by=tenant.user)


def _create_http_api(tenant: Tenant) -> HttpApi:
    return http_api_services.http_api_create(
        organization=tenant.organization, actor=tenant.user, name=f"{tenant.label} API",
        description=f"{tenant.label} description", spec=openapi_server.document("https://api.example.com"),
        operations=["listPets"])


# One per model a route can name. A new route naming a new kind of object needs a line here: the
# object made in the tenant's organization through its service.
FACTORIES: dict[type[Model], Callable[[Tenant], Model]] = {
    Agent: _create_agent,
    Run: _create_run,
    Approval: _create_approval,
    Schedule: _create_schedule,
    Trigger: _create_trigger,
    TriggerEvent: _create_trigger_event,
    ApiToken: _create_api_key,
    Membership: _create_membership,
    Team: _create_team,
    AuditLog: _create_audit_entry,
    IdentityProvider: _create_identity_provider,
    Connection: _create_connection,
    McpServer: _create_mcp_server,
    HttpApi: _create_http_api,
}


@dataclass
class Tenant:
    organization: Organization
    user: Any
    label: str
    objects: dict[type[Model], Model] = field(default_factory=dict)

    def get(self, model: type[Model]) -> Model:
        if model not in self.objects:
            self.objects[model] = FACTORIES[model](self)
        return self.objects[model]

    def create_everything(self) -> Tenant:
        for model in FACTORIES:
            self.get(model)
        return self

    def markers(self) -> list[str]:
        """Strings that can only come from this tenant's objects: their ids and names."""
        found = [self.label]
        for obj in self.objects.values():
            if not isinstance(obj.pk, int):  # small integers appear everywhere
                found.append(str(obj.pk))
        trigger = self.objects.get(Trigger)
        if trigger is not None and trigger.public_id:
            found.append(trigger.public_id)
        return found


def _snapshot(organization: Organization) -> dict[str, list[dict]]:
    """Every row that belongs to the organization, in every model that has an organization."""
    rows = {}
    for model in apps.get_models():
        names = {f.name for f in model._meta.get_fields() if f.is_relation and f.related_model is Organization
                 and f.many_to_one}
        if "organization" in names:
            rows[model._meta.label] = list(model.objects.filter(organization=organization).order_by("pk").values())
    rows["agents.RunEvent"] = list(RunEvent.objects.filter(run__organization=organization).order_by("pk").values())
    return rows


def _member(username: str, organization: Organization):
    user = get_user_model().objects.create_user(username=username, email=f"{username}@example.com", password=PASSWORD)
    account_services.membership_add(organization=organization, user=user, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def acme(organization, owner) -> Tenant:
    return Tenant(organization=organization, user=owner, label="acmeonly")


@pytest.fixture
def globex(other_organization, outsider) -> Tenant:
    return Tenant(organization=other_organization, user=outsider, label="globexown")


@dataclass
class Principal:
    """Someone acting in organization B: the API with a token scoped to B, the UI with a session in B."""

    api: APIClient
    ui: Client


def _principal(user, organization: Organization) -> Principal:
    _, raw = account_services.api_token_create(user=user, organization=organization)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    ui = Client()
    ui.force_login(user)
    session = ui.session
    session["organization_id"] = str(organization.id)
    session.save()
    return Principal(api=api, ui=ui)


PRINCIPALS = ["outsider", "member-of-both-acting-in-B"]


@pytest.fixture(params=PRINCIPALS)
def intruder(request, globex) -> Principal:
    """Organization B's member, either belonging to B only or to both A and B but acting in B (their
    token is B's, their session chose B)."""
    if request.param == "outsider":
        return _principal(globex.user, globex.organization)
    both = _member("bianca", globex.organization)
    account_services.membership_add(organization=request.getfixturevalue("organization"), user=both,
                                    role=Membership.Role.OWNER)
    return _principal(both, globex.organization)


# ----------------------------------------------------------------------------- the URL conf


@dataclass(frozen=True)
class Route:
    pattern: str
    name: str
    callback: Callable
    parameters: tuple[str, ...]
    namespace: str = ""

    @property
    def id(self) -> str:
        return self.name or self.pattern

    @property
    def view_class(self) -> type | None:
        return getattr(self.callback, "cls", None)

    @property
    def is_api(self) -> bool:
        return self.view_class is not None and issubclass(self.view_class, APIView)

    def allow_listed(self) -> str | None:
        if self.id in NO_TENANT_OBJECT:
            return NO_TENANT_OBJECT[self.id]
        for prefix, reason in NO_TENANT_OBJECT_PREFIXES.items():
            if self.name.startswith(prefix) or f"{self.namespace}:".startswith(prefix) or self.pattern.startswith(
                    prefix):
                return reason
        return None

    def model_for(self, parameter: str) -> type[Model] | None:
        if parameter in PARAMETER_MODELS:
            return PARAMETER_MODELS[parameter]
        if parameter == "pk" and self.view_class is not None:
            queryset = getattr(self.view_class, "queryset", None)
            if queryset is not None:
                return queryset.model
            meta = getattr(getattr(self.view_class, "serializer_class", None), "Meta", None)
            return getattr(meta, "model", None)
        return None

    def declared_methods(self) -> set[str]:
        """The methods the view says it answers; a view that doesn't say answers them all."""
        cls = self.view_class
        actions = getattr(self.callback, "actions", None)
        if actions is not None:  # a DRF viewset route
            methods = {m.upper() for m in actions if m in cls.http_method_names}
            if "GET" in methods:
                methods.add("HEAD")
            return methods | {"OPTIONS"}
        if cls is not None:
            methods = {m.upper() for m in cls.http_method_names if hasattr(cls, m)}
            if "GET" in methods and "head" in cls.http_method_names:
                methods.add("HEAD")  # Django's View.setup answers HEAD with get()
            return methods
        restricted = _require_http_methods(self.callback)
        return {m.upper() for m in restricted} if restricted is not None else set(ALL_METHODS)

    def url(self, kwargs: dict[str, Any]) -> str:
        return reverse(self.name, kwargs=kwargs)


def _require_http_methods(view: Callable) -> list[str] | None:
    """The list given to django.views.decorators.http.require_http_methods, wherever it sits in the
    decorator stack."""
    seen = set()
    stack = [view]
    while stack:
        func = stack.pop()
        if id(func) in seen:
            continue
        seen.add(id(func))
        names = getattr(getattr(func, "__code__", None), "co_freevars", ())
        for name, cell in zip(names, getattr(func, "__closure__", None) or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if name == "request_method_list":
                return list(value)
            if callable(value):
                stack.append(value)
        if hasattr(func, "__wrapped__"):
            stack.append(func.__wrapped__)
    return None


def _walk(patterns, prefix: str = "", namespace: str = "", parameters: tuple[str, ...] = ()) -> Iterator[Route]:
    for entry in patterns:
        found = tuple(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if namespace and entry.namespace else (entry.namespace or
                                                                                            namespace)
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), inner, parameters + found)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else (entry.name or "")
            yield Route(prefix + str(entry.pattern), name, entry.callback, parameters + found, namespace)


def http_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns))


def _object_routes() -> list[Route]:
    return [r for r in http_routes() if r.parameters and r.allow_listed() is None]


def _list_routes() -> list[Route]:
    return [r for r in http_routes() if not r.parameters and r.allow_listed() is None]


# ----------------------------------------------------------------------------- requests

_TOKENS = re.compile(r"[A-Za-z0-9]{32,}")  # CSRF tokens (fresh per response) and the like


def _call(principal: Principal, route: Route, method: str, path: str, data: dict[str, str] | None = None):
    data = data if data is not None and method in WRITES else {}
    if route.is_api:
        return principal.api.generic(method, path, json.dumps(data) if data else "", content_type="application/json")
    return principal.ui.generic(method, path, urlencode(data), content_type="application/x-www-form-urlencoded")


def _text(response) -> str:
    if getattr(response, "streaming", False):
        if response.is_async:  # an event stream; these tests never ask for one
            return ""
        response._text = getattr(response, "_text", None) or b"".join(response.streaming_content).decode(
            errors="replace")
        return response._text
    return response.content.decode(errors="replace")


def _normalized(response, *replace: str) -> tuple[int, str]:
    text = _text(response)
    for value in replace:
        text = text.replace(value, "<ID>")
    text = _TOKENS.sub("<TOKEN>", text)
    if response.get("Content-Type", "").startswith("application/json") and text:
        data = json.loads(text)
        if isinstance(data, dict):
            data.pop("request_id", None)
        text = json.dumps(data, sort_keys=True)
    return response.status_code, text


def _diff(expected: tuple[int, str], got: tuple[int, str]) -> str:
    lines = difflib.unified_diff(f"{expected[0]}\n{expected[1]}".splitlines(), f"{got[0]}\n{got[1]}".splitlines(),
                                 "before", "after", n=0, lineterm="")
    return "\n".join(list(lines)[:30])


def _leaks(text: str, tenant: Tenant) -> list[str]:
    return [marker for marker in tenant.markers() if marker in text]


# ----------------------------------------------------------------------------- tests


def test_the_url_conf_has_routes_to_check():
    # Guards the walk itself: if it ever finds nothing, every test below would pass vacuously.
    assert len(_object_routes()) >= 30 and len(_list_routes()) >= 10


def test_every_allow_listed_route_still_exists():
    ids = {r.id for r in http_routes()}
    stale = [route_id for route_id in NO_TENANT_OBJECT if route_id not in ids]
    assert not stale, f"allow-listed routes that no longer exist (remove them from NO_TENANT_OBJECT): {stale}"
    for prefix in NO_TENANT_OBJECT_PREFIXES:
        assert any(r.name.startswith(prefix) or r.pattern.startswith(prefix) for r in http_routes()), (
            f"no route starts with {prefix!r} any more")


@pytest.mark.parametrize("route", _object_routes(), ids=lambda r: r.id)
def test_an_object_of_another_organization_is_not_found_by_any_method(route, acme, intruder):
    kwargs, missing_kwargs, foreign_ids = {}, {}, []
    for parameter in route.parameters:
        model = route.model_for(parameter)
        if model is None or model not in FACTORIES:
            pytest.fail(
                f"Route {route.id!r} ({route.pattern}) takes the path parameter {parameter!r}, which this test "
                f"can't map to an object ({'model ' + model.__name__ if model else 'unknown model'}). Add a factory "
                "for it to FACTORIES (or the parameter to PARAMETER_MODELS) in tests/test_tenant_isolation.py, so "
                "the route is proved to 404 for other organizations; if the route has no tenant object, allow-list "
                "it in NO_TENANT_OBJECT with the reason."
            )
        obj = acme.get(model)
        if parameter in PATH_VALUES:
            name, nowhere = PATH_VALUES[parameter]
            kwargs[parameter], missing_kwargs[parameter] = name(obj), nowhere()
        else:
            kwargs[parameter] = obj.pk
            missing_kwargs[parameter] = 2_000_000_000 if isinstance(obj.pk, int) else uuid.uuid4()
        foreign_ids.append(str(kwargs[parameter]))
    acme.create_everything()
    before = _snapshot(acme.organization)
    foreign, missing = route.url(kwargs), route.url(missing_kwargs)
    declared = route.declared_methods()

    problems = []
    for method in ALL_METHODS:
        for body in HIJACK_VARIANTS if method in WRITES else [None]:
            baseline = _call(intruder, route, method, missing, body)
            if baseline.status_code != 400:
                break
        response = _call(intruder, route, method, foreign, body)
        if method == "OPTIONS" and route.is_api:
            # DRF answers OPTIONS with the view's metadata; it must not differ for A's object.
            expected = _normalized(baseline, *(str(v) for v in missing_kwargs.values()))
            if _normalized(response, *foreign_ids) != expected:
                problems.append(f"{method} answers differently for A's object than for a missing one")
        else:
            wanted = 404 if method in declared else 405
            if (response.status_code, baseline.status_code) != (wanted, wanted):
                problems.append(f"{method}: {response.status_code} for A's object, {baseline.status_code} for a "
                                f"missing one; expected {wanted}")
        leaked = _leaks(_text(response), acme)
        if leaked:
            problems.append(f"{method} shows A's {leaked}")
        if _snapshot(acme.organization) != before:
            problems.append(f"{method} changed organization A's data")
            before = _snapshot(acme.organization)
    assert not problems, f"{route.id} ({foreign}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("route", _list_routes(), ids=lambda r: r.id)
def test_a_list_or_page_shows_nothing_of_another_organization(route, acme, globex, intruder):
    globex.create_everything()  # B's own rows, so lists have something to render (and to filter)
    path = route.url({}) if route.name else "/" + route.pattern.lstrip("^").rstrip("$")

    def view(query: dict[str, Any] | None = None):
        return _call(intruder, route, "GET", path + ("?" + urlencode(query) if query else ""))

    first = view()
    assert first.status_code in (200, 302, 405), f"{route.id}: GET answered {first.status_code}"
    unseen = {name: uuid.uuid4() for name in FILTER_PARAMETERS}
    empty_filters = {name: _normalized(view({name: value}), str(value)) for name, value in unseen.items()}

    acme.create_everything()
    after = view()

    assert _leaks(_text(after), acme) == [], f"{route.id} shows organization A's objects"
    if route.id in SELF_RECORDING:
        return
    assert _normalized(after) == _normalized(first), (
        f"{route.id} changed for organization B when organization A's objects were created (a count or a row "
        f"from A?):\n{_diff(_normalized(first), _normalized(after))}"
    )
    for name, model in FILTER_PARAMETERS.items():
        foreign_id = str(acme.get(model).pk)
        filtered = view({name: foreign_id})
        assert _leaks(_text(filtered), acme) == [foreign_id] or _leaks(_text(filtered), acme) == [], (
            f"{route.id}?{name}=<A's> shows A's objects: {_leaks(_text(filtered), acme)}"
        )
        assert _normalized(filtered, foreign_id) == empty_filters[name], (
            f"{route.id}?{name}=<A's {model.__name__}> differs from filtering by an id that doesn't exist:\n"
            + _diff(empty_filters[name], _normalized(filtered, foreign_id))
        )


def test_foreign_references_in_request_bodies_are_refused(acme, globex, intruder):
    """B can't point its own schedules and triggers at A's agents or schedules. Each request is
    first made with B's own ids, to show it is one that succeeds."""
    acme.create_everything()
    globex.create_everything()
    before = _snapshot(acme.organization)
    # Started by the triggers below; a second agent, since an agent can't trigger itself.
    own_agent = str(agent_services.agent_create(organization=globex.organization, actor=globex.user, name="target",
                                                system_prompt="x", model="demo", tools=[]).pk)

    def attempts(tenant: Tenant, n: int) -> list[tuple[str, str, dict]]:
        agent, schedule = str(tenant.get(Agent).pk), str(tenant.get(Schedule).pk)
        return [
            ("post", "/api/schedules", {"agent": agent, "name": f"s{n}", "goal": "x", "cron": "0 9 * * *"}),
            ("patch", f"/api/schedules/{globex.get(Schedule).pk}", {"agent": agent}),
            ("post", "/api/triggers", {"agent": agent, "kind": "webhook", "name": f"w{n}"}),
            ("post", "/api/triggers", {"agent": own_agent, "kind": "run_finished", "name": f"r{n}",
                                       "source_agent": agent, "source_statuses": ["succeeded"]}),
            ("post", "/api/triggers", {"agent": own_agent, "kind": "schedule_fired", "name": f"f{n}",
                                       "source_schedule": schedule}),
            ("patch", f"/api/triggers/{globex.get(Trigger).pk}", {"agent": agent}),
        ]

    for method, path, body in attempts(globex, 1):
        response = getattr(intruder.api, method)(path, body, format="json")
        assert response.status_code in (200, 201), f"control {method.upper()} {path} {body}: {response.content}"
    for method, path, body in attempts(acme, 2):
        response = getattr(intruder.api, method)(path, body, format="json")
        assert response.status_code == 400, f"{method.upper()} {path} {body}: {response.status_code} {response.content}"
        assert [m for m in _leaks(_text(response), acme) if m not in body.values()] == [], response.content

    for tenant, expected in ((globex, 302), (acme, 200)):  # 200: the form again, with the error
        agent = str(tenant.get(Agent).pk)
        for path, form in (
            ("/automations/schedules/new", {"agent": agent, "name": f"ui {tenant.label}", "goal": "x", "mode": "cron",
                                            "cron": "0 9 * * *", "timezone": "UTC", "max_retries": "3"}),
            ("/automations/triggers/new", {"agent": own_agent, "kind": "run_finished", "name": f"ui {tenant.label}",
                                           "source_agent": agent, "source_statuses": ["failed"]}),
        ):
            response = intruder.ui.post(path, form)
            assert response.status_code == expected, f"POST {path} with {tenant.label}'s agent: {response.status_code}"
    assert _snapshot(acme.organization) == before
    a_agent = acme.get(Agent)
    assert not Schedule.objects.filter(agent=a_agent).exclude(organization=acme.organization).exists()
    assert not Trigger.objects.filter(agent=a_agent).exclude(organization=acme.organization).exists()
    assert not Trigger.objects.filter(source_agent=a_agent).exclude(organization=acme.organization).exists()


def test_the_admin_is_closed_to_members_who_are_not_staff(acme, globex):
    acme.create_everything()
    assert not globex.user.is_staff
    ui = Client()
    ui.force_login(globex.user)
    before = _snapshot(acme.organization)
    login = reverse("admin:login")
    checked = 0
    for route in http_routes():
        if not route.name.startswith("admin:") or route.name == "admin:login":
            continue
        kwargs = _admin_kwargs(route, acme)
        if kwargs is None:
            continue
        path = route.url(kwargs)
        for method in ("GET", "POST"):
            response = ui.generic(method, path, urlencode(HIJACK), content_type="application/x-www-form-urlencoded")
            assert response.status_code == 302, f"{method} {path}: {response.status_code}"
            assert response["Location"].startswith((login, reverse("admin:index"))), response["Location"]
            assert _leaks(_text(response), acme) == []
            checked += 1
    assert checked >= 20
    assert _snapshot(acme.organization) == before


def _admin_kwargs(route: Route, tenant: Tenant) -> dict[str, Any] | None:
    from django.contrib.contenttypes.models import ContentType

    # Admin route names are admin:<app>_<model>_<action>; the object is the tenant's, if it has one.
    objects = {f"admin:{m._meta.app_label}_{m._meta.model_name}_": o for m, o in tenant.objects.items()}
    kwargs: dict[str, Any] = {}
    for parameter in route.parameters:
        if parameter == "object_id":
            match = next((o for p, o in objects.items() if route.name.startswith(p)), None)
            kwargs[parameter] = str(match.pk) if match is not None else "1"
        elif parameter == "content_type_id":
            kwargs[parameter] = ContentType.objects.get_for_model(Agent).id
        elif parameter == "app_label":
            kwargs[parameter] = "agents"
        else:
            return None  # the unnamed catch-all and the like; the named routes cover the admin
    return kwargs


# ----------------------------------------------------------------------------- websockets


def websocket_routes() -> list[Route]:
    """The websocket URL conf, found by walking the ASGI application down to its URLRouter."""
    from channels.routing import URLRouter

    from config.asgi import application

    stack, routes, seen = [application], [], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, URLRouter):
            for entry in node.routes:
                routes.append(Route(str(entry.pattern), entry.name or "", entry.callback,
                                    tuple(entry.pattern.regex.groupindex)))
            continue
        stack.extend(getattr(node, "application_mapping", {}).values())
        stack.extend(v for v in (getattr(node, a, None) for a in ("application", "inner", "app")) if v is not None)
    return routes


@pytest.mark.django_db(transaction=True)
def test_every_websocket_refuses_another_organizations_object_with_4404(live, organization, owner, other_organization,
                                                                         outsider):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    acme = Tenant(organization=organization, user=owner, label="acmeonly")
    routes = websocket_routes()
    assert routes, "no websocket routes found in config.asgi.application"
    both = _member("bianca", other_organization)
    account_services.membership_add(organization=organization, user=both, role=Membership.Role.OWNER)
    tokens = {
        "outsider": account_services.api_token_create(user=outsider, organization=other_organization)[1],
        "member-of-both-acting-in-B": account_services.api_token_create(user=both, organization=other_organization)[1],
    }
    session = Client()
    session.force_login(outsider)
    cookie = f"sessionid={session.cookies['sessionid'].value}"

    for route in routes:
        kwargs = {}
        for parameter in route.parameters:
            model = route.model_for(parameter)
            assert model in FACTORIES, (
                f"Websocket route {route.pattern} takes {parameter!r}, which this test can't map to an object: add a "
                "factory to FACTORIES in tests/test_tenant_isolation.py."
            )
            kwargs[parameter] = acme.get(model).pk
        path = route.pattern.replace("^", "").replace("$", "")
        for parameter, value in kwargs.items():
            path = re.sub(rf"<(?:\w+:)?{parameter}>|\(\?P<{parameter}>[^)]*\)", str(value), path)
        credentials = {f"token of {who}": {"Authorization": f"Bearer {token}"} for who, token in tokens.items()}
        credentials["session of outsider"] = {"Cookie": cookie}
        for who, headers in credentials.items():
            with connect(f"{live.ws_url}/{path}", additional_headers=headers, open_timeout=10) as ws:
                with pytest.raises(ConnectionClosed):
                    frame = ws.recv(timeout=5)
                    pytest.fail(f"{path} sent {frame!r} to the {who}")
                assert ws.close_code == 4404, f"{path} as the {who}: closed with {ws.close_code}"
