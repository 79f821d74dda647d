"""Sign-ins, failed sign-ins and sign-outs go to the audit log."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from accounts import selectors
from accounts.audit import audit_record


@receiver(user_logged_in)
def _signed_in(sender, request, user, **kwargs):
    organization = selectors.organization_for(user=user)
    audit_record(action="auth.sign_in", actor=user, organization=organization, target=user)


@receiver(user_login_failed)
def _sign_in_failed(sender, credentials, request=None, **kwargs):
    # Never the password: only which login was tried.
    login = credentials.get("username") or credentials.get("login") or credentials.get("email") or ""
    audit_record(action="auth.sign_in_failed", data={"login": str(login)[:150]})


@receiver(user_logged_out)
def _signed_out(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="auth.sign_out", actor=user, organization=selectors.organization_for(user=user),
                     target=user)
