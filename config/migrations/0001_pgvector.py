from __future__ import annotations

from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    """pgvector backs memory and knowledge search; make sure the extension exists on any Postgres."""

    initial = True
    dependencies: list = []
    operations = [VectorExtension()]
