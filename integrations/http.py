"""The one HTTP client every connector uses for outbound traffic.

Timeouts on every request and a wall-clock deadline for the whole call, a cap on response size,
retries on 429 and 5xx that honour `Retry-After`, one credential refresh on 401, redirects
followed by hand, and every hop through the same address guard as `web_fetch` (on-premise hosts
are allowed with AGENTRY_INTEGRATIONS_ALLOWED_HOSTS). Failures raise `HttpError`/`ToolError`,
which the tool registry turns into observations the model sees.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from django.conf import settings

from integrations.builtin import netguard
from integrations.tools import ToolError

logger = logging.getLogger(__name__)

USER_AGENT = "Agentry/1.0 (+https://github.com/agentry)"
MAX_REDIRECTS = 3
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
HINT = "an operator can allow it with AGENTRY_INTEGRATIONS_ALLOWED_HOSTS"


class HttpError(ToolError):
    """The service answered with an error, or couldn't be reached. The message never includes
    request headers, so no credential can leak through it."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unauthorized(HttpError):
    """401 even after one refresh: the credentials are revoked, expired or wrong."""


class Auth(Protocol):
    def headers(self) -> dict[str, str]:
        """Headers that carry the credentials (Authorization, ...)."""

    def refresh(self) -> bool:
        """Called once after a 401. True when there are new credentials worth one retry."""


