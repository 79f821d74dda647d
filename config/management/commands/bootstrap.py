from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services as account_services
from accounts.models import Membership, Organization
from agents import services as agent_services
from agents.models import Agent
from config.prompts import load_prompt

EXAMPLES = [
    {
        "name": "Calculator",
        "description": "Answers arithmetic questions with the calculator tool.",
        "prompt": "calculator",
        "tools": ["calculator"],
        "max_steps": 5,
    },
    {
        "name": "Web researcher",
        "description": "Fetches web pages and summarises what they say.",
        "prompt": "web_researcher",
        "tools": ["web_fetch", "calculator"],
        "max_steps": 8,
    },
    {
        "name": "World clock",
        "description": "Tells the date and time anywhere.",
        "prompt": "world_clock",
        "tools": ["current_time"],
        "max_steps": 4,
    },
]


class Command(BaseCommand):
    help = "Create the default organization, the admin user and example agents (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        from django.conf import settings

        user_model = get_user_model()
        organization = Organization.objects.filter(slug="default").first()
        if organization is None:
            organization = account_services.organization_create(name="Default organization", slug="default")

        admin = user_model.objects.filter(username="admin").first()
        if admin is None:
            password = os.environ.get("AGENTRY_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            admin = user_model.objects.create_superuser(username="admin", email="admin@localhost", password=password)
            shown = "from AGENTRY_ADMIN_PASSWORD" if os.environ.get("AGENTRY_ADMIN_PASSWORD") else password
            self.stdout.write(self.style.SUCCESS(f"Created user 'admin' with password: {shown}  (shown once)"))
        account_services.membership_add(organization=organization, user=admin, role=Membership.Role.OWNER)

        if not Agent.objects.filter(organization=organization).exists():
            for example in EXAMPLES:
                agent_services.agent_create(
                    organization=organization,
                    actor=admin,
                    name=example["name"],
                    description=example["description"],
                    system_prompt=load_prompt(f"examples/{example['prompt']}"),
                    model=settings.DEFAULT_MODEL,
                    tools=example["tools"],
                    max_steps=example["max_steps"],
                    timeout_seconds=120,
                )
            self.stdout.write(f"Created {len(EXAMPLES)} example agents in '{organization.name}'.")
