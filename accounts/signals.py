"""Sign-ins, failed sign-ins, sign-outs and changes to how a person proves who they are go to the audit
log: sign-ups, password changes and resets, email addresses verified, added or removed, and two-factor
authenticators turned on or off. allauth sends the signals; the entries land in the person's
organization (none yet for someone who just signed up)."""

from __future__ import annotations

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from accounts import selectors
from accounts.audit import audit_record


def _record(action: str, user, *, actor=None, data: dict | None = None) -> None:
    audit_record(action=action, actor=actor if actor is not None else user,
                 organization=selectors.organization_for(user=user), target=user, data=data)


@receiver(user_logged_in)
def _signed_in(sender, request, user, **kwargs):
    # A single sign-on names the organization whose identity provider let the person in, and how
    # (accounts/sso.py puts it on the request); otherwise it is the person's first organization.
    sso = getattr(request, "agentry_sign_in", None)
    organization = sso["organization"] if sso else selectors.organization_for(user=user)
    audit_record(action="auth.sign_in", actor=user, organization=organization, target=user,
                 data=sso.get("data") if sso else None)


@receiver(user_login_failed)
def _sign_in_failed(sender, credentials, request=None, **kwargs):
    # Never the password: only which login was tried.
    login = str(credentials.get("username") or credentials.get("login") or credentials.get("email") or "")[:150]
    # When the login names someone, their organization's admins see the attempt in their log.
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    person = get_user_model().objects.filter(Q(username=login) | Q(email__iexact=login)).first() if login else None
    audit_record(action="auth.sign_in_failed", data={"login": login}, target=person,
                 organization=selectors.organization_for(user=person) if person is not None else None)


@receiver(user_logged_out)
def _signed_out(sender, request, user, **kwargs):
    if user is not None:
        audit_record(action="auth.sign_out", actor=user, organization=selectors.organization_for(user=user),
                     target=user)


@receiver(account_signals.user_signed_up)
def _signed_up(sender, request, user, **kwargs):
    _record("auth.sign_up", user, data={"email": user.email})


@receiver(account_signals.password_changed)
def _password_changed(sender, request, user, **kwargs):
    _record("auth.password_change", user)


@receiver(account_signals.password_set)
def _password_set(sender, request, user, **kwargs):
    _record("auth.password_set", user)


@receiver(account_signals.password_reset)
def _password_reset(sender, request, user, **kwargs):
    # By email link: whoever followed it controlled the address, so they act as the account.
    _record("auth.password_reset", user)


@receiver(account_signals.email_confirmed)
def _email_verified(sender, request, email_address, **kwargs):
    _record("auth.email_verified", email_address.user, data={"email": email_address.email})


@receiver(account_signals.email_added)
def _email_added(sender, request, user, email_address, **kwargs):
    _record("auth.email_add", user, data={"email": email_address.email})


@receiver(account_signals.email_removed)
def _email_removed(sender, request, user, email_address, **kwargs):
    _record("auth.email_remove", user, data={"email": email_address.email})


@receiver(account_signals.email_changed)
def _primary_email_changed(sender, request, user, from_email_address=None, to_email_address=None, **kwargs):
    _record("auth.email_change", user, data={
        "from": getattr(from_email_address, "email", None), "to": getattr(to_email_address, "email", None)})


@receiver(mfa_signals.authenticator_added)
def _mfa_enabled(sender, request, user, authenticator, **kwargs):
    _record("auth.mfa_enable", user, data={"type": authenticator.type})


@receiver(mfa_signals.authenticator_removed)
def _mfa_disabled(sender, request, user, authenticator, **kwargs):
    _record("auth.mfa_disable", user, data={"type": authenticator.type})


@receiver(mfa_signals.authenticator_reset)
def _recovery_codes_regenerated(sender, request, user, authenticator, **kwargs):
    _record("auth.mfa_reset", user, data={"type": authenticator.type})


@receiver(mfa_signals.authenticator_used)
def _recovery_code_used(sender, request, user, authenticator, **kwargs):
    # A recovery code is single-use and means the person is without their authenticator app: worth a
    # line of its own. TOTP codes are covered by the sign-in entry that follows.
    if authenticator.type == authenticator.Type.RECOVERY_CODES:
        _record("auth.mfa_recovery_code_use", user, data={"reauthentication": bool(kwargs.get("reauthenticated"))})


@receiver(mfa_signals.authentication_failed)
def _mfa_failed(sender, request, user, authenticator, reauthentication=False, **kwargs):
    # The password was right, so the account is known; the actor stays empty since nobody signed in.
    action = "auth.reauthentication_failed" if reauthentication else "auth.sign_in_failed"
    audit_record(action=action, organization=selectors.organization_for(user=user), target=user,
                 data={"login": user.get_username(), "step": "mfa", "type": authenticator.type})
