"""Writes for registered HTTP APIs: create, update, delete.

Everything an admin sends is checked here, whichever way it came (REST or the pages), and every
problem comes back as a django ValidationError keyed by field (`spec`, `operations`,
`auth_config.name`...), all at once where they don't depend on each other. The OAuth client
secret is stored encrypted (integrations.crypto) and is never returned, audited or logged.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from accounts.audit import audit_record, diff_of
from accounts.models import Organization
from integrations import crypto
from integrations.builtin import netguard
from integrations.connectors.openapi import spec as openapi_spec
from integrations.connectors.openapi import tools
from integrations.connectors.openapi.spec import Document, SpecError
from integrations.models import Connection, HttpApi, OAuthGrant

Auth = HttpApi.Auth
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MAX = 40  # http_<slug>_<operation> must fit Anthropic's 64-character tool names
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
PROVIDER_SCOPE = re.compile(r"^[\x21-\x7e]{1,100}$")  # printable, no spaces (RFC 6749 scope-token)
AUTH_KEYS = {
    Auth.NONE: (),
    Auth.API_KEY: ("in", "name", "prefix", "check_operation"),
    Auth.OAUTH2: ("authorize_url", "token_url", "client_id", "scopes", "check_operation"),
}
MAX_DESCRIPTION = 2_000
_url = URLValidator(schemes=["http", "https"])


def read_document(spec: Any) -> tuple[Any, Document]:
    """The document as stored (plain JSON) and as parsed. `spec` is the document itself or its
    JSON/YAML text. ValidationError on `spec`."""
    try:
        raw = openapi_spec.load_text(spec) if isinstance(spec, str) else spec
        stored = openapi_spec.normalize(raw)
        return stored, openapi_spec.parse(stored)
    except SpecError as exc:
        raise ValidationError({"spec": [str(exc)]}) from None


def _document_of(api: HttpApi) -> Document:
    try:
        return openapi_spec.parse(api.spec)
    except SpecError as exc:
        raise ValidationError({"spec": [f"The stored document can no longer be read ({exc}); register it again."]}) \
            from None


def _free_slug(organization: Organization, wanted: str, *, explicit: bool, errors: dict[str, list[str]]) -> str:
    taken = HttpApi.objects.filter(organization=organization)
    if explicit:
        if not SLUG.match(wanted) or len(wanted) > SLUG_MAX:
            errors["slug"] = [f"Use lowercase letters, digits and single hyphens, at most {SLUG_MAX} characters "
                              "(it becomes part of tool names)."]
        elif taken.filter(slug=wanted).exists():
            errors["slug"] = [f"Another API of this organization already has the slug {wanted!r}."]
        return wanted
    base = re.sub(r"-+", "-", slugify(wanted).replace("_", "-")).strip("-")[:SLUG_MAX].strip("-") or "api"
    candidate, number = base, 2
    while taken.filter(slug=candidate).exists():
        suffix = f"-{number}"
        candidate, number = base[:SLUG_MAX - len(suffix)].strip("-") + suffix, number + 1
    return candidate


def _base_url(value: str, document: Document, errors: dict[str, list[str]]) -> str:
    value = (value or "").strip() or document.default_base_url
    if not value:
        said = f" (it says {document.relative_servers[0]!r})" if document.relative_servers else ""
        errors["base_url"] = [f"The document names no absolute server URL{said}; enter the API's base URL, e.g. "
                              "https://api.example.com/v1."]
        return ""
    if len(value) > 500:
        errors["base_url"] = ["At most 500 characters."]
        return value
    try:
        _url(value)
    except ValidationError:
        errors["base_url"] = ["Enter an http:// or https:// URL, e.g. https://api.example.com/v1."]
        return value
    parts = urlsplit(value)
    if parts.username or parts.password or parts.fragment:
        errors["base_url"] = ["The base URL can't carry a user name, password or #fragment; credentials belong "
                              "in a connection."]
    elif (refusal := _guard_refusal(value)) is not None:
        errors["base_url"] = [refusal]
    return value.rstrip("/")


def _guard_refusal(url: str) -> str | None:
    """Say now what the address guard would say at every call, for the addresses we can judge
    without a DNS lookup (an IP literal, localhost); names are checked when called."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "Enter an http:// or https:// URL, e.g. https://api.example.com/v1."
    allowance = netguard.Allowance.parse(settings.INTEGRATIONS_ALLOWED_HOSTS)
    if allowance.names(parsed):
        return None
    host = parsed.host.rstrip(".").lower()
    try:
        address: netguard.IPAddress = ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost" and not host.endswith(".localhost"):
            return None
        address = ipaddress.ip_address("127.0.0.1")
    reason = netguard.refusal_reason(address)
    if reason is None or allowance.contains(address):
        return None
    return (f"{parsed.host} is {reason}; Agentry doesn't call such addresses unless an operator allows them with "
            "AGENTRY_INTEGRATIONS_ALLOWED_HOSTS.")


