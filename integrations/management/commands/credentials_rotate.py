from __future__ import annotations

from django.core.management.base import BaseCommand

from integrations.services import credentials_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored connection credential with the first key of AGENTRY_CREDENTIAL_KEYS. "
        "Rotation: prepend a new key, run this, then drop the old key."
    )

    def handle(self, *args, **options) -> None:
        count = credentials_rotate()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} credential(s) with the newest key."))
