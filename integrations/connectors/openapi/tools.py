"""An organization's registered APIs (`HttpApi` rows) as catalog integrations and tools.

Each row becomes the integration `http-<slug>` and one tool per enabled operation, named
`http_<slug>_<operationId>`. Calls go through the connection's outbound client (`call.http`:
address guard, retries honouring Retry-After, size caps) to `base_url + path`.

How credentials travel: an API key in a header is the integration's `auth_headers`, like every
other connector, so the outbound client adds it to each attempt and drops it on a redirect to
another origin. An API key in the query string can't be a header, so the tool adds it to the URL
it builds from `call.credentials`; the outbound client's errors and our outputs name only the
origin, never the URL, and the call layer scrubs any credential a service echoes back. OAuth
tokens are a Bearer header; refresh goes through the integration's OAuthSpec, whose client
secret is decrypted only when a token request needs it.

Scopes: `read` (GET, HEAD, OPTIONS) and `write` (everything else), unless the API connects with
OAuth and its document names OAuth scopes in operations' security requirements; then those names
are the scopes, each asking the provider for itself.

Both registry sources (tools and integrations) run on every run start, and a catalog page asks
them once per integration: an organization's compiled APIs are reused for RECENT_SECONDS (this
process forgets them at once when its services change one; other processes see the change within
that time), then cost one query for the rows without their documents. A row's parsed document
and tools are kept per (id, updated_at), so an unchanged row is never parsed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from integrations import crypto
from integrations.catalog import AuthType, Category, CredentialField, Integration, Maturity, OAuthSpec, Scope
from integrations.connectors.openapi import spec as openapi_spec
from integrations.http import Response, error_message
from integrations.models import HttpApi
from integrations.tools import SideEffect, Tool, ToolError

if TYPE_CHECKING:
    from integrations.calls import CallContext

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30
MAX_OUTPUT_CHARS = 20_000
MAX_DESCRIPTION_CHARS = 1_000
CACHE_SIZE = 512
RECENT_SECONDS = 0.5  # long enough for one page that asks per integration, short enough to be "now"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
READ, WRITE = "read", "write"


@dataclass(frozen=True)
class Target:
    """What a call needs of its row, fixed when the tools are built."""

    name: str
    base_url: str
    auth: str
    auth_config: dict[str, Any]

    @property
    def key_location(self) -> tuple[str, str] | None:
        """(location, name) of the API key parameter, when the API takes one."""
        if self.auth != HttpApi.Auth.API_KEY:
            return None
        return str(self.auth_config.get("in") or "header"), str(self.auth_config.get("name") or "")


@dataclass(frozen=True)
class Compiled:
    api_id: Any
    integration: Integration
    tools: tuple[Tool, ...]
    document: openapi_spec.Document


# --------------------------------------------------------------------------- names and scopes


def tool_name(slug: str, operation_id: str) -> str:
    """`http_<slug>_<operationId>`, at most 64 characters of [a-zA-Z0-9_-]. An operationId that had
    to be changed to fit gets a short hash of the original, so two can't end up with one name."""
    prefix = f"http_{slug}_"
    clean = re.sub(r"[^a-zA-Z0-9_-]+", "_", operation_id).strip("_") or "operation"
    if clean == operation_id and len(prefix) + len(clean) <= 64:
        return prefix + clean
    digest = hashlib.sha256(operation_id.encode()).hexdigest()[:6]
    return f"{prefix}{clean[:64 - len(prefix) - 7]}_{digest}"


def scopes_for(api: HttpApi, document: openapi_spec.Document) -> tuple[tuple[Scope, ...], dict[str, tuple[str, ...]]]:
    """The integration's scopes and, per operationId, the scopes calling it needs."""
    operations = document.supported_operations
    if api.auth == HttpApi.Auth.OAUTH2 and document.declared_scopes():
        descriptions = document.scope_descriptions()
        names: dict[str, None] = {}
        writing: set[str] = set()
        for operation in operations:
            for name in operation.oauth_scopes or ():
                names[name] = None
                if not operation.is_read:
                    writing.add(name)
        scopes = tuple(
            Scope(name=name, description=descriptions.get(name) or f"The {name} scope of {api.name}.",
                  provider_scopes=(name,), write=name in writing)
            for name in names
        )
        return scopes, {o.operation_id: tuple(o.oauth_scopes or ()) for o in operations}
    provider = tuple(str(s) for s in api.auth_config.get("scopes") or ()) if api.auth == HttpApi.Auth.OAUTH2 else ()
    scopes = (
        Scope(name=READ, description=f"Call {api.name}'s read operations (GET and HEAD requests).",
              provider_scopes=provider),
        Scope(name=WRITE, description=f"Call {api.name}'s operations that change things (POST, PUT, PATCH and "
                                      "DELETE requests).", provider_scopes=provider, write=True),
    )
    return scopes, {o.operation_id: (READ,) if o.is_read else (WRITE,) for o in operations}


