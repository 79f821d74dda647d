"""Single sign-on: each organization's IdentityProvider rows, driven by allauth.

allauth speaks the protocols — OpenID Connect (discovery, PKCE, the code exchange, ID token checks)
and SAML 2.0 (the AuthnRequest, signed-response validation through python3-saml). This module:

- turns IdentityProvider rows into allauth social apps (`SocialAccountAdapter.list_apps`), so the
  rows are the only configuration: nothing per provider in settings or in allauth's SocialApp table;
- decides who may sign in through which provider (enabled, email domain, linking to an existing
  account) and with which role in the provider's organization (`role_for_claims`);
- holds the audited writes: create, update, delete and "Test connection" of providers;
- fetches providers' documents through the outbound address guard, so an organization admin can't
  point a provider at our own network unless the operator allowed that host.

Sign-in URLs are allauth's: /accounts/oidc/<slug>/login/ (callback .../login/callback/) and
/accounts/saml/<slug>/login/ (ACS /accounts/saml/<slug>/acs/, SP metadata .../metadata/).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import httpx
import requests
from allauth.account import signals as account_signals
from allauth.account.utils import filter_users_by_email
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from cryptography import x509
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from accounts.adapters import vouch_for_admin_made_email
from accounts.audit import audit_record, diff_of
from accounts.models import IdentityProvider, Membership, Organization
from accounts.services import membership_add

Role = Membership.Role

# Roles single sign-on may grant, most privileged first: when a person's claims map to several
# roles, the first of these wins. (Not "the mapping's order": role_mapping is stored as jsonb,
# which keeps no key order.) Owner is granted in the app by an owner, never by a claim: otherwise
# any admin could make themselves owner by editing the mapping.
SSO_ROLES: tuple[str, ...] = (Role.ADMIN, Role.BUILDER, Role.OPERATOR, Role.AUDITOR, Role.VIEWER)
SSO_ROLE_CHOICES = [(value, label) for value, label in Role.choices if value in SSO_ROLES]

# allauth looks a provider up by the slug first as a provider type, so these would shadow ours.
RESERVED_SLUGS = frozenset({"openid_connect", "saml"})
MAX_MAPPING_ENTRIES = 200
MAX_DOMAINS = 50

FETCH_TIMEOUT_SECONDS = 10.0
FETCH_MAX_BYTES = 1_000_000
MAX_REDIRECTS = 3
ALLOW_HINT = "an operator can allow it with AGENTRY_SSO_ALLOWED_HOSTS"
# How long a SAML provider's metadata (certificate, SSO URL) is reused before it is fetched again.
METADATA_CACHE_SECONDS = 3600

REQUIRED_DISCOVERY_KEYS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
                           "response_types_supported", "id_token_signing_alg_values_supported")

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")


# --------------------------------------------------------------------------- roles from claims


def claim_values(claims: Mapping[str, Any], name: str) -> list[str]:
    """The claim's values as strings: a string claim is one value, a list claim its items."""
    value = claims.get(name) if name else None
    if value is None or isinstance(value, dict):
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [str(item) for item in items if isinstance(item, (str, int, float)) and not isinstance(item, bool)]


def role_for_claims(*, provider: IdentityProvider, claims: Mapping[str, Any]) -> str:
    """The role the claims map to: the most privileged mapped role, else the provider's default."""
    mapping = provider.role_mapping if isinstance(provider.role_mapping, dict) else {}
    mapped = {mapping[value] for value in claim_values(claims, provider.role_claim) if value in mapping}
    for role in SSO_ROLES:
        if role in mapped:
            return role
    # A default edited to something SSO may not grant (the admin site allows Owner) falls back to Viewer.
    return provider.default_role if provider.default_role in SSO_ROLES else Role.VIEWER


def claims_of(extra_data: Mapping[str, Any] | None) -> dict[str, Any]:
    """OpenID Connect: the ID token's claims overlaid with userinfo's. SAML: the attributes."""
    data = dict(extra_data or {})
    if "userinfo" in data or "id_token" in data:
        merged: dict[str, Any] = {}
        for part in ("id_token", "userinfo"):
            if isinstance(data.get(part), dict):
                merged.update(data[part])
        return merged
    return data


# --------------------------------------------------------------------------- validation


class ProviderInvalid(ValueError):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))
        self.errors = errors