def _operations(wanted: Any, document: Document, errors: dict[str, list[str]]) -> list[str]:
    if not isinstance(wanted, (list, tuple)) or not all(isinstance(o, str) for o in wanted):
        errors["operations"] = ["A list of operationIds."]
        return []
    problems: list[str] = []
    chosen = set(wanted)
    for operation_id in dict.fromkeys(wanted):
        operation = document.operation(operation_id)
        if operation is None:
            problems.append(f"The document has no operation {operation_id!r}.")
        elif not operation.supported:
            problems.append(f"{operation_id} ({operation.label}) can't be offered: {operation.problem}.")
    if problems:
        errors["operations"] = problems
    return [o.operation_id for o in document.operations if o.operation_id in chosen]


def _text(config: dict[str, Any], key: str, errors: dict[str, list[str]], *, required: bool = False,
          limit: int = 300) -> str:
    value = config.get(key)
    if value is None or value == "":
        if required:
            errors[f"auth_config.{key}"] = ["This field is required."]
        return ""
    if not isinstance(value, str):
        errors[f"auth_config.{key}"] = ["Must be a string."]
        return ""
    value = value.strip()
    if len(value) > limit or "\x00" in value:
        errors[f"auth_config.{key}"] = [f"At most {limit} characters of text."]
    return value


def _endpoint(config: dict[str, Any], key: str, errors: dict[str, list[str]]) -> str:
    value = _text(config, key, errors, required=True, limit=500)
    if value and f"auth_config.{key}" not in errors:
        try:
            _url(value)
        except ValidationError:
            errors[f"auth_config.{key}"] = ["Enter an http:// or https:// URL."]
    return value


def _check_operation(config: dict[str, Any], document: Document, hidden: tuple[tuple[str, str], ...],
                     errors: dict[str, list[str]]) -> str:
    operation_id = _text(config, "check_operation", errors, limit=100)
    if not operation_id:
        return ""
    operation = document.operation(operation_id)
    if operation is None:
        errors["auth_config.check_operation"] = [f"The document has no operation {operation_id!r}."]
    elif not operation.supported or operation.method != "GET" or operation.input_schema(hidden).get("required"):
        errors["auth_config.check_operation"] = [
            f"{operation_id} can't check a connection: choose a GET operation that needs no arguments."]
    return operation_id


