"""A registered API's operations as tools, called through connections against the fake API."""

from __future__ import annotations

import re
import time

import jsonschema
import pytest
from django.core.exceptions import ValidationError

from integrations import catalog, oauth
from integrations import services as connection_services
from integrations import tools as tool_registry
from integrations.connectors.openapi import services
from integrations.connectors.openapi.tests.conftest import register, run_tool
from integrations.models import Connection, ConnectionCall
from tests.fakes.openapi_server import API_KEY, CLIENT_ID, CLIENT_SECRET, FakeApiServer, oauth_document

pytestmark = pytest.mark.django_db(transaction=True)

REDIRECT_URI = "http://testserver/integrations/oauth/callback"


def connect(organization, user, *, scopes: list[str] | None = None, key: str = API_KEY,
            for_organization: bool = False) -> Connection:
    return connection_services.connection_create(organization=organization, actor=user, integration="http-petstore",
                                                 values={"api_key": key}, scopes=scopes,
                                                 for_organization=for_organization)


def test_it_offers_one_tool_per_enabled_operation_with_valid_schemas(petstore, organization):
    offered = {name: t for name, t in tool_registry.for_organization(organization.id).items()
               if t.integration == "http-petstore"}

    assert sorted(offered) == ["http_petstore_createPets", "http_petstore_deletePet", "http_petstore_listPets",
                               "http_petstore_showPetById", "http_petstore_whoAmI"]
    for tool in offered.values():
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool.name)
        assert tool.timeout_seconds == 30
        assert "X-API-Key" not in str(tool.input_schema)  # the connection supplies the key, not the model
    show = offered["http_petstore_showPetById"]
    assert show.side_effect == tool_registry.SideEffect.READ and show.scopes == ("read",)
    assert show.input_schema["required"] == ["petId"]
    assert show.description.startswith("Info for a specific pet")
    create = offered["http_petstore_createPets"]
    assert create.side_effect == tool_registry.SideEffect.WRITE and create.scopes == ("write",)
    assert create.input_schema["properties"]["body"]["required"] == ["name"]
    integration = catalog.get("http-petstore", organization.id)
    assert integration.name == "Petstore" and integration.category == "custom" and integration.status == "beta"
    assert integration.auth_types == ("api_key",)
    assert integration.scope_names == ["read", "write"]
    assert [f.name for f in integration.credential_fields] == ["api_key"]
    assert sorted(t.name for t in catalog.tools_of(integration)) == sorted(offered)


def test_it_calls_a_get_operation_with_path_and_query_parameters_and_the_key_in_its_header(
        petstore, organization, owner, fake):
    connect(organization, owner)
    fake.requests.clear()

    result, trace = run_tool("http_petstore_showPetById", {"petId": "2", "include": "owner"},
                             organization=organization, runner=owner)

    assert not result.is_error, result.output
    assert '"name": "Tom"' in result.output
    (request,) = fake.requests
    assert request.method == "GET" and request.raw_path == "/pets/2"
    assert request.query == {"include": ["owner"]}
    assert request.headers["x-api-key"] == API_KEY
    assert trace["connection"]["owner"] == "personal"
    assert ConnectionCall.objects.get().outcome == ConnectionCall.Outcome.OK


def test_it_percent_encodes_path_parameters_whole(petstore, organization, owner, fake):
    connect(organization, owner)
    fake.requests.clear()

    result, _ = run_tool("http_petstore_showPetById", {"petId": "../me?x=1"}, organization=organization, runner=owner)

    assert fake.requests[0].raw_path == "/pets/..%2Fme%3Fx%3D1"
    assert result.is_error and "HTTP 404" in result.output and "No pet ../me?x=1" in result.output


def test_it_sends_array_query_parameters_one_per_value(petstore, organization, owner, fake):
    connect(organization, owner)
    fake.requests.clear()

    result, _ = run_tool("http_petstore_listPets", {"limit": 5, "tag": ["dog", "cat"]}, organization=organization,
                         runner=owner)

    assert fake.requests[0].query == {"limit": ["5"], "tag": ["dog", "cat"]}
    assert "Rex" in result.output and "Tom" in result.output


def test_it_posts_a_json_body(petstore, organization, owner, fake):
    connect(organization, owner)
    fake.requests.clear()

    result, _ = run_tool("http_petstore_createPets", {"body": {"name": "Nemo", "tag": "fish"}},
                         organization=organization, runner=owner)

    assert not result.is_error, result.output
    assert result.output.startswith("HTTP 201\n") and '"name": "Nemo"' in result.output
    (request,) = fake.requests
    assert request.method == "POST" and request.headers["content-type"] == "application/json"
    assert request.json() == {"name": "Nemo", "tag": "fish"}
    assert fake.pets[4]["name"] == "Nemo"