def normalize_role_mapping(value: Any) -> tuple[dict[str, str], list[str]]:
    """{claim value: role}, or the problems with it."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}, []
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return {}, [f"Not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}. "
                        'Write it like {"finance-admins": "admin", "engineering": "builder"}.']
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, ['Must be an object mapping a claim value to a role, e.g. {"finance-admins": "admin"}.']
    if len(value) > MAX_MAPPING_ENTRIES:
        return {}, [f"At most {MAX_MAPPING_ENTRIES} entries."]
    allowed = ", ".join(SSO_ROLES)
    mapping: dict[str, str] = {}
    problems: list[str] = []
    for raw_key, role in value.items():
        key = str(raw_key).strip()
        if not key or len(key) > 300:
            problems.append("Claim values must be 1 to 300 characters.")
            continue
        if role == Role.OWNER:
            problems.append(f"“{key}”: Owner can't be granted by single sign-on; owners are made in the app.")
        elif not isinstance(role, str) or role not in SSO_ROLES:
            problems.append(f"“{key}”: {role!r} is not a role; use one of {allowed}.")
        else:
            mapping[key] = role
    return mapping, problems


def normalize_domains(value: Any) -> tuple[list[str], list[str]]:
    if isinstance(value, str):
        value = re.split(r"[\s,;]+", value)
    if value is None:
        return [], []
    if not isinstance(value, (list, tuple)):
        return [], ["Must be a list of domains, e.g. [\"example.com\"]."]
    domains: list[str] = []
    problems: list[str] = []
    for item in value:
        text = str(item).strip().lower().lstrip("@").rstrip(".")
        if not text:
            continue
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        if not _DOMAIN.match(text):
            problems.append(f"“{str(item)[:100]}” is not a domain name like example.com.")
        elif text not in domains:
            domains.append(text)
    if len(domains) > MAX_DOMAINS:
        problems.append(f"At most {MAX_DOMAINS} domains.")
    return domains, problems


def host_is_allowed(url: str) -> bool:
    """Whether the operator listed this URL's host in AGENTRY_SSO_ALLOWED_HOSTS (name, IP or network)."""
    try:
        host = (httpx.URL(url).host or "").rstrip(".").lower()
    except httpx.InvalidURL:
        return False
    for entry in settings.SSO_ALLOWED_HOSTS:
        entry = entry.strip().lower()
        if entry.rstrip(".") == host:
            return True
        try:
            if ipaddress.ip_address(host.strip("[]")) in ipaddress.ip_network(entry.strip("[]"), strict=False):
                return True
        except ValueError:
            continue
    return False


def _url_problem(url: str) -> str | None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "Enter a valid URL."
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "Enter an http(s) URL."
    if parsed.scheme == "http" and not host_is_allowed(url):
        # Codes and tokens travel over this URL; plain http only for hosts the operator vouches for.
        return "Use https (plain http only for hosts listed in AGENTRY_SSO_ALLOWED_HOSTS)."
    if parsed.userinfo:
        return "Don't put credentials in the URL."
    return None


def certificate_from_text(text: str) -> x509.Certificate:
    """A PEM certificate, or the bare base64 body SAML metadata carries."""
    text = text.strip()
    if "-----BEGIN" in text:
        return x509.load_pem_x509_certificate(text.encode())
    import base64

    return x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))


def identity_provider_errors(values: Mapping[str, Any], *, instance: IdentityProvider | None) -> dict[str, list[str]]:
    """Problems with a provider's complete set of values (the instance's, overlaid with the change).

    Shared by the settings form and the API so both refuse the same things with the same words.
    `values["client_secret"]` is None (or absent) when the stored secret is kept.
    """
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    kind = values.get("kind") or IdentityProvider.Kind.OIDC
    slug = values.get("slug") or ""
    if instance is not None:
        if kind != instance.kind:
            add("kind", "The kind can't change; create a new provider instead.")
        if slug != instance.slug:
            add("slug", "The slug can't change: it is part of the callback URL registered at the provider "
                        "and of every linked account.")
    else:
        if slug in RESERVED_SLUGS:
            add("slug", f"“{slug}” is reserved; choose another slug.")
        elif slug and IdentityProvider.objects.filter(slug=slug).exists():
            add("slug", "Another identity provider already uses this slug.")
    if not (values.get("name") or "").strip():
        add("name", "This field is required.")

    if kind == IdentityProvider.Kind.OIDC:
        server_url = values.get("server_url") or ""
        if not server_url:
            add("server_url", "The issuer URL is required for OpenID Connect.")
        elif problem := _url_problem(server_url):
            add("server_url", problem)
        if not (values.get("client_id") or "").strip():
            add("client_id", "The client ID is required for OpenID Connect.")
        secret = values.get("client_secret")
        if not secret and not (instance is not None and instance.client_secret):
            add("client_secret", "The client secret is required for OpenID Connect.")
    elif kind == IdentityProvider.Kind.SAML:
        for field in ("idp_metadata_url", "idp_sso_url"):
            if values.get(field) and (problem := _url_problem(values[field])):
                add(field, problem)
        entity_id = values.get("idp_entity_id") or ""
        if any(quote in entity_id for quote in "'\""):
            add("idp_entity_id", "Quotes are not allowed in an entity ID.")
        if not values.get("idp_metadata_url"):
            if not entity_id:
                add("idp_entity_id", "Give the entity ID, or a metadata URL to read it from.")
            if not values.get("idp_sso_url"):
                add("idp_sso_url", "Give the single sign-on URL, or a metadata URL to read it from.")
            if not values.get("idp_x509_cert"):
                add("idp_x509_cert", "Give the signing certificate, or a metadata URL to read it from.")
        if values.get("idp_x509_cert"):
            try:
                certificate_from_text(values["idp_x509_cert"])
            except ValueError as exc:
                add("idp_x509_cert", f"Not an X.509 certificate (PEM or base64): {str(exc)[:200]}")
    else:
        add("kind", "Use oidc or saml.")

    mapping, problems = normalize_role_mapping(values.get("role_mapping"))
    for problem in problems:
        add("role_mapping", problem)
    if mapping and not (values.get("role_claim") or "").strip():
        add("role_claim", "Name the claim whose values the role mapping matches, e.g. groups.")
    default_role = values.get("default_role") or Role.VIEWER
    if default_role == Role.OWNER:
        add("default_role", "Owner can't be granted by single sign-on; owners are made in the app.")
    elif default_role not in SSO_ROLES:
        add("default_role", f"Use one of {', '.join(SSO_ROLES)}.")

    domains, problems = normalize_domains(values.get("email_domains"))
    for problem in problems:
        add("email_domains", problem)
    if domains and not problems:
        taken = IdentityProvider.objects.filter(email_domains__overlap=domains)
        if instance is not None:
            taken = taken.exclude(pk=instance.pk)
        claimed = sorted({d for other in taken.values_list("email_domains", flat=True) for d in other} & set(domains))
        if claimed:
            add("email_domains", f"Already sent to another identity provider: {', '.join(claimed)}.")
    return errors


