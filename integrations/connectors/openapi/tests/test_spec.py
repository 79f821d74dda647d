"""Reading OpenAPI documents: what is offered, what is refused and why."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.connectors.openapi import spec
from integrations.connectors.openapi.spec import SpecError
from integrations.connectors.openapi.tools import tool_name
from tests.fakes.openapi_server import document, oauth_document

URL = "https://api.example.com/v1"


def read(value) -> spec.Document:
    raw = spec.load_text(value) if isinstance(value, str) else value
    return spec.parse(spec.normalize(raw))


def minimal(**operation) -> dict:
    return {"openapi": "3.1.0", "info": {"title": "T", "version": "1"},
            "paths": {"/things/{id}": {"post": {"operationId": "op", **operation}}}}


def walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_it_reads_the_petstore_document_with_its_references_inlined():
    parsed = read(document(URL))

    assert [o.operation_id for o in parsed.operations] == ["whoAmI", "listPets", "createPets", "showPetById",
                                                           "deletePet"]
    assert all(o.supported for o in parsed.operations)
    assert parsed.title == "Swagger Petstore" and parsed.servers == (URL,)
    assert parsed.suggested_auth() == ("api_key", {"in": "header", "name": "X-API-Key"})
    show = parsed.operation("showPetById")
    assert show.method == "GET" and show.path == "/pets/{petId}" and show.is_read
    assert [(p.name, p.location, p.required) for p in show.parameters] == [("petId", "path", True),
                                                                          ("include", "query", False)]
    body = parsed.operation("createPets").input_schema()["properties"]["body"]
    assert body["properties"]["name"] == {"type": "string"} and body["description"] == "The pet to add"
    for operation in parsed.operations:
        schema = operation.input_schema()
        jsonschema.Draft202012Validator.check_schema(schema)
        assert not any(isinstance(n, dict) and "$ref" in n for n in walk(schema))


def test_it_reads_yaml_whose_keys_are_numbers_and_dates():
    text = """
openapi: 3.0.3
info: {title: Y, version: 2024-01-01}
servers: [{url: "https://{region}.example.com/api", variables: {region: {default: eu}}}]
paths:
  /ping:
    get:
      operationId: ping
      responses:
        200: {description: ok}
