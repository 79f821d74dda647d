"""Where a signed-in person with no organization lands: ask an admin, or (with AGENTRY_SIGNUP=open)
start an organization of their own and become its Owner."""

from __future__ import annotations

import secrets

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_http_methods

from accounts import selectors, services
from accounts.audit import audit_record
from accounts.models import Organization


class OrganizationStartForm(forms.Form):
    name = forms.CharField(max_length=200, label="Organization name",
                           help_text="Your company or team. You can invite people once it exists.")

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the organization a name.")
        return name


def _free_slug(name: str) -> str:
    base = slugify(name)[:80] or "org"
    if not Organization.objects.filter(slug=base).exists():
        return base
    return f"{base}-{secrets.token_hex(3)}"


def organization_start(*, name: str, actor: AbstractBaseUser) -> Organization:
    """A new organization with `actor` as its Owner."""
    for _ in range(5):
        try:
            with transaction.atomic():
                organization = services.organization_create(name=name, owner=actor, slug=_free_slug(name))
                audit_record(action="organization.create", actor=actor, organization=organization,
                             target=organization, data={"self_service": True})
                return organization
        except IntegrityError:  # someone took the slug between the check and the insert
            continue
    raise IntegrityError("could not find a free slug for the organization")


@login_required
@require_http_methods(["GET", "POST"])
def welcome(request: HttpRequest) -> HttpResponse:
    if selectors.membership_for(user=request.user) is not None:
        return redirect("/")
    can_start = settings.SIGNUP == "open"
    form = OrganizationStartForm(request.POST or None)
    if request.method == "POST":
        if not can_start:
            raise PermissionDenied("Organizations are created by an administrator here. Ask one to add you.")
        if form.is_valid():
            organization = organization_start(name=form.cleaned_data["name"], actor=request.user)
            request.session["organization_id"] = str(organization.id)
            return redirect("/")
    return render(request, "account/welcome.html", {"form": form, "can_start": can_start},
                  status=400 if form.errors else 200)
