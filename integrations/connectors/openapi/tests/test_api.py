"""The REST API for registered HTTP APIs: who may do what, and what bad input gets back."""

from __future__ import annotations

import json

import pytest
import yaml

from accounts.models import AuditLog
from conftest import client_for
from integrations import tools as tool_registry
from integrations.connectors.openapi.tests.conftest import register
from integrations.models import HttpApi
from tests.fakes.openapi_server import document

pytestmark = [pytest.mark.django_db, pytest.mark.urls("integrations.connectors.openapi.tests.urls")]

URL = "https://api.example.com/v1"
LIST = "/api/http-apis"


def detail(api) -> str:
    return f"/api/http-apis/{api.id}"


@pytest.fixture
def admin_api(organization, member_with_role):
    return client_for(member_with_role("admin", "ada"), organization)


@pytest.fixture
def builder_api(organization, member_with_role):
    return client_for(member_with_role("builder", "bob"), organization)


@pytest.fixture
def viewer_api(organization, member_with_role):
    return client_for(member_with_role("viewer", "vic"), organization)


def test_an_admin_registers_an_api_and_gets_its_operations_back(admin_api, organization):
    response = admin_api.post(LIST, {"name": "Pet Store", "spec": document(URL), "operations": ["listPets"],
                                     "auth": "api_key"}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "pet-store" and body["integration"] == "http-pet-store"
    assert body["base_url"] == URL  # from the document's servers
    assert body["auth_config"] == {"in": "header", "name": "X-API-Key"}  # from its security scheme
    assert body["tools"] == ["http_pet-store_listPets"]
    assert body["document"]["title"] == "Swagger Petstore"
    operations = {o["operation_id"]: o for o in body["available_operations"]}
    assert operations["listPets"]["enabled"] and not operations["createPets"]["enabled"]
    assert operations["createPets"]["side_effect"] == "write" and operations["createPets"]["scopes"] == ["write"]
    assert operations["createPets"]["tool"] == "http_pet-store_createPets"
    assert "http_pet-store_listPets" in tool_registry.for_organization(organization.id)
    entry = AuditLog.objects.get(action="http_api.create")
    assert entry.data["operations"] == ["listPets"] and entry.actor_name == "ada"


def test_it_accepts_the_document_as_yaml_text(admin_api):
    response = admin_api.post(LIST, {"name": "Pets", "spec": yaml.safe_dump(document(URL))}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["operations"] == []


def test_a_builder_can_read_but_not_register_change_or_delete(builder_api, viewer_api, organization, owner):
    api = register(organization, owner, URL)

    refused = builder_api.post(LIST, {"name": "Pets", "spec": document(URL)}, format="json")

    assert refused.status_code == 403
    assert refused.json()["error"] == "permission_denied"
    assert builder_api.patch(detail(api), {"operations": []}, format="json").status_code == 403
    assert builder_api.delete(detail(api)).status_code == 403
    assert builder_api.get(LIST).json()["count"] == 1
    assert viewer_api.get(detail(api)).status_code == 200
    assert HttpApi.objects.get().operations == api.operations


def test_an_admin_changes_and_deletes_an_api(admin_api, organization, owner):
    api = register(organization, owner, URL)

    changed = admin_api.patch(detail(api), {"operations": ["showPetById", "listPets"], "name": "Pets v2"},
                              format="json")

    assert changed.status_code == 200, changed.json()
    assert changed.json()["operations"] == ["listPets", "showPetById"]  # document order
    assert changed.json()["name"] == "Pets v2"
    assert AuditLog.objects.get(action="http_api.update").diff["name"] == ["Petstore", "Pets v2"]
    assert admin_api.delete(detail(api)).status_code == 204
    assert not HttpApi.objects.exists()
    assert admin_api.get(detail(api)).status_code == 404


@pytest.mark.parametrize(("payload", "field", "message"), [
    ({"name": "x", "spec": {"swagger": "2.0"}}, "spec", "Swagger 2.0"),
    ({"name": "x", "spec": "{not json"}, "spec", "isn't valid JSON"),
    ({"name": "x", "spec": 12}, "spec", "this is a number"),
    ({"name": "x"}, "spec", "required"),
    ({"name": "", "spec": {}}, "name", "blank"),
    ({"name": "x", "spec": "DOC", "operations": ["nope"]}, "operations", "no operation 'nope'"),
    ({"name": "x", "spec": "DOC", "slug": "Not_A_Slug"}, "slug", "lowercase letters"),
    ({"name": "x", "spec": "DOC", "base_url": "ftp://example.com"}, "base_url", "http://"),
    ({"name": "x", "spec": "DOC", "base_url": "http://10.0.0.5/api"}, "base_url", "private address"),
    ({"name": "x", "spec": "DOC", "base_url": "http://localhost:8000"}, "base_url", "loopback"),
    ({"name": "x", "spec": "DOC", "auth": "api_key", "auth_config": {"in": "cookie", "name": "k"}}, "auth_config.in",
     "cookies"),
    ({"name": "x", "spec": "DOC", "auth": "api_key", "auth_config": {"name": "bad header"}}, "auth_config.name",
     "header name"),
    ({"name": "x", "spec": "DOC", "auth": "api_key", "auth_config": {"name": "K", "extra": 1}}, "auth_config",
     "Unknown setting 'extra'"),
    ({"name": "x", "spec": "DOC", "auth": "api_key", "auth_config": {"name": "K", "check_operation": "createPets"}},
     "auth_config.check_operation", "GET operation that needs no arguments"),
    ({"name": "x", "spec": "DOC", "auth": "oauth2"}, "client_secret", "required"),
    ({"name": "x", "spec": "DOC", "auth": "oauth2", "auth_config": {"client_id": "c"}, "client_secret": "s"},
     "auth_config.authorize_url", "required"),
    ({"name": "x", "spec": "DOC", "auth": "none", "client_secret": "s"}, "client_secret", "Only an API"),
    ({"name": "x", "spec": "DOC", "auth": "magic"}, "auth", "not a valid choice"),
])
def test_bad_input_gets_field_errors_not_a_server_error(admin_api, payload, field, message):
    if payload.get("spec") == "DOC":
        payload = {**payload, "spec": document(URL)}

    response = admin_api.post(LIST, payload, format="json")

    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["error"] == "validation_error"
    assert message in " ".join(body["details"][field]), body["details"]
    assert not HttpApi.objects.exists()


def test_a_document_without_an_absolute_server_needs_a_base_url(admin_api):
    spec = {**document(URL), "servers": [{"url": "/api/v3"}]}

    response = admin_api.post(LIST, {"name": "x", "spec": spec}, format="json")

    assert response.status_code == 400
    assert "it says '/api/v3'" in response.json()["details"]["base_url"][0]
    assert admin_api.post(LIST, {"name": "x", "spec": spec, "base_url": "https://pets.example.com/api/v3"},
                          format="json").status_code == 201


def test_the_slug_cant_change_and_cant_be_taken_twice(admin_api, organization, owner):
    api = register(organization, owner, URL)

    patched = admin_api.patch(detail(api), {"slug": "other"}, format="json")
    taken = admin_api.post(LIST, {"name": "x", "slug": "petstore", "spec": document(URL)}, format="json")
    named_alike = admin_api.post(LIST, {"name": "Petstore", "spec": document(URL)}, format="json")

    assert patched.status_code == 400 and "can't change" in patched.json()["details"]["slug"][0]
    assert taken.status_code == 400 and "already has the slug" in taken.json()["details"]["slug"][0]
    assert named_alike.status_code == 201 and named_alike.json()["slug"] == "petstore-2"


def test_the_oauth_client_secret_is_write_only(admin_api):
    response = admin_api.post(LIST, {
        "name": "x", "spec": document(URL), "auth": "oauth2", "client_secret": "very-secret-value",
        "auth_config": {"client_id": "c", "authorize_url": "https://a.example.com/auth",
                        "token_url": "https://a.example.com/token", "scopes": ["pets"]}}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["has_client_secret"] is True
    assert "very-secret-value" not in json.dumps(response.json())
    assert "very-secret-value" not in json.dumps(admin_api.get(LIST).json())
    assert "very-secret-value" not in HttpApi.objects.get().secret
    assert "very-secret-value" not in json.dumps(list(AuditLog.objects.values("data", "diff")))
    kept = admin_api.patch(f"{LIST}/{response.json()['id']}", {"client_secret": "", "name": "y"}, format="json")
    assert kept.status_code == 200 and kept.json()["has_client_secret"] is True


def test_another_organizations_apis_are_not_found(outsider_api, admin_api, organization, owner):
    api = register(organization, owner, URL)

    assert outsider_api.get(LIST).json()["count"] == 0
    assert outsider_api.get(detail(api)).status_code == 404
    assert outsider_api.patch(detail(api), {"name": "mine"}, format="json").status_code == 404
    assert outsider_api.delete(detail(api)).status_code == 404
    assert HttpApi.objects.get().name == "Petstore"
    assert admin_api.get(f"{LIST}/not-a-uuid").status_code == 404


def test_a_new_document_keeps_the_operations_it_still_has(admin_api, organization, owner):
    api = register(organization, owner, URL)
    smaller = document(URL)
    del smaller["paths"]["/pets/{petId}"]

    response = admin_api.patch(detail(api), {"spec": smaller}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["operations"] == ["whoAmI", "listPets", "createPets"]
