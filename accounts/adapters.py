"""How allauth's sign-up, sign-in and email verification fit an enterprise install.

Sign-up is closed unless AGENTRY_SIGNUP=open. Email verification is mandatory for addresses people
claim themselves: the one they sign up with (allauth records it as their primary address, unverified)
and any they add later. An account an administrator made (bootstrap, `createsuperuser`, the Django
admin, an import) has an address the administrator typed; it counts as verified ("vouched for") the
first time that person signs in, so nobody an admin added is locked out waiting for an email.
"""

from __future__ import annotations

from allauth.account import stages
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.core.exceptions import ImmediateHttpResponse
from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.response import TemplateResponse
from django.urls import reverse

from accounts import selectors


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        if settings.SIGNUP == "open":
            return True
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "account_signup":
            # A refusal, not a page: 403 tells scripts and monitors the door is shut on purpose.
            raise ImmediateHttpResponse(TemplateResponse(request, "account/signup_closed.html", status=403))
        return False

    def get_login_redirect_url(self, request) -> str:
        if selectors.membership_for(user=request.user) is None:
            return reverse("accounts:welcome")
        return super().get_login_redirect_url(request)

    def get_login_stages(self) -> list[str]:
        return [
            "accounts.adapters.EmailVerificationStage" if path == "allauth.account.stages.EmailVerificationStage"
            else path
            for path in super().get_login_stages()
        ]


def vouch_for_admin_made_email(user) -> EmailAddress | None:
    """Mark the address an administrator gave the account verified, unless the account already has a
    verified address, the person claimed this one at sign-up (then it is their primary address and
    theirs to verify), or another account verified it first."""
    email = (user.email or "").strip()
    addresses = EmailAddress.objects.filter(user_id=user.pk)
    if not email or addresses.filter(verified=True).exists():
        return None
    own = addresses.filter(email__iexact=email).first()
    if own is not None and own.primary:
        return None
    if EmailAddress.objects.filter(email__iexact=email, verified=True).exclude(user_id=user.pk).exists():
        return None
    primary = not addresses.filter(primary=True).exists()
    try:
        with transaction.atomic():
            if own is None:
                return EmailAddress.objects.create(user=user, email=email.lower(), verified=True, primary=primary)
            # allauth copies user.email into an unverified, non-primary record on its own (password
            # reset tokens, for one): that is still the administrator's address, not a claim.
            own.verified, own.primary = True, primary
            own.save(update_fields=["verified", "primary"])
            return own
    except IntegrityError:  # the same account signing in twice at once
        return None


class EmailVerificationStage(stages.EmailVerificationStage):
    def handle(self):
        if not self.login.user.email:
            # An administrator left the address blank: there is nothing to verify, and allauth would
            # stop the sign-in at a "we sent you an email" page that sent nothing. Sign-up always
            # sets an address, so this is never a self-registered account.
            return None, True
        vouch_for_admin_made_email(self.login.user)
        return super().handle()
