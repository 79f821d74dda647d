"""Production hardening: check --deploy, secure cookies, HSTS and redirects from the environment, the
Content-Security-Policy on pages and API responses, and templates the policy can serve unchanged."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
HOST = "agentry.example.com"

EXPECTED_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def production_env(**overrides: str) -> dict[str, str]:
    """The environment of a production start, on the suite's own Postgres and Redis so nothing new
    is started."""
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "AGENTRY_HSTS", "AGENTRY_SSL", "AGENTRY_TRUST"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(45),  # 60 characters
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": HOST,
            "AGENTRY_HTTPS": "1",
            "AGENTRY_CREDENTIAL_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "AGENTRY_RATE_LIMIT": "0",
        }
    )
    env.update(overrides)
    return env


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


# Prints the security settings and what a few requests get back, as JSON.
PROBE = f"""
import json, django
django.setup()
from django.conf import settings
from django.test import Client

client = Client(SERVER_NAME={HOST!r})

def seen(response):
    return {{"status": response.status_code, "location": response.get("Location"),
             "hsts": response.get("Strict-Transport-Security")}}

names = ["SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
         "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER",
         "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE", "X_FRAME_OPTIONS",
         "SECURE_REFERRER_POLICY", "SECURE_CROSS_ORIGIN_OPENER_POLICY"]
