"""Pages for the integration catalog and connections. Reads go through integrations.selectors,
writes through integrations.services and integrations.oauth. No page renders a credential:
secret inputs are password fields that never echo their value back."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.roles import Access, Denied, access_for, access_or_403
from agents import selectors as agent_selectors
from config.ui import found_or_404, page_of, role_required
from integrations import oauth, selectors, services
from integrations import tools as tool_registry
from integrations.catalog import AuthType, Category, Integration, Maturity
from integrations.models import Connection, OAuthGrant

VIEW = "integrations.view_connection"
CALLS_PAGE_SIZE = 20
ME, ORGANIZATION = "me", "organization"


# --------------------------------------------------------------------------- forms


class _ConnectForm(forms.Form):
    """Name, owner (admins choose) and scopes; the API-key form adds the integration's fields."""

    name = forms.CharField(max_length=120, required=False, help_text="Default: the integration and the account.",
                           widget=forms.TextInput(attrs={"autocomplete": "off"}))
    owner = forms.ChoiceField(choices=[(ME, "Just me"), (ORGANIZATION, "Organization connection (shared)")],
                              initial=ME, required=False, widget=forms.RadioSelect, label="Who it belongs to")
    scopes = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                       label="What agents may do with it")

    def __init__(self, *args: Any, integration: Integration, can_share: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.integration = integration
        self.fields["scopes"].choices = [(s.name, s.name) for s in integration.scopes]
        # Least privilege: reading is on by default, changing things is the person's choice.
        self.fields["scopes"].initial = [s.name for s in integration.scopes if not s.write]
        if not can_share:
            del self.fields["owner"]

    @property
    def for_organization(self) -> bool:
        return self.cleaned_data.get("owner") == ORGANIZATION

    def scope_options(self) -> list[dict[str, Any]]:
        chosen = set(self["scopes"].value() or [])
        return [{"name": s.name, "description": s.description, "write": s.write, "checked": s.name in chosen,
                 "id": f"{self.prefix or 'id'}-scope-{index}"} for index, s in enumerate(self.integration.scopes)]


class OAuthConnectForm(_ConnectForm):
    def clean_scopes(self) -> list[str]:
        scopes = self.cleaned_data.get("scopes") or []
        if not scopes and self.integration.scopes:
            raise forms.ValidationError("Choose at least one scope.")
        return scopes


class _CredentialFieldsMixin:
    """The integration's credential fields as form fields; secret ones are password inputs."""

    KINDS = {"url": forms.URLInput, "email": forms.EmailInput, "integer": forms.NumberInput}

    def add_credential_fields(self, integration: Integration, *, secrets_required: bool = False) -> None:
        self.credential_names = []
        for item in integration.credential_fields:
            if item.secret or item.kind == "password":
                # Never sent back to the browser, not even after a failed attempt.
                widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
            else:
                widget = self.KINDS.get(item.kind, forms.TextInput)(attrs={"autocomplete": "off"})
            options: dict[str, Any] = {"assume_scheme": "https"} if item.kind == "url" else {}
            field_class = {"url": forms.URLField, "email": forms.EmailField}.get(item.kind, forms.CharField)
            self.fields[item.name] = field_class(label=item.label, help_text=item.help, widget=widget,
                                                 required=item.required or (secrets_required and item.secret),
                                                 max_length=10_000, **options)
            self.credential_names.append(item.name)

    def credential_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.credential_names]

    def add_service_errors(self, exc: ValidationError) -> None:
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for field, messages_ in exc.message_dict.items():
            for message in messages_:
                self.add_error(field if field in self.fields else None, message)


