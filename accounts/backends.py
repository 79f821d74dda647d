"""Lets the Django admin see role permissions: a staff user has a permission if one of their
memberships' roles grants it. Which organization's objects they then see is decided per object by
`accounts.admin_scoping.OrganizationScopedAdmin`."""

from __future__ import annotations

from django.contrib.auth.backends import BaseBackend

from accounts.roles import role_permissions


class RoleBackend(BaseBackend):
    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_agentry_role_perms"):
            roles = set(user_obj.memberships.values_list("role", flat=True))
            user_obj._agentry_role_perms = set().union(*(role_permissions.get(r) for r in roles))
        return user_obj._agentry_role_perms

    def has_perm(self, user_obj, perm: str, obj=None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj, app_label: str) -> bool:
        return any(p.startswith(app_label + ".") for p in self.get_all_permissions(user_obj))