print(json.dumps({{
    "settings": {{name: getattr(settings, name, None) for name in names}},
    "http_page": seen(client.get("/agents/")),
    "http_healthz": seen(client.get("/healthz")),
    "https_healthz": seen(client.get("/healthz", secure=True)),
    "proxied_healthz": seen(client.get("/healthz", headers={{"X-Forwarded-Proto": "https"}})),
}}))
"""


def probe(**overrides: str) -> dict:
    result = run_python(production_env(**overrides), "-c", PROBE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def parse_policy(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def without_nonces(policy: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: [v for v in values if not v.startswith("'nonce-")] for name, values in policy.items()}


# ----------------------------------------------------------------------------- deployment settings


def test_check_deploy_passes_under_production_settings():
    result = run_python(production_env(), "manage.py", "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_https_turns_on_secure_cookies_hsts_and_the_redirect():
    seen = probe()

    assert seen["settings"] == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_REFERRER_POLICY": "same-origin",
        "SECURE_CROSS_ORIGIN_OPENER_POLICY": "same-origin",
    }
    assert seen["http_page"]["status"] == 301
    assert seen["http_page"]["location"] == f"https://{HOST}/agents/"
    assert seen["https_healthz"]["hsts"] == "max-age=31536000; includeSubDomains"


def test_health_checks_answer_over_plain_http_behind_the_redirect():
    seen = probe()

    assert seen["http_healthz"]["status"] == 200
    assert seen["http_healthz"]["hsts"] is None  # HSTS only ever goes out over https


def test_a_trusted_proxy_header_marks_requests_secure():
    untrusted = probe()
    trusted = probe(AGENTRY_TRUST_X_FORWARDED_PROTO="1")

    assert untrusted["proxied_healthz"]["hsts"] is None
    assert trusted["settings"]["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert trusted["proxied_healthz"]["hsts"] == "max-age=31536000; includeSubDomains"


def test_hsts_lifetime_subdomains_and_preload_come_from_the_environment():
    seen = probe(AGENTRY_HSTS_SECONDS="600", AGENTRY_HSTS_INCLUDE_SUBDOMAINS="0", AGENTRY_HSTS_PRELOAD="1")

    assert seen["https_healthz"]["hsts"] == "max-age=600; preload"


def test_without_https_development_keeps_plain_cookies_and_no_redirect():
    seen = probe(AGENTRY_HTTPS="0")

    assert seen["settings"]["SESSION_COOKIE_SECURE"] is False
    assert seen["settings"]["SECURE_SSL_REDIRECT"] is False
    assert seen["settings"]["SECURE_HSTS_SECONDS"] == 0
    assert seen["http_page"]["status"] == 302  # to the login page, not to https


@pytest.mark.parametrize(
    "key",
    ["", "too-short", "django-insecure-" + "x1y2z3" * 10, "a" * 60],
    ids=["unset", "short", "django-placeholder", "one-character"],
)
def test_https_refuses_to_start_without_a_long_random_secret_key(key):
    result = run_python(production_env(DJANGO_SECRET_KEY=key), "-c", "import config.settings")

    assert result.returncode != 0
    assert "set DJANGO_SECRET_KEY to 50+ random characters" in result.stderr


def test_https_refuses_to_start_without_a_credential_key_from_the_environment():
    result = run_python(production_env(AGENTRY_CREDENTIAL_KEYS=""), "-c", "import config.settings")

    assert result.returncode != 0
    assert "set AGENTRY_CREDENTIAL_KEYS to a Fernet key" in result.stderr


def test_a_malformed_credential_key_stops_start_up_without_echoing_it():
    result = run_python(production_env(AGENTRY_CREDENTIAL_KEYS="not-a-key-at-all"), "-c", "import config.settings")

    assert result.returncode != 0
    assert "AGENTRY_CREDENTIAL_KEYS entry 1 is not a Fernet key" in result.stderr
    assert "not-a-key-at-all" not in result.stderr


def test_a_malformed_https_flag_stops_start_up():
    result = run_python(production_env(AGENTRY_HTTPS="maybe"), "-c", "import config.settings")

    assert result.returncode != 0
    assert "AGENTRY_HTTPS must be one of" in result.stderr


# ----------------------------------------------------------------------------- content security policy


def test_ui_pages_carry_the_content_security_policy(client, owner):
    client.force_login(owner)

    response = client.get("/agents/")

    assert response.status_code == 200
    assert parse_policy(response["Content-Security-Policy"]) == EXPECTED_POLICY
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_the_sign_in_page_carries_the_policy_too(client, db):  # it lists the SSO providers
    response = client.get("/accounts/login/")

    assert parse_policy(response["Content-Security-Policy"]) == EXPECTED_POLICY


def test_api_responses_carry_the_content_security_policy(owner_api):
    response = owner_api.get("/api/agents")

    assert response.status_code == 200
    assert parse_policy(response["Content-Security-Policy"]) == EXPECTED_POLICY


def test_the_api_docs_are_served_locally_with_a_nonce_for_their_inline_init(client, owner):
    client.force_login(owner)

    response = client.get("/api/docs/")

    html = response.content.decode()
    policy = parse_policy(response["Content-Security-Policy"])
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    assert without_nonces(policy) == EXPECTED_POLICY
    assert f"'nonce-{nonce}'" in policy["script-src"] and f"'nonce-{nonce}'" in policy["style-src"]
    assert html.count(f'nonce="{nonce}"') == 2  # the <style> and the init <script>, nothing else
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn.jsdelivr" not in html and "validator.swagger.io" not in html


def test_each_response_gets_its_own_nonce(client, owner):
    client.force_login(owner)

    first, second = (client.get("/api/docs/")["Content-Security-Policy"] for _ in range(2))

    assert first != second


def test_the_swagger_ui_assets_are_installed_as_static_files():
    from django.contrib.staticfiles import finders

    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css")


# ----------------------------------------------------------------------------- templates

# A {# #} comment ends at the line's end; Django prints a multi-line one as text.
_COMMENTS = re.compile(r"{#[^\n]*?#}|{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", re.S)
_TAG = re.compile(r"<[a-zA-Z][^>]*>", re.S)
_FORBIDDEN_ATTRIBUTES = {
    "an inline event handler": re.compile(r"\son[a-z]+\s*=", re.I),
    "a style attribute": re.compile(r"\sstyle\s*=", re.I),
    "hx-on (needs eval)": re.compile(r"\s(data-)?hx-on", re.I),
    "hx-vars (needs eval)": re.compile(r"\s(data-)?hx-vars\s*=", re.I),
    "a js: value (needs eval)": re.compile(r"\s(data-)?hx-vals\s*=\s*['\"]\s*js:", re.I),
    "a javascript: URL": re.compile(r"=\s*['\"]?\s*javascript:", re.I),
}


def template_files() -> list[Path]:
    folders = [Path(folder) for engine in settings.TEMPLATES for folder in engine["DIRS"]]
    folders += [
        Path(config.path) / "templates" for config in apps.get_app_configs()
        if Path(config.path).is_relative_to(ROOT) and ".venv" not in Path(config.path).parts
    ]
    return sorted(path for folder in folders if folder.is_dir() for path in folder.rglob("*.html"))


def csp_problems(path: Path) -> list[str]:
    source = _COMMENTS.sub("", path.read_text())
    problems = []
    for tag in _TAG.findall(source):
        name = tag[1:].split(None, 1)[0].rstrip(">").lower()
        if name == "script" and not re.search(r"\s(src|nonce)\s*=|type=['\"]application/json", tag):
            problems.append(f"inline <script> without src or nonce: {tag}")
        if name == "style" and not re.search(r"\snonce\s*=", tag):
            problems.append(f"inline <style> without nonce: {tag}")
        problems += [f"{what}: {tag}" for what, pattern in _FORBIDDEN_ATTRIBUTES.items() if pattern.search(tag)]
    return problems


def test_the_template_scan_covers_the_project_and_app_templates():
    names = {path.relative_to(ROOT).as_posix() for path in template_files()}

    assert "templates/base.html" in names
    assert "automations/templates/automations/trigger_form.html" in names


def test_the_template_scan_catches_what_the_policy_would_block(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<script>alert(1)</script><style>p{}</style><a href="javascript:go()">x</a>\n'
        '<button onclick="go()">x</button><div style="width:5%"></div><p hx-on:click="go()"></p>'
        '{# <script>commented out</script> #}{% comment %}<script>this too</script>{% endcomment %}\n'
        '{# a comment over two lines\n is printed: <script>x()</script> #}'
    )

    assert len(csp_problems(bad)) == 7


def test_no_template_needs_inline_script_handlers_or_styles():
    problems = {
        path.relative_to(ROOT).as_posix(): found for path in template_files() if (found := csp_problems(path))
    }

    assert problems == {}
