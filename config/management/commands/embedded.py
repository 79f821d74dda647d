from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from config import embedded


class Command(BaseCommand):
    help = "Show or stop the embedded Postgres and Redis under var/ (used when DATABASE_URL/REDIS_URL are unset)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "stop"])

    def handle(self, *args, action: str, **options):
        if action == "status":
            database = settings.DATABASES["default"]
            self.stdout.write(f"database: {database['HOST']} / {database['NAME']}")
            self.stdout.write(f"redis:    {settings.REDIS_URL}")
            self.stdout.write(f"embedded: {'yes' if settings.EMBEDDED_SERVICES else 'no'} (data in {embedded.VAR_DIR})")
            return
        embedded.stop()
        self.stdout.write("embedded Postgres and Redis stopped")
