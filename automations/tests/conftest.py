from __future__ import annotations

import pytest

from agents import services as agent_services
from tests.fakes.smtp_sink import SmtpSink


@pytest.fixture
def make_agent(organization, owner):
    def make(name: str, organization_=None):
        return agent_services.agent_create(
            organization=organization_ or organization, actor=owner, name=name, system_prompt="Do the task.",
            model="demo", tools=[],
        )

    return make


@pytest.fixture
def agent(make_agent):
    return make_agent("Reporter")


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