class ApiKeyConnectForm(_CredentialFieldsMixin, _ConnectForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_credential_fields(self.integration)

    def values(self) -> dict[str, Any]:
        return {name: self.cleaned_data.get(name, "") for name in self.credential_names
                if self.cleaned_data.get(name, "") != ""}


class ReplaceCredentialsForm(_CredentialFieldsMixin, forms.Form):
    """New credentials for an API-key connection: every secret again (never pre-filled), the
    settings pre-filled with the connection's current ones."""

    def __init__(self, *args: Any, integration: Integration, connection: Connection, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_credential_fields(integration, secrets_required=True)
        for item in integration.credential_fields:
            if not item.secret and item.name in connection.options:
                self.fields[item.name].initial = connection.options[item.name]

    def values(self) -> dict[str, Any]:
        # Every field the form shows is sent: a setting emptied here is cleared, not kept.
        return {name: self.cleaned_data.get(name) or "" for name in self.credential_names}


# --------------------------------------------------------------------------- helpers


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _integration_or_404(access: Access, slug: str) -> Integration:
    return found_or_404(selectors.integration_get(organization=access.organization, slug=slug), "No such integration.")


def _connection_or_404(access: Access, connection_id: uuid.UUID) -> Connection:
    return found_or_404(selectors.connection_get(viewer=access, connection_id=connection_id), "No such connection.")


def _names(access: Access) -> dict[str, Integration]:
    return {i.slug: i for i in selectors.integration_list(organization=access.organization)}


def _decorate(connection: Connection, access: Access, integrations: dict[str, Integration]) -> Connection:
    """Display values: integration name, whose it is, the last check in words."""
    found = integrations.get(connection.integration)
    connection.integration_name = found.name if found else connection.integration
    connection.integration_known = found is not None
    connection.owner_is_viewer = connection.owner_id == access.user.pk
    if connection.owner_id is None:
        connection.owner_label = "Organization"
    elif connection.owner_id == access.user.pk:
        connection.owner_label = f"you ({connection.owner.get_username()})"
    else:
        connection.owner_label = connection.owner.get_username()
    connection.account_label = _account_label(connection.account)
    return connection


def _account_label(account: dict) -> str:
    if not isinstance(account, dict):
        return ""
    for key in ("login", "name", "email", "user", "team", "display_name"):
        value = account.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _oauth_env_vars(integration: Integration) -> list[str]:
    if integration.organization_id is not None:
        return []  # an organization's own API or MCP server: its OAuth client is set where it was registered
    prefix = f"AGENTRY_{integration.slug.upper().replace('-', '_')}"
    return [f"{prefix}_CLIENT_ID", f"{prefix}_CLIENT_SECRET"]


def _may_connect_at_all(access: Access) -> None:
    """Before reading the form: someone who can connect nothing gets the 403, not a form error."""
    if not access.can("integrations.manage_org_connections"):
        access.require("integrations.add_connection")


def _allowed_to_connect(access: Access, *, for_organization: bool) -> None:
    if for_organization:
        access.require("integrations.manage_org_connections",
                       f"Permission denied: your role ({access.role_label}) can't create the organization's shared "
                       "connections; connect it for yourself instead.")
    else:
        access.require("integrations.add_connection")


def _require_change(access: Access, connection: Connection, verb: str) -> None:
    if not selectors.connection_can_change(viewer=access, connection=connection):
        raise Denied(selectors.connection_act_refusal(viewer=access, connection=connection, verb=verb))


def _require_delete(access: Access, connection: Connection) -> None:
    if not selectors.connection_can_delete(viewer=access, connection=connection):
        raise Denied(selectors.connection_act_refusal(viewer=access, connection=connection, verb="revoke"))


def _callback_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("integrations:oauth-callback"))


def _to_provider(request: HttpRequest, integration: Integration, url: str) -> HttpResponse:
    """A page that navigates to the provider's authorization URL. Browsers apply the
    Content-Security-Policy's form-action 'self' to the redirects after a form submission, so a
    302 from the Connect form to another origin would be blocked."""
    page = render(request, "integrations/oauth_redirect.html", {"integration": integration, "url": url})
    page["Cache-Control"] = "no-store"  # it carries this authorization's state
    return page


# --------------------------------------------------------------------------- catalog


@login_required
@require_GET
@role_required(VIEW)
def catalog(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    search = request.GET.get("q", "").replace("\x00", "").strip()
    category = request.GET.get("category", "")
    category = category if category in Category.values else ""
    status = request.GET.get("status", "")
    status = status if status in Maturity.values else ""
    found = selectors.integration_list(organization=access.organization, category=category, status=status,
                                       search=search)
    connected = selectors.connected_slugs(organization=access.organization, user=request.user)
    tool_counts: dict[str, int] = {}
    for item in tool_registry.for_organization(access.organization.id).values():
        if item.integration:
            tool_counts[item.integration] = tool_counts.get(item.integration, 0) + 1
    cards = []  # Integration is a frozen dataclass: its display values travel beside it
    for integration in found:
        cards.append({
            "integration": integration,
            "category_label": Category(integration.category).label,
            "status_label": Maturity(integration.status).label,
            "auth_labels": [AuthType(a).label for a in integration.auth_types if a in AuthType.values],
            "tool_count": tool_counts.get(integration.slug, 0),
            "connected": connected.get(integration.slug, ""),
        })
    filtered = bool(search or category or status)
    context = {
        "organization": access.organization,
        "cards": cards,
        "search": search,
        "category_filter": category,
        "status_filter": status,
        "categories": Category.choices,
        "statuses": Maturity.choices,
        "filtered": filtered,
        "has_any": bool(cards) or (filtered and bool(selectors.integration_list(organization=access.organization))),
    }
    template = "integrations/_catalog_results.html" if _is_htmx(request) else "integrations/catalog.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _render_detail(request: HttpRequest, access: Access, integration: Integration, *,
                   oauth_form: OAuthConnectForm | None = None, key_form: ApiKeyConnectForm | None = None,
                   status: int = 200) -> HttpResponse:
    can_connect = access.can("integrations.add_connection")
    can_share = access.can("integrations.manage_org_connections")
    offers_oauth = AuthType.OAUTH2 in integration.auth_types and integration.oauth is not None
    offers_key = AuthType.API_KEY in integration.auth_types or (
        AuthType.NONE in integration.auth_types and bool(integration.credential_fields))
    oauth_ready = offers_oauth and integration.oauth_ready()
    if (can_connect or can_share) and oauth_ready and oauth_form is None:
        oauth_form = OAuthConnectForm(prefix="oauth", integration=integration, can_share=can_share)
    if (can_connect or can_share) and offers_key and key_form is None:
        key_form = ApiKeyConnectForm(prefix="key", integration=integration, can_share=can_share)
    integrations = {integration.slug: integration}
    rows = [_decorate(c, access, integrations)
            for c in selectors.connection_list(viewer=access, integration=integration.slug)]
    tools = selectors.integration_tools(organization=access.organization, integration=integration)
    context = {
        "organization": access.organization,
        "integration": integration,
        "category_label": Category(integration.category).label if integration.category in Category.values else "",
        "status_label": Maturity(integration.status).label if integration.status in Maturity.values else "",
        "auth_labels": [AuthType(a).label for a in integration.auth_types if a in AuthType.values],
        "tools": [{"name": t.name, "description": t.description, "side_effect": t.side_effect.value,
                   "scopes": list(t.scopes)} for t in tools],
        "scopes": integration.scopes,
        "needs_connection": selectors.needs_connection(integration),
        "offers_oauth": offers_oauth,
        "oauth_ready": oauth_ready,
        "oauth_env_vars": _oauth_env_vars(integration),
        "offers_key": offers_key,
        "oauth_form": oauth_form,
        "key_form": key_form,
        "can_connect": can_connect or can_share,
        "can_share": can_share,
        "mine": [c for c in rows if c.owner_id == request.user.pk],
        "shared": [c for c in rows if c.owner_id is None],
        "others": [c for c in rows if c.owner_id is not None and c.owner_id != request.user.pk],
    }
    return render(request, "integrations/integration_detail.html", context, status=status)


@login_required
@require_GET
@role_required(VIEW)
def integration_detail(request: HttpRequest, slug: str) -> HttpResponse:
    access = access_or_403(request)
    return _render_detail(request, access, _integration_or_404(access, slug))


@login_required
@require_POST
@role_required(VIEW)
def integration_connect(request: HttpRequest, slug: str) -> HttpResponse:
    """The API-key form: checked with the provider before anything is stored."""
    access = access_or_403(request)
    _may_connect_at_all(access)
    integration = _integration_or_404(access, slug)
    can_share = access.can("integrations.manage_org_connections")
    form = ApiKeyConnectForm(request.POST, prefix="key", integration=integration, can_share=can_share)
    if not form.is_valid():
        return _render_detail(request, access, integration, key_form=form, status=400)
    _allowed_to_connect(access, for_organization=form.for_organization)
    try:
        connection = services.connection_create(
            organization=access.organization, actor=request.user, integration=integration.slug, values=form.values(),
            scopes=form.cleaned_data["scopes"], name=form.cleaned_data["name"], for_organization=form.for_organization,
        )
    except ValidationError as exc:
        form.add_service_errors(exc)
        return _render_detail(request, access, integration, key_form=form, status=400)
    messages.success(request, f"Connected “{connection.name}”. Agents can now use {integration.name} through it.")
    return redirect("integrations:connection-detail", connection_id=connection.id)


@login_required
@require_POST
@role_required(VIEW)
def integration_authorize(request: HttpRequest, slug: str) -> HttpResponse:
    """Start OAuth: record the pending authorization and send the person to the provider."""
    access = access_or_403(request)
    _may_connect_at_all(access)
    integration = _integration_or_404(access, slug)
    can_share = access.can("integrations.manage_org_connections")
    form = OAuthConnectForm(request.POST, prefix="oauth", integration=integration, can_share=can_share)
    if not form.is_valid():
        return _render_detail(request, access, integration, oauth_form=form, status=400)
    _allowed_to_connect(access, for_organization=form.for_organization)
    try:
        url = oauth.start(organization=access.organization, actor=request.user, integration=integration,
                          scopes=form.cleaned_data["scopes"], redirect_uri=_callback_url(request),
                          for_organization=form.for_organization, name=form.cleaned_data["name"])
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return _render_detail(request, access, integration, oauth_form=form, status=400)
    return _to_provider(request, integration, url)


@login_required
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where the provider sends the person back. The state must be one this person started (and
    not used or expired); anything else is an error page and nothing is stored."""
    state = request.GET.get("state", "")
    grant = (OAuthGrant.objects.filter(state=state, user=request.user, used_at__isnull=True)
             .select_related("organization").first() if state else None)
    if grant is not None:
        # The role may have changed since the Connect click; the grant's organization decides.
        access = access_for(user=request.user, organization=grant.organization_id)
        if access is None:
            raise Denied("You are no longer a member of the organization this connection was started in.")
        _allowed_to_connect(access, for_organization=grant.for_organization)
    try:
        connection = oauth.finish(actor=request.user, state=state, code=request.GET.get("code", ""),
                                  error=request.GET.get("error_description") or request.GET.get("error", ""))
    except oauth.OAuthError as exc:
        return render(request, "integrations/oauth_error.html", {"message": str(exc), "grant": grant}, status=400)
    verb = "Reconnected" if grant is not None and grant.reconnect_id else "Connected"
    messages.success(request, f"{verb} “{connection.name}”.")
    return redirect("integrations:connection-detail", connection_id=connection.id)


# --------------------------------------------------------------------------- connections


@login_required
@require_GET
@role_required(VIEW)
def connection_list(request: HttpRequest) -> HttpResponse:
    access = access_or_403(request)
    integrations = _names(access)
    status = request.GET.get("status", "")
    status = status if status in Connection.Status.values else ""
    integration = request.GET.get("integration", "")
    integration = integration if integration in integrations else ""
    owner = request.GET.get("owner", "")
    owner = owner if owner in selectors.OWNER_FILTERS else ""
    page = page_of(request, selectors.connection_list(viewer=access, status=status, integration=integration,
                                                      owner=owner))
    rows = [_decorate(c, access, integrations) for c in page.object_list]
    filtered = bool(status or integration or owner)
    context = {
        "organization": access.organization,
        "page": page,
        "connections": rows,
        "statuses": Connection.Status.choices,
        "integrations": sorted(integrations.values(), key=lambda i: i.name.lower()),
        "status_filter": status,
        "integration_filter": integration,
        "owner_filter": owner,
        "sees_all": access.can("integrations.view_all_connections"),
        "filtered": filtered,
        "page_query": urlencode([(k, v) for k, v in (("status", status), ("integration", integration),
                                                      ("owner", owner)) if v]),
    }
    response = render(request, "integrations/_connection_results.html" if _is_htmx(request)
                      else "integrations/connection_list.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
@role_required(VIEW)
def connection_detail(request: HttpRequest, connection_id: uuid.UUID) -> HttpResponse:
    access = access_or_403(request)
    connection = _decorate(_connection_or_404(access, connection_id), access, _names(access))
    calls = page_of(request, selectors.connection_calls(connection=connection), CALLS_PAGE_SIZE)
    run_ids = {c.run_id for c in calls.object_list if c.run_id}
    visible_runs = set(agent_selectors.run_list(organization=access.organization, viewer=access)
                       .filter(id__in=run_ids).values_list("id", flat=True)) if run_ids else set()
    for call in calls.object_list:
        call.run_visible = call.run_id in visible_runs
    integration = selectors.integration_get(organization=access.organization, slug=connection.integration)
    context = {
        "organization": access.organization,
        "connection": connection,
        "integration": integration,
        "calls": calls,
        "agents": list(selectors.agents_using(connection=connection, viewer=access)),
        "can_change": selectors.connection_can_change(viewer=access, connection=connection),
        "can_delete": selectors.connection_can_delete(viewer=access, connection=connection),
        "can_reconnect": connection.auth_type == AuthType.OAUTH2 and integration is not None
        and integration.oauth_ready() and connection.status != Connection.Status.ACTIVE,
        "can_replace_credentials": integration is not None and not services.credentials_replace_refusal(connection),
        "is_revoked": connection.status == Connection.Status.REVOKED,
    }
    return render(request, "integrations/connection_detail.html", context)


@login_required
@require_POST
@role_required(VIEW)
def connection_test(request: HttpRequest, connection_id: uuid.UUID) -> HttpResponse:
    access = access_or_403(request)
    connection = _connection_or_404(access, connection_id)
    _require_change(access, connection, "test")
    try:
        connection = services.connection_test(connection=connection, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if connection.last_check_ok:
            messages.success(request, f"Test passed: {connection.name} works.")
        else:
            messages.error(request, f"Test failed: {connection.last_error or 'the provider refused the credentials'}")
    return redirect("integrations:connection-detail", connection_id=connection.id)


@login_required
@require_http_methods(["GET", "POST"])
@role_required(VIEW)
def connection_revoke(request: HttpRequest, connection_id: uuid.UUID) -> HttpResponse:
    """GET asks for confirmation; POST deletes the credentials and marks the connection revoked."""
    access = access_or_403(request)
    connection = _decorate(_connection_or_404(access, connection_id), access, _names(access))
    _require_delete(access, connection)
    if request.method == "POST":
        services.connection_revoke(connection=connection, actor=request.user)
        messages.success(request, f"“{connection.name}” revoked: its credentials are deleted and agents that use it "
                                  "will refuse their calls through it.")
        return redirect("integrations:connection-detail", connection_id=connection.id)
    context = {
        "organization": access.organization,
        "connection": connection,
        "agents": list(selectors.agents_using(connection=connection, viewer=access)),
        "already": connection.status == Connection.Status.REVOKED,
    }
    return render(request, "integrations/connection_confirm_revoke.html", context)


@login_required
@require_POST
@role_required(VIEW)
def connection_reconnect(request: HttpRequest, connection_id: uuid.UUID) -> HttpResponse:
    """Authorize again over OAuth, keeping the connection's id, history and agent bindings."""
    access = access_or_403(request)
    connection = _connection_or_404(access, connection_id)
    _require_change(access, connection, "reconnect")
    integration = found_or_404(selectors.integration_get(organization=access.organization,
                                                         slug=connection.integration), "No such integration.")
    if connection.auth_type != AuthType.OAUTH2:
        messages.error(request, f"“{connection.name}” uses an API key: give it new credentials here.")
        return redirect("integrations:connection-credentials", connection_id=connection.id)
    scopes = list(connection.scopes) or [s.name for s in integration.scopes if not s.write]
    try:
        url = oauth.start(organization=access.organization, actor=request.user, integration=integration,
                          scopes=scopes, redirect_uri=_callback_url(request),
                          for_organization=connection.owner_id is None, name=connection.name, reconnect=connection)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("integrations:connection-detail", connection_id=connection.id)
    return _to_provider(request, integration, url)


@login_required
@require_http_methods(["GET", "POST"])
@role_required(VIEW)
def connection_credentials(request: HttpRequest, connection_id: uuid.UUID) -> HttpResponse:
    """GET: the form for an API-key connection's new credentials; POST checks them with the
    provider and saves them, keeping the connection's id, history and agent bindings."""
    access = access_or_403(request)
    connection = _decorate(_connection_or_404(access, connection_id), access, _names(access))
    _require_change(access, connection, "give new credentials to")
    integration = found_or_404(selectors.integration_get(organization=access.organization,
                                                         slug=connection.integration), "No such integration.")
    refusal = services.credentials_replace_refusal(connection)
    if refusal:
        messages.error(request, refusal)
        return redirect("integrations:connection-detail", connection_id=connection.id)
    form = ReplaceCredentialsForm(request.POST if request.method == "POST" else None, integration=integration,
                                  connection=connection)
    if request.method == "POST" and form.is_valid():
        try:
            services.connection_replace_credentials(connection=connection, actor=request.user, values=form.values())
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"New credentials saved for “{connection.name}”: the agents that use it act "
                                      "through them from now on.")
            return redirect("integrations:connection-detail", connection_id=connection.id)
    context = {"organization": access.organization, "connection": connection, "integration": integration,
               "form": form}
    return render(request, "integrations/connection_credentials.html", context,
                  status=400 if form.errors else 200)