@dataclass
class Response:
    status: int
    headers: httpx.Headers
    body: bytes
    url: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.body or b"null")
        except ValueError:
            raise HttpError(f"{self.url} answered with something that isn't JSON (HTTP {self.status})",
                            status=self.status) from None


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class Outbound:
    """One logical call's worth of HTTP: create one per tool call (cheap), use, drop."""

    auth: Auth | None = None
    deadline: float | None = None  # time.monotonic() value; None: timeout * (retries + 1)
    timeout: float = field(default_factory=lambda: float(settings.INTEGRATIONS_TIMEOUT))
    max_bytes: int = field(default_factory=lambda: int(settings.INTEGRATIONS_MAX_RESPONSE_BYTES))
    max_retries: int = field(default_factory=lambda: int(settings.INTEGRATIONS_MAX_RETRIES))
    max_retry_after: float = field(default_factory=lambda: float(settings.INTEGRATIONS_MAX_RETRY_AFTER))
    allowed_hosts: list[str] | None = None
    user_agent: str = USER_AGENT
    # Status of every response received, in order (a call's history shows the last one).
    statuses: list[int] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.timeout * (self.max_retries + 1) + 5
        if self.allowed_hosts is None:
            self.allowed_hosts = list(settings.INTEGRATIONS_ALLOWED_HOSTS)

    @property
    def last_status(self) -> int | None:
        return self.statuses[-1] if self.statuses else None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    # ------------------------------------------------------------------ public API
    def get(self, url: str, **kwargs: Any) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.request("POST", url, **kwargs)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        authenticate: bool = True,
    ) -> Response:
        method = method.upper()
        retry_server_errors = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        refreshed = False
        attempt = 0
        while True:
            response = self._once(method, url, params=params, json=json, data=data, content=content,
                                  headers=headers, authenticate=authenticate)
            if response.status == 401 and authenticate and self.auth is not None and not refreshed:
                refreshed = True
                if self.auth.refresh():
                    continue
            if response.status == 401 and authenticate and self.auth is not None:
                raise Unauthorized(
                    f"{_origin(url)} refused the connection's credentials (HTTP 401); they may have been "
                    "revoked or expired — reconnect the integration", status=401)
            if response.status in RETRY_STATUSES and (response.status == 429 or retry_server_errors):
                if attempt >= self.max_retries:
                    raise HttpError(_gave_up(url, response, attempt), status=response.status)
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if wait is None:
                    wait = min(8.0, 0.5 * 2**attempt)
                if wait > self.max_retry_after or wait > self.remaining() - 1:
                    raise HttpError(
                        f"{_origin(url)} asked us to wait {wait:g} s (HTTP {response.status}); that is longer "
                        "than this call may take, try again later", status=response.status)
                logger.info("%s %s: HTTP %s, retrying in %.2f s", method, _origin(url), response.status, wait)
                time.sleep(wait)
                attempt += 1
                continue
            return response

    # ------------------------------------------------------------------ one request, redirects by hand
    def _once(self, method: str, url: str, *, params, json, data, content, headers, authenticate) -> Response:
        current = netguard.parse_url(httpx.URL(url, params=params) if params else url)
        origin = (current.scheme, current.host, current.port)
        merged = {"User-Agent": self.user_agent, "Accept": "application/json"} | dict(headers or {})
        credentials = self.auth.headers() if authenticate and self.auth is not None else {}
        merged |= credentials
        body_kwargs: dict[str, Any] = {}
        if json is not None:
            body_kwargs["json"] = json
        elif data is not None:
            body_kwargs["data"] = data
        elif content is not None:
            body_kwargs["content"] = content
        if self.remaining() <= 0:
            raise HttpError(f"no time left to call {_origin(url)}")
        # trust_env=False: an environment proxy would resolve the host itself and undo the pinning.
        with httpx.Client(timeout=httpx.Timeout(min(self.timeout, max(0.5, self.remaining()))),
                          follow_redirects=False, trust_env=False) as client:
            for hop in range(MAX_REDIRECTS + 1):
                addresses = netguard.check_url(current, allowed_hosts=self.allowed_hosts, hint=HINT)
                request = netguard.pinned_request(client, method, current, addresses[0], headers=merged)
                if body_kwargs:
                    request = _with_body(client, request, body_kwargs, keep_type="content-type" in
                                         {k.lower() for k in merged})
                self.requests += 1
                try:
                    response = client.send(request, stream=True)
                except httpx.TimeoutException:
                    raise HttpError(f"{_origin(str(current))} did not answer within {self.timeout:g} s") from None
                except httpx.HTTPError as exc:
                    raise HttpError(f"could not reach {_origin(str(current))}: {type(exc).__name__}") from None
                try:
                    location = response.headers.get("location")
                    if response.is_redirect and location and hop < MAX_REDIRECTS:
                        current = netguard.parse_url(current.join(location))
                        if (current.scheme, current.host, current.port) != origin:
                            # Never carry credentials to another origin.
                            for name in [*credentials, "Authorization"]:
                                merged.pop(name, None)
                        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                            method, body_kwargs = "GET", {}
                        continue
                    body = self._read(response, str(current))
                finally:
                    response.close()
                self.statuses.append(response.status_code)
                return Response(status=response.status_code, headers=response.headers, body=body, url=str(current))
        raise HttpError(f"too many redirects calling {_origin(url)}")

    def _read(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise HttpError(f"{_origin(url)} sent {declared} bytes, more than the {self.max_bytes}-byte limit",
                            status=response.status_code)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise HttpError(f"{_origin(url)} sent more than the {self.max_bytes}-byte limit",
                                    status=response.status_code)
                chunks.append(chunk)
                if self.remaining() <= 0:
                    raise HttpError(f"{_origin(url)} was still sending when the call ran out of time")
        except httpx.TimeoutException:
            raise HttpError(f"{_origin(url)} stopped sending for {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise HttpError(f"reading from {_origin(url)} failed: {type(exc).__name__}") from None
        return b"".join(chunks)


def _with_body(client: httpx.Client, request: httpx.Request, body_kwargs: dict[str, Any], *,
               keep_type: bool) -> httpx.Request:
    # The pinned request was built without a body; its framing headers must not survive.
    dropped = ("content-length",) if keep_type else ("content-length", "content-type")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
    return client.build_request(request.method, request.url, headers=headers, extensions=request.extensions,
                                **body_kwargs)


def _origin(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "the service"
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


def _gave_up(url: str, response: Response, attempt: int) -> str:
    return (f"{_origin(url)} answered HTTP {response.status} after {attempt + 1} attempts; "
            "the service is overloaded or failing, try again later")


def error_message(response: Response, *, service: str) -> str:
    """A short description of an error response for the model, using the provider's own message."""
    detail = ""
    try:
        payload = jsonlib.loads(response.body or b"null")
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for key in ("message", "error_description", "error", "errorMessages", "detail"):
            value = payload.get(key)
            if value:
                detail = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
                break
    elif response.body and len(response.body) < 300:
        detail = response.text.strip()
    return f"{service} answered HTTP {response.status}" + (f": {detail[:300]}" if detail else "")