"""
    parsed = read(text)

    assert parsed.version == "2024-01-01"
    assert parsed.servers == ("https://eu.example.com/api",)
    assert spec.normalize(spec.load_text(text))["paths"]["/ping"]["get"]["responses"] == {"200": {"description": "ok"}}


def test_it_converts_openapi_30_schemas_to_json_schema_2020_12():
    doc = minimal(requestBody={"content": {"application/json": {"schema": {
        "type": "object", "properties": {
            "note": {"type": "string", "nullable": True, "example": "hi", "x-internal": 1},
            "count": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
            "kind": {"type": "string", "enum": ["a", "b"], "nullable": True},
        }}}}}, parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}])
    doc["openapi"] = "3.0.3"

    schema = read(doc).operation("op").input_schema()
    body = schema["properties"]["body"]["properties"]

    jsonschema.Draft202012Validator.check_schema(schema)
    assert body["note"] == {"type": ["string", "null"]}
    assert body["count"] == {"type": "integer", "exclusiveMinimum": 0}
    assert body["kind"]["enum"] == ["a", "b", None]
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"id": "1", "body": {"note": None, "count": 1, "kind": None}})
    assert not validator.is_valid({"id": "1", "body": {"count": 0}})


def test_a_recursive_schema_accepts_any_value_where_it_recurs():
    doc = minimal(requestBody={"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}},
                  parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}])
    doc["components"] = {"schemas": {"Node": {"type": "object", "properties": {
        "name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}}}

    operation = read(doc).operation("op")
    children = operation.input_schema()["properties"]["body"]["properties"]["children"]

    assert operation.supported
    assert "$ref" not in children["items"] and "type" not in children["items"]


def test_it_names_operations_without_an_operation_id_from_method_and_path():
    doc = {"openapi": "3.1.0", "info": {"title": "T", "version": "1"},
           "paths": {"/users/{id}/keys": {"get": {"parameters": [
               {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]}}}}

    (operation,) = read(doc).operations

    assert operation.operation_id == "get_users_id_keys" and operation.generated_id and operation.supported


@pytest.mark.parametrize(("value", "message"), [
    ([], "this is a list"),
    ({"swagger": "2.0", "paths": {}}, "Swagger 2.0"),
    ({"openapi": "2.5.0", "paths": {"/a": {}}}, "Only OpenAPI 3.0 and 3.1"),
    ({"openapi": "3.1.0"}, "no `paths`"),
    ({"openapi": "3.1.0", "paths": {"/a": {"parameters": []}}}, "declare no operations"),
    ({"openapi": "3.1.0", "paths": {"a": {"get": {}}}}, "must start with '/'"),
    ({"openapi": "3.1.0", "paths": {"/a": {"get": {"operationId": "x"}}, "/b": {"get": {"operationId": "x"}}}},
     "used by both GET /a and GET /b"),
    ({"openapi": "3.1.0", "paths": {"/a": {"get": "nope"}}}, "must be an object"),
    ({"openapi": "3.1.0", "paths": {"/a": {"get": {"operationId": 7}}}}, "non-empty string"),
    ('{"openapi": "3.1.0", "paths": ', "isn't valid JSON"),
    ("openapi: [3.1\n  bad: : :", "neither valid JSON nor valid YAML"),
    ("   ", "empty"),
    ('{"openapi": "3.1.0", "x": NaN}', "NaN"),
    ('{"openapi": "3.1.0", "x": "a\\u0000b"}', "NUL"),
    ("[" * 150 + "]" * 150, "nests deeper"),
    ("x: !!binary aGk=", "bytes value"),
])
def test_it_refuses_documents_it_cant_use_and_says_why(value, message):
    with pytest.raises(SpecError) as refused:
        read(value)

    assert message in str(refused.value)


def test_it_refuses_a_document_over_the_size_limit():
    with pytest.raises(SpecError, match="larger than 2 MB"):
        spec.load_text(" " * (spec.MAX_DOCUMENT_CHARS + 1))


def test_it_refuses_a_yaml_alias_bomb():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1},"
              f" *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    with pytest.raises(SpecError, match="too large"):
        read("\n".join(lines))


PATH_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


@pytest.mark.parametrize(("operation", "problem"), [
    ({"parameters": [PATH_ID, {"$ref": "other.yaml#/components/parameters/X"}]}, "points outside the document"),
    ({"parameters": [PATH_ID, {"$ref": "#/components/parameters/Missing"}]}, "points to nothing"),
    ({"parameters": [PATH_ID, {"name": "session", "in": "cookie", "required": True}]}, "cookie parameters"),
    ({"parameters": []}, "path parameter {id} is not declared"),
    ({"parameters": [{**PATH_ID, "style": "matrix"}]}, "style 'matrix'"),
    ({"parameters": [PATH_ID], "requestBody": {"required": True, "content": {"multipart/form-data": {}}}},
     "only JSON and form-encoded bodies"),
    ({"parameters": [{**PATH_ID, "schema": {"type": "string", "pattern": "(unclosed"}}]}, "isn't valid JSON Schema"),
    ({"parameters": [{**PATH_ID, "schema": "string"}]}, "a schema is a string"),
    ({"parameters": [PATH_ID], "operationId": "x" * 101}, "longer than 100"),
])
def test_it_keeps_operations_it_cant_call_with_the_reason(operation, problem):
    (parsed,) = read(minimal(**operation)).operations

    assert not parsed.supported
    assert problem in parsed.problem


def test_an_optional_body_it_cant_send_is_left_out():
    parsed = read(minimal(parameters=[PATH_ID], requestBody={"content": {"application/octet-stream": {}}}))

    assert parsed.operation("op").supported and parsed.operation("op").body is None


def test_it_caps_schemas_that_explode_when_their_references_are_inlined():
    schemas = {"L0": {"type": "string"}}
    for level in range(1, 20):
        below = {"$ref": f"#/components/schemas/L{level - 1}"}
        schemas[f"L{level}"] = {"type": "object", "properties": {"a": below, "b": below}}
    doc = minimal(parameters=[PATH_ID],
                  requestBody={"content": {"application/json": {"schema": {"$ref": "#/components/schemas/L19"}}}})
    doc["components"] = {"schemas": schemas}

    (parsed,) = read(doc).operations

    assert "grow past" in parsed.problem


def test_it_caps_reference_chains():
    schemas = {f"S{i}": {"$ref": f"#/components/schemas/S{i + 1}"} for i in range(40)}
    schemas["S40"] = {"type": "string"}
    doc = minimal(parameters=[{**PATH_ID, "schema": {"$ref": "#/components/schemas/S0"}}])
    doc["components"] = {"schemas": schemas}

    (parsed,) = read(doc).operations

    assert "nest more than 32 deep" in parsed.problem


def test_parameter_names_become_valid_property_names_without_clashing():
    doc = minimal(parameters=[PATH_ID, {"name": "id", "in": "query", "schema": {"type": "integer"}},
                              {"name": "X-Request Id!", "in": "header", "schema": {"type": "string"}},
                              {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                              {"name": "Host", "in": "header", "required": True, "schema": {"type": "string"}}])

    operation = read(doc).operation("op")

    props = [(p.name, p.prop) for p in operation.parameters]
    assert props == [("id", "id"), ("id", "query_id"), ("X-Request Id!", "X-Request_Id_")]
    assert all(spec.PROPERTY_NAME.match(name) for name in operation.input_schema()["properties"])


def test_oauth_scopes_come_from_each_operations_security_requirement():
    parsed = read(oauth_document(URL))

    assert parsed.operation("listPets").oauth_scopes == ("pets:read",)
    assert parsed.operation("createPets").oauth_scopes == ("pets:write",)
    assert parsed.scope_descriptions() == {"pets:read": "Read your pets", "pets:write": "Add and remove pets"}
    auth, config = parsed.suggested_auth()
    assert auth == "oauth2" and config["token_url"] == f"{URL}/oauth/token"


@pytest.mark.parametrize("operation_id", [
    "listPets", "a" * 80, "get.pet/{id}", "über_Ärger", "x" * 100, "___", "get pet", "get_pet_",
])
def test_tool_names_fit_anthropics_rules(operation_id):
    name = tool_name("a-forty-character-slug-for-an-api-abcdefg"[:40], operation_id)

    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name)
    assert tool_name("a-forty-character-slug-for-an-api-abcdefg"[:40], operation_id) == name


def test_operations_that_differ_only_in_what_tool_names_allow_get_different_names():
    names = {tool_name("api", op) for op in ["get.pet", "get_pet", "get pet", "a" * 70 + "1", "a" * 70 + "2"]}

    assert len(names) == 5


# Reproducible, and leaving no example database behind.
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(FUZZ, max_examples=300)
@given(json_values)
def test_any_json_value_is_read_or_refused_with_a_message(value):
    try:
        read(value)
    except SpecError as exc:
        assert str(exc)


def _mutations() -> st.SearchStrategy:
    paths = []
    for path in walk_paths(document(URL)):
        paths.append(path)
    return st.tuples(st.sampled_from(paths), json_values)


def walk_paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_paths(value, (*prefix, index))


@settings(FUZZ, max_examples=400)
@given(_mutations())
def test_a_damaged_petstore_document_is_read_or_refused_with_a_message(mutation):
    path, replacement = mutation
    doc = copy.deepcopy(document(URL))
    if not path:
        doc = replacement
    else:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = replacement
    try:
        parsed = read(doc)
    except SpecError as exc:
        assert str(exc)
        return
    for operation in parsed.operations:
        if operation.supported:
            jsonschema.Draft202012Validator.check_schema(operation.input_schema())
            json.dumps(operation.input_schema())
