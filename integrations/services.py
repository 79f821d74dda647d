"""Writes for connections: create (API key or OAuth), test, refresh, revoke, call history.

Credentials only ever pass through here on their way into `Connection.secret` (encrypted) or out
to a CallContext; audit entries, errors and logs name the connection, never its secret.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Membership, Organization
from integrations import catalog, crypto
from integrations.catalog import AuthType, Integration, TokenSet
from integrations.http import Unauthorized
from integrations.models import Connection, ConnectionCall, HttpApi, OAuthGrant
from integrations.tools import ToolError

logger = logging.getLogger(__name__)

Status = Connection.Status
CHECK_SECONDS = 20.0


def _integration(slug: str, organization: Organization) -> Integration:
    found = catalog.get(slug, organization.id)
    if found is None:
        raise ValidationError({"integration": [f"Unknown integration {slug!r}."]})
    return found


def _clean_scopes(integration: Integration, scopes: list[str] | None) -> list[str]:
    if scopes is None:
        return integration.scope_names
    unknown = [s for s in scopes if integration.scope(s) is None]
    if unknown:
        raise ValidationError({"scopes": [f"{integration.name} has no scope {', '.join(unknown)}; "
                                          f"choose from {', '.join(integration.scope_names) or 'none'}."]})
    return [s for s in integration.scope_names if s in scopes]


def identify(*, integration: Integration, credentials: dict[str, Any], options: dict[str, Any],
             scopes: list[str], connection: Connection | None = None) -> dict[str, Any]:
    """Ask the provider who these credentials belong to; ToolError (with the provider's reason)
    when they don't work. Used on save and by "Test"."""
    from integrations.calls import context_for

    if integration.identify is None:
        return {}
    context = context_for(integration=integration, connection=connection, credentials=credentials, scopes=set(scopes),
                          options=options, deadline=time.monotonic() + CHECK_SECONDS)
    return integration.identify(context) or {}


@transaction.atomic
def connection_create(
    *,
    organization: Organization,
    actor: AbstractBaseUser,
    integration: str,
    values: dict[str, Any],
    scopes: list[str] | None = None,
    name: str = "",
    for_organization: bool = False,
) -> Connection:
    """An API-key (or no-auth) connection, checked with the provider before it is saved."""
    found = _integration(integration, organization)
    auth_type = AuthType.API_KEY if AuthType.API_KEY in found.auth_types else AuthType.NONE
    if auth_type == AuthType.NONE and AuthType.NONE not in found.auth_types:
        raise ValidationError({"integration": [f"{found.name} connects with OAuth; use Connect instead."]})
    secret, options = _credential_values(found, values)
    granted = _clean_scopes(found, scopes)
    try:
        account = identify(integration=found, credentials=secret, options=options, scopes=granted)
    except ToolError as exc:
        raise ValidationError({"credentials": [f"{found.name} did not accept these credentials: {exc}"]}) from None
    connection = Connection.objects.create(
        organization=organization, integration=found.slug, owner=None if for_organization else actor,
        name=(name or _default_name(found, account)).strip()[:120], auth_type=auth_type, scopes=granted,
        secret=crypto.encrypt(secret) if secret else "", account=account, options=options,
        last_checked_at=timezone.now(), last_check_ok=True, created_by=actor,
    )
    _audit_create(connection, actor, method="api_key")
    return connection


def _credential_values(integration: Integration, values: dict[str, Any], *,
                       current_options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A credentials form's values as (secret, options), or a ValidationError by field.

    With `current_options` (new credentials for an existing connection) every secret field is
    required, since the old secret is replaced whole, and a setting left out keeps its current
    value; one sent blank is cleared (or refused when required)."""
    errors: dict[str, list[str]] = {}
    secret: dict[str, Any] = {}
    options: dict[str, Any] = dict(current_options or {})
    replacing = current_options is not None
    known = {f.name for f in integration.credential_fields}
    for extra in sorted(set(values) - known):
        errors[extra] = [f"{integration.name} takes no field {extra!r}."]
    for item in integration.credential_fields:
        if replacing and not item.secret and item.name not in values and item.name in options:
            continue
        value = values.get(item.name)
        value = value.strip() if isinstance(value, str) else value
        if value in (None, ""):
            options.pop(item.name, None)
            if item.required or (replacing and item.secret):
                errors[item.name] = ["This field is required."]
            continue
        if item.kind == "integer":
            try:
                value = int(value)
            except (TypeError, ValueError):
                errors[item.name] = ["Enter a whole number."]
                continue
        (secret if item.secret else options)[item.name] = value
    if errors:
        raise ValidationError(errors)
    return secret, options


def credentials_replace_refusal(connection: Connection) -> str:
    """Why this connection can't be given new credentials ("" when it can)."""
    if connection.status == Status.REVOKED:
        return "Revoked connections can't be brought back; connect again."
    if connection.auth_type == AuthType.OAUTH2:
        return "This connection signs in with OAuth: use Reconnect to authorize it again."
    if connection.auth_type != AuthType.API_KEY:
        return "This connection has no credentials to replace."
    return ""


@transaction.atomic
def connection_replace_credentials(*, connection: Connection, actor: AbstractBaseUser,
                                   values: dict[str, Any]) -> Connection:
    """New credentials for an API-key connection (a rotated token, a changed password), checked with
    the provider before anything is saved. The connection keeps its id, call history and the agents
    bound to it; a non-secret setting left out of `values` keeps its current value."""
    connection = Connection.objects.get(id=connection.id)
    refusal = credentials_replace_refusal(connection)
    if refusal:
        raise ValidationError({"connection": [refusal]})
    found = _integration(connection.integration, connection.organization)
    if AuthType.API_KEY not in found.auth_types:
        raise ValidationError({"connection": [f"{found.name} no longer connects with an API key; connect again."]})
    secret, options = _credential_values(found, values, current_options=dict(connection.options))
    try:
        # Checked as a would-be connection (connection=None): a refusal here must not mark the
        # current one "needs re-authorization" or email its owner.
        account = identify(integration=found, credentials=dict(secret), options=dict(options),
                           scopes=list(connection.scopes))
    except ToolError as exc:
        raise ValidationError({"credentials": [f"{found.name} did not accept these credentials: {exc}"]}) from None
    # Locked only now, not across the provider check: runs record their calls on this row.
    connection = Connection.objects.select_for_update().get(id=connection.id)
    if connection.status == Status.REVOKED:  # revoked while the provider was being asked
        raise ValidationError({"connection": [credentials_replace_refusal(connection)]})
    now = timezone.now()
    connection.secret = crypto.encrypt(secret) if secret else ""
    connection.options = options
    connection.account = account
    connection.status = Status.ACTIVE
    connection.last_error = ""
    connection.last_checked_at = now
    connection.last_check_ok = True
    connection.expires_at = None
    connection.save()
    audit_record(action="connection.reauthorize", actor=actor, organization_id=connection.organization_id,
                 target=connection, data={"integration": connection.integration, "method": "api_key"})
    return connection


def _default_name(integration: Integration, account: dict[str, Any]) -> str:
    who = account.get("login") or account.get("name") or account.get("email") or account.get("team")
    return f"{integration.name} ({who})" if who else integration.name


def _audit_create(connection: Connection, actor, *, method: str) -> None:
    audit_record(action="connection.create", actor=actor, organization_id=connection.organization_id,
                 target=connection, data={"integration": connection.integration, "method": method,
                                          "scopes": list(connection.scopes),
                                          "owner": "organization" if connection.owner_id is None else "personal"})


@transaction.atomic
def connection_from_tokens(*, grant: OAuthGrant, tokens: TokenSet, actor: AbstractBaseUser) -> Connection:
    """Store what an OAuth authorization returned (a new connection, or new tokens for one that
    needed re-authorization)."""
    integration = _integration(grant.integration, grant.organization)
    granted = integration.scopes_granted_by(tokens.provider_scopes, list(grant.scopes))
    if not granted:
        # A connection that holds nothing would only ever refuse; say so now, not at the first run.
        raise ValidationError({"scopes": [f"{integration.name} granted none of the access asked for "
                                          f"({', '.join(grant.scopes)}); nothing was saved. Connect again and "
                                          "approve the requested permissions."]})
    credentials = {"access_token": tokens.access_token}
    if tokens.refresh_token:
        credentials["refresh_token"] = tokens.refresh_token
    options = dict(tokens.extra)
    try:
        account = identify(integration=integration, credentials=dict(credentials), options=options, scopes=granted)
    except ToolError as exc:
        message = f"{integration.name} issued a token that does not work: {exc}"
        raise ValidationError({"credentials": [message]}) from None
    expires_at = timezone.now() + timedelta(seconds=tokens.expires_in) if tokens.expires_in else None
    fields = {"secret": crypto.encrypt(credentials), "scopes": granted, "expires_at": expires_at, "account": account,
              "options": options, "status": Status.ACTIVE, "last_error": "", "last_checked_at": timezone.now(),
              "last_check_ok": True, "revoked_at": None, "revoked_by": None}
    if grant.reconnect_id is not None:
        connection = Connection.objects.select_for_update().get(id=grant.reconnect_id)
        for key, value in fields.items():
            setattr(connection, key, value)
        connection.save()
        audit_record(action="connection.reauthorize", actor=actor, organization_id=connection.organization_id,
                     target=connection, data={"integration": connection.integration, "scopes": granted})
        return connection
    connection = Connection.objects.create(
        organization=grant.organization, integration=integration.slug,
        owner=None if grant.for_organization else actor, name=(grant.name or _default_name(integration, account))[:120],
        auth_type=AuthType.OAUTH2, created_by=actor, **fields,
    )
    _audit_create(connection, actor, method="oauth2")
    return connection


@transaction.atomic
def connection_revoke(*, connection: Connection, actor: AbstractBaseUser | None) -> Connection:
    """Delete the credentials and mark the connection revoked. Agents bound to it refuse their next
    call through it with a message naming it."""
    connection = Connection.objects.select_for_update().get(id=connection.id)
    if connection.status == Status.REVOKED:
        return connection
    connection.secret = ""
    connection.status = Status.REVOKED
    connection.revoked_at = timezone.now()
    connection.revoked_by = actor if getattr(actor, "is_authenticated", False) else None
    connection.expires_at = None
    connection.save()
    audit_record(action="connection.revoke", actor=actor, organization_id=connection.organization_id,
                 target=connection, data={"integration": connection.integration})
    return connection


def connection_test(*, connection: Connection, actor: AbstractBaseUser | None) -> Connection:
    """Call the provider with the stored credentials and record the outcome (status, last check)."""
    if connection.status == Status.REVOKED:
        raise ValidationError({"connection": ["This connection was revoked; connect again instead."]})
    integration = _integration(connection.integration, connection.organization)
    ok, error, needs_reauth, account = True, "", False, None
    try:
        credentials = crypto.decrypt(connection.secret)
        account = identify(integration=integration, credentials=credentials, options=dict(connection.options),
                           scopes=list(connection.scopes), connection=connection)
    except crypto.CredentialsUnreadable as exc:
        ok, error = False, str(exc)
    except Unauthorized as exc:
        ok, error, needs_reauth = False, str(exc), True
    except ToolError as exc:
        ok, error = False, str(exc)
    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(id=connection.id)
        connection.last_checked_at = timezone.now()
        connection.last_check_ok = ok
        connection.last_error = error[:1000]
        if account:
            connection.account = account
        if connection.status != Status.REVOKED:
            if ok:
                connection.status = Status.ACTIVE
            elif connection.status == Status.ACTIVE and not needs_reauth:
                connection.status = Status.ERROR
        connection.save()
        if needs_reauth and connection.status != Status.REVOKED:
            _needs_reauth(connection, error)  # status, audit entry and the owner's email (once)
        if actor is not None:  # the periodic check's outcome shows on the connection, not in the log
            audit_record(action="connection.test", actor=actor, organization_id=connection.organization_id,
                         target=connection, data={"ok": ok})
    return connection


def connections_health_check(*, batch: int = 50) -> dict[str, int]:
    """Check the working connections whose last check is older than INTEGRATIONS_HEALTH_CHECK_HOURS,
    oldest first, a batch at a time. A broken one turns "error" or "needs re-authorization" (its
    owner notified) before an agent needs it."""
    hours = int(settings.INTEGRATIONS_HEALTH_CHECK_HOURS)
    if not hours:
        return {"checked": 0, "failed": 0}
    stale = timezone.now() - timedelta(hours=hours)
    due = (Connection.objects.filter(status__in=[Status.ACTIVE, Status.ERROR])
           .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=stale))
           .order_by(F("last_checked_at").asc(nulls_first=True)).values_list("id", flat=True)[:batch])
    checked = failed = 0
    for connection_id in list(due):
        connection = Connection.objects.select_related("organization").filter(id=connection_id).first()
        if connection is None:
            continue
        connection = connection_test(connection=connection, actor=None)
        checked += 1
        failed += not connection.last_check_ok
    return {"checked": checked, "failed": failed}


