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


class _BrowserOriginValidator(OriginValidator):
    """Browsers always send Origin, so a cross-site page can't ride a user's session cookie.
    API clients (Bearer tokens) often send none; they carry no ambient credentials to abuse."""

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": _BrowserOriginValidator(
            WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
            settings.ALLOWED_HOSTS,
        ),
    }
)
