"""Fixtures shared by every app's tests: users in two organizations and authenticated API clients."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Membership
from tests.fakes.smtp_sink import SmtpSink

pytest_plugins = ["tests.live"]

PASSWORD = "correct horse battery staple"


@pytest.fixture
def organization(db):
    return account_services.organization_create(name="Acme", slug="acme")


@pytest.fixture
def other_organization(db):
    return account_services.organization_create(name="Globex", slug="globex")


def _user(username: str):
    return get_user_model().objects.create_user(username=username, email=f"{username}@example.com", password=PASSWORD)


@pytest.fixture
def owner(organization):
    user = _user("olivia")
    account_services.membership_add(organization=organization, user=user, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def member(organization):
    user = _user("max")
    account_services.membership_add(organization=organization, user=user, role=Membership.Role.BUILDER)
    return user


@pytest.fixture
def member_with_role(organization):
    """A user of the organization with the given role: member_with_role("viewer")."""

    def make(role: str, username: str | None = None):
        user = _user(username or f"{role}-user")
        account_services.membership_add(organization=organization, user=user, role=role)
        return user

    return make


@pytest.fixture
def outsider(other_organization):
    user = _user("oscar")
    account_services.membership_add(organization=other_organization, user=user, role=Membership.Role.OWNER)
    return user


def client_for(user, organization) -> APIClient:
    _, raw = account_services.api_token_create(user=user, organization=organization)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def owner_api(owner, organization) -> APIClient:
    return client_for(owner, organization)


@pytest.fixture
def member_api(member, organization) -> APIClient:
    return client_for(member, organization)


@pytest.fixture
def outsider_api(outsider, other_organization) -> APIClient:
    return client_for(outsider, other_organization)


@pytest.fixture(autouse=True)
def _no_server_errors():
    """Any request that raises inside a view fails the test: the API never answers 500."""
    from django.core.signals import got_request_exception

    failures: list[str] = []

    def record(sender, request=None, **kwargs):
        failures.append(getattr(request, "path", "?"))

    got_request_exception.connect(record)
    yield
    got_request_exception.disconnect(record)
    assert not failures, f"server error (500) while handling {failures}"


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup, django_db_blocker):
    """Close pooled connections before the test database is dropped, so the pool doesn't try to
    reconnect to a database that is gone."""
    yield
    from django.db import connections

    for connection in connections.all():
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()


@pytest.fixture
def smtp_sink(settings):
    """Django's real SMTP backend, delivering to a loopback SMTP server."""
    sink = SmtpSink().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = sink.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "Agentry <agentry@test.local>"
    yield sink
    sink.stop()
