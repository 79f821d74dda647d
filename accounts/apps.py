from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from django.contrib.auth.models import Group
        from django.db.models.signals import m2m_changed, post_migrate

        from accounts import signals  # noqa: F401 - connects the audit receivers
        from accounts.roles import groups_sync, role_permissions

        post_migrate.connect(groups_sync, dispatch_uid="accounts.groups_sync")
        m2m_changed.connect(lambda **_: role_permissions.clear(), sender=Group.permissions.through, weak=False,
                            dispatch_uid="accounts.role_permissions_clear")