def _auth_config(auth: str, config: Any, document: Document, errors: dict[str, list[str]]) -> dict[str, Any]:
    if not isinstance(config, dict):
        errors["auth_config"] = ["An object."]
        return {}
    unknown = sorted(set(config) - set(AUTH_KEYS[auth]))
    if unknown:
        takes = ", ".join(AUTH_KEYS[auth]) or "nothing"
        errors["auth_config"] = [f"Unknown setting {', '.join(map(repr, unknown))} for auth {auth!r} (it takes "
                                 f"{takes})."]
    clean: dict[str, Any] = {}
    if auth == Auth.API_KEY:
        location = config.get("in") or "header"
        if location not in ("header", "query"):
            errors["auth_config.in"] = ["Where the key goes: header or query (cookies are not supported)."]
        name = _text(config, "name", errors, required=True, limit=100)
        if name and location == "header" and not HEADER_NAME.match(name):
            errors["auth_config.name"] = ["Not a valid HTTP header name."]
        if name and location == "header" and name.lower() in ("host", "content-type", "content-length", "cookie"):
            errors["auth_config.name"] = [f"The key can't travel in the {name} header."]
        prefix = config.get("prefix") or ""
        if not isinstance(prefix, str) or len(prefix) > 40 or not prefix.isascii() \
                or any(c in prefix for c in "\r\n\x00"):
            errors["auth_config.prefix"] = ["At most 40 characters of plain text, e.g. \"Bearer \"."]
            prefix = ""
        clean = {"in": location, "name": name}
        if prefix:
            clean["prefix"] = prefix
        hidden = ((str(location), name.lower()),)
    elif auth == Auth.OAUTH2:
        clean = {"authorize_url": _endpoint(config, "authorize_url", errors),
                 "token_url": _endpoint(config, "token_url", errors),
                 "client_id": _text(config, "client_id", errors, required=True)}
        scopes = config.get("scopes") or []
        if isinstance(scopes, str):
            scopes = scopes.replace(",", " ").split()
        if not isinstance(scopes, list) or not all(isinstance(s, str) and PROVIDER_SCOPE.match(s) for s in scopes):
            errors["auth_config.scopes"] = ["A list of scope names as the provider spells them (no spaces)."]
            scopes = []
        clean["scopes"] = list(dict.fromkeys(scopes))
        hidden = ()
    else:
        return {}
    check = _check_operation(config, document, hidden, errors)
    if check:
        clean["check_operation"] = check
    return clean


def _prepare(*, organization: Organization, instance: HttpApi | None, changes: dict[str, Any],
             client_secret: str | None) -> tuple[dict[str, Any], Document]:
    """The row's new field values, all checked. Raises ValidationError with every problem found."""
    errors: dict[str, list[str]] = {}
    if "spec" in changes:
        try:
            stored, document = read_document(changes["spec"])
        except ValidationError as exc:
            errors.update(exc.message_dict)
            stored, document = None, None
    else:
        assert instance is not None
        stored, document = instance.spec, _document_of(instance)
    fields: dict[str, Any] = {}

    name = changes.get("name", instance.name if instance else "")
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        errors["name"] = ["This field is required."]
    elif len(name) > 120:
        errors["name"] = ["At most 120 characters."]
    fields["name"] = name
    description = changes.get("description", instance.description if instance else "")
    description = description.strip() if isinstance(description, str) else ""
    if len(description) > MAX_DESCRIPTION:
        errors["description"] = [f"At most {MAX_DESCRIPTION} characters."]
    fields["description"] = description
    if instance is None:
        wanted = (changes.get("slug") or "").strip()
        fields["slug"] = _free_slug(organization, wanted or name, explicit=bool(wanted), errors=errors)
    auth = changes.get("auth", instance.auth if instance else Auth.NONE)
    if auth not in Auth.values:
        errors["auth"] = [f"One of: {', '.join(Auth.values)}."]
    if document is None or "auth" in errors:
        raise ValidationError(errors)

    fields["spec"] = stored
    fields["auth"] = auth
    fields["base_url"] = _base_url(changes.get("base_url", instance.base_url if instance else ""), document, errors)
    if "auth_config" in changes and changes["auth_config"] is not None:
        config = changes["auth_config"]
    elif instance is not None and instance.auth == auth:
        config = instance.auth_config
    else:
        suggested, suggestion = document.suggested_auth()
        config = suggestion if suggested == auth else {}
    fields["auth_config"] = _auth_config(auth, config, document, errors)
    if "operations" in changes and changes["operations"] is not None:
        fields["operations"] = _operations(changes["operations"], document, errors)
    elif instance is not None:
        # A new document keeps the operations it still offers.
        supported = {o.operation_id for o in document.supported_operations}
        fields["operations"] = [o for o in instance.operations if o in supported]
    else:
        fields["operations"] = []
    if auth == Auth.OAUTH2:
        if client_secret:
            if len(client_secret) > 1000 or "\x00" in client_secret:
                errors["client_secret"] = ["At most 1000 characters."]
            fields["secret"] = crypto.encrypt({"client_secret": client_secret})
        elif instance is not None and instance.auth == Auth.OAUTH2 and instance.secret:
            fields["secret"] = instance.secret
        else:
            errors["client_secret"] = ["The OAuth client secret is required."]
    else:
        if client_secret:
            errors["client_secret"] = ["Only an API that connects with OAuth 2.0 has a client secret."]
        fields["secret"] = ""
    if errors:
        raise ValidationError(errors)
    return fields, document