# --------------------------------------------------------------------------- writes

EDITABLE_FIELDS = ("name", "enabled", "server_url", "client_id", "idp_entity_id", "idp_sso_url", "idp_x509_cert",
                   "idp_metadata_url", "role_claim", "role_mapping", "default_role", "email_domains")


def _normalized(values: Mapping[str, Any]) -> dict[str, Any]:
    clean = {field: values[field] for field in EDITABLE_FIELDS if field in values}
    for field in ("name", "server_url", "client_id", "idp_entity_id", "idp_sso_url", "idp_metadata_url",
                  "role_claim"):
        if field in clean:
            clean[field] = (clean[field] or "").strip()
    if "idp_x509_cert" in clean:
        clean["idp_x509_cert"] = (clean["idp_x509_cert"] or "").strip()
    if "role_mapping" in clean:
        clean["role_mapping"] = normalize_role_mapping(clean["role_mapping"])[0]
    if "email_domains" in clean:
        clean["email_domains"] = normalize_domains(clean["email_domains"])[0]
    return clean


def _audit_view(provider: IdentityProvider) -> dict[str, Any]:
    """What the audit diff shows: every setting, the secret only as whether one is set."""
    view = {field: getattr(provider, field) for field in EDITABLE_FIELDS}
    view["client_secret"] = "(set)" if provider.client_secret else ""
    return view


@transaction.atomic
def identity_provider_create(*, organization: Organization, actor: AbstractBaseUser | None, kind: str, slug: str,
                             client_secret: str | None = None, **values: Any) -> IdentityProvider:
    errors = identity_provider_errors({**values, "kind": kind, "slug": slug, "client_secret": client_secret},
                                      instance=None)
    if errors:
        raise ProviderInvalid(errors)
    provider = IdentityProvider.objects.create(
        organization=organization, kind=kind, slug=slug, client_secret=client_secret or "", **_normalized(values)
    )
    audit_record(action="identity_provider.create", actor=actor, organization=organization, target=provider,
                 data={"kind": provider.kind, "slug": provider.slug, **_audit_view(provider)})
    return provider


@transaction.atomic
def identity_provider_update(*, provider: IdentityProvider, actor: AbstractBaseUser | None,
                             client_secret: str | None = None, **values: Any) -> IdentityProvider:
    """Change settings; a blank or missing client_secret keeps the stored one."""
    locked = IdentityProvider.objects.select_for_update().get(pk=provider.pk)
    current = {field: getattr(locked, field) for field in EDITABLE_FIELDS}
    merged = {**current, **values, "kind": values.get("kind", locked.kind), "slug": values.get("slug", locked.slug),
              "client_secret": client_secret or None}
    errors = identity_provider_errors(merged, instance=locked)
    if errors:
        raise ProviderInvalid(errors)
    before = _audit_view(locked)
    for field, value in _normalized(values).items():
        setattr(locked, field, value)
    if client_secret:
        locked.client_secret = client_secret
    locked.save()
    diff = diff_of(before, _audit_view(locked))
    if client_secret and "client_secret" not in diff:
        diff["client_secret"] = ["(set)", "(replaced)"]
    if diff:
        audit_record(action="identity_provider.update", actor=actor, organization_id=locked.organization_id,
                     target=locked, diff=diff)
    return locked


