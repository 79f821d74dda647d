"""Create the relying party (Agentry) and the people who can sign in at the test provider."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application


class Command(BaseCommand):
    help = "Register a confidential OIDC client and create users (username:password:email:group,group)."

    def add_arguments(self, parser):
        parser.add_argument("--client-id", required=True)
        parser.add_argument("--client-secret", required=True)
        parser.add_argument("--redirect-uri", action="append", required=True)
        parser.add_argument("--user", action="append", default=[])

    def handle(self, *args, client_id, client_secret, redirect_uri, user, **options):
        Application.objects.filter(client_id=client_id).delete()
        Application.objects.create(
            name="Agentry", client_id=client_id, client_secret=client_secret,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=" ".join(redirect_uri), algorithm=Application.RS256_ALGORITHM,
            skip_authorization=True,
        )
        for spec in user:
            username, password, email, groups = (spec.split(":") + ["", "", ""])[:4]
            person, _ = User.objects.update_or_create(username=username, defaults={"email": email})
            person.set_password(password)
            person.save()
            person.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups.split(",") if name])
        self.stdout.write(f"client {client_id} and {len(user)} user(s) ready")