def test_it_honours_retry_after_on_429(petstore, organization, owner, fake):
    connect(organization, owner)
    fake.requests.clear()
    fake.enqueue(429, {"code": 429, "message": "Too many requests"}, headers={"Retry-After": "1"})

    started = time.monotonic()
    result, _ = run_tool("http_petstore_listPets", {}, organization=organization, runner=owner)

    assert not result.is_error, result.output
    assert time.monotonic() - started >= 1.0
    assert len(fake.requests) == 2


def test_a_connection_holding_only_read_cant_call_a_write_operation(petstore, organization, owner, fake):
    connection = connect(organization, owner, scopes=["read"], for_organization=True)
    fake.requests.clear()

    result, trace = run_tool("http_petstore_deletePet", {"petId": "1"}, organization=organization, runner=owner,
                             connection=str(connection.id))

    assert result.is_error and result.output.startswith("Refused:")
    assert "write" in result.output and "nothing was sent" in result.output
    assert fake.requests == []
    assert 1 in fake.pets
    assert trace["refused"] is True
    assert ConnectionCall.objects.get().outcome == ConnectionCall.Outcome.REFUSED


def test_the_builder_must_grant_write_too(petstore, organization, owner, fake):
    connect(organization, owner)
    fake.requests.clear()

    result, _ = run_tool("http_petstore_createPets", {"body": {"name": "Nemo"}}, organization=organization,
                         runner=owner, scopes=["read"])

    assert result.output.startswith("Refused:") and "builder did not grant" in result.output
    assert fake.requests == []


def test_the_apis_own_error_reaches_the_model(petstore, organization, owner, fake):
    connect(organization, owner)

    result, _ = run_tool("http_petstore_showPetById", {"petId": "99"}, organization=organization, runner=owner)

    assert result.is_error
    assert result.output == "Error: Petstore answered HTTP 404: No pet 99"


def test_arguments_outside_the_schema_are_refused_before_calling(petstore, organization, owner, fake):
    connect(organization, owner)
    fake.requests.clear()

    result, _ = run_tool("http_petstore_listPets", {"X-API-Key": "stolen"}, organization=organization, runner=owner)

    assert result.is_error and "invalid arguments" in result.output
    assert fake.requests == []


def test_a_key_is_checked_with_the_chosen_operation_before_it_is_saved(petstore, organization, owner, fake):
    with pytest.raises(ValidationError) as refused:
        connect(organization, owner, key="wrong-key")

    assert "credentials" in refused.value.message_dict
    assert not Connection.objects.exists()
    assert fake.requests[-1].path == "/me"
    connect(organization, owner)
    assert Connection.objects.get().scopes == ["read", "write"]


def test_a_key_can_travel_in_the_query_string(organization, owner, allow_loopback):
    server = FakeApiServer(key_in="query", key_name="api_key").start()
    try:
        register(organization, owner, server.url, key_in="query", key_name="api_key")
        connect(organization, owner)
        server.requests.clear()

        result, _ = run_tool("http_petstore_listPets", {"limit": 1}, organization=organization, runner=owner)

        assert not result.is_error, result.output
        assert server.requests[0].query == {"limit": ["1"], "api_key": [API_KEY]}
        assert "x-api-key" not in server.requests[0].headers
        assert API_KEY not in result.output
        tool = tool_registry.for_organization(organization.id)["http_petstore_listPets"]
        assert "api_key" not in tool.input_schema["properties"]
    finally:
        server.stop()


def test_an_organization_sees_only_its_own_apis_and_tools(petstore, organization, other_organization, outsider, fake):
    theirs = tool_registry.for_organization(other_organization.id)

    assert not any(name.startswith("http_petstore_") for name in theirs)
    assert catalog.get("http-petstore", other_organization.id) is None
    assert "http-petstore" not in {i.slug for i in catalog.all_integrations(other_organization.id)}
    with pytest.raises(ValidationError):
        connection_services.connection_create(organization=other_organization, actor=outsider,
                                              integration="http-petstore", values={"api_key": API_KEY})
    # The same slug in another organization is another API with its own tools.
    register(other_organization, outsider, fake.url, operations=["listPets"])
    assert sorted(n for n in tool_registry.for_organization(other_organization.id) if n.startswith("http_")) == [
        "http_petstore_listPets"]
    assert len([n for n in tool_registry.for_organization(organization.id) if n.startswith("http_")]) == 5


def test_an_edit_changes_the_tools_at_once(petstore, organization, owner):
    assert "http_petstore_deletePet" in tool_registry.for_organization(organization.id)

    services.http_api_update(http_api=petstore, actor=owner, operations=["listPets"])

    names = [n for n in tool_registry.for_organization(organization.id) if n.startswith("http_")]
    assert names == ["http_petstore_listPets"]