def hidden_parameters(target: Target) -> tuple[tuple[str, str], ...]:
    location = target.key_location
    return ((location[0], location[1].lower()),) if location else ()


def _description(target: Target, operation: openapi_spec.Operation) -> str:
    text = operation.summary
    if operation.description and operation.description != operation.summary:
        text = f"{text}\n\n{operation.description}" if text else operation.description
    text = text or f"Calls {operation.label}."
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[:MAX_DESCRIPTION_CHARS - 1].rstrip() + "…"
    note = f"{target.name}: {operation.label}" + (" (deprecated)" if operation.deprecated else "")
    return f"{text}\n\n{note}"


# --------------------------------------------------------------------------- building requests


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _simple(parameter: openapi_spec.Parameter, value: Any) -> str:
    """OpenAPI's `simple` style (path and header parameters)."""
    if parameter.as_json:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    if isinstance(value, dict):
        if parameter.explode:
            return ",".join(f"{k}={_scalar(v)}" for k, v in value.items())
        return ",".join(f"{k},{_scalar(v)}" for k, v in value.items())
    return _scalar(value)


def _query(parameter: openapi_spec.Parameter, value: Any) -> list[tuple[str, str]]:
    name = parameter.name
    if parameter.as_json:
        return [(name, json.dumps(value, ensure_ascii=False, separators=(",", ":")))]
    if isinstance(value, list):
        joiner = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(parameter.style)
        if parameter.style == "form" and parameter.explode:
            return [(name, _scalar(v)) for v in value]
        return [(name, (joiner or ",").join(_scalar(v) for v in value))]
    if isinstance(value, dict):
        if parameter.style == "deepObject":
            return [(f"{name}[{k}]", _scalar(v)) for k, v in value.items()]
        if parameter.explode:
            return [(str(k), _scalar(v)) for k, v in value.items()]
        return [(name, ",".join(f"{k},{_scalar(v)}" for k, v in value.items()))]
    return [(name, _scalar(value))]


def _header_value(name: str, value: str) -> str:
    if any(c in value for c in "\r\n\x00") or not value.isascii():
        raise ToolError(f"the header {name!r} can only carry plain ASCII text on one line")
    return value


def build_request(target: Target, operation: openapi_spec.Operation, arguments: dict[str, Any],
                  credentials: dict[str, Any]) -> tuple[str, dict[str, str], bytes | None]:
    """(url, headers, body) for one call. Path parameters are percent-encoded whole (a `/` in a
    value can't reach another path)."""
    path = operation.path
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    for parameter in operation.parameters:
        if parameter.prop not in arguments or arguments[parameter.prop] is None:
            continue
        value = arguments[parameter.prop]
        if parameter.location == "path":
            path = path.replace("{" + parameter.name + "}", quote(_simple(parameter, value), safe=""))
        elif parameter.location == "query":
            query.extend(_query(parameter, value))
        else:
            headers[parameter.name] = _header_value(parameter.name, _simple(parameter, value))
    unfilled = openapi_spec.TEMPLATE.findall(path)
    if unfilled:
        raise ToolError(f"{operation.operation_id} needs the path parameter {unfilled[0]!r}")
    location = target.key_location
    if location and location[0] == "query":
        key = str(credentials.get("api_key") or "")
        if key:
            query.append((location[1], str(target.auth_config.get("prefix") or "") + key))
    url = target.base_url.rstrip("/") + path
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    body: bytes | None = None
    if operation.body is not None and arguments.get(operation.body.prop) is not None:
        value = arguments[operation.body.prop]
        if operation.body.is_form:
            if not isinstance(value, dict):
                raise ToolError(f"{operation.body.prop} must be an object (its fields are sent form-encoded)")
            pairs = [(str(k), _scalar(v)) for k, item in value.items() for v in (item if isinstance(item, list)
                                                                                    else [item])]
            body = urlencode(pairs).encode()
        else:
            body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        headers["Content-Type"] = operation.body.media_type
    return url, headers, body