def connection_refresh(*, connection_id: Any) -> dict[str, Any] | None:
    """Exchange the refresh token for new tokens. Returns the new credentials, or None after
    marking the connection "needs re-authorization" and notifying its owner. Serialised per
    connection, so two calls that see a 401 at once refresh once."""
    from integrations import oauth

    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(id=connection_id)
        if connection.status == Status.REVOKED:
            return None
        credentials = crypto.decrypt(connection.secret)
        integration = catalog.get(connection.integration, connection.organization_id)
        refresh_token = credentials.get("refresh_token")
        if integration is None or integration.oauth is None or not refresh_token:
            reason = "the provider refused the credentials (HTTP 401) and they can't be refreshed"
        else:
            try:
                tokens = oauth.refresh(integration=integration, refresh_token=refresh_token,
                                       connection_options=dict(connection.options))
            except oauth.OAuthError as exc:
                reason = f"refreshing the token failed: {exc}"
            else:
                credentials = {"access_token": tokens.access_token,
                               "refresh_token": tokens.refresh_token or refresh_token}
                connection.secret = crypto.encrypt(credentials)
                connection.expires_at = (timezone.now() + timedelta(seconds=tokens.expires_in)
                                         if tokens.expires_in else None)
                connection.status = Status.ACTIVE
                connection.last_error = ""
                connection.save()
                audit_record(action="connection.refresh", organization_id=connection.organization_id,
                             target=connection, data={"integration": connection.integration})
                return credentials
        _needs_reauth(connection, reason)
    return None


