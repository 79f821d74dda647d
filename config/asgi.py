from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from accounts.authentication import WebsocketAuthMiddleware  # noqa: E402
from agents.routing import websocket_urlpatterns  # noqa: E402
from integrations.mcp_server import McpEndpoint, server  # noqa: E402


class _BrowserOriginValidator(OriginValidator):
    """Browsers always send Origin, so a cross-site page can't ride a user's session cookie.
    API clients (Bearer tokens) often send none; they carry no ambient credentials to abuse."""

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


class _Application:
    """Sends /mcp to Agentry's MCP server ahead of Django and answers the ASGI lifespan, which
    neither Django nor Channels speak: startup starts the MCP session manager, shutdown stops it."""

    def __init__(self, application, mcp: McpEndpoint) -> None:
        self.application = application
        self.mcp = mcp

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self.mcp.handles(scope):
            await self.mcp(scope, receive, send)
        else:
            await self.application(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.mcp.start()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
                    await send({"type": "lifespan.startup.failed", "message": f"MCP server: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.mcp.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


application = _Application(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": _BrowserOriginValidator(
                WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
                settings.ALLOWED_HOSTS,
            ),
        }
    ),
    McpEndpoint(server),
)
