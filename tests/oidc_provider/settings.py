"""A real OpenID Connect provider for the single sign-on tests: django-oauth-toolkit with OIDC and
RS256 ID tokens, run as its own Django project in a second process (accounts/tests/test_sso.py starts
it). Everything that varies comes from OP_* environment variables the test fixture sets; its
database is a separate Postgres database on the test server."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("OP_SECRET_KEY", "oidc-provider-for-tests-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "tests.oidc_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.oidc_provider.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["OP_DB_NAME"],
        "USER": os.environ.get("OP_DB_USER", ""),
        "PASSWORD": os.environ.get("OP_DB_PASSWORD", ""),
        "HOST": os.environ.get("OP_DB_HOST", ""),
        "PORT": os.environ.get("OP_DB_PORT", ""),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Both apps run on 127.0.0.1 and cookies ignore the port: distinct names keep the two sessions apart.
SESSION_COOKIE_NAME = "op_sessionid"
CSRF_COOKIE_NAME = "op_csrftoken"
LOGIN_URL = "/login/"

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": Path(os.environ["OP_RSA_KEY_FILE"]).read_text() if os.environ.get("OP_RSA_KEY_FILE")
    else "",
    "OIDC_ISS_ENDPOINT": os.environ.get("OP_ISSUER", ""),
    "PKCE_REQUIRED": True,
    "OAUTH2_VALIDATOR_CLASS": "tests.oidc_provider.validator.GroupsValidator",
    "SCOPES": {"openid": "OpenID Connect", "profile": "Your profile", "email": "Your email address"},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
