"""GitHub's REST API over the connectors' outbound client: headers, errors, pagination.

Every request goes through `call.http` (address guard, timeouts, retries on 429 and 5xx, one
refresh on 401). What GitHub says when it refuses is turned into a sentence the model can act on;
a 404 from GitHub also means "exists but you can't see it", and the messages say so.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from integrations.http import HttpError, Response, Unauthorized, error_message, retry_after_seconds
from integrations.tools import ToolError

if TYPE_CHECKING:
    from integrations.calls import CallContext

API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
MAX_PER_PAGE = 100
SERVICE = "GitHub"
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="([^"]*)"')


def auth_headers(credentials: dict[str, Any], options: dict[str, Any]) -> dict[str, str]:
    """An OAuth connection holds `access_token`; a personal access token connection holds `token`."""
    headers = {"Accept": MEDIA_TYPE, "X-GitHub-Api-Version": API_VERSION}
    token = credentials.get("access_token") or credentials.get("token")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def api_base(call: CallContext) -> str:
    base = call.api_url
    if not base:
        raise ToolError("no GitHub API URL is configured (AGENTRY_GITHUB_API_URL, or the connection's API URL)")
    return base


def request(call: CallContext, method: str, path: str, *, params: dict[str, Any] | None = None,
            json: Any = None, not_found: str = "") -> Response:
    """One API request; a non-2xx answer raises ToolError with a message for the model."""
    url = api_base(call) + path
    attempts = 0
    while True:
        try:
            response = call.http.request(method, url, params=_clean(params), json=json)
        except Unauthorized:
            raise Unauthorized(_unauthorized(call), status=401) from None
        if response.ok:
            return response
        wait = _secondary_limit_wait(response)
        # GitHub's secondary rate limit can also answer 403 with Retry-After, which the outbound
        # client (429 and 5xx only) doesn't retry; honour it the same way, within the call's time.
        if wait is not None and attempts < call.http.max_retries and wait <= min(call.http.max_retry_after,
                                                                                 call.http.remaining() - 1):
            time.sleep(wait)
            attempts += 1
            continue
        raise ToolError(describe_error(response, not_found=not_found))


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None and v != ""}


def _unauthorized(call: CallContext) -> str:
    message = "GitHub refused the token (HTTP 401 Bad credentials): it is wrong, expired or was revoked"
    connection = call.connection
    if connection is None:  # checking credentials before they are saved
        return message
    # Usually the failed refresh has already marked it; a token refused even after a successful
    # refresh must not leave the connection looking healthy either.
    call.credentials_rejected(message)
    who = "its owner was" if connection.owner_id is not None else "the organization's owners and admins were"
    return (f"{message}, and it could not be refreshed. The connection {connection.name!r} now needs "
            f"re-authorization; {who} notified and must reconnect it on the Connections page")


def _secondary_limit_wait(response: Response) -> float | None:
    if response.status != 403 or response.headers.get("x-ratelimit-remaining") == "0":
        return None
    return retry_after_seconds(response.headers.get("retry-after"))


def describe_error(response: Response, *, not_found: str = "") -> str:
    if response.status == 404 and not_found:
        return f"GitHub answered HTTP 404: {not_found}"
    if response.status in (403, 429) and response.headers.get("x-ratelimit-remaining") == "0":
        return f"GitHub's API rate limit for this connection is used up{_reset_at(response)}; try again later"
    if response.status in (403, 429) and response.headers.get("retry-after"):
        return (f"GitHub's secondary rate limit: it asked to wait {response.headers['retry-after']} s, longer than "
                "this call may take; try again later")
    message = error_message(response, service=SERVICE)
    details = _validation_details(response)
    if details:
        message += f" ({details})"
    if response.status == 403:
        message += "; the connection's token lacks the access this needs"
    return message


def _reset_at(response: Response) -> str:
    reset = response.headers.get("x-ratelimit-reset", "")
    if not reset.isdigit():
        return ""
    when = datetime.fromtimestamp(int(reset), tz=UTC)
    minutes = max(0, round((when.timestamp() - time.time()) / 60))
    return f" until {when:%H:%M} UTC (about {minutes} min)"


def _validation_details(response: Response) -> str:
    """GitHub's 422 names the fields: {"errors": [{"field": "title", "code": "missing_field"}]}."""
    try:
        payload = response.json()
    except HttpError:
        return ""
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for item in errors[:5]:
        if isinstance(item, dict):
            text = item.get("message") or " ".join(str(item[k]) for k in ("field", "code", "value") if item.get(k))
            parts.append(str(text))
        else:
            parts.append(str(item))
    return "; ".join(p for p in parts if p)


def links(response: Response) -> dict[str, str]:
    """The `Link` header's URLs by relation (next, last, prev, first)."""
    found: dict[str, str] = {}
    for url, rels in _LINK.findall(response.headers.get("link", "")):
        for rel in rels.split():
            found[rel] = url
    return found


def page_of(url: str) -> int | None:
    values = parse_qs(urlsplit(url).query).get("page")
    return int(values[0]) if values and values[0].isdigit() else None


def pagination(response: Response, *, page: int, per_page: int, tool: str) -> dict[str, Any]:
    """What the model needs to page on: the next page's number and, when GitHub says, the last."""
    found = links(response)
    info: dict[str, Any] = {"page": page, "per_page": per_page}
    if "next" in found:
        next_page = page_of(found["next"]) or page + 1
        info["next_page"] = next_page
        if "last" in found and page_of(found["last"]):
            info["last_page"] = page_of(found["last"])
        info["more"] = f"There are more results: call {tool} again with page={next_page}."
    else:
        info["next_page"] = None
        info["more"] = "This is the last page."
    return info


def identify(call: CallContext) -> dict[str, Any]:
    """Who the token belongs to (GET /user). Used when a connection is saved and by "Test"."""
    response = request(call, "GET", "/user", not_found=(
        "the API URL doesn't look like GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3)"))
    try:
        data = response.json()
    except HttpError:
        raise ToolError("the API URL answered with something that isn't GitHub's REST API "
                        "(GitHub Enterprise Server: https://HOST/api/v3)") from None
    if not isinstance(data, dict) or not data.get("login"):
        raise ToolError("GitHub's /user answer has no login; is the API URL GitHub's REST API?")
    account: dict[str, Any] = {"login": data["login"], "name": data.get("name") or "", "id": data.get("id")}
    # Classic tokens list what they may do; fine-grained tokens and GitHub App tokens don't.
    if "x-oauth-scopes" in response.headers:
        account["github_scopes"] = response.headers["x-oauth-scopes"]
    return account
