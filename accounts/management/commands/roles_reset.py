from __future__ import annotations

from django.core.management.base import BaseCommand

from accounts.roles import groups_sync


class Command(BaseCommand):
    help = "Give the six role groups (Owner ... Auditor) their default permissions again."

    def handle(self, *args, **options) -> None:
        groups_sync(reset=True)
        self.stdout.write("Role groups reset to their default permissions.")
