from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fakes.mcp_servers import FakeMcpServer

TOKEN = "mcp-token-7f3a9c2e51"
STDIO_SCRIPT = Path(__file__).resolve().parents[4] / "tests" / "fakes" / "mcp_servers.py"


@pytest.fixture
def fake_mcp(settings):
    """The SDK-built tracker over streamable HTTP, demanding TOKEN; loopback allowed for it."""
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    server = FakeMcpServer(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def stdio_allowed(settings):
    settings.MCP_STDIO_SERVERS = {"tracker": [sys.executable, str(STDIO_SCRIPT)]}
    return settings.MCP_STDIO_SERVERS


@pytest.fixture
def admin(member_with_role):
    return member_with_role("admin", "ada")
