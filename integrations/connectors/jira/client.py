"""Jira Cloud transport: where the REST API lives for a connection, its error model, and the
Atlassian Document Format (ADF) that descriptions and comments use.

An API-token connection talks to the site itself (`https://acme.atlassian.net`, the connection's
`site_url` option) with Basic auth. An OAuth (3LO) connection talks to
`{api_url}/ex/jira/{cloud id}` with a Bearer token; the cloud id comes from
`/oauth/token/accessible-resources`, which `identify` calls when the connection is made and stores
in the connection's `account` (with the site's URL and name): `identify` can't change a
connection's options, and the account is refreshed by "Test", so the base URL follows it.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings

from integrations.builtin import netguard
from integrations.catalog import TokenSet
from integrations.http import HttpError, Response, error_message
from integrations.oauth import parse_standard
from integrations.tools import ToolError

if TYPE_CHECKING:
    from integrations.calls import CallContext

ISSUE_KEY = r"^([A-Za-z][A-Za-z0-9_]*-[1-9][0-9]*|[1-9][0-9]*)$"


# ------------------------------------------------------------------ credentials and where to call
def headers(credentials: dict[str, Any], options: dict[str, Any]) -> dict[str, str]:
    if credentials.get("api_token"):
        pair = f"{options.get('email', '')}:{credentials['api_token']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    if credentials.get("access_token"):
        return {"Authorization": f"Bearer {credentials['access_token']}"}
    return {}


def site_url(value: Any) -> str:
    """A Jira Cloud site's root URL. Basic auth over plain HTTP only to a host an operator allowed
    (AGENTRY_INTEGRATIONS_ALLOWED_HOSTS: an on-premise proxy, or a test's fake)."""
    text = str(value or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query or parts.username:
        raise ToolError("the site URL must be your Jira site's address, like https://your-team.atlassian.net")
    if parts.scheme == "http" and not _operator_allowed(httpx.URL(text)):
        raise ToolError("the site URL must start with https:// (credentials are never sent in the clear)")
    return text


def _operator_allowed(url: httpx.URL) -> bool:
    allowance = netguard.Allowance.parse(settings.INTEGRATIONS_ALLOWED_HOSTS)
    if allowance.names(url):
        return True
    try:
        return allowance.contains(ipaddress.ip_address(url.host))
    except ValueError:
        return False


def _account(call: CallContext) -> dict[str, Any]:
    return dict(call.connection.account) if call.connection is not None else {}


def uses_api_token(call: CallContext) -> bool:
    return bool(call.credentials.get("api_token"))


def base_url(call: CallContext) -> str:
    if uses_api_token(call):
        return site_url(call.options.get("site_url"))
    cloud_id = _account(call).get("cloud_id") or jira_site(call)["id"]
    return f"{call.api_url}/ex/jira/{quote(str(cloud_id), safe='')}"


def browse_url(call: CallContext, key: str) -> str | None:
    site = call.options.get("site_url") if uses_api_token(call) else _account(call).get("site_url")
    return f"{str(site).rstrip('/')}/browse/{key}" if site else None


def issue_path(key: str, suffix: str = "") -> str:
    if not re.match(ISSUE_KEY, key):
        raise ToolError(f"{key!r} is not a Jira issue key (like ENG-42)")
    return f"/rest/api/3/issue/{quote(key.upper(), safe='')}{suffix}"


def jira_sites(call: CallContext) -> list[dict[str, Any]]:
    """The Jira sites an OAuth token may use (Atlassian lists Confluence sites there too)."""
    response = call.http.get(f"{call.api_url}/oauth/token/accessible-resources")
    if not response.ok:
        raise HttpError(describe(response), status=response.status)
    found = response.json()
    sites = [s for s in found if isinstance(s, dict) and s.get("id")
             and any("jira" in str(scope) for scope in s.get("scopes") or [])] if isinstance(found, list) else []
    if not sites:
        raise ToolError("this Atlassian account gave Agentry access to no Jira site; connect again and pick a site "
                        "on Atlassian's consent screen")
    return sites


def jira_site(call: CallContext) -> dict[str, Any]:
    # One site per connection: the first Jira site granted (people connect again for another one).
    return jira_sites(call)[0]


# ------------------------------------------------------------------ requests and errors
def describe(response: Response) -> str:
    """Jira's errors: {"errorMessages": [...], "errors": {"field": "message"}} (or a gateway's
    {"code", "message"}), turned into one sentence for the model."""
    try:
        payload = response.json()
    except HttpError:
        payload = None
    parts: list[str] = []
    if isinstance(payload, dict):
        parts += [str(m) for m in payload.get("errorMessages") or [] if m]
        errors = payload.get("errors")
        if isinstance(errors, dict):
            parts += [f"{name}: {message}" for name, message in errors.items()]
        if not parts and payload.get("message"):
            parts.append(str(payload["message"]))
    if not parts:
        return error_message(response, service="Jira")
    return f"Jira answered HTTP {response.status}: {'; '.join(parts)[:500]}"


def request(call: CallContext, method: str, path: str, *, params: dict[str, Any] | None = None,
            json: Any = None, idempotent: bool | None = None) -> Any:
    response = call.http.request(method, base_url(call) + path, params=params, json=json, idempotent=idempotent)
    if not response.ok:
        raise HttpError(describe(response), status=response.status)
    return response.json() if response.body else None


# ------------------------------------------------------------------ identify and OAuth
def identify(call: CallContext) -> dict[str, Any]:
    if uses_api_token(call):
        site = site_url(call.options.get("site_url"))
        if not call.options.get("email"):
            raise ToolError("the email address of the Atlassian account is required with an API token")
        me = request(call, "GET", "/rest/api/3/myself")
        return {"name": me.get("displayName"), "email": me.get("emailAddress") or call.options.get("email"),
                "account_id": me.get("accountId"), "site_url": site}
    site = jira_site(call)
    account = {"cloud_id": site["id"], "site_url": str(site.get("url") or "").rstrip("/"),
               "site": site.get("name") or ""}
    if "read:jira-user" in call.scopes:  # otherwise /myself answers "scope does not match"
        me = call.http.get(f"{call.api_url}/ex/jira/{quote(site['id'], safe='')}/rest/api/3/myself")
        if not me.ok:
            raise HttpError(describe(me), status=me.status)
        person = me.json()
        account |= {"name": person.get("displayName"), "account_id": person.get("accountId")}
        if person.get("emailAddress"):
            account["email"] = person["emailAddress"]
    return account


def parse_token(payload: dict[str, Any]) -> TokenSet:
    """Standard fields; a refresh token is itself the proof that offline_access was granted,
    whether or not Atlassian lists it in `scope`."""
    tokens = parse_standard(payload)
    if tokens.refresh_token and tokens.provider_scopes is not None and "offline_access" not in tokens.provider_scopes:
        return TokenSet(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                        expires_in=tokens.expires_in, provider_scopes=(*tokens.provider_scopes, "offline_access"))
    return tokens


# ------------------------------------------------------------------ Atlassian Document Format
def to_adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: blank lines separate paragraphs, single newlines are breaks."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        content: list[dict[str, Any]] = []
        for index, line in enumerate(block.split("\n")):
            if index:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs if text.strip() else []}


_BLOCKS = {"paragraph", "heading", "codeBlock", "blockquote", "panel", "bulletList", "orderedList", "table",
           "tableRow", "mediaSingle", "rule"}


def from_adf(node: Any) -> str:
    """The readable text of an ADF document (marks and media dropped)."""
    def walk(item: Any) -> str:
        if not isinstance(item, dict):
            return ""
        kind = item.get("type")
        attrs = item.get("attrs") if isinstance(item.get("attrs"), dict) else {}
        if kind == "text":
            return str(item.get("text") or "")
        if kind == "hardBreak":
            return "\n"
        if kind in ("mention", "emoji", "date", "status"):
            return str(attrs.get("text") or attrs.get("shortName") or attrs.get("timestamp") or "")
        if kind in ("inlineCard", "blockCard"):
            return str(attrs.get("url") or "")
        inner = "".join(walk(child) for child in item.get("content") or [])
        if kind == "listItem":
            return "- " + inner.strip() + "\n"
        if kind == "tableCell" or kind == "tableHeader":
            return inner.strip() + " | "
        return inner + "\n\n" if kind in _BLOCKS else inner

    return re.sub(r"\n{3,}", "\n\n", walk(node)).strip()