def _needs_reauth(connection: Connection, reason: str) -> None:
    """Surface a broken connection: status, audit entry and an email to whoever can fix it."""
    first_time = connection.status != Status.NEEDS_REAUTH
    connection.status = Status.NEEDS_REAUTH
    connection.last_error = reason[:1000]
    connection.save(update_fields=["status", "last_error", "updated_at"])
    if not first_time:
        return
    audit_record(action="connection.needs_reauth", organization_id=connection.organization_id, target=connection,
                 data={"integration": connection.integration, "reason": reason[:300]})
    if connection.owner_id is not None:
        recipients = [connection.owner.email]
    else:
        recipients = list(Membership.objects.filter(
            organization_id=connection.organization_id, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN],
        ).values_list("user__email", flat=True))
    recipients = [r for r in recipients if r]
    if recipients:
        subject = f"[Agentry] Reconnect {connection.name}: it needs re-authorization"
        body = (f"The connection \"{connection.name}\" stopped working: {reason}.\n\n"
                "Agents that use it will refuse their calls through it until someone reconnects it on the "
                "Connections page (/connections/).")
        transaction.on_commit(lambda: _mail(subject, body, recipients))


def _mail(subject: str, body: str, recipients: list[str]) -> None:
    try:
        send_mail(subject, body, None, recipients)
    except Exception:  # noqa: BLE001 - a mail outage must not break the run that noticed the problem
        logger.warning("could not send the re-authorization notice", exc_info=True)