@transaction.atomic
def identity_provider_delete(*, provider: IdentityProvider, actor: AbstractBaseUser | None) -> None:
    """Delete the provider and the account links made through it.

    The links go too: a later provider reusing the slug (in any organization) must not inherit
    them, or its subjects could sign in as this provider's people.
    """
    from allauth.socialaccount.models import SocialAccount

    links, _ = SocialAccount.objects.filter(provider=provider.slug).delete()
    audit_record(action="identity_provider.delete", actor=actor, organization_id=provider.organization_id,
                 target=provider, data={"kind": provider.kind, "slug": provider.slug, "unlinked_accounts": links})
    provider.delete()


# --------------------------------------------------------------------------- fetching, behind the guard


class FetchError(Exception):
    """The document couldn't be fetched: refused by the address guard, unreachable, or not 200."""


def fetch(url: str, *, accept: str = "application/json") -> bytes:
    """GET a provider document: every hop checked by the address guard and connected to the vetted
    address (no second DNS answer), redirects followed by hand, a timeout and a size cap."""
    from integrations.builtin import netguard
    from integrations.tools import ToolError

    try:
        current = netguard.parse_url(url)
    except ToolError as exc:
        raise FetchError(str(exc)) from None
    with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, trust_env=False, follow_redirects=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                addresses = netguard.check_url(current, allowed_hosts=settings.SSO_ALLOWED_HOSTS, hint=ALLOW_HINT)
                request = netguard.pinned_request(client, "GET", current, addresses[0], headers={"Accept": accept})
                response = client.send(request, stream=True)
            except ToolError as exc:
                raise FetchError(str(exc)) from None
            except httpx.HTTPError as exc:
                raise FetchError(f"couldn't connect: {exc or type(exc).__name__}") from None
            try:
                if response.is_redirect and "location" in response.headers:
                    current = netguard.parse_url(current.join(response.headers["location"]))
                    continue
                if response.status_code != 200:
                    raise FetchError(f"answered HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > FETCH_MAX_BYTES:
                        raise FetchError(f"the document is larger than {FETCH_MAX_BYTES // 1000} kB")
                return bytes(body)
            except ToolError as exc:
                raise FetchError(str(exc)) from None
            except httpx.HTTPError as exc:
                raise FetchError(f"the connection failed: {exc or type(exc).__name__}") from None
            finally:
                response.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def fetch_json(url: str) -> dict[str, Any]:
    body = fetch(url)
    try:
        document = json.loads(body)
    except ValueError:
        raise FetchError("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise FetchError("the answer is not a JSON object")
    return document


class GuardedSession(requests.Session):
    """The HTTP session allauth uses for discovery, the token exchange, userinfo and keys: every
    request (and every redirect hop, which `requests` also sends through `send`) passes the address
    guard first. Unlike `fetch` it doesn't pin the vetted address — `requests` resolves again — but
    the URLs come from an organization admin's settings, not from a model or a web page."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # proxies from the environment would resolve the name themselves

    def send(self, request, **kwargs):
        from integrations.builtin import netguard
        from integrations.tools import ToolError

        try:
            netguard.check_url(request.url, allowed_hosts=settings.SSO_ALLOWED_HOSTS, hint=ALLOW_HINT)
        except ToolError as exc:
            # allauth turns a RequestException into its sign-in error page, not a 500.
            raise requests.ConnectionError(str(exc), request=request) from None
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = settings.SOCIALACCOUNT_REQUESTS_TIMEOUT
        return super().send(request, **kwargs)


# --------------------------------------------------------------------------- "Test connection"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "message": self.message}


def issuer_base(server_url: str) -> str:
    return server_url.split("/.well-known/", 1)[0].rstrip("/")


def discovery_url(server_url: str) -> str:
    if "/.well-known/" in server_url:
        return server_url
    return issuer_base(server_url) + "/.well-known/openid-configuration"


def _oidc_checks(provider: IdentityProvider) -> list[Check]:
    url = discovery_url(provider.server_url)
    try:
        document = fetch_json(url)
    except FetchError as exc:
        return [Check("Discovery document", False, f"{url}: {exc}.")]
    checks = [Check("Discovery document", True, f"Read {url}.")]

    issuer = document.get("issuer")
    if isinstance(issuer, str) and issuer.rstrip("/") == issuer_base(provider.server_url):
        checks.append(Check("Issuer", True, f"The document names the issuer {issuer}."))
    else:
        # ID tokens carry this issuer; allauth rejects every one whose issuer isn't the document's.
        checks.append(Check("Issuer", False, f"The document names the issuer {issuer!r}, not "
                                             f"{issuer_base(provider.server_url)!r}: set the issuer URL to it."))
    missing = [key for key in REQUIRED_DISCOVERY_KEYS if not document.get(key)]
    checks.append(Check("Required fields", not missing,
                        f"Missing: {', '.join(missing)}." if missing else "All required fields are present."))
    response_types = document.get("response_types_supported") or []
    has_code = isinstance(response_types, list) and "code" in response_types
    checks.append(Check("Authorization code flow", has_code,
                        "Supports response type “code”." if has_code
                        else f"Response types {response_types!r} don't include “code”."))
    algorithms = document.get("id_token_signing_alg_values_supported") or []
    signed = [alg for alg in algorithms if isinstance(alg, str) and alg.lower() != "none"] \
        if isinstance(algorithms, list) else []
    checks.append(Check("ID token signing", bool(signed),
                        f"Signs ID tokens with {', '.join(signed)}." if signed
                        else "The provider lists no signing algorithm for ID tokens."))

    jwks_uri = document.get("jwks_uri")
    if isinstance(jwks_uri, str) and jwks_uri:
        try:
            keys = fetch_json(jwks_uri).get("keys")
            if isinstance(keys, list) and keys:
                kids = [str(key.get("kid")) for key in keys if isinstance(key, dict) and key.get("kid")]
                named = f" ({', '.join(kids[:5])})" if kids else ""
                plural = "s" if len(keys) != 1 else ""
                checks.append(Check("Signing keys", True, f"{len(keys)} key{plural} at {jwks_uri}{named}."))
            else:
                checks.append(Check("Signing keys", False, f"{jwks_uri} lists no keys."))
        except FetchError as exc:
            checks.append(Check("Signing keys", False, f"{jwks_uri}: {exc}."))
    has_client = bool(provider.client_id and provider.client_secret)
    checks.append(Check("Client credentials", has_client,
                        "A client ID and secret are set (the provider checks them at the first sign-in)."
                        if has_client else "Set the client ID and secret the provider issued."))
    return checks


def _certificate_check(text: str) -> Check:
    try:
        certificate = certificate_from_text(text)
    except ValueError as exc:
        return Check("Signing certificate", False, f"Not an X.509 certificate: {str(exc)[:200]}.")
    now = datetime.now(UTC)
    subject = certificate.subject.rfc4514_string() or "(no subject)"
    if certificate.not_valid_after_utc < now:
        return Check("Signing certificate", False,
                     f"{subject} expired on {certificate.not_valid_after_utc:%Y-%m-%d}.")
    if certificate.not_valid_before_utc > now:
        return Check("Signing certificate", False,
                     f"{subject} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d}.")
    return Check("Signing certificate", True, f"{subject}, valid until {certificate.not_valid_after_utc:%Y-%m-%d}.")


def parse_saml_metadata(xml: bytes, *, entity_id: str = "") -> dict[str, str]:
    """entity_id, sso_url (HTTP-Redirect binding) and x509cert (the first signing certificate)."""
    from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml, entity_id=entity_id or None)
    except Exception as exc:  # noqa: BLE001 - lxml and python3-saml raise many unrelated types for bad XML
        raise FetchError(f"not SAML metadata: {str(exc)[:200] or type(exc).__name__}") from None
    idp = parsed.get("idp") or {}
    certificate = idp.get("x509cert") or ((idp.get("x509certMulti") or {}).get("signing") or [""])[0]
    return {"entity_id": idp.get("entityId", ""), "sso_url": (idp.get("singleSignOnService") or {}).get("url", ""),
            "x509cert": certificate}


def _saml_metadata_cache_key(provider: IdentityProvider) -> str:
    digest = hashlib.sha256(f"{provider.idp_metadata_url}\n{provider.idp_entity_id}".encode()).hexdigest()[:24]
    return f"sso:saml-metadata:{provider.pk}:{digest}"


def _saml_checks(provider: IdentityProvider) -> list[Check]:
    checks: list[Check] = []
    found = {"entity_id": "", "sso_url": "", "x509cert": ""}
    if provider.idp_metadata_url:
        try:
            found = parse_saml_metadata(fetch(provider.idp_metadata_url, accept="application/samlmetadata+xml, "
                                              "application/xml, text/xml"), entity_id=provider.idp_entity_id)
            cache.set(_saml_metadata_cache_key(provider), found, METADATA_CACHE_SECONDS)
            checks.append(Check("Metadata", True, f"Read {provider.idp_metadata_url}."))
        except FetchError as exc:
            return [Check("Metadata", False, f"{provider.idp_metadata_url}: {exc}.")]
    entity_id = provider.idp_entity_id or found["entity_id"]
    if not entity_id:
        checks.append(Check("Entity ID", False, "The metadata describes no identity provider."
                            if provider.idp_metadata_url else "No entity ID is set."))
    elif provider.idp_metadata_url and not found["entity_id"]:
        checks.append(Check("Entity ID", False, f"The metadata has no identity provider with entity ID {entity_id}."))
    else:
        checks.append(Check("Entity ID", True, entity_id))
    sso_url = provider.idp_sso_url or found["sso_url"]
    checks.append(Check("Single sign-on URL", bool(sso_url),
                        sso_url or "No single sign-on URL with the HTTP-Redirect binding."))
    certificate = provider.idp_x509_cert or found["x509cert"]
    checks.append(_certificate_check(certificate) if certificate
                  else Check("Signing certificate", False, "No signing certificate."))
    return checks


def identity_provider_test(*, provider: IdentityProvider, actor: AbstractBaseUser | None) -> list[Check]:
    """Fetch and check the provider's published configuration; store and audit the outcome.

    The network calls happen outside any transaction; only the result is written."""
    checks = _oidc_checks(provider) if provider.kind == IdentityProvider.Kind.OIDC else _saml_checks(provider)
    failed = [check for check in checks if not check.ok]
    ok = not failed
    message = f"All {len(checks)} checks passed." if ok else f"{failed[0].name}: {failed[0].message}"
    tested_at = timezone.now()
    with transaction.atomic():
        IdentityProvider.objects.filter(pk=provider.pk).update(
            last_tested_at=tested_at, last_test_ok=ok, last_test_message=message[:2000]
        )
        audit_record(action="identity_provider.test", actor=actor, organization_id=provider.organization_id,
                     target=provider, data={"ok": ok, "failed": [check.name for check in failed]})
    provider.last_tested_at, provider.last_test_ok, provider.last_test_message = tested_at, ok, message[:2000]
    return checks


# --------------------------------------------------------------------------- URLs to give the provider


def provider_urls(provider: IdentityProvider, request: HttpRequest | None = None) -> dict[str, str]:
    """Absolute URLs an admin registers at the identity provider, and the sign-in URL."""
    def absolute(path: str) -> str:
        return request.build_absolute_uri(path) if request is not None else urljoin(settings.PUBLIC_URL, path)

    if provider.kind == IdentityProvider.Kind.OIDC:
        kwargs = {"provider_id": provider.slug}
        return {"sign_in_url": absolute(reverse("openid_connect_login", kwargs=kwargs)),
                "callback_url": absolute(reverse("openid_connect_callback", kwargs=kwargs)),
                "sp_entity_id": ""}
    kwargs = {"organization_slug": provider.slug}
    return {"sign_in_url": absolute(reverse("saml_login", kwargs=kwargs)),
            "callback_url": absolute(reverse("saml_acs", kwargs=kwargs)),
            "sp_entity_id": absolute(reverse("saml_metadata", kwargs=kwargs))}


def provider_for_email(email: str) -> IdentityProvider | None:
    """The enabled provider whose email domains include this address's domain."""
    domain = email.rpartition("@")[2].strip().lower().rstrip(".")
    if "@" not in email or not domain:
        return None
    return (IdentityProvider.objects.filter(enabled=True, email_domains__contains=[domain])
            .select_related("organization").first())


# --------------------------------------------------------------------------- allauth


SAML_ATTRIBUTE_MAPPING = {
    "uid": ["urn:oasis:names:tc:SAML:attribute:subject-id"],
    "email": ["urn:oid:0.9.2342.19200300.100.1.3", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
              "email", "mail"],
    "email_verified": ["http://schemas.auth0.com/email_verified", "email_verified"],
    "first_name": ["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", "urn:oid:2.5.4.42",
                   "givenName", "first_name"],
    "last_name": ["urn:oid:2.5.4.4", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname", "sn",
                  "surname", "last_name"],
    "username": ["http://schemas.auth0.com/nickname", "username", "uid"],
}


def social_app(provider: IdentityProvider):
    """The unsaved allauth SocialApp standing for this provider."""
    from allauth.socialaccount.models import SocialApp

    # Addresses in the provider's own email domains count as verified even when it doesn't say so
    # (Azure AD sends no email_verified): the organization's admin declared those domains theirs,
    # and linking to an existing account is limited to accounts only in that organization anyway.
    verified_email = list(provider.email_domains) or False
    if provider.kind == IdentityProvider.Kind.OIDC:
        app = SocialApp(provider="openid_connect", provider_id=provider.slug, name=provider.name[:40],
                        client_id=provider.client_id, secret=provider.client_secret,
                        settings={"server_url": discovery_url(provider.server_url), "oauth_pkce_enabled": True,
                                  "verified_email": verified_email})
    else:
        # The SAML URLs carry the app's client_id as "organization_slug"; ours is the provider's slug.
        app = SocialApp(provider="saml", provider_id=provider.slug, name=provider.name[:40], client_id=provider.slug,
                        settings={
                            "idp": {"entity_id": provider.idp_entity_id, "sso_url": provider.idp_sso_url,
                                    "x509cert": provider.idp_x509_cert},
                            "attribute_mapping": SAML_ATTRIBUTE_MAPPING,
                            "verified_email": verified_email,
                            # Signed assertions only, and only answers to our own requests. Single-label
                            # hosts (localhost, intranet names) are fine in our own URLs.
                            "advanced": {"strict": True, "want_assertion_signed": True,
                                         "reject_idp_initiated_sso": True, "allow_single_label_domains": True},
                        })
    app.identity_provider = provider
    return app


def saml_idp_settings(provider: IdentityProvider) -> dict[str, str]:
    """The IdP's entity ID, SSO URL and certificate: as entered, blanks filled from its metadata."""
    values = {"entity_id": provider.idp_entity_id, "sso_url": provider.idp_sso_url,
              "x509cert": provider.idp_x509_cert}
    if provider.idp_metadata_url and not all(values.values()):
        key = _saml_metadata_cache_key(provider)
        found = cache.get(key)
        if found is None:
            found = parse_saml_metadata(fetch(provider.idp_metadata_url, accept="application/xml, text/xml"),
                                        entity_id=provider.idp_entity_id)
            cache.set(key, found, METADATA_CACHE_SECONDS)
        values = {name: value or found.get(name, "") for name, value in values.items()}
    return values


def provider_of(sociallogin) -> IdentityProvider | None:
    # allauth records the app's provider_id — our slug — as the social account's provider.
    slug = getattr(getattr(sociallogin, "account", None), "provider", "") or ""
    return IdentityProvider.objects.select_related("organization").filter(slug=slug).first()


def _email_of(sociallogin) -> str:
    from allauth.account.utils import user_email

    for address in sociallogin.email_addresses:
        if address.email:
            return address.email
    return (user_email(sociallogin.user) or "") if sociallogin.user else ""


def refuse(request: HttpRequest, *, provider: IdentityProvider | None, reason: str, message: str,
           login: str = "", status: int = 403) -> HttpResponse:
    """The page telling the person why single sign-on refused them; the attempt is audited."""
    data = {"method": provider.kind if provider else "sso", "provider": provider.slug if provider else "",
            "reason": reason}
    if login:
        data["login"] = login[:150]
    audit_record(action="auth.sign_in_failed", organization_id=provider.organization_id if provider else None,
                 target=provider, data=data)
    return render(request, "accounts/sso_refused.html", {"provider": provider, "message": message, "reason": reason},
                  status=status)


def _only_member_of(user: AbstractBaseUser, organization: Organization) -> bool:
    organizations = set(Membership.objects.filter(user=user).values_list("organization_id", flat=True))
    return organizations == {organization.id}


def sign_in_apply(request: HttpRequest | None, *, provider: IdentityProvider, user: AbstractBaseUser,
                  claims: Mapping[str, Any]) -> Membership:
    """Give the person their mapped role in the provider's organization (audited when it changes).

    Owners keep Owner: SSO never grants it, so it never takes it away either."""
    current = Membership.objects.filter(user=user, organization=provider.organization).first()
    if current is not None and current.role == Role.OWNER:
        membership = current
    else:
        membership = membership_add(organization=provider.organization, user=user,
                                    role=role_for_claims(provider=provider, claims=claims), actor=None)
    if request is not None:
        # Read by the sign-in audit receiver (accounts/signals.py) and by _signed_in_by_sso below.
        request.agentry_sign_in = {"organization": provider.organization,
                                   "data": {"method": provider.kind, "provider": provider.slug}}
    return membership


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """allauth's social sign-in, with IdentityProvider rows as the apps and our admission rules."""

    def list_apps(self, request, provider=None, client_id=None):
        providers = IdentityProvider.objects.select_related("organization")
        if provider == "openid_connect":
            providers = providers.filter(kind=IdentityProvider.Kind.OIDC)
        elif provider == "saml":
            providers = providers.filter(kind=IdentityProvider.Kind.SAML)
        elif provider:
            providers = providers.filter(slug=provider)
        if client_id:
            providers = providers.filter(Q(kind=IdentityProvider.Kind.OIDC, client_id=client_id)
                                         | Q(kind=IdentityProvider.Kind.SAML, slug=client_id))
        if not provider and not client_id:
            # The unfiltered list is what pages offer; a disabled provider is still found by its
            # slug, so a sign-in through it gets a clear refusal instead of a 404.
            providers = providers.filter(enabled=True)
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                # Signed in (the linked-accounts page): only the organization the person acts in,
                # never another tenant's providers.
                from accounts.roles import access_for_request

                access = access_for_request(request)
                providers = providers.filter(organization=access.organization) if access else providers.none()
        return [social_app(row) for row in providers]

    def get_app(self, request, provider, client_id=None):
        app = super().get_app(request, provider, client_id=client_id)
        row = getattr(app, "identity_provider", None)
        if row is not None and row.kind == IdentityProvider.Kind.SAML and row.idp_metadata_url:
            try:
                app.settings["idp"] = saml_idp_settings(row)
            except FetchError as exc:
                raise ImmediateHttpResponse(refuse(
                    request, provider=row, reason="metadata_unavailable", status=502,
                    message=f"{row.name} couldn't be reached: its metadata at {row.idp_metadata_url} {exc}. "
                            "Try again later or ask your administrator.",
                )) from None
        return app

    def get_requests_session(self):
        return GuardedSession()

    def is_open_for_signup(self, request, sociallogin) -> bool:
        # Local sign-up stays closed (accounts/adapters.py); people of an organization whose admin set
        # up single sign-on join that organization by signing in through it.
        provider = provider_of(sociallogin)
        return provider is not None and provider.enabled

    def can_authenticate_by_email(self, login, email: str) -> bool:
        """Link a sign-in to an existing account by email only for a domain this provider serves."""
        provider = provider_of(login)
        domain = email.rpartition("@")[2].lower()
        return provider is not None and provider.enabled and domain in provider.email_domains

    def authenticate_by_email(self, sociallogin):
        """...and only to an account that belongs to this provider's organization and no other.

        An organization admin configures the provider and so controls what email it asserts; an
        account that is also in another organization (or in none) is not theirs to sign in to."""
        found = super().authenticate_by_email(sociallogin)
        provider = provider_of(sociallogin)
        if found is None or provider is None or not _only_member_of(found[0], provider.organization):
            return None
        # An address an administrator typed counts as vouched for (accounts.adapters); without this
        # allauth would take the account's password away on linking, as it does for an address
        # nobody verified.
        vouch_for_admin_made_email(found[0])
        return found

    def pre_social_login(self, request, sociallogin) -> None:
        provider = provider_of(sociallogin)
        email = _email_of(sociallogin)
        if provider is None:
            raise ImmediateHttpResponse(refuse(request, provider=None, reason="unknown_provider", login=email,
                                               message="This sign-in provider is not configured."))
        if not provider.enabled:
            raise ImmediateHttpResponse(refuse(
                request, provider=provider, reason="disabled", login=email,
                message=f"Single sign-on through {provider.name} is turned off. Ask your administrator.",
            ))
        domain = email.rpartition("@")[2].lower()
        if provider.email_domains and domain not in provider.email_domains:
            raise ImmediateHttpResponse(refuse(
                request, provider=provider, reason="email_domain", login=email,
                message=(f"{provider.name} signed you in as {email}, but this organization accepts "
                         f"{', '.join('@' + d for d in provider.email_domains)} addresses only."
                         if email else f"{provider.name} didn't tell us your email address, which this "
                                       "organization requires."),
            ))
        process = sociallogin.state.get("process")
        if process == "connect":
            # Linking the provider to the signed-in account: only a provider of one of their organizations.
            user = request.user
            if user.is_authenticated and not Membership.objects.filter(user=user,
                                                                       organization=provider.organization).exists():
                raise ImmediateHttpResponse(refuse(
                    request, provider=provider, reason="connect_other_organization", login=email,
                    message=f"{provider.name} belongs to an organization you are not a member of.",
                ))
            return
        if not sociallogin.is_existing and email and filter_users_by_email(email):
            raise ImmediateHttpResponse(refuse(
                request, provider=provider, reason="email_taken", login=email,
                message=(f"An Agentry account with the address {email} already exists, and it can't be "
                         f"linked to {provider.name} automatically. Sign in with your password, or ask "
                         "your administrator."),
            ))
        if sociallogin.is_existing:
            sign_in_apply(request, provider=provider, user=sociallogin.user,
                          claims=claims_of(sociallogin.account.extra_data))

    def save_user(self, request, sociallogin, form=None):
        user = super().save_user(request, sociallogin, form=form)
        provider = provider_of(sociallogin)
        if provider is not None:
            sign_in_apply(request, provider=provider, user=user, claims=claims_of(sociallogin.account.extra_data))
        return user

    def on_authentication_error(self, request, provider, error=None, exception=None, extra_context=None) -> None:
        slug = getattr(getattr(provider, "app", None), "provider_id", "") or ""
        row = IdentityProvider.objects.filter(slug=slug).first() if slug else None
        data = {"method": row.kind if row else "sso", "provider": slug, "reason": str(error or "error")}
        if exception is not None:
            data["error"] = f"{type(exception).__name__}: {exception}"[:300]
        audit_record(action="auth.sign_in_failed", organization_id=row.organization_id if row else None,
                     target=row, data=data)


@receiver(account_signals.user_logged_in, dispatch_uid="accounts.sso.signed_in")
def _signed_in_by_sso(sender, request, user, sociallogin=None, **kwargs) -> None:
    """Work in the organization whose provider signed the person in."""
    if sociallogin is None:
        return
    sign_in = getattr(request, "agentry_sign_in", None)
    # A second factor asked for after the provider's answer finishes the sign-in in a later request.
    provider = None if sign_in else provider_of(sociallogin)
    organization = sign_in["organization"] if sign_in else provider.organization if provider else None
    if organization is not None:
        request.session["organization_id"] = str(organization.id)
