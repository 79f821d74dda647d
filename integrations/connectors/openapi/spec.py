"""Reading an OpenAPI 3.0/3.1 document and describing its operations as tools.

`load_text` takes what an admin pasted or uploaded (JSON, or YAML), `normalize` makes it plain
JSON that Postgres can store (and caps its size and nesting, so a hostile document can't exhaust
memory or recursion later), and `parse` checks it and turns every operation into an `Operation`:
its method and path, how each parameter is sent, and the JSON Schema (draft 2020-12) a model fills
in to call it.

Whole-document problems (not OpenAPI 3, no paths, a reused operationId) raise `SpecError` with a
message an admin can act on. An operation we can't call (a required cookie, a multipart body, a
reference outside the document) is kept with its `problem` set, so the admin sees why it can't be
offered instead of it silently vanishing.

`$ref`s are resolved within the document only and inlined; a reference that leads back to itself
(a tree of nodes) becomes "any value" at the point it recurs, and chains deeper than
MAX_REF_DEPTH or schemas larger than MAX_SCHEMA_NODES are refused, so the model never gets a
schema it can't read and a document can't blow up exponentially when inlined.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema
import yaml

MAX_DOCUMENT_CHARS = 2_000_000
MAX_DOCUMENT_NODES = 500_000
MAX_NESTING = 100
MAX_REF_DEPTH = 32
MAX_SCHEMA_DEPTH = 64
MAX_SCHEMA_NODES = 10_000
MAX_OPERATIONS = 1_000
MAX_OPERATION_ID = 100  # HttpApi.operations holds them in CharField(max_length=100)

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# OpenAPI: header parameters with these names "SHALL be ignored" (the client sets them).
IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
# Headers the HTTP client owns (framing, routing, cookies); a model doesn't get to set them.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                              "trailer", "upgrade", "expect", "cookie", "proxy-authorization"})
STYLES = {
    "path": ("simple",),
    "query": ("form", "spaceDelimited", "pipeDelimited", "deepObject"),
    "header": ("simple",),
}
# Anthropic's rule for input_schema property names.
PROPERTY_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
TEMPLATE = re.compile(r"{([^{}]*)}")

# Keywords whose value is a schema, a list of schemas, or a map of name -> schema.
_SCHEMA_KEYS = frozenset({
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties", "additionalItems", "contentSchema",
})
_SCHEMA_LIST_KEYS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP_KEYS = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"})
# OpenAPI-only annotations with no meaning to a JSON Schema validator or to the model.
_DROPPED_KEYS = frozenset({"discriminator", "xml", "externalDocs", "example", "$schema", "$id", "$anchor",
                           "$dynamicAnchor", "$dynamicRef", "$comment"})


class SpecError(ValueError):
    """The document can't be used; the message says why, in words an admin can act on."""


class _Unsupported(Exception):
    """One operation can't be offered (the reason is shown next to it)."""


# --------------------------------------------------------------------------- reading


