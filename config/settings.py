"""Agentry settings. Everything that varies comes from the environment (see README)."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from config.env import (
    ConfigError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_json_commands,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    # Embedded/dev default: a random key kept under var/ so sessions survive a restart.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Old keys still accepted for signatures (sessions, webhook secrets) while rotating.
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS", [])
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served from /static/, no CDN
    "channels",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "config",
    "accounts",
    "agents",
    "integrations",
    "automations",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "accounts.audit.AuditContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.ratelimit.RateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Last on purpose: see SyncChainMiddleware.
    "config.middleware.SyncChainMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.agentry",
            ],
        },
    },
]

# --------------------------------------------------------------------------- Database and Redis
# Unset → the embedded servers under var/ (config/embedded.py). Set → yours.


def _database_from_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"DATABASE_URL must be a postgres:// URL, got scheme {parsed.scheme!r}")
    query = parse_qs(parsed.query)
    host = query.pop("host", [parsed.hostname or ""])[0]
    options: dict = {k: v[0] for k, v in query.items()}
    # Bind parameters on the server and prepare repeated statements: the run loop sends the same
    # few statements thousands of times, and planning them anew each time costs more than running
    # them. Set AGENTRY_DB_PREPARED_STATEMENTS=0 behind a transaction-mode pooler (pgbouncer).
    if env_bool("AGENTRY_DB_PREPARED_STATEMENTS", True):
        options.setdefault("server_side_binding", True)
        options.setdefault("prepare_threshold", 2)
    pool_max = env_int("AGENTRY_DB_POOL_MAX", 20, minimum=0, maximum=1000)
    if pool_max:
        # Worker threads hand their connection back before every model call, so a small
        # pool serves many waiting runs.
        options["pool"] = {"min_size": 0, "max_size": pool_max, "timeout": 60}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": env_str("AGENTRY_DB_NAME") or unquote(parsed.path.lstrip("/")) or "agentry",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 0,
        "TEST": {"NAME": env_str("AGENTRY_TEST_DB_NAME", "test_agentry")},
    }


DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
EMBEDDED_SERVICES = not DATABASE_URL or not REDIS_URL
if not DATABASE_URL:
    from config import embedded

    DATABASE_URL = embedded.postgres_url()
if not REDIS_URL:
    from config import embedded

    REDIS_URL = embedded.redis_url()

DATABASES = {"default": _database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Tests use their own Redis database and channel prefix so a running dev instance never sees them.
_redis_db = env_str("AGENTRY_REDIS_DB")
if _redis_db is not None:
    if not _redis_db.isdigit() or int(_redis_db) > 15:
        raise ConfigError(f"AGENTRY_REDIS_DB must be 0-15, got {_redis_db!r}")
    REDIS_URL = urlparse(REDIS_URL)._replace(path=f"/{_redis_db}").geturl()
CHANNEL_PREFIX = env_str("AGENTRY_CHANNEL_PREFIX", "agentry")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_PREFIX},
    }
}

# --------------------------------------------------------------------------- Celery
# A worker that stops renewing its lease for this long loses the run to another worker.
RUN_LEASE_SECONDS = env_float("AGENTRY_RUN_LEASE_SECONDS", 15.0, minimum=0.5)
# How often the watchdog looks for runs with expired leases, lost queue messages and deadlines.
WATCHDOG_SECONDS = env_float("AGENTRY_WATCHDOG_SECONDS", 5.0, minimum=0.5)
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("AGENTRY_QUEUE", "agentry")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
# Hard stops for a task that outlives any run's deadline. (The threads pool can't interrupt a
# thread, so deadlines are enforced by the loop and the watchdog; these guard the prefork pool.)
CELERY_TASK_SOFT_TIME_LIMIT = 3600 + 60
CELERY_TASK_TIME_LIMIT = 3600 + 120
# How often the automations tick settles scheduled runs (retries, emails), fires schedules beat
# missed and starts "run finished" triggers.
AUTOMATIONS_POLL_SECONDS = env_float("AGENTRY_AUTOMATIONS_POLL_SECONDS", 5.0, minimum=0.5)
CELERY_BEAT_SCHEDULE = {
    "runs-watchdog": {"task": "agents.runs_watchdog", "schedule": WATCHDOG_SECONDS},
    "automations-tick": {"task": "automations.tick", "schedule": AUTOMATIONS_POLL_SECONDS},
    "audit-purge": {"task": "accounts.audit_purge", "schedule": 24 * 3600},
    "connections-health": {"task": "integrations.connections_health_check", "schedule": 3600},
}
# Audit entries older than this are deleted by a daily job; 0 keeps them forever.
AUDIT_RETENTION_DAYS = env_int("AGENTRY_AUDIT_RETENTION_DAYS", 400, minimum=0)

# --------------------------------------------------------------------------- Auth
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "accounts.backends.RoleBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
# closed: people are added by an organization's admins (or SSO); open: anyone may sign up, verify
# their email and start an organization of their own.
SIGNUP = env_choice("AGENTRY_SIGNUP", "closed", ("closed", "open"))
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
# A self-claimed address (sign-up, an added address) must be verified before it signs anyone in or
# becomes primary. Accounts an administrator made are vouched for: see accounts.adapters.
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Agentry] "
# "Your password was changed", "two-factor authentication was turned off", … to the primary address.
ACCOUNT_EMAIL_NOTIFICATIONS = True
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Agentry"
ACCOUNT_LOGOUT_ON_GET = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Single sign-on (accounts/sso.py): each organization's IdentityProvider rows are allauth's social
# apps, through the adapter; nothing per provider is configured here.
SOCIALACCOUNT_ADAPTER = "accounts.sso.SocialAccountAdapter"
# The identity provider vouches for the address (the provider's email domains are checked); a
# confirmation email on top would only stop the sign-in.
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
# Linking an SSO sign-in to an existing account with the same address is decided per provider by
# the adapter (verified by the provider, a domain it serves, an account only in its organization);
# once linked, later sign-ins find the account by the link.
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10  # seconds, for each call to an identity provider


def _host_or_network(entry: str) -> str:
    import ipaddress
    import re

    try:
        ipaddress.ip_network(entry.strip("[]"), strict=False)
        return entry
    except ValueError:
        pass
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    if len(entry) <= 253 and re.fullmatch(rf"{label}(\.{label})*\.?", entry):
        return entry.lower()
    raise ConfigError(f"AGENTRY_*_ALLOWED_HOSTS entries must be host names, IPs or networks, got {entry!r}")


# Identity providers on loopback or the private network (an on-prem Keycloak or ADFS) are refused
# unless listed here (host names, IPs or CIDRs); public ones need nothing.
SSO_ALLOWED_HOSTS = env_list("AGENTRY_SSO_ALLOWED_HOSTS", [], item=_host_or_network)

# --------------------------------------------------------------------------- API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.permissions.TokenScopes",
        "accounts.permissions.RolePermission",
    ],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "config.openapi.ApiSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "DEFAULT_FILTER_BACKENDS": [],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agentry API",
    "DESCRIPTION": "Build, run and audit tool-using AI agents.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Two models have a `kind` choice set; name their enums instead of letting hashes leak into the API.
    "ENUM_NAME_OVERRIDES": {
        "TriggerKindEnum": "automations.models.Trigger.Kind",
        "ApiKeyKindEnum": "accounts.models.ApiToken.Kind",
        # Integrations, registered APIs and MCP servers share one set: none, api_key, oauth2.
        "AuthTypeEnum": "integrations.catalog.AuthType",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.strip_trailing_slashes",
    ],
}

# --------------------------------------------------------------------------- Models and tools
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
ANTHROPIC_MODELS = env_list("AGENTRY_ANTHROPIC_MODELS", ["claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-4-5"])
ANTHROPIC_MAX_RETRIES = env_int("AGENTRY_ANTHROPIC_MAX_RETRIES", 4, minimum=0, maximum=10)
ANTHROPIC_MAX_TOKENS = env_int("AGENTRY_ANTHROPIC_MAX_TOKENS", 4096, minimum=1)
DEFAULT_MODEL = env_str("AGENTRY_DEFAULT_MODEL") or (ANTHROPIC_MODELS[0] if ANTHROPIC_API_KEY else "demo")
# web_fetch refuses private and loopback addresses unless listed here (host names or CIDRs).
WEB_FETCH_ALLOWED_HOSTS = env_list("AGENTRY_WEB_FETCH_ALLOWED_HOSTS", [])
WEB_FETCH_MAX_BYTES = env_int("AGENTRY_WEB_FETCH_MAX_BYTES", 2_000_000, minimum=1024)
# --------------------------------------------------------------------------- Integrations
def _credential_keys() -> list[str]:
    """Fernet keys for connection credentials, newest first: AGENTRY_CREDENTIAL_KEYS="new,old".
    Encryption uses the first; decryption tries each, so rotating is "prepend a key, run
    `manage.py credentials_rotate`, drop the old key". Never stored in the database."""
    from cryptography.fernet import Fernet

    keys = env_list("AGENTRY_CREDENTIAL_KEYS", [])
    if not keys:
        if env_bool("AGENTRY_HTTPS", env_bool("DJANGO_SECURE", False)):
            raise ConfigError(
                "AGENTRY_HTTPS is on: set AGENTRY_CREDENTIAL_KEYS to a Fernet key (python -c 'from "
                "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            )
        # Embedded/dev default: a key file under var/, beside the dev secret key, outside the database.
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path = VAR_DIR / "credential_key"
        if not path.exists():
            path.write_text(Fernet.generate_key().decode())
            path.chmod(0o600)
        keys = [path.read_text().strip()]
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError:
            raise ConfigError(
                f"AGENTRY_CREDENTIAL_KEYS entry {index + 1} is not a Fernet key (32 url-safe base64 bytes)"
            ) from None
    return keys


CREDENTIAL_KEYS = _credential_keys()
# Connector traffic (GitHub, Slack, Jira, HTTP APIs, MCP servers, mail servers) goes through the same
# address guard as web_fetch; on-premise hosts (GitHub Enterprise, a self-hosted Jira) are listed here.
INTEGRATIONS_ALLOWED_HOSTS = env_list("AGENTRY_INTEGRATIONS_ALLOWED_HOSTS", [], item=_host_or_network)
INTEGRATIONS_MAX_RESPONSE_BYTES = env_int("AGENTRY_INTEGRATIONS_MAX_RESPONSE_BYTES", 5_000_000, minimum=1024)
INTEGRATIONS_TIMEOUT = env_float("AGENTRY_INTEGRATIONS_TIMEOUT", 15.0, minimum=1.0)
INTEGRATIONS_MAX_RETRIES = env_int("AGENTRY_INTEGRATIONS_MAX_RETRIES", 3, minimum=0, maximum=10)
# Longest Retry-After we will sleep through inside one tool call; a longer one fails the call
# with the provider's wait time in the message.
INTEGRATIONS_MAX_RETRY_AFTER = env_float("AGENTRY_INTEGRATIONS_MAX_RETRY_AFTER", 30.0, minimum=0.0)
# Working connections are checked with their provider when their last check is older than this
# (an hourly job, a batch at a time), so a dead token shows before an agent trips on it. 0: never.
INTEGRATIONS_HEALTH_CHECK_HOURS = env_int("AGENTRY_INTEGRATIONS_HEALTH_CHECK_HOURS", 24, minimum=0)


def _oauth_app(slug: str, *, api_url: str, auth_url: str) -> dict[str, str]:
    """An OAuth app registered with the provider, e.g. AGENTRY_GITHUB_CLIENT_ID/_CLIENT_SECRET;
    _API_URL and _AUTH_URL point at an enterprise server (or a test's fake)."""
    prefix = f"AGENTRY_{slug.upper()}"
    app = {
        "client_id": env_str(f"{prefix}_CLIENT_ID", "") or "",
        "client_secret": env_str(f"{prefix}_CLIENT_SECRET", "") or "",
        "api_url": (env_str(f"{prefix}_API_URL", api_url) or api_url).rstrip("/"),
        "auth_url": (env_str(f"{prefix}_AUTH_URL", auth_url) or auth_url).rstrip("/"),
    }
    if bool(app["client_id"]) != bool(app["client_secret"]):
        raise ConfigError(f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET must be set together")
    return app


INTEGRATION_APPS = {
    "github": _oauth_app("github", api_url="https://api.github.com", auth_url="https://github.com"),
    "slack": _oauth_app("slack", api_url="https://slack.com/api", auth_url="https://slack.com"),
    "jira": _oauth_app("jira", api_url="https://api.atlassian.com", auth_url="https://auth.atlassian.com"),
}
# Local MCP servers started as processes (stdio) come only from here, never from user input:
# AGENTRY_MCP_STDIO_SERVERS='{"files": ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv"]}'.
MCP_STDIO_SERVERS = env_json_commands("AGENTRY_MCP_STDIO_SERVERS")

RUN_DEFAULT_TIMEOUT = env_int("AGENTRY_RUN_DEFAULT_TIMEOUT", 300, minimum=5)
# Dotted callables run at start-up that register extra model providers (scripted models for tests
# and benchmarks) through the normal provider boundary.
MODEL_PLUGINS = env_list("AGENTRY_MODEL_PLUGINS", [])

# --------------------------------------------------------------------------- Automations
# Wait before retrying a failed scheduled run: this, then 4x, then 16x (30 s, 2 min, 8 min).
AUTOMATIONS_RETRY_BACKOFF_SECONDS = env_float("AGENTRY_SCHEDULE_RETRY_BACKOFF_SECONDS", 30.0, minimum=0)
# An occurrence this late (everything was down) is recorded as missed instead of run.
AUTOMATIONS_SCHEDULE_GRACE_SECONDS = env_float("AGENTRY_SCHEDULE_GRACE_SECONDS", 1800.0, minimum=60)
# "Run finished" triggers look back at most this far for runs they haven't handled.
AUTOMATIONS_TRIGGER_LOOKBACK_SECONDS = env_float("AGENTRY_TRIGGER_LOOKBACK_SECONDS", 86400.0, minimum=60)
# Base of the links in notification emails.
PUBLIC_URL = env_str("AGENTRY_PUBLIC_URL", "http://localhost:8000")

# --------------------------------------------------------------------------- Email
# Printed to the console in development; sent over SMTP once AGENTRY_SMTP_HOST is set.
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if env_str("AGENTRY_SMTP_HOST")
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = env_str("AGENTRY_SMTP_HOST", "localhost")
EMAIL_PORT = env_int("AGENTRY_SMTP_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("AGENTRY_SMTP_USER", "")
EMAIL_HOST_PASSWORD = env_str("AGENTRY_SMTP_PASSWORD", "")
EMAIL_USE_SSL = env_bool("AGENTRY_SMTP_SSL", EMAIL_PORT == 465)
EMAIL_USE_TLS = env_bool("AGENTRY_SMTP_STARTTLS", EMAIL_PORT == 587 and not EMAIL_USE_SSL)
if EMAIL_USE_SSL and EMAIL_USE_TLS:
    raise ConfigError("AGENTRY_SMTP_SSL and AGENTRY_SMTP_STARTTLS can't both be on")
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("AGENTRY_EMAIL_FROM", "Agentry <agentry@localhost>")

# --------------------------------------------------------------------------- Security
# Production sits behind HTTPS: AGENTRY_HTTPS=1 (or DJANGO_SECURE=1) makes cookies secure, redirects
# http to https and sends HSTS. With it, DJANGO_DEBUG off and a DJANGO_SECRET_KEY of 50+ characters,
# `manage.py check --deploy` is clean. README, "Production security settings".
from csp.constants import NONCE, NONE, SELF  # noqa: E402

HTTPS = env_bool("AGENTRY_HTTPS", env_bool("DJANGO_SECURE", False))
if HTTPS:
    # Every host of a deployment must sign with the same key, so the per-checkout dev key under
    # var/ won't do; a short or Django-generated placeholder key is refused rather than warned about.
    _key = env_str("DJANGO_SECRET_KEY") or ""
    if len(_key) < 50 or len(set(_key)) < 5 or _key.startswith("django-insecure-"):
        raise ConfigError(
            "AGENTRY_HTTPS (or DJANGO_SECURE) is on: set DJANGO_SECRET_KEY to 50+ random characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
# Off only when the proxy in front already redirects http to https.
SECURE_SSL_REDIRECT = env_bool("AGENTRY_SSL_REDIRECT", HTTPS)
# Load balancer health checks speak plain http to the app.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# Behind a TLS-terminating proxy, Django sees http unless it trusts the proxy's header; without this
# the redirect above loops and CSRF rejects the https Origin. Only for a proxy that overwrites the header.
if env_bool("AGENTRY_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("AGENTRY_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("AGENTRY_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("AGENTRY_HSTS_PRELOAD", False)
# Preloading commits the whole registrable domain to https in every browser for months; only its
# owner can decide that, so it stays opt-in and its absence isn't reported by check --deploy.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# No JavaScript reads the CSRF cookie: pages send {{ csrf_token }} (htmx's hx-headers, forms,
# Swagger UI's init script, the browsable API's JSON block).
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Content-Security-Policy (django-csp). No inline script, handler or style anywhere: behaviour lives in
# static/js (data-* attributes, see static/js/ui.js) and sizes are set through the CSSOM, which the
# policy allows. The nonce reaches the header only on pages that use {{ request.csp_nonce }}: today
# just the Swagger UI page (templates/drf_spectacular/swagger_ui.html). config/tests/test_security.py
# fails on inline script, on*= handlers or style= in templates; the browser tests fail on violations.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        # CSP3 'self' also matches ws:/wss: to the same host: the run page's websocket.
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
SPECTACULAR_SETTINGS.update(
    {
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
        # No badge image fetched from validator.swagger.io.
        "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    }
)

# --------------------------------------------------------------------------- Misc
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request without it
# WhiteNoise serves static files from the ASGI app itself; with finders on, no collectstatic is
# needed for `make run`. Production runs `collectstatic` and may turn finders off.
WHITENOISE_USE_FINDERS = env_bool("AGENTRY_STATIC_FINDERS", True)
WHITENOISE_AUTOREFRESH = DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("AGENTRY_LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        # The MCP SDK logs a line per stateless request ("Terminating session: None").
        "mcp": {"level": "WARNING"},
    },
}

# --------------------------------------------------------------------------- Rate limits
# Requests per minute, written "LIMIT" or "LIMIT:BURST" (burst: how many may arrive at once;
# default a fifth of the limit). Tiers are 60, 300 and 1000. See config/ratelimit.py.


def _rate_limit(name: str, value: str) -> tuple[int, int]:
    limit, _, burst = value.strip().partition(":")
    try:
        parsed = (int(limit), int(burst) if burst else max(1, int(limit) // 5))
    except ValueError:
        raise ConfigError(f"{name} must be LIMIT or LIMIT:BURST (requests per minute), got {value!r}") from None
    if min(parsed) < 1:
        raise ConfigError(f"{name} must have a limit and burst of at least 1, got {value!r}")
    return parsed


def _rate_limit_tiers(name: str) -> dict[str, tuple[int, int]]:
    tiers = {}
    for entry in env_list(name, []):
        slug, sep, rate = entry.partition("=")
        if not sep or not slug.strip():
            raise ConfigError(f"{name} must look like 'acme=1000,globex=300:100', got entry {entry!r}")
        tiers[slug.strip()] = _rate_limit(name, rate)
    return tiers


RATE_LIMIT_ENABLED = env_bool("AGENTRY_RATE_LIMIT", True)
# Tokens and signed-in users of organizations without their own tier.
RATE_LIMIT_DEFAULT = _rate_limit("AGENTRY_RATE_LIMIT_TIER", env_str("AGENTRY_RATE_LIMIT_TIER", "1000"))
# Per organization slug: AGENTRY_RATE_LIMIT_TIERS="acme=1000,globex=300:100".
RATE_LIMIT_ORGANIZATIONS = _rate_limit_tiers("AGENTRY_RATE_LIMIT_TIERS")
# Per client address, for requests without a valid token or session (POST /api/auth/token).
RATE_LIMIT_ANONYMOUS = _rate_limit("AGENTRY_RATE_LIMIT_ANONYMOUS", env_str("AGENTRY_RATE_LIMIT_ANONYMOUS", "30:10"))
# Per webhook trigger (/hooks/<id>).
RATE_LIMIT_WEBHOOK = _rate_limit("AGENTRY_RATE_LIMIT_WEBHOOK", env_str("AGENTRY_RATE_LIMIT_WEBHOOK", "300"))
# Redis key prefix; follows the queue so test suites and the dev server don't share buckets.
RATE_LIMIT_NAMESPACE = env_str("AGENTRY_RATE_LIMIT_NAMESPACE") or CELERY_TASK_DEFAULT_QUEUE
# Reverse proxies in front of the app that append to X-Forwarded-For; 0 trusts REMOTE_ADDR only.
RATE_LIMIT_TRUSTED_PROXIES = env_int("AGENTRY_RATE_LIMIT_TRUSTED_PROXIES", 0, minimum=0, maximum=10)