def connection_mark_needs_reauth(*, connection_id: Any, reason: str) -> None:
    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(id=connection_id)
        # Already marked (say by the failed refresh that came first): its reason stands.
        if connection.status not in (Status.REVOKED, Status.NEEDS_REAUTH):
            _needs_reauth(connection, reason)


def connection_call_record(*, connection_id: Any, run_id: Any, tool: str, outcome: str, status_code: int | None,
                           duration_ms: int, detail: str = "") -> ConnectionCall:
    now = timezone.now()
    with transaction.atomic():
        call = ConnectionCall.objects.create(connection_id=connection_id, run_id=run_id, tool=tool, outcome=outcome,
                                             status_code=status_code, duration_ms=duration_ms, detail=detail[:500])
        if outcome != ConnectionCall.Outcome.REFUSED:
            Connection.objects.filter(id=connection_id).update(last_used_at=now)
    return call


def credentials_rotate() -> int:
    """Re-encrypt every stored credential with the newest key in AGENTRY_CREDENTIAL_KEYS."""
    count = 0
    for model in (Connection, OAuthGrant, HttpApi):  # HttpApi: an OAuth client secret
        for pk in model.objects.exclude(secret="").values_list("pk", flat=True).iterator():
            with transaction.atomic():
                row = model.objects.select_for_update().get(pk=pk)
                row.secret = crypto.rotate(row.secret)
                row.save(update_fields=["secret"])
                count += 1
    return count