def load_text(text: str) -> Any:
    """Parse pasted or uploaded text: JSON, else YAML."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise SpecError(f"The document is larger than {MAX_DOCUMENT_CHARS // 1_000_000} MB.")
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        raise SpecError("The document is empty.")
    try:
        return json.loads(stripped)
    except RecursionError:
        raise SpecError(f"The document nests deeper than {MAX_NESTING} levels.") from None
    except ValueError as exc:
        if stripped.startswith(("{", "[")):
            raise SpecError(f"This isn't valid JSON: {exc}.") from None
    try:
        return yaml.safe_load(stripped)
    except RecursionError:
        raise SpecError(f"The document nests deeper than {MAX_NESTING} levels.") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        place = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or "it can't be parsed"
        raise SpecError(f"This is neither valid JSON nor valid YAML: {problem}{place}.") from None


def normalize(value: Any) -> Any:
    """A plain-JSON copy: string keys (YAML reads `200:` as a number), dates as ISO strings, no
    NUL characters or non-finite numbers (Postgres refuses both), bounded size and nesting (a YAML
    alias bomb is shared references until something walks it)."""
    count = 0

    def walk(node: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > MAX_DOCUMENT_NODES:
            raise SpecError(f"The document has more than {MAX_DOCUMENT_NODES:,} values; that is too large.")
        if depth > MAX_NESTING:
            raise SpecError(f"The document nests deeper than {MAX_NESTING} levels.")
        if isinstance(node, dict):
            return {_key(k): walk(v, depth + 1) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v, depth + 1) for v in node]
        if isinstance(node, str):
            if "\x00" in node:
                raise SpecError("The document contains a NUL character.")
            return node
        if isinstance(node, bool) or node is None or isinstance(node, int):
            return node
        if isinstance(node, float):
            if not math.isfinite(node):
                raise SpecError("The document contains a number JSON can't represent (NaN or infinity).")
            return node
        if isinstance(node, (datetime.date, datetime.datetime)):
            return node.isoformat()
        raise SpecError(f"The document contains a {type(node).__name__} value, which JSON can't represent.")

    def _key(key: Any) -> str:
        if isinstance(key, bool) or key is None:
            key = json.dumps(key)
        elif isinstance(key, (int, float, datetime.date)):
            key = key.isoformat() if isinstance(key, datetime.date) else str(key)
        if not isinstance(key, str):
            raise SpecError("The document has a key that isn't a string.")
        if "\x00" in key:
            raise SpecError("The document contains a NUL character.")
        return key

    return walk(value, 0)


# --------------------------------------------------------------------------- the parsed shape


@dataclass(frozen=True)
class Parameter:
    name: str  # as the API knows it
    location: str  # path, query or header
    prop: str  # the input_schema property the model fills in
    required: bool
    style: str
    explode: bool
    as_json: bool = False  # declared with `content` (serialized as JSON) instead of `schema`


@dataclass(frozen=True)
class Body:
    prop: str
    media_type: str  # application/json, a +json type, or application/x-www-form-urlencoded
    required: bool

    @property
    def is_form(self) -> bool:
        return self.media_type == "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str  # upper case
    path: str
    summary: str = ""
    description: str = ""
    deprecated: bool = False
    parameters: tuple[Parameter, ...] = ()
    body: Body | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # prop -> JSON Schema
    # OAuth scopes its security requirement names; None when it names no OAuth scheme.
    oauth_scopes: tuple[str, ...] | None = None
    problem: str = ""  # why it can't be offered; empty when it can
    generated_id: bool = False  # the document gave no operationId; this one is made from method and path

    @property
    def supported(self) -> bool:
        return not self.problem

    @property
    def is_read(self) -> bool:
        return self.method in READ_METHODS

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def input_schema(self, hidden: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
        """The arguments a model passes, without `hidden` (location, lower-cased name) parameters
        that the connection supplies itself (the API key)."""
        skip = {(location, name.lower()) for location, name in hidden}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parameter in self.parameters:
            if (parameter.location, parameter.name.lower()) in skip:
                continue
            properties[parameter.prop] = self.properties[parameter.prop]
            if parameter.required:
                required.append(parameter.prop)
        if self.body is not None:
            properties[self.body.prop] = self.properties[self.body.prop]
            if self.body.required:
                required.append(self.body.prop)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema


@dataclass(frozen=True)
class SecurityScheme:
    name: str
    type: str  # apiKey, http, oauth2, openIdConnect, mutualTLS
    location: str = ""  # apiKey: header, query or cookie
    parameter: str = ""  # apiKey: the header or query parameter name
    scheme: str = ""  # http: bearer, basic...
    authorize_url: str = ""
    token_url: str = ""
    scopes: dict[str, str] = field(default_factory=dict)  # oauth2: name -> description


@dataclass(frozen=True)
class Document:
    openapi: str
    title: str
    version: str
    description: str
    servers: tuple[str, ...]  # absolute URLs, variables filled with their defaults
    relative_servers: tuple[str, ...]
    operations: tuple[Operation, ...]
    security_schemes: tuple[SecurityScheme, ...] = ()
    default_security: tuple[str, ...] = ()  # scheme names the top-level `security` names

    def operation(self, operation_id: str) -> Operation | None:
        return next((o for o in self.operations if o.operation_id == operation_id), None)

    @property
    def supported_operations(self) -> list[Operation]:
        return [o for o in self.operations if o.supported]

    @property
    def default_base_url(self) -> str:
        return self.servers[0] if self.servers else ""

    def scope_descriptions(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for scheme in self.security_schemes:
            for name, text in scheme.scopes.items():
                found.setdefault(name, text)
        return found

    def declared_scopes(self) -> bool:
        """Does any operation name OAuth scopes in its security requirement?"""
        return any(o.oauth_scopes for o in self.operations if o.supported)

    def suggested_auth(self) -> tuple[str, dict[str, Any]]:
        """How the document says to authenticate: (auth, auth_config) for an HttpApi, preferring a
        scheme the top-level `security` names."""
        schemes = sorted(self.security_schemes, key=lambda s: s.name not in self.default_security)
        for scheme in schemes:
            if scheme.type == "apiKey" and scheme.location in ("header", "query") and scheme.parameter:
                return "api_key", {"in": scheme.location, "name": scheme.parameter}
            if scheme.type == "http" and scheme.scheme.lower() == "bearer":
                return "api_key", {"in": "header", "name": "Authorization", "prefix": "Bearer "}
            if scheme.type == "oauth2" and scheme.authorize_url and scheme.token_url:
                return "oauth2", {"authorize_url": scheme.authorize_url, "token_url": scheme.token_url,
                                  "scopes": list(scheme.scopes)}
        return "none", {}


# --------------------------------------------------------------------------- references


class _Resolver:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def lookup(self, ref: Any) -> Any:
        if not isinstance(ref, str):
            raise _Unsupported("a $ref that isn't a string")
        if not ref.startswith("#"):
            raise _Unsupported(f"the reference {ref!r} points outside the document; only references within "
                               "it (#/...) are supported")
        pointer = unquote(ref[1:])
        node: Any = self.document
        if pointer in ("", "/"):
            return node
        if not pointer.startswith("/"):
            raise _Unsupported(f"the reference {ref!r} isn't a JSON pointer (#/components/...)")
        for token in pointer[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise _Unsupported(f"the reference {ref!r} points to nothing in the document")
        return node

    def deref(self, node: Any) -> Any:
        """Follow `$ref` on a non-schema object (parameter, request body, path item...)."""
        seen: list[str] = []
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                raise _Unsupported(f"the reference {ref!r} refers to itself")
            if len(seen) >= MAX_REF_DEPTH:
                raise _Unsupported(f"references chain more than {MAX_REF_DEPTH} deep")
            seen.append(ref)
            node = self.lookup(ref)
        return node


class _SchemaConverter:
    """OpenAPI Schema Objects to JSON Schema draft 2020-12, with references inlined."""

    def __init__(self, resolver: _Resolver, openapi: str) -> None:
        self.resolver = resolver
        self.legacy = openapi.startswith("3.0")
        self.nodes = 0

    def convert(self, node: Any, stack: tuple[str, ...] = (), depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_SCHEMA_NODES:
            raise _Unsupported(f"its schemas grow past {MAX_SCHEMA_NODES:,} parts once references are resolved")
        if depth > MAX_SCHEMA_DEPTH:
            raise _Unsupported(f"its schemas nest more than {MAX_SCHEMA_DEPTH} levels deep")
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise _Unsupported(f"a schema is a {_kind(node)}, not an object")
        if "$ref" in node:
            ref = node["$ref"]
            if ref in stack:
                return {"description": "A nested value of the same shape as the enclosing one."}
            if len(stack) >= MAX_REF_DEPTH:
                raise _Unsupported(f"schema references nest more than {MAX_REF_DEPTH} deep")
            resolved = self.convert(self.resolver.lookup(ref), (*stack, ref), depth + 1)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if not self.legacy and siblings:
                # 3.1 (JSON Schema 2020-12): keywords beside $ref apply too.
                extra = self._keywords(siblings, stack, depth)
                return {**resolved, **extra} if isinstance(resolved, dict) else {"allOf": [resolved], **extra}
            if siblings.get("description") and isinstance(resolved, dict) and isinstance(siblings["description"], str):
                return {**resolved, "description": siblings["description"]}
            return resolved
        return self._keywords(node, stack, depth)

    def _keywords(self, node: dict[str, Any], stack: tuple[str, ...], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key.startswith("x-") or key in _DROPPED_KEYS:
                continue
            if key in _SCHEMA_MAP_KEYS:
                if not isinstance(value, dict):
                    raise _Unsupported(f"`{key}` in a schema is a {_kind(value)}, not an object")
                out[key] = {name: self.convert(inner, stack, depth + 1) for name, inner in value.items()}
            elif key in _SCHEMA_LIST_KEYS:
                if not isinstance(value, list):
                    raise _Unsupported(f"`{key}` in a schema is a {_kind(value)}, not a list")
                out[key] = [self.convert(inner, stack, depth + 1) for inner in value]
            elif key in _SCHEMA_KEYS:
                out[key] = self.convert(value, stack, depth + 1)
            else:
                out[key] = value
        if self.legacy:
            self._from_30(out)
        return out

    @staticmethod
    def _from_30(out: dict[str, Any]) -> None:
        """OpenAPI 3.0's dialect: `nullable`, boolean exclusiveMinimum/Maximum."""
        if out.pop("nullable", False) is True:
            kind = out.get("type")
            if isinstance(kind, str):
                out["type"] = [kind, "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            flag = out.get(exclusive)
            if isinstance(flag, bool):
                del out[exclusive]
                if flag and bound in out:
                    out[exclusive] = out.pop(bound)


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


# --------------------------------------------------------------------------- parsing


def parse(document: Any) -> Document:
    """Check a (normalized) document and describe its operations. Raises SpecError."""
    if not isinstance(document, dict):
        raise SpecError(f"An OpenAPI document is an object with `openapi`, `info` and `paths`; this is a "
                        f"{_kind(document)}.")
    if "swagger" in document and "openapi" not in document:
        raise SpecError("This is a Swagger 2.0 document. Convert it to OpenAPI 3 first (for example with "
                        "swagger2openapi or editor.swagger.io → Edit → Convert to OpenAPI 3).")
    openapi = document.get("openapi")
    if not isinstance(openapi, str) or not re.match(r"^3\.[01]\.\d+", openapi):
        raise SpecError(f"Only OpenAPI 3.0 and 3.1 documents are supported; the `openapi` field says "
                        f"{openapi!r}." if openapi is not None else
                        "The document has no `openapi` field; only OpenAPI 3.0 and 3.1 documents are supported.")
    info = document.get("info") if isinstance(document.get("info"), dict) else {}
    paths = document.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise SpecError("The document has no `paths`, so there are no operations to offer.")
    resolver = _Resolver(document)
    schemes = _security_schemes(document, resolver)
    by_name = {s.name: s for s in schemes}
    default_security = document.get("security")
    operations: list[Operation] = []
    seen: dict[str, str] = {}
    for path, item in paths.items():
        if not path.startswith("/"):
            raise SpecError(f"The path {path!r} must start with '/'.")
        try:
            item = resolver.deref(item)
        except _Unsupported as exc:
            raise SpecError(f"The path {path}: {exc}.") from None
        if not isinstance(item, dict):
            raise SpecError(f"The path {path} must be an object.")
        for method in METHODS:
            if method not in item:
                continue
            raw = item[method]
            label = f"{method.upper()} {path}"
            if not isinstance(raw, dict):
                raise SpecError(f"The operation {label} must be an object.")
            operation_id = raw.get("operationId")
            generated = operation_id is None
            if generated:
                operation_id = _generated_id(method, path, seen)
            elif not isinstance(operation_id, str) or not operation_id.strip():
                raise SpecError(f"The operationId of {label} must be a non-empty string.")
            if operation_id in seen:
                raise SpecError(f"The operationId {operation_id!r} is used by both {seen[operation_id]} and {label}; "
                                "operationIds must be unique.")
            seen[operation_id] = label
            operations.append(_operation(resolver, openapi, by_name, default_security, path, item, method,
                                         raw, operation_id, generated))
            if len(operations) > MAX_OPERATIONS:
                raise SpecError(f"The document has more than {MAX_OPERATIONS} operations.")
    if not operations:
        raise SpecError("The document's paths declare no operations.")
    servers, relative = _servers(document.get("servers"))
    return Document(
        openapi=openapi,
        title=_text(info.get("title")),
        version=_text(info.get("version")),
        description=_text(info.get("description")),
        servers=servers,
        relative_servers=relative,
        operations=tuple(operations),
        security_schemes=schemes,
        default_security=tuple(name for requirement in (default_security or []) if isinstance(requirement, dict)
                               for name in requirement) if isinstance(default_security, list) else (),
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _generated_id(method: str, path: str, seen: dict[str, str]) -> str:
    base = (method + "_" + re.sub(r"[^a-zA-Z0-9]+", "_", path).strip("_")).rstrip("_")[:MAX_OPERATION_ID - 4]
    candidate, number = base, 2
    while candidate in seen:
        candidate, number = f"{base}_{number}", number + 1
    return candidate


def _servers(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    absolute: list[str] = []
    relative: list[str] = []
    for server in value if isinstance(value, list) else []:
        if not isinstance(server, dict) or not isinstance(server.get("url"), str):
            continue
        variables = server.get("variables") if isinstance(server.get("variables"), dict) else {}
        url = TEMPLATE.sub(lambda match, known=variables: _server_variable(known, match), server["url"]).strip()
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc and "{" not in url:
            absolute.append(url.rstrip("/"))
        elif url and not parts.scheme:
            relative.append(url)
    return tuple(absolute), tuple(relative)


def _server_variable(variables: dict[str, Any], match: re.Match) -> str:
    variable = variables.get(match.group(1))
    default = variable.get("default") if isinstance(variable, dict) else None
    return str(default) if isinstance(default, (str, int, float)) else match.group(0)


def _security_schemes(document: dict[str, Any], resolver: _Resolver) -> tuple[SecurityScheme, ...]:
    components = document.get("components") if isinstance(document.get("components"), dict) else {}
    raw = components.get("securitySchemes") if isinstance(components.get("securitySchemes"), dict) else {}
    found: list[SecurityScheme] = []
    for name, scheme in raw.items():
        try:
            scheme = resolver.deref(scheme)
        except _Unsupported:
            continue
        if not isinstance(scheme, dict) or not isinstance(scheme.get("type"), str):
            continue
        kind = scheme["type"]
        if kind == "apiKey":
            found.append(SecurityScheme(name=name, type=kind, location=_text(scheme.get("in")),
                                        parameter=_text(scheme.get("name"))))
        elif kind == "http":
            found.append(SecurityScheme(name=name, type=kind, scheme=_text(scheme.get("scheme"))))
        elif kind == "oauth2":
            flows = scheme.get("flows") if isinstance(scheme.get("flows"), dict) else {}
            scopes: dict[str, str] = {}
            for flow in flows.values():
                if isinstance(flow, dict) and isinstance(flow.get("scopes"), dict):
                    for scope, text in flow["scopes"].items():
                        scopes.setdefault(scope, _text(text))
            code = flows.get("authorizationCode") if isinstance(flows.get("authorizationCode"), dict) else {}
            found.append(SecurityScheme(name=name, type=kind, authorize_url=_text(code.get("authorizationUrl")),
                                        token_url=_text(code.get("tokenUrl")), scopes=scopes))
        else:
            found.append(SecurityScheme(name=name, type=kind))
    return tuple(found)


def _oauth_scopes(security: Any, schemes: dict[str, SecurityScheme]) -> tuple[str, ...] | None:
    """The scopes of the first security requirement that names an OAuth scheme (requirements are
    alternatives; we connect with one)."""
    if not isinstance(security, list):
        return None
    for requirement in security:
        if not isinstance(requirement, dict):
            continue
        for name, scopes in requirement.items():
            scheme = schemes.get(name)
            if scheme is not None and scheme.type in ("oauth2", "openIdConnect") and isinstance(scopes, list):
                return tuple(dict.fromkeys(s for s in scopes if isinstance(s, str) and s))
    return None


def _operation(resolver: _Resolver, openapi: str, schemes: dict[str, SecurityScheme], default_security: Any,
               path: str, item: dict[str, Any], method: str, raw: dict[str, Any], operation_id: str,
               generated: bool) -> Operation:
    summary = _text(raw.get("summary"))
    base = {
        "operation_id": operation_id, "method": method.upper(), "path": path, "summary": summary,
        "description": _text(raw.get("description")), "deprecated": raw.get("deprecated") is True,
        "generated_id": generated,
        "oauth_scopes": _oauth_scopes(raw.get("security", default_security), schemes),
    }
    try:
        if len(operation_id) > MAX_OPERATION_ID:
            raise _Unsupported(f"its operationId is longer than {MAX_OPERATION_ID} characters")
        if method == "trace":
            raise _Unsupported("TRACE requests are not supported")
        converter = _SchemaConverter(resolver, openapi)
        parameters, properties = _parameters(resolver, converter, path, item.get("parameters"), raw.get("parameters"))
        body = None
        if "requestBody" in raw:
            body, body_schema = _body(resolver, converter, raw["requestBody"], taken=set(properties))
            if body is not None:
                properties[body.prop] = body_schema
        operation = Operation(**base, parameters=tuple(parameters), body=body, properties=properties)
        try:
            jsonschema.Draft202012Validator.check_schema(operation.input_schema())
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.path)
            raise _Unsupported(f"its input isn't valid JSON Schema ({exc.message}{' at ' + where if where else ''})") \
                from None
        return operation
    except _Unsupported as exc:
        return Operation(**base, problem=str(exc)[:300])
    except RecursionError:
        return Operation(**base, problem="its schemas nest too deeply")


def _parameters(resolver: _Resolver, converter: _SchemaConverter, path: str, shared: Any,
                own: Any) -> tuple[list[Parameter], dict[str, Any]]:
    declared: dict[tuple[str, str], dict[str, Any]] = {}
    for group in (shared, own):  # the operation's own override the path item's
        if group is None:
            continue
        if not isinstance(group, list):
            raise _Unsupported("its `parameters` is not a list")
        for raw in group:
            raw = resolver.deref(raw)
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
                raise _Unsupported("one of its parameters has no name")
            location = raw.get("in")
            if location not in ("path", "query", "header", "cookie"):
                raise _Unsupported(f"its parameter {raw['name']!r} is `in: {location}`; expected path, query, "
                                   "header or cookie")
            declared[(location, raw["name"] if location != "header" else raw["name"].lower())] = raw
    wanted = TEMPLATE.findall(path)
    names = {name for location, name in declared if location == "path"}
    missing = [name for name in wanted if name not in names]
    if missing:
        raise _Unsupported(f"the path parameter {{{missing[0]}}} is not declared")
    parameters: list[Parameter] = []
    properties: dict[str, Any] = {}
    taken: set[str] = set()
    for (location, _key), raw in declared.items():
        name = raw["name"]
        required = raw.get("required") is True or location == "path"
        if location == "path" and name not in wanted:
            continue  # declared, but not in this path: nothing to fill in
        if location == "cookie":
            if required:
                raise _Unsupported(f"it needs the cookie {name!r}; cookie parameters are not supported")
            continue
        if location == "header" and name.lower() in IGNORED_HEADERS | RESERVED_HEADERS:
            continue
        style = raw.get("style", STYLES[location][0])
        if style not in STYLES[location]:
            raise _Unsupported(f"its {location} parameter {name!r} uses style {style!r}, which is not supported")
        explode = raw["explode"] if isinstance(raw.get("explode"), bool) else style == "form"
        as_json = False
        if "schema" in raw:
            schema = converter.convert(raw["schema"])
        elif isinstance(raw.get("content"), dict) and len(raw["content"]) == 1:
            media = next(iter(raw["content"].values()))
            media = resolver.deref(media)
            schema = converter.convert(media.get("schema", {}) if isinstance(media, dict) else {})
            as_json = True
        else:
            schema = {"type": "string"}
        schema = _described(schema, raw.get("description"))
        prop = _property(name, location, taken)
        taken.add(prop)
        properties[prop] = schema
        parameters.append(Parameter(name=name, location=location, prop=prop, required=required, style=style,
                                    explode=explode, as_json=as_json))
    return parameters, properties


def _property(name: str, location: str, taken: set[str]) -> str:
    candidates = [name, f"{location}_{name}"]
    for candidate in candidates:
        clean = re.sub(r"[^a-zA-Z0-9_.-]", "_", candidate)[:64]
        if PROPERTY_NAME.match(clean) and clean not in taken and clean not in ("body", "request_body"):
            return clean
    base = re.sub(r"[^a-zA-Z0-9_.-]", "_", f"{location}_{name}")[:60]
    number = 2
    while f"{base}_{number}" in taken:
        number += 1
    return f"{base}_{number}"


def _described(schema: Any, description: Any) -> Any:
    if isinstance(description, str) and description.strip() and isinstance(schema, dict):
        return {**schema, "description": description.strip()}
    return schema


def _is_json(media_type: str) -> bool:
    base = media_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or (base.startswith("application/") and base.endswith("+json"))


def _body(resolver: _Resolver, converter: _SchemaConverter, raw: Any, *, taken: set[str]) -> tuple[Body | None, Any]:
    raw = resolver.deref(raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("content"), dict):
        raise _Unsupported("its requestBody has no `content`")
    required = raw.get("required") is True
    content = raw["content"]
    chosen = next((m for m in content if _is_json(m)), None)
    if chosen is None and "application/x-www-form-urlencoded" in content:
        chosen = "application/x-www-form-urlencoded"
    if chosen is None:
        if required:
            raise _Unsupported(f"its request body is {', '.join(content) or 'of no type'}; only JSON and "
                               "form-encoded bodies are supported")
        return None, None
    media = resolver.deref(content[chosen])
    schema = converter.convert(media.get("schema", {}) if isinstance(media, dict) else {})
    if chosen == "application/x-www-form-urlencoded" and isinstance(schema, dict) \
            and schema.get("type") not in (None, "object"):
        raise _Unsupported("its form-encoded body is not an object")
    prop = "body" if "body" not in taken else "request_body"
    described = _described(schema, raw.get("description") or "The request body.")
    media_type = chosen.split(";", 1)[0].strip().lower()
    return Body(prop=prop, media_type=media_type, required=required), described
