"""Rate limits for the REST API and webhooks: per API token, per signed-in user, per anonymous address.

What is limited
    Every path under ``/api/`` (the schema and Swagger pages too: generating the schema is the most
    expensive GET we serve) and the public webhook endpoint ``/hooks/<id>``. UI pages, the admin,
    static files and ``/healthz``/``/readyz`` are not limited and carry no rate-limit headers: the UI
    is session-bound HTML and probes must never be refused.

Who is counted (one bucket each)
    * ``Authorization: Bearer agt_…`` naming a known token → that token (so a user's scripts don't
      starve each other). The raw token is hashed and mapped to (token id, organization slug) with
      one indexed query, cached in-process for ``_IDENTITY_TTL`` seconds, so a token costs a query
      per process per minute, not per request. Revoked tokens keep their bucket (authentication
      rejects them anyway); unknown tokens fall back to the caller's address, so guessing tokens
      is throttled like any anonymous traffic.
    * a session user (the browser UI calling the API) → that user.
    * anyone else → the client address (an IPv6 address by its /64, which one subscriber usually
      owns whole). This is what guards ``POST /api/auth/token`` against password guessing, so the
      anonymous limit is small. Behind reverse proxies set ``AGENTRY_RATE_LIMIT_TRUSTED_PROXIES`` to
      their number, or everybody shares the proxy's address.
    * ``/hooks/<id>`` → the trigger id: a flood on one integration must not block the others, and
      legitimate senders (GitHub, CI systems) call many triggers from a few shared addresses.

Tiers
    A limit is requests per minute plus a burst (how many may arrive at once); settings spell it
    "LIMIT" or "LIMIT:BURST" and the burst defaults to a fifth of the limit. The product's tiers are
    60, 300 and 1000 per minute. Tokens take their organization's tier (``RATE_LIMIT_ORGANIZATIONS``,
    by slug, from ``AGENTRY_RATE_LIMIT_TIERS="acme=1000,globex=300:100"``), session users the most
    generous tier among their organizations, else ``RATE_LIMIT_DEFAULT``. The tier lives in settings
    until organizations get a billing plan of their own.

Algorithm
    GCRA (the "generic cell rate algorithm", a token bucket that stores one timestamp instead of a
    count and a refill time): each request pushes the bucket's "theoretical arrival time" (TAT) one
    emission interval (60 s / limit) further; a request is refused when that would put the TAT more
    than ``burst`` intervals ahead of now. It runs as one Lua script (``register_script``: EVALSHA,
    one round trip per request) using Redis's clock, so several web servers with skewed clocks share
    a bucket correctly. Refused requests don't move the TAT, so hammering while limited costs nothing
    extra. Keys expire when the bucket is full again.

Headers (on every limited response, 2xx to 5xx and 429)
    ``X-RateLimit-Limit``     the tier: requests per minute.
    ``X-RateLimit-Remaining`` requests that may be sent right now without a 429 (at most the burst).
    ``X-RateLimit-Reset``     seconds (delta, not a timestamp) until the bucket is full again. Delta
                              seconds are immune to clock skew between client and server and match
                              ``Retry-After`` and the IETF RateLimit-header draft (GitHub's epoch
                              seconds are the other common choice).
    A 429 answers with the API's error envelope, code ``rate_limited``, plus ``retry_after`` (whole
    seconds until one request will be accepted) and the same value in a ``Retry-After`` header.

When Redis is unavailable
    The limiter fails open: requests are served, without the three headers (inventing numbers would
    mislead clients), a warning is logged at most once a minute, and Redis is not tried again for
    ``_BACKOFF_SECONDS`` so an outage doesn't add a connect timeout to every request. A rate limiter
    must never be the thing that takes the API down.

Cost
    One EVALSHA on an already open pooled connection per request, plus a SHA-256 of the bearer token
    and a dict lookup; anonymous requests without a session cookie never load a session. Measured on
    loopback Redis: ~50 µs per check in a tight loop, ~0.13 ms added per request through the whole
    Django stack (a cheap API request costs ~0.25 ms without it, real endpoints several ms).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.errors import envelope

logger = logging.getLogger(__name__)

# How long a token's id/organization and a user's organizations are trusted without asking the
# database again. Only the bucket choice depends on it, never authentication.
_IDENTITY_TTL = 60.0
_IDENTITY_CACHE_MAX = 10_000
# After a Redis failure, requests go unlimited this long before Redis is tried again.
_BACKOFF_SECONDS = 2.0
_WARN_EVERY_SECONDS = 60.0
# Generous enough for a loaded Redis, short enough that a hung one can't stall the API.
_REDIS_TIMEOUT = 0.25

# KEYS[1] bucket; ARGV[1] emission interval (µs per request), ARGV[2] burst.
# Returns {allowed, remaining, retry_after_us, reset_us}.
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local window = interval * burst
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
"""


