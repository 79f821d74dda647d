"""Connector tool calls through the run loop: which connection, which scopes, what is recorded.

A small test integration ("probe") stands in for a connector: its tools call a scripted loopback
server with the connection's bearer token, so each test can tell whether a request went out."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

from agents import loop
from agents import services as agent_services
from agents.models import Run, RunEvent
from integrations import catalog, crypto, services
from integrations import tools as tool_registry
from integrations.calls import CallContext
from integrations.catalog import AuthType, Category, CredentialField, Integration, Maturity, Scope
from integrations.http import error_message
from integrations.models import Connection, ConnectionCall
from tests.fakes.http_script import ScriptedHTTPServer

TOKEN = "probe-token-0123456789"


def _identify(call: CallContext) -> dict:
    response = call.http.get(f"{call.options['api_url']}/whoami")
    if not response.ok:
        raise tool_registry.ToolError(error_message(response, service="Probe"))
    return response.json()


def _read(call: CallContext, *, item: str) -> str:
    return call.http.get(f"{call.options['api_url']}/items/{item}").text


def _write(call: CallContext, *, item: str) -> str:
    return call.http.post(f"{call.options['api_url']}/items/{item}", json={}).text


if catalog._INTEGRATIONS.get("probe") is None:
    catalog.register(Integration(
        slug="probe", name="Probe", category=Category.DEVTOOLS, status=Maturity.BETA, summary="Test integration.",
        auth_types=(AuthType.API_KEY,),
        scopes=(Scope("items:read", "Read items."), Scope("items:write", "Change items.", write=True)),
        credential_fields=(CredentialField("token", "Token"), CredentialField("api_url", "API URL", secret=False)),
        auth_headers=lambda credentials, options: {"Authorization": f"Bearer {credentials['token']}"},
        identify=_identify,
    ))
    for name, func, effect, scope in (("probe_read", _read, "read", "items:read"),
                                      ("probe_write", _write, "write", "items:write")):
        tool_registry.register(tool_registry.Tool(
            name=name, description=f"{effect} an item", side_effect=tool_registry.SideEffect(effect),
            input_schema={"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]},
            timeout_seconds=10, func=func, integration="probe", scopes=(scope,),
        ))


@pytest.fixture
def probe(settings):
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    server = ScriptedHTTPServer().start()
    server.script("/whoami", [(200, {}, {"login": "probe-user"})])
    server.script("/items/a", [(200, {}, {"item": "a", "state": "fine"})])
    yield server
    server.stop()


def _connect(probe, *, organization, actor, scopes=None, for_organization=False) -> Connection:
    return services.connection_create(organization=organization, actor=actor, integration="probe",
                                      values={"token": TOKEN, "api_url": probe.url}, scopes=scopes,
                                      for_organization=for_organization)


def _run(organization, builder, runner, *calls, integrations=None, policies=None) -> Run:
    agent = agent_services.agent_create(
        organization=organization, actor=builder, name="Prober", system_prompt="Probe.", model="scripted-goal",
        tools=["probe_read", "probe_write"], integrations=integrations or {},
        tool_policies=policies or {"probe_write": "auto"},
    )
    run = agent_services.run_start(agent=agent, goal=json.dumps({"calls": list(calls)}), actor=runner)
    loop.execute_run(run.id)
    run.refresh_from_db()
    return run


def _ends(run: Run) -> list[dict]:
    return [e.data for e in RunEvent.objects.filter(run=run, type=RunEvent.Type.TOOL_END).order_by("seq")]


READ_A = {"tool": "probe_read", "arguments": {"item": "a"}}
WRITE_A = {"tool": "probe_write", "arguments": {"item": "a"}}


def test_a_call_acts_through_the_runners_connection_and_lands_in_its_history(probe, organization, owner):
    connection = _connect(probe, organization=organization, actor=owner)
    run = _run(organization, owner, owner, READ_A)

    assert run.status == Run.Status.SUCCEEDED
    [end] = _ends(run)
    assert end["is_error"] is False and '"state": "fine"' in end["output"]
    assert end["integration"] == "probe"
    assert end["connection"] == {"id": str(connection.id), "name": connection.name, "owner": "personal"}
    assert probe.seen("/items/a")[0].headers["authorization"] == f"Bearer {TOKEN}"
    [call] = ConnectionCall.objects.filter(connection=connection)
    assert (call.tool, call.outcome, call.status_code, call.run_id) == ("probe_read", "ok", 200, run.id)
    connection.refresh_from_db()
    assert connection.last_used_at is not None


def test_it_refuses_a_scope_the_connection_does_not_hold_before_any_request(probe, organization, owner):
    connection = _connect(probe, organization=organization, actor=owner, scopes=["items:read"])
    run = _run(organization, owner, owner, WRITE_A)

    [end] = _ends(run)
    assert end["is_error"] and end["refused"]
    assert end["output"].startswith("Refused: probe_write needs the Probe scope items:write")
    assert "does not hold" in end["output"]
    assert probe.seen("/items/a") == []
    assert ConnectionCall.objects.get(connection=connection).outcome == "refused"
    assert "Refused: probe_write" in run.answer  # the model saw the refusal


def test_it_refuses_a_scope_the_builder_did_not_select_even_if_the_connection_holds_it(probe, organization, owner):
    _connect(probe, organization=organization, actor=owner)
    run = _run(organization, owner, owner, WRITE_A, integrations={"probe": {"connection": "runner",
                                                                           "scopes": ["items:read"]}})
    [end] = _ends(run)
    assert "builder did not grant it" in end["output"]
    assert probe.seen("/items/a") == []


def test_a_revoked_connection_refuses_the_next_call_with_a_clear_message(probe, organization, owner):
    connection = _connect(probe, organization=organization, actor=owner)
    services.connection_revoke(connection=connection, actor=owner)
    connection.refresh_from_db()
    assert connection.secret == "" and connection.status == Connection.Status.REVOKED

    run = _run(organization, owner, owner, READ_A)
    [end] = _ends(run)
    assert f"the Probe connection '{connection.name}' was revoked on" in end["output"]
    assert "nothing was sent" in end["output"]
    assert probe.seen("/items/a") == []


def test_a_runner_without_a_connection_is_told_how_to_connect(probe, organization, owner, member):
    _connect(probe, organization=organization, actor=owner)
    run = _run(organization, owner, member, READ_A)
    [end] = _ends(run)
    assert "the person running this agent has no Probe connection" in end["output"]
    assert probe.seen("/items/a") == []


def test_another_persons_connection_is_never_used_for_someone_else(probe, organization, owner, member):
    mine = _connect(probe, organization=organization, actor=owner)
    run = _run(organization, owner, member, READ_A, integrations={"probe": {"connection": str(mine.id)}})
    [end] = _ends(run)
    assert f"uses {owner.username}'s personal Probe connection, which only they can use" in end["output"]
    assert probe.seen("/items/a") == []


def test_an_organization_connection_serves_everyone_who_runs_the_agent(probe, organization, owner, member):
    shared = _connect(probe, organization=organization, actor=owner, for_organization=True)
    run = _run(organization, owner, member, READ_A, integrations={"probe": {"connection": str(shared.id)}})
    [end] = _ends(run)
    assert end["is_error"] is False and end["connection"]["owner"] == "organization"


def test_a_401_that_cannot_be_refreshed_marks_the_connection_and_emails_its_owner(
    transactional_db, probe, organization, owner, smtp_sink
):
    # transactional_db: the refresh runs in the tool's own thread, on its own database connection.
    connection = _connect(probe, organization=organization, actor=owner)
    probe.script("/items/a", [(401, {}, {"message": "Bad credentials"})])
    run = _run(organization, owner, owner, READ_A)

    [end] = _ends(run)
    assert end["is_error"] and "refused the connection's credentials (HTTP 401)" in end["output"]
    connection.refresh_from_db()
    assert connection.status == Connection.Status.NEEDS_REAUTH
    [mail] = smtp_sink.wait_for(1)
    assert mail.recipients == [owner.email] and "needs re-authorization" in mail.message["Subject"]
    # The next run refuses without calling out.
    before = len(probe.requests)
    run = _run(organization, owner, owner, READ_A)
    assert "needs re-authorization" in _ends(run)[0]["output"]
    assert len(probe.requests) == before


def test_credentials_are_encrypted_at_rest_and_survive_a_key_rotation(probe, organization, owner, settings):
    connection = _connect(probe, organization=organization, actor=owner)
    stored = Connection.objects.values_list("secret", flat=True).get(id=connection.id)
    assert TOKEN not in stored and stored.startswith("gAAAA")
    assert crypto.decrypt(stored) == {"token": TOKEN}

    settings.CREDENTIAL_KEYS = [Fernet.generate_key().decode(), *settings.CREDENTIAL_KEYS]
    assert services.credentials_rotate() >= 1
    rotated = Connection.objects.values_list("secret", flat=True).get(id=connection.id)
    settings.CREDENTIAL_KEYS = settings.CREDENTIAL_KEYS[:1]  # the old key is gone
    assert crypto.decrypt(rotated) == {"token": TOKEN}


def test_saving_bad_credentials_is_a_field_error_and_stores_nothing(probe, organization, owner):
    from django.core.exceptions import ValidationError

    probe.script("/whoami", [(401, {}, {"message": "Bad credentials"})])
    with pytest.raises(ValidationError) as caught:
        _connect(probe, organization=organization, actor=owner)
    assert "Probe did not accept these credentials" in caught.value.message_dict["credentials"][0]
    assert not Connection.objects.filter(integration="probe").exists()


def test_the_rotation_command_reports_what_it_re_encrypted(probe, organization, owner):
    from io import StringIO

    from django.core.management import call_command

    _connect(probe, organization=organization, actor=owner)
    out = StringIO()
    call_command("credentials_rotate", stdout=out)
    assert "Re-encrypted 1 credential(s)" in out.getvalue()


def test_the_rest_api_saves_an_agents_connection_choice_and_refuses_another_organizations(
    probe, organization, other_organization, owner, outsider, owner_api
):
    shared = _connect(probe, organization=organization, actor=owner, for_organization=True)
    foreign = _connect(probe, organization=other_organization, actor=outsider, for_organization=True)
    body = {"name": "Prober", "system_prompt": "Probe.", "model": "scripted-goal", "tools": ["probe_read"]}

    created = owner_api.post("/api/agents", {**body, "integrations": {"probe": {"connection": str(shared.id)}}},
                             format="json")
    assert created.status_code == 201, created.content
    assert created.json()["integrations"] == {"probe": {"connection": str(shared.id), "scopes": ["items:read"]}}

    refused = owner_api.post("/api/agents", {**body, "integrations": {"probe": {"connection": str(foreign.id)}}},
                             format="json")
    assert refused.status_code == 400
    assert "integrations.probe.connection" in json.dumps(refused.json()["details"])


def test_the_periodic_check_finds_a_dead_token_before_an_agent_does(
    probe, organization, owner, smtp_sink, django_capture_on_commit_callbacks, settings
):
    from datetime import timedelta

    from django.utils import timezone

    settings.INTEGRATIONS_HEALTH_CHECK_HOURS = 24
    fresh = _connect(probe, organization=organization, actor=owner)
    stale = _connect(probe, organization=organization, actor=owner, for_organization=True)
    Connection.objects.filter(id=stale.id).update(last_checked_at=timezone.now() - timedelta(hours=25))
    probe.script("/whoami", [(401, {}, {"message": "Bad credentials"})])

    with django_capture_on_commit_callbacks(execute=True):
        assert services.connections_health_check() == {"checked": 1, "failed": 1}

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Connection.Status.NEEDS_REAUTH and stale.last_check_ok is False
    assert fresh.status == Connection.Status.ACTIVE
    [mail] = smtp_sink.wait_for(1)
    assert owner.email in mail.recipients and "needs re-authorization" in mail.message["Subject"]
    settings.INTEGRATIONS_HEALTH_CHECK_HOURS = 0
    assert services.connections_health_check() == {"checked": 0, "failed": 0}
