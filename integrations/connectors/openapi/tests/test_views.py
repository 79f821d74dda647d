"""The HTTP API pages: register (paste or upload), choose the tools, edit, delete."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from integrations.connectors.openapi.tests.conftest import register
from integrations.models import HttpApi
from tests.fakes.openapi_server import document

pytestmark = [pytest.mark.django_db, pytest.mark.urls("integrations.connectors.openapi.tests.urls")]

URL = "https://api.example.com/v1"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_admin_registers_an_api_by_pasting_its_document_and_ticks_its_operations(owner):
    client = signed_in(owner)
    assert client.get("/integrations/http-apis/").status_code == 200
    assert client.get("/integrations/http-apis/new/").status_code == 200

    created = client.post("/integrations/http-apis/new/", {
        "name": "Pet Store", "document_text": json.dumps(document(URL)), "auth": "api_key", "key_in": "header"})

    api = HttpApi.objects.get()
    assert created.status_code == 302 and created["Location"] == f"/integrations/http-apis/{api.id}/"
    assert api.auth_config == {"in": "header", "name": "X-API-Key"}
    page = client.get(created["Location"]).content.decode()
    assert "GET /pets/{petId}" in page and "http_pet-store_showPetById" in page
    assert 'value="createPets"' in page and "Save the tool selection" in page

    saved = client.post(f"/integrations/http-apis/{api.id}/operations/", {"operations": ["createPets", "listPets"]})

    assert saved.status_code == 302
    api.refresh_from_db()
    assert api.operations == ["listPets", "createPets"]
    listing = client.get("/integrations/http-apis/").content.decode()
    assert "Pet Store" in listing and "http-pet-store" in listing


def test_it_registers_from_an_uploaded_yaml_file(owner):
    upload = SimpleUploadedFile("petstore.yaml", yaml.safe_dump(document(URL)).encode(), "application/yaml")

    response = signed_in(owner).post("/integrations/http-apis/new/", {
        "name": "Pets", "slug": "pets", "document_file": upload, "auth": "none"})

    assert response.status_code == 302
    assert HttpApi.objects.get().slug == "pets"


def test_a_bad_document_is_explained_next_to_the_field_and_nothing_is_saved(owner):
    response = signed_in(owner).post("/integrations/http-apis/new/", {
        "name": "Pets", "document_text": '{"swagger": "2.0", "paths": {}}', "auth": "none"})

    assert response.status_code == 400
    assert "This is a Swagger 2.0 document" in response.content.decode()
    assert not HttpApi.objects.exists()


def test_auth_settings_errors_land_on_their_fields(owner):
    response = signed_in(owner).post("/integrations/http-apis/new/", {
        "name": "Pets", "document_text": json.dumps(document(URL)), "auth": "oauth2", "client_id": "c"})

    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_authorize_url_error"' in page and 'id="id_client_secret_error"' in page


def test_an_operation_that_cant_be_offered_is_refused_with_its_reason(owner, organization):
    spec = document(URL)
    spec["paths"]["/upload"] = {"post": {"operationId": "upload", "requestBody": {
        "required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}}}}
    api = register(organization, owner, URL, spec=spec, operations=[])
    client = signed_in(owner)

    assert "only JSON and form-encoded bodies are supported" in client.get(
        f"/integrations/http-apis/{api.id}/").content.decode()
    response = client.post(f"/integrations/http-apis/{api.id}/operations/", {"operations": ["upload"]})

    assert response.status_code == 400
    assert "upload (POST /upload) can&#x27;t be offered" in response.content.decode()


def test_an_admin_edits_and_deletes_an_api(owner, organization):
    api = register(organization, owner, URL)
    client = signed_in(owner)
    form = client.get(f"/integrations/http-apis/{api.id}/edit/").content.decode()
    assert 'value="X-API-Key"' in form and "whoAmI (GET /me)" in form

    edited = client.post(f"/integrations/http-apis/{api.id}/edit/", {
        "name": "Pets v2", "base_url": URL, "auth": "api_key", "key_in": "header", "key_name": "X-Key",
        "check_operation": ""})

    assert edited.status_code == 302, edited.content.decode()
    api.refresh_from_db()
    assert api.name == "Pets v2" and api.auth_config == {"in": "header", "name": "X-Key"}
    assert len(api.operations) == 5  # the document was kept
    assert "Yes, delete this API" in client.get(f"/integrations/http-apis/{api.id}/delete/").content.decode()
    assert client.post(f"/integrations/http-apis/{api.id}/delete/").status_code == 302
    assert not HttpApi.objects.exists()


def test_a_builder_sees_the_apis_but_cant_register_or_change_them(organization, owner, member):
    api = register(organization, owner, URL)
    client = signed_in(member)

    page = client.get(f"/integrations/http-apis/{api.id}/").content.decode()

    assert client.get("/integrations/http-apis/").status_code == 200
    assert "Save the tool selection" not in page and "disabled" in page
    assert client.get("/integrations/http-apis/new/").status_code == 403
    assert client.post(f"/integrations/http-apis/{api.id}/operations/", {"operations": []}).status_code == 403
    assert client.get(f"/integrations/http-apis/{api.id}/edit/").status_code == 403
    assert client.post(f"/integrations/http-apis/{api.id}/delete/").status_code == 403
    assert HttpApi.objects.get().operations == api.operations


def test_another_organizations_api_is_not_found(organization, owner, outsider):
    api = register(organization, owner, URL)
    client = signed_in(outsider)

    for path in ("", "edit/", "delete/"):
        assert client.get(f"/integrations/http-apis/{api.id}/{path}").status_code == 404
    assert client.post(f"/integrations/http-apis/{api.id}/operations/", {"operations": []}).status_code == 404
    assert "Petstore" not in client.get("/integrations/http-apis/").content.decode()