def _output(operation: openapi_spec.Operation, response: Response) -> str:
    head = "" if response.status == 200 else f"HTTP {response.status}\n"
    if operation.method == "HEAD" or not response.body:
        interesting = ("content-type", "content-length", "etag", "last-modified", "location")
        shown = [f"{k}: {response.headers[k]}" for k in interesting if k in response.headers]
        return f"HTTP {response.status} (no content)" + ("\n" + "\n".join(shown) if shown else "")
    text = response.text
    if "json" in response.headers.get("content-type", "").lower():
        try:
            text = json.dumps(json.loads(response.body), ensure_ascii=False)
        except ValueError:
            pass
    if len(text) > MAX_OUTPUT_CHARS:
        text = (f"{text[:MAX_OUTPUT_CHARS]}\n[truncated: the response has {len(text):,} characters; only the first "
                f"{MAX_OUTPUT_CHARS:,} are shown]")
    return head + text


def perform(call: CallContext, target: Target, operation: openapi_spec.Operation, arguments: dict[str, Any]) -> str:
    url, headers, body = build_request(target, operation, arguments, call.credentials)
    response = call.http.request(operation.method, url, headers=headers, content=body)
    if not response.ok:
        raise ToolError(error_message(response, service=target.name))
    return _output(operation, response)


def _caller(target: Target, operation: openapi_spec.Operation) -> Callable[..., str]:
    def call_operation(call: CallContext, **arguments: Any) -> str:
        return perform(call, target, operation, arguments)

    call_operation.__name__ = f"call_{re.sub(r'[^a-zA-Z0-9_]', '_', operation.operation_id)}"
    return call_operation


# --------------------------------------------------------------------------- integration


def _auth_headers(target: Target) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, str]]:
    def headers(credentials: dict[str, Any], options: dict[str, Any]) -> dict[str, str]:
        if target.auth == HttpApi.Auth.OAUTH2 and credentials.get("access_token"):
            return {"Authorization": f"Bearer {credentials['access_token']}"}
        location = target.key_location
        if location and location[0] == "header" and credentials.get("api_key"):
            return {location[1]: str(target.auth_config.get("prefix") or "") + str(credentials["api_key"])}
        return {}

    return headers


def _identify(target: Target, document: openapi_spec.Document) -> Callable[[CallContext], dict[str, Any]] | None:
    """The admin may name a GET operation that needs no arguments as the connection check; without
    one, credentials are taken as given (there is nothing to call that proves them)."""
    operation = document.operation(str(target.auth_config.get("check_operation") or ""))
    if operation is None or not operation.supported:
        return None

    def identify(call: CallContext) -> dict[str, Any]:
        perform(call, target, operation, {})
        return {}

    return identify


def _oauth(api: HttpApi) -> OAuthSpec:
    config = dict(api.auth_config)
    sealed = api.secret

    def client() -> dict[str, str]:
        try:
            secret = str(crypto.decrypt(sealed).get("client_secret") or "") if sealed else ""
        except crypto.CredentialsUnreadable:
            secret = ""  # the provider then refuses the token request, which says what is wrong
        return {"client_id": str(config.get("client_id") or ""), "client_secret": secret}

    return OAuthSpec(authorize_url=lambda _client: str(config.get("authorize_url") or ""),
                     token_url=lambda _client: str(config.get("token_url") or ""), client=client)


def _setup_notes(api: HttpApi, document: openapi_spec.Document, target: Target) -> str:
    source = f"{document.title or api.name}" + (f" {document.version}" if document.version else "")
    notes = [f"Registered by an administrator from the OpenAPI document of {source}; calls go to {api.base_url}."]
    location = target.key_location
    if location:
        notes.append(f"Connect with an API key; it is sent in the {location[1]} "
                     f"{'header' if location[0] == 'header' else 'query parameter'} of every call.")
    elif api.auth == HttpApi.Auth.OAUTH2:
        notes.append(f"Connect signs you in at {api.auth_config.get('authorize_url', '')}.")
    else:
        notes.append("The API needs no credentials.")
    return " ".join(notes)