def _changed(organization_id: Any) -> None:
    """Tools and the catalog show the change at once in this process (and again after commit, in
    case a read in between cached the old rows)."""
    tools.forget(organization_id)
    transaction.on_commit(lambda: tools.forget(organization_id))


def _spec_digest(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _snapshot(api: HttpApi) -> dict[str, Any]:
    return {"name": api.name, "description": api.description, "base_url": api.base_url, "auth": api.auth,
            "auth_config": dict(api.auth_config), "operations": list(api.operations),
            "spec": _spec_digest(api.spec)}


@transaction.atomic
def http_api_create(
    *,
    organization: Organization,
    actor: AbstractBaseUser,
    name: str,
    spec: Any,
    slug: str = "",
    description: str = "",
    base_url: str = "",
    operations: list[str] | None = None,
    auth: str = Auth.NONE,
    auth_config: dict[str, Any] | None = None,
    client_secret: str = "",
) -> HttpApi:
    """Register an API from its OpenAPI document (the object, or its JSON/YAML text). Without
    `base_url` the document's first absolute server is used; without `auth_config` the
    document's own security scheme for `auth`, when it has one."""
    changes = {"name": name, "spec": spec, "slug": slug, "description": description, "base_url": base_url,
               "operations": operations, "auth": auth, "auth_config": auth_config}
    fields, document = _prepare(organization=organization, instance=None, changes=changes,
                                client_secret=client_secret)
    api = HttpApi(organization=organization, created_by=actor, **fields)
    try:
        with transaction.atomic():
            api.save()
    except IntegrityError:
        raise ValidationError({"slug": [f"Another API of this organization already has the slug {api.slug!r}."]}) \
            from None
    _changed(organization.id)
    audit_record(action="http_api.create", actor=actor, organization=organization, target=api,
                 data={"slug": api.slug, "base_url": api.base_url, "auth": api.auth, "operations": list(api.operations),
                       "document": f"{document.title} {document.version}".strip(), "spec": _spec_digest(api.spec)})
    return api


@transaction.atomic
def http_api_update(
    *,
    http_api: HttpApi,
    actor: AbstractBaseUser,
    name: str | None = None,
    description: str | None = None,
    base_url: str | None = None,
    spec: Any = None,
    operations: list[str] | None = None,
    auth: str | None = None,
    auth_config: dict[str, Any] | None = None,
    client_secret: str | None = None,
) -> HttpApi:
    """Change what is given (None: unchanged). A new document keeps the enabled operations it still
    has; a blank client secret keeps the stored one. The slug never changes: connections and
    agents refer to the integration by it."""
    api = HttpApi.objects.select_for_update().get(id=http_api.id)
    changes = {key: value for key, value in {
        "name": name, "description": description, "base_url": base_url, "spec": spec, "operations": operations,
        "auth": auth, "auth_config": auth_config,
    }.items() if value is not None}
    before = _snapshot(api)
    fields, _document = _prepare(organization=api.organization, instance=api, changes=changes,
                                 client_secret=client_secret)
    secret_changed = fields["secret"] != api.secret
    for key, value in fields.items():
        setattr(api, key, value)
    api.save()
    _changed(api.organization_id)
    diff = diff_of(before, _snapshot(api))
    if diff or secret_changed:
        audit_record(action="http_api.update", actor=actor, organization_id=api.organization_id, target=api,
                     diff=diff, data={"client_secret_changed": True} if secret_changed else None)
    return api


@transaction.atomic
def http_api_delete(*, http_api: HttpApi, actor: AbstractBaseUser) -> None:
    """Remove the API, its tools, and every connection to it (their credentials mean nothing
    without it, and a later API with the same slug must not inherit them)."""
    api = HttpApi.objects.select_for_update().get(id=http_api.id)
    connections = Connection.objects.filter(organization_id=api.organization_id, integration=api.integration_slug)
    count = connections.count()
    audit_record(action="http_api.delete", actor=actor, organization_id=api.organization_id, target=api,
                 data={"slug": api.slug, "connections_deleted": count})
    connections.delete()
    OAuthGrant.objects.filter(organization_id=api.organization_id, integration=api.integration_slug).delete()
    api.delete()
    _changed(api.organization_id)