def test_deleting_the_api_deletes_its_tools_and_connections(petstore, organization, owner):
    connect(organization, owner)

    services.http_api_delete(http_api=petstore, actor=owner)

    assert not Connection.objects.exists()
    assert not any(n.startswith("http_") for n in tool_registry.for_organization(organization.id))
    assert catalog.get("http-petstore", organization.id) is None


def test_it_connects_with_oauth_and_uses_the_scopes_the_document_names(organization, owner, allow_loopback):
    server = FakeApiServer(auth="oauth").start()
    try:
        api = services.http_api_create(organization=organization, actor=owner, name="Petstore", slug="petstore",
                                       spec=oauth_document(server.url), operations=["listPets", "createPets"],
                                       auth="oauth2", auth_config={"client_id": CLIENT_ID,
                                                                   "authorize_url": f"{server.url}/oauth/authorize",
                                                                   "token_url": f"{server.url}/oauth/token"},
                                       client_secret=CLIENT_SECRET)
        assert CLIENT_SECRET not in api.secret
        integration = catalog.get("http-petstore", organization.id)
        assert integration.auth_types == ("oauth2",) and integration.oauth_ready()
        assert integration.scope_names == ["pets:read", "pets:write"]
        assert integration.scope("pets:write").write and not integration.scope("pets:read").write
        tools = tool_registry.for_organization(organization.id)
        assert tools["http_petstore_listPets"].scopes == ("pets:read",)
        assert tools["http_petstore_createPets"].scopes == ("pets:write",)

        url = oauth.start(organization=organization, actor=owner, integration=integration,
                          scopes=["pets:read", "pets:write"], redirect_uri=REDIRECT_URI)
        assert url.startswith(f"{server.url}/oauth/authorize?") and "scope=pets%3Aread+pets%3Awrite" in url
        back = server.approve(url, grant=["pets:read"])  # the person allows reading only
        connection = oauth.finish(actor=owner, state=back["state"], code=back["code"])
        assert connection.scopes == ["pets:read"]
        server.requests.clear()

        listed, _ = run_tool("http_petstore_listPets", {}, organization=organization, runner=owner)
        created, _ = run_tool("http_petstore_createPets", {"body": {"name": "Nemo"}}, organization=organization,
                              runner=owner)

        assert not listed.is_error and "Rex" in listed.output
        assert server.requests[0].headers["authorization"].startswith("Bearer ")
        assert created.output.startswith("Refused:") and "pets:write" in created.output
        assert len(server.requests) == 1
    finally:
        server.stop()


def test_oauth_without_declared_scopes_offers_read_and_write(organization, owner, fake):
    api = register(organization, owner, fake.url, auth="oauth2",
                   auth_config={"client_id": "id", "authorize_url": "https://auth.example.com/authorize",
                                "token_url": "https://auth.example.com/token", "scopes": ["pets"]},
                   client_secret="s3cret-value")

    integration = catalog.get(api.integration_slug, organization.id)

    assert integration.scope_names == ["read", "write"]
    assert integration.provider_scopes_for(["read"]) == ["pets"]
    assert integration.oauth.client() == {"client_id": "id", "client_secret": "s3cret-value"}


def test_a_long_response_is_cut_to_the_cap_with_a_note(petstore, organization, owner, fake, monkeypatch):
    from integrations.connectors.openapi import tools as openapi_tools

    monkeypatch.setattr(openapi_tools, "MAX_OUTPUT_CHARS", 40)
    connect(organization, owner)

    result, _ = run_tool("http_petstore_listPets", {}, organization=organization, runner=owner)

    assert not result.is_error
    shown, note = result.output.split("\n")
    assert len(shown) == 40 and note.startswith("[truncated: the response has ")


def test_the_registry_sources_cost_at_most_one_query_per_organization(petstore, organization,
                                                                     django_assert_num_queries):
    from integrations.connectors.openapi import tools as openapi_tools

    with django_assert_num_queries(2):  # the rows, then the documents of those not compiled yet
        assert len(openapi_tools.tool_source(organization.id)) == 5
    openapi_tools.forget(organization.id)  # as RECENT_SECONDS later
    with django_assert_num_queries(1):  # the rows; unchanged ones aren't parsed again
        assert len(openapi_tools.tool_source(organization.id)) == 5
    with django_assert_num_queries(0):  # the same page asking again
        assert len(openapi_tools.integration_source(organization.id)) == 1


def test_an_api_without_auth_is_called_without_a_connection(organization, owner, fake):
    register(organization, owner, fake.url, auth="none", auth_config=None)
    fake.enqueue(200, [{"id": 9, "name": "Open"}])

    result, trace = run_tool("http_petstore_listPets", {}, organization=organization, runner=owner)

    assert not result.is_error, result.output
    assert '"name": "Open"' in result.output
    assert "x-api-key" not in fake.requests[0].headers
    assert "connection" not in trace