def compile_api(api: HttpApi, document: openapi_spec.Document | None = None) -> Compiled:
    document = document or openapi_spec.parse(api.spec)
    target = Target(name=api.name, base_url=api.base_url, auth=api.auth, auth_config=dict(api.auth_config))
    scopes, needs = scopes_for(api, document)
    hidden = hidden_parameters(target)
    tools: list[Tool] = []
    for operation_id in api.operations:
        operation = document.operation(operation_id)
        if operation is None or not operation.supported:
            continue  # checked on save; a document edited since simply offers fewer tools
        tools.append(Tool(
            name=tool_name(api.slug, operation.operation_id),
            description=_description(target, operation),
            input_schema=operation.input_schema(hidden),
            side_effect=SideEffect.READ if operation.is_read else SideEffect.WRITE,
            timeout_seconds=TIMEOUT_SECONDS,
            func=_caller(target, operation),
            integration=api.integration_slug,
            scopes=needs.get(operation.operation_id, ()),
        ))
    auth_type = {HttpApi.Auth.API_KEY: AuthType.API_KEY, HttpApi.Auth.OAUTH2: AuthType.OAUTH2}.get(api.auth,
                                                                                                  AuthType.NONE)
    location = target.key_location
    integration = Integration(
        slug=api.integration_slug,
        name=api.name,
        category=Category.CUSTOM,
        status=Maturity.BETA,
        summary=(api.description or document.description or document.title or api.name)[:300],
        auth_types=(auth_type,),
        scopes=scopes,
        setup_notes=_setup_notes(api, document, target),
        oauth=_oauth(api) if api.auth == HttpApi.Auth.OAUTH2 else None,
        credential_fields=(CredentialField(
            name="api_key", label="API key", kind="password",
            help=f"Sent in the {location[1]} {'header' if location[0] == 'header' else 'query parameter'}.",
        ),) if location else (),
        auth_headers=_auth_headers(target),
        identify=_identify(target, document),
        organization_id=api.organization_id,
    )
    return Compiled(api_id=api.id, integration=integration, tools=tuple(tools), document=document)


# --------------------------------------------------------------------------- the registry sources

_cache: OrderedDict[tuple[Any, Any], Compiled] = OrderedDict()
_recent: OrderedDict[str, tuple[float, list[Compiled]]] = OrderedDict()
_lock = threading.Lock()


def _organization_key(organization_id: Any) -> str:
    return str(getattr(organization_id, "pk", organization_id))


def forget(organization_id: Any) -> None:
    """Drop the organization's compiled APIs from this process (after a create, edit or delete)."""
    with _lock:
        _recent.pop(_organization_key(organization_id), None)


def _cached(key: tuple[Any, Any]) -> Compiled | None:
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def _remember(key: tuple[Any, Any], compiled: Compiled) -> None:
    with _lock:
        _cache[key] = compiled
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def organization_apis(organization_id: Any) -> list[Compiled]:
    """Every registered API of the organization, compiled. At most one query, two when a row changed."""
    key = _organization_key(organization_id)
    with _lock:
        recent = _recent.get(key)
    if recent is not None and time.monotonic() - recent[0] < RECENT_SECONDS:
        return recent[1]
    started = time.monotonic()
    found = _load(organization_id)
    with _lock:
        _recent[key] = (started, found)
        _recent.move_to_end(key)
        while len(_recent) > CACHE_SIZE:
            _recent.popitem(last=False)
    return found


def _load(organization_id: Any) -> list[Compiled]:
    rows = list(HttpApi.objects.filter(organization=organization_id).defer("spec"))
    found: dict[Any, Compiled] = {}
    missing: list[Any] = []
    for row in rows:
        hit = _cached((row.id, row.updated_at))
        if hit is not None:
            found[row.id] = hit
        else:
            missing.append(row.id)
    if missing:
        for row in HttpApi.objects.filter(id__in=missing):
            try:
                compiled = compile_api(row)
            except Exception:  # noqa: BLE001 - one broken row must not take every run and catalog page down
                logger.exception("HTTP API %s (%s) could not be compiled; its tools are not offered", row.slug, row.id)
                continue
            _remember((row.id, row.updated_at), compiled)
            found[row.id] = compiled
    return [found[row.id] for row in rows if row.id in found]


def tool_source(organization_id: Any) -> list[Tool]:
    return [tool for compiled in organization_apis(organization_id) for tool in compiled.tools]


def integration_source(organization_id: Any) -> list[Integration]:
    return [compiled.integration for compiled in organization_apis(organization_id)]
