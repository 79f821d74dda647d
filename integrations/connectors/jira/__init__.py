"""Jira Cloud: search with JQL, read, create, comment on and transition issues, as the person who
connected it (Atlassian OAuth 2.0 (3LO)) or through an Atlassian API token."""

from __future__ import annotations

from integrations import catalog
from integrations.catalog import AuthType, Category, CredentialField, Integration, Maturity, OAuthSpec, Scope
from integrations.connectors.jira import client, tools  # noqa: F401 - importing tools registers them

JIRA = catalog.register(Integration(
    slug="jira",
    name="Jira",
    category=Category.PRODUCTIVITY,
    status=Maturity.ACTIVE,
    summary="Search issues with JQL, read them, create issues, comment and move them through their workflow.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    # offline_access rides along with every scope: without it Atlassian issues no refresh token,
    # and the connection would die after an hour.
    scopes=(
        Scope("read:jira-work", "Search and read issues in the projects the person can see: summaries, descriptions, "
                                "comments, statuses and the workflow transitions available.",
              provider_scopes=("read:jira-work", "offline_access")),
        Scope("write:jira-work", "Create issues, add comments and move issues through their workflow, as the person.",
              provider_scopes=("write:jira-work", "offline_access"), write=True),
        Scope("read:jira-user", "See the person's own Jira name and account id (used to label the connection).",
              provider_scopes=("read:jira-user", "offline_access")),
    ),
    setup_notes=(
        "OAuth: create an OAuth 2.0 (3LO) app in the Atlassian developer console, add the Jira API with the scopes "
        "read:jira-work, write:jira-work and read:jira-user, set its callback URL to Agentry's OAuth callback, and set "
        "AGENTRY_JIRA_CLIENT_ID and AGENTRY_JIRA_CLIENT_SECRET. Each connection uses the first Jira site the person "
        "grants. Without an app: an API token (id.atlassian.com → Security → API tokens) with the account's email "
        "and the site URL; it acts with all of that account's rights, and Agentry enforces the scopes chosen here."
    ),
    oauth=OAuthSpec(
        authorize_url=lambda app: f"{app['auth_url']}/authorize",
        token_url=lambda app: f"{app['auth_url']}/oauth/token",
        extra_params=(("audience", "api.atlassian.com"), ("prompt", "consent")),
        token_request="json",
        parse_token=client.parse_token,
    ),
    credential_fields=(
        CredentialField("site_url", "Site URL", secret=False, kind="url",
                        help="Your Jira site, e.g. https://acme.atlassian.net"),
        CredentialField("email", "Atlassian account email", secret=False, kind="email"),
        CredentialField("api_token", "API token", kind="password",
                        help="Create one at id.atlassian.com/manage-profile/security/api-tokens."),
    ),
    auth_headers=client.headers,
    identify=client.identify,
))
