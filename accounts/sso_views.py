"""Single sign-on pages: organization admins configure their identity providers under
/settings/sso/, and people start a sign-in from the sign-in page (a provider's button, or their
work email sending them to their company's provider).

The two sign-in starts of allauth (/accounts/oidc/<slug>/login/, /accounts/saml/<slug>/login/) are
wrapped here, ahead of allauth's own routes: a turned-off provider gets a clear, audited refusal
instead of a trip to the provider, a provider that can't be reached gets a page instead of a 500,
and the way to the provider is a page that navigates there rather than a redirect (see `_onward`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

import requests
from allauth.account.utils import get_next_redirect_url
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.providers.base import AuthProcess
from allauth.socialaccount.providers.openid_connect import views as oidc_views
from allauth.socialaccount.providers.saml import views as saml_views
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from onelogin.saml2.errors import OneLogin_Saml2_Error

from accounts import sso
from accounts.models import IdentityProvider, Membership
from accounts.roles import access_or_403
from config.ui import found_or_404, role_required

Kind = IdentityProvider.Kind


# --------------------------------------------------------------------------- starting a sign-in


def _unreachable(request: HttpRequest, provider: IdentityProvider, exc: Exception) -> HttpResponse:
    return sso.refuse(
        request, provider=provider, reason="unreachable", status=502,
        message=f"{provider.name} couldn't be reached ({str(exc)[:300] or type(exc).__name__}). "
                "Try again in a moment; if it keeps happening, tell your administrator.",
    )


def _misconfigured(request: HttpRequest, provider: IdentityProvider, exc: Exception) -> HttpResponse:
    return sso.refuse(
        request, provider=provider, reason="misconfigured", status=502,
        message=f"Single sign-on through {provider.name} is not set up correctly ({str(exc)[:300]}). "
                "Tell your administrator.",
    )


def _onward(request: HttpRequest, provider: IdentityProvider, response: HttpResponse) -> HttpResponse:
    """allauth's redirect to the provider, as a page that navigates there.

    Browsers apply the Content-Security-Policy's form-action 'self' to every redirect after a form
    submission, so a 302 from our sign-in form to the provider would be blocked; a navigation from
    a page is not a form submission."""
    location = response.get("Location", "") if isinstance(response, HttpResponseRedirect) else ""
    if not location or url_has_allowed_host_and_scheme(location, allowed_hosts={request.get_host()}):
        return response
    page = render(request, "accounts/sso_redirect.html", {"provider": provider, "url": location})
    page["Cache-Control"] = "no-store"  # it carries this sign-in's state
    return page


def _start(request: HttpRequest, slug: str, kind: str) -> HttpResponse:
    provider = IdentityProvider.objects.select_related("organization").filter(slug=slug, kind=kind).first()
    if provider is None:
        raise Http404("No such sign-in provider.")
    if not provider.enabled:
        return sso.refuse(request, provider=provider, reason="disabled",
                          message=f"Single sign-on through {provider.name} is turned off. Ask your administrator.")
    try:
        if kind == Kind.OIDC:
            return _onward(request, provider, oidc_views.login(request, provider_id=slug))
        return _onward(request, provider, saml_views.login(request, organization_slug=slug))
    except requests.RequestException as exc:
        return _unreachable(request, provider, exc)
    except OneLogin_Saml2_Error as exc:
        return _misconfigured(request, provider, exc)


@require_http_methods(["GET", "POST"])
def oidc_login(request: HttpRequest, provider_id: str) -> HttpResponse:
    return _start(request, provider_id, Kind.OIDC)


@require_http_methods(["GET", "POST"])
def saml_login(request: HttpRequest, organization_slug: str) -> HttpResponse:
    return _start(request, organization_slug, Kind.SAML)


@require_POST
def discover(request: HttpRequest) -> HttpResponse:
    """Work email in, that company's provider's sign-in out."""
    email = request.POST.get("email", "").strip()
    next_url = get_next_redirect_url(request)
    back = reverse("account_login") + (f"?{urlencode({'next': next_url})}" if next_url else "")
    try:
        validate_email(email)
    except ValidationError:
        messages.error(request, "Enter your work email address, like you@example.com.")
        return redirect(back)
    provider = sso.provider_for_email(email)
    if provider is None:
        domain = email.rpartition("@")[2]
        messages.error(request, f"Single sign-on isn't set up for {domain}. Sign in with your password instead.")
        return redirect(back)
    app_provider = get_adapter(request).get_provider(request, provider.slug)
    try:
        if provider.kind == Kind.OIDC:
            auth_params = {**app_provider.get_auth_params(), "login_hint": email}
            response = app_provider.redirect(request, AuthProcess.LOGIN, next_url=next_url, auth_params=auth_params)
        else:
            response = app_provider.redirect(request, AuthProcess.LOGIN, next_url=next_url)
        return _onward(request, provider, response)
    except requests.RequestException as exc:
        return _unreachable(request, provider, exc)
    except OneLogin_Saml2_Error as exc:
        return _misconfigured(request, provider, exc)


# --------------------------------------------------------------------------- the settings form


class IdentityProviderForm(forms.Form):
    """Create or change a provider. The client secret is write-only: never rendered back, and left
    blank it keeps the stored one."""

    kind = forms.ChoiceField(choices=Kind.choices, initial=Kind.OIDC, label="Protocol",
                             widget=forms.Select(attrs={"data-sso-kind": ""}))
    name = forms.CharField(max_length=100, help_text="Shown on the sign-in button, e.g. “Okta”.")
    slug = forms.SlugField(max_length=60, help_text="Part of the sign-in and callback URLs; it can't change later.")
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled",
                                 help_text="Turned off, nobody can sign in through this provider.")
    server_url = forms.URLField(required=False, max_length=200, assume_scheme="https", label="Issuer URL",
                                help_text="e.g. https://example.okta.com or https://login.microsoftonline.com/"
                                          "<tenant>/v2.0; discovery is read from <issuer>/.well-known/"
                                          "openid-configuration.")
    client_id = forms.CharField(required=False, max_length=200, label="Client ID")
    client_secret = forms.CharField(required=False, max_length=500, label="Client secret", strip=False,
                                    widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
    idp_metadata_url = forms.URLField(required=False, max_length=200, assume_scheme="https", label="Metadata URL",
                                      help_text="The provider's SAML metadata; fills in the three fields below.")
    idp_entity_id = forms.CharField(required=False, max_length=300, label="Entity ID")
    idp_sso_url = forms.URLField(required=False, max_length=200, assume_scheme="https", label="Single sign-on URL",
                                 help_text="Where sign-in requests go (HTTP-Redirect binding).")
    idp_x509_cert = forms.CharField(required=False, label="Signing certificate",
                                    widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
                                    help_text="PEM (-----BEGIN CERTIFICATE-----…) or the base64 body.")
    role_claim = forms.CharField(required=False, max_length=100, initial="groups", label="Role claim",
                                 help_text="The claim (SAML: attribute) whose values pick the role, e.g. groups.")
    role_mapping = forms.CharField(
        required=False, label="Role mapping",
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false",
                                     "placeholder": '{"finance-admins": "admin", "engineering": "builder"}'}),
        help_text="JSON: claim value → role (admin, builder, operator, auditor or viewer). When several match, "
                  "the most privileged role wins.",
    )
    default_role = forms.ChoiceField(choices=sso.SSO_ROLE_CHOICES, initial=Membership.Role.VIEWER,
                                     help_text="For people none of whose claim values is mapped.")
    email_domains = forms.CharField(required=False, max_length=2000, label="Email domains",
                                    help_text="Comma-separated, e.g. example.com, example.org. People entering such "
                                              "an address on the sign-in page are sent here, and only these "
                                              "addresses may sign in through this provider. Empty: any address.")

    OIDC_FIELDS = ("server_url", "client_id", "client_secret")
    SAML_FIELDS = ("idp_metadata_url", "idp_entity_id", "idp_sso_url", "idp_x509_cert")

    def __init__(self, *args: Any, instance: IdentityProvider | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None:
            kwargs.setdefault("initial", {
                **{field: getattr(instance, field) for field in sso.EDITABLE_FIELDS},
                "role_mapping": json.dumps(instance.role_mapping, indent=2) if instance.role_mapping else "",
                "email_domains": ", ".join(instance.email_domains),
            })
        super().__init__(*args, **kwargs)
        if instance is not None:
            del self.fields["kind"], self.fields["slug"]
            if instance.client_secret:
                self.fields["client_secret"].help_text = "A secret is stored. Leave blank to keep it."
        if self.kind_value == Kind.OIDC:
            # Optional in general (SAML doesn't use them), required for the protocol at hand.
            self.fields["server_url"].required = True
            self.fields["client_id"].required = True
            self.fields["client_secret"].required = instance is None or not instance.client_secret

    @property
    def kind_value(self) -> str:
        if self.instance is not None:
            return self.instance.kind
        return (self.data.get("kind") if self.is_bound else None) or Kind.OIDC

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        values = dict(data)
        if self.instance is not None:
            values.update(kind=self.instance.kind, slug=self.instance.slug)
        values["client_secret"] = data.get("client_secret") or None
        for field, problems in sso.identity_provider_errors(values, instance=self.instance).items():
            self.add_error(field if field in self.fields else None, problems)
        return data

    def service_values(self) -> dict[str, Any]:
        data = self.cleaned_data
        values = {field: data[field] for field in sso.EDITABLE_FIELDS if field in data}
        values["client_secret"] = data.get("client_secret") or None
        return values

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        for field, problems in errors.items():
            self.add_error(field if field in self.fields else None, problems)


# --------------------------------------------------------------------------- settings pages


def _provider_or_404(request: HttpRequest, provider_id: uuid.UUID) -> IdentityProvider:
    organization = access_or_403(request).organization
    return found_or_404(IdentityProvider.objects.filter(organization=organization, pk=provider_id).first(),
                        "No such identity provider in this organization.")


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, template, {"organization": access_or_403(request).organization, "section": "sso",
                                      **context}, status=status)


@login_required
@require_http_methods(["GET"])
@role_required("accounts.view_identityprovider")
def provider_list(request: HttpRequest) -> HttpResponse:
    organization = access_or_403(request).organization
    providers = IdentityProvider.objects.filter(organization=organization).order_by("name")
    return _page(request, "accounts/sso_list.html", {"providers": providers})


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.add_identityprovider")
def provider_create(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    form = IdentityProviderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        values = form.service_values()
        try:
            provider = sso.identity_provider_create(
                organization=access.organization, actor=request.user, kind=form.cleaned_data["kind"],
                slug=form.cleaned_data["slug"], **values,
            )
        except sso.ProviderInvalid as exc:
            form.add_service_errors(exc.errors)
        else:
            messages.success(request, f"“{provider.name}” added. Register the callback URL below at the provider, "
                                      "then test the connection.")
            return redirect("sso:detail", provider_id=provider.id)
    return _page(request, "accounts/sso_form.html", {"form": form, "provider": None},
                 status=400 if form.is_bound and form.errors else 200)


@login_required
@require_http_methods(["GET"])
@role_required("accounts.view_identityprovider")
def provider_detail(request: HttpRequest, provider_id: uuid.UUID) -> HttpResponse:
    provider = _provider_or_404(request, provider_id)
    return _page(request, "accounts/sso_detail.html", _detail_context(request, provider, checks=None))


def _detail_context(request: HttpRequest, provider: IdentityProvider, checks: list[sso.Check] | None) -> dict:
    labels = dict(Membership.Role.choices)
    mapping = sorted(provider.role_mapping.items()) if isinstance(provider.role_mapping, dict) else []
    return {"provider": provider, "urls": sso.provider_urls(provider, request), "checks": checks,
            "mapping": [(value, labels.get(role, role)) for value, role in mapping]}


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.change_identityprovider")
def provider_edit(request: HttpRequest, provider_id: uuid.UUID) -> HttpResponse:
    provider = _provider_or_404(request, provider_id)
    form = IdentityProviderForm(request.POST or None, instance=provider)
    if request.method == "POST" and form.is_valid():
        try:
            provider = sso.identity_provider_update(provider=provider, actor=request.user, **form.service_values())
        except sso.ProviderInvalid as exc:
            form.add_service_errors(exc.errors)
        else:
            messages.success(request, f"“{provider.name}” saved.")
            return redirect("sso:detail", provider_id=provider.id)
    return _page(request, "accounts/sso_form.html", {"form": form, "provider": provider},
                 status=400 if form.is_bound and form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
@role_required("accounts.delete_identityprovider")
def provider_delete(request: HttpRequest, provider_id: uuid.UUID) -> HttpResponse:
    provider = _provider_or_404(request, provider_id)
    if request.method == "POST":
        name = provider.name
        sso.identity_provider_delete(provider=provider, actor=request.user)
        messages.success(request, f"“{name}” deleted. People who signed in through it keep their accounts.")
        return redirect("sso:list")
    from allauth.socialaccount.models import SocialAccount

    linked = SocialAccount.objects.filter(provider=provider.slug).count()
    return _page(request, "accounts/sso_confirm_delete.html", {"provider": provider, "linked": linked})


@login_required
@require_POST
@role_required("accounts.change_identityprovider")
def provider_test(request: HttpRequest, provider_id: uuid.UUID) -> HttpResponse:
    provider = _provider_or_404(request, provider_id)
    checks = sso.identity_provider_test(provider=provider, actor=request.user)
    context = _detail_context(request, provider, checks=checks)
    if request.headers.get("HX-Request"):
        return _page(request, "accounts/_sso_test_results.html", context)
    return _page(request, "accounts/sso_detail.html", context)