@dataclass(frozen=True)
class Identity:
    kind: str  # "token" | "user" | "anonymous" | "webhook": also the key segment and the 429's details
    key: str
    limit: int
    burst: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until one request will be accepted (0 when allowed)


# --------------------------------------------------------------------------- Redis, lazily, per URL


class _Backend:
    def __init__(self, url: str):
        # One retry, at once: it rides over a connection Redis closed while idle (a restart), and
        # no backoff keeps a real outage from adding sleeps to every request.
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=_REDIS_TIMEOUT,
            socket_connect_timeout=_REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
            retry_on_timeout=False,
        )
        self.script = self.client.register_script(GCRA_SCRIPT)
        self.down_until = 0.0


# Keyed by URL so a changed REDIS_URL (tests pointing it at a closed port) gets its own pool.
_backends: dict[str, _Backend] = {}
_backends_lock = threading.Lock()
_last_warning = 0.0


def _backend() -> _Backend:
    url = settings.REDIS_URL
    backend = _backends.get(url)
    if backend is None:
        with _backends_lock:
            backend = _backends.get(url)
            if backend is None:
                backend = _backends[url] = _Backend(url)
    return backend


def _warn(exc: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY_SECONDS:
        _last_warning = now
        logger.warning("rate limiting is off until Redis answers again (%s: %s)", type(exc).__name__, exc)


def hit(identity: Identity) -> Decision | None:
    """Counts one request against the identity's bucket; None when Redis can't be asked."""
    backend = _backend()
    if time.monotonic() < backend.down_until:
        return None
    interval = max(1, round(60_000_000 / identity.limit))
    key = f"{settings.RATE_LIMIT_NAMESPACE}:rl:{identity.kind}:{identity.key}"
    try:
        allowed, remaining, retry_us, reset_us = backend.script(keys=[key], args=[interval, identity.burst])
    except redis.RedisError as exc:
        backend.down_until = time.monotonic() + _BACKOFF_SECONDS
        _warn(exc)
        return None
    return Decision(
        allowed=bool(allowed),
        limit=identity.limit,
        remaining=int(remaining),
        reset=math.ceil(int(reset_us) / 1_000_000),
        retry_after=max(1, math.ceil(int(retry_us) / 1_000_000)) if not allowed else 0,
    )


# --------------------------------------------------------------------------- who is asking


class _TtlCache:
    """A small in-process map with expiry. Reads take no lock; writes do, to evict safely."""

    def __init__(self, ttl: float, maximum: int):
        self.ttl = ttl
        self.maximum = maximum
        self._data: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        entry = self._data.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry

    def set(self, key, value) -> None:
        with self._lock:
            self._data.pop(key, None)
            while len(self._data) >= self.maximum:
                del self._data[next(iter(self._data))]  # oldest first: dicts keep insertion order
            self._data[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# sha256(raw token) → (token id, organization slug), or None for an unknown token.
_tokens = _TtlCache(_IDENTITY_TTL, _IDENTITY_CACHE_MAX)
# user id → the slugs of the user's organizations.
_user_organizations = _TtlCache(_IDENTITY_TTL, _IDENTITY_CACHE_MAX)


def clear_caches() -> None:
    _tokens.clear()
    _user_organizations.clear()


def _token(raw: str) -> tuple[str, str] | None:
    from accounts.models import ApiToken

    if not raw.startswith(ApiToken.PREFIX):
        return None
    key_hash = ApiToken.hash_key(raw)
    cached = _tokens.get(key_hash)
    if cached is not None:
        return cached[1]
    row = ApiToken.objects.filter(key_hash=key_hash).values_list("id", "organization__slug").first()
    found = (str(row[0]), row[1]) if row else None
    _tokens.set(key_hash, found)
    return found


def _organizations_of(user_id) -> tuple[str, ...]:
    cached = _user_organizations.get(user_id)
    if cached is not None:
        return cached[1]
    from accounts.models import Membership

    slugs = tuple(Membership.objects.filter(user_id=user_id).values_list("organization__slug", flat=True))
    _user_organizations.set(user_id, slugs)
    return slugs


def client_address(request: HttpRequest) -> str:
    """The caller's address, trusting X-Forwarded-For only as far as our own proxies wrote it."""
    address = request.META.get("REMOTE_ADDR") or ""
    proxies = settings.RATE_LIMIT_TRUSTED_PROXIES
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return f"{ipaddress.ip_network(f'{parsed}/64', strict=False).network_address}/64"
    return str(parsed)


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _tier(slugs: tuple[str, ...] | list[str]) -> tuple[int, int]:
    overrides = settings.RATE_LIMIT_ORGANIZATIONS
    tiers = [overrides[slug] for slug in slugs if slug in overrides]
    return max(tiers) if tiers else settings.RATE_LIMIT_DEFAULT


def identify(request: HttpRequest) -> Identity | None:
    """The bucket a request counts against; None for paths that aren't limited."""
    path = request.path_info
    if path.startswith("/hooks/"):
        trigger = path[len("/hooks/"):].strip("/")
        if trigger and "/" not in trigger:
            limit, burst = settings.RATE_LIMIT_WEBHOOK
            return Identity("webhook", trigger[:64], limit, burst)
        return _anonymous(request)
    if not path.startswith("/api/"):
        return None
    raw = _bearer(request)
    if raw is not None:
        token = _token(raw)
        if token is not None:
            limit, burst = _tier((token[1],))
            return Identity("token", token[0], limit, burst)
        return _anonymous(request)
    # Without a session cookie the caller is anonymous; not asking request.user saves loading
    # a session for requests that would never have one.
    user = getattr(request, "user", None) if settings.SESSION_COOKIE_NAME in request.COOKIES else None
    if user is not None and user.is_authenticated:
        # Looking organizations up only when some organization has its own tier keeps the
        # common case free of queries.
        slugs = _organizations_of(user.pk) if settings.RATE_LIMIT_ORGANIZATIONS else ()
        limit, burst = _tier(slugs)
        return Identity("user", str(user.pk), limit, burst)
    return _anonymous(request)


def _anonymous(request: HttpRequest) -> Identity:
    limit, burst = settings.RATE_LIMIT_ANONYMOUS
    return Identity("anonymous", client_address(request), limit, burst)


# --------------------------------------------------------------------------- the middleware


def _set_headers(response: HttpResponse, decision: Decision) -> None:
    response["X-RateLimit-Limit"] = str(decision.limit)
    response["X-RateLimit-Remaining"] = str(decision.remaining)
    response["X-RateLimit-Reset"] = str(decision.reset)


def too_many_requests(request: HttpRequest, identity: Identity, decision: Decision) -> JsonResponse:
    body = envelope(
        request,
        code="rate_limited",
        message=(
            f"Too many requests: the limit is {identity.limit} per minute, in bursts of at most "
            f"{identity.burst}. Retry in {decision.retry_after} s."
        ),
        details={"limit": identity.limit, "burst": identity.burst, "counted_per": identity.kind},
    )
    body["retry_after"] = decision.retry_after
    response = JsonResponse(body, status=429)
    response["Retry-After"] = str(decision.retry_after)
    return response


class RateLimitMiddleware:
    """Sits after AuthenticationMiddleware (it needs request.user) and wraps everything below, so
    responses from views, DRF's error handler and 404s all get the headers."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.RATE_LIMIT_ENABLED:
            return self.get_response(request)
        identity = identify(request)
        if identity is None:
            return self.get_response(request)
        decision = hit(identity)
        if decision is None:
            return self.get_response(request)
        if not decision.allowed:
            response = too_many_requests(request, identity, decision)
        else:
            response = self.get_response(request)
        _set_headers(response, decision)
        return response
