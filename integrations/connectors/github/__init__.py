"""GitHub: repositories, issues and pull requests through GitHub's REST API, over OAuth (a GitHub
OAuth app or GitHub App) or a personal access token (github.com or GitHub Enterprise Server)."""

from __future__ import annotations

from typing import Any

from integrations import catalog
from integrations.catalog import AuthType, Category, CredentialField, Integration, Maturity, OAuthSpec, Scope, TokenSet
from integrations.connectors.github import client, tools  # noqa: F401 - importing registers the tools

# GitHub's classic OAuth scopes have no read-only variant for private repositories: reading a
# private repository's issues takes `repo`, which also allows writing. So every scope below asks
# GitHub for `repo`, and the difference between them is enforced by Agentry: an agent holding only
# repo:read gets only the read tools. The descriptions say this plainly.
_HONEST = ("GitHub asks for its \"repo\" permission for this, which on GitHub's side also allows writing; "
           "Agentry itself only lets agents use what you grant here.")

SCOPES = (
    Scope("repo:read", "Read repositories, issues and pull requests the account can see, including private ones. "
                       + _HONEST, provider_scopes=("repo",)),
    Scope("issues:write", "Open issues and comment on issues. " + _HONEST, provider_scopes=("repo",), write=True),
    Scope("pull_requests:write", "Comment on pull requests. " + _HONEST, provider_scopes=("repo",), write=True),
)


def parse_token(payload: dict[str, Any]) -> TokenSet:
    """GitHub answers `scope` comma-separated. A GitHub App's user token answers `"scope": ""`: its
    access comes from the app's permissions, not from scopes, so it is taken at its word for what
    was requested instead of read as "no scopes at all"."""
    from integrations.oauth import parse_standard  # it imports models; this module loads with the registry

    tokens = parse_standard(payload, ",")
    if not str(payload.get("scope") or "").strip():
        return TokenSet(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                        expires_in=tokens.expires_in, provider_scopes=None)
    return tokens


GITHUB = catalog.register(Integration(
    slug="github",
    name="GitHub",
    category=Category.DEVTOOLS,
    status=Maturity.ACTIVE,
    summary="Read repositories, issues and pull requests; comment on them and open issues.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    scopes=SCOPES,
    setup_notes=(
        "OAuth: an operator registers an OAuth app (GitHub → Settings → Developer settings → OAuth Apps) or a "
        "GitHub App with user authorization, sets its callback URL to the one Agentry shows for GitHub, and sets "
        "AGENTRY_GITHUB_CLIENT_ID and AGENTRY_GITHUB_CLIENT_SECRET (for GitHub Enterprise Server also "
        "AGENTRY_GITHUB_AUTH_URL=https://HOST and AGENTRY_GITHUB_API_URL=https://HOST/api/v3). A GitHub App's "
        "expiring tokens are refreshed automatically.\n"
        "Personal access token: create one under GitHub → Settings → Developer settings → Personal access tokens. "
        "A fine-grained token limited to chosen repositories with read-only Issues, Pull requests and Metadata "
        "permissions is the way to get truly read-only access (add Issues and Pull requests write access for the "
        "write tools); a classic token needs the \"repo\" scope for private repositories. For GitHub Enterprise "
        "Server, also give the API URL, e.g. https://ghe.example.com/api/v3."
    ),
    oauth=OAuthSpec(
        authorize_url=lambda app: f"{app['auth_url']}/login/oauth/authorize",
        token_url=lambda app: f"{app['auth_url']}/login/oauth/access_token",
        scope_separator=" ",
        parse_token=parse_token,
    ),
    credential_fields=(
        CredentialField("token", "Personal access token", secret=True, kind="password",
                        help="A fine-grained (github_pat_…) or classic (ghp_…) token."),
        CredentialField("api_url", "API URL", secret=False, required=False, kind="url",
                        help="GitHub Enterprise Server only, e.g. https://ghe.example.com/api/v3. "
                             "Leave empty for github.com."),
    ),
    auth_headers=client.auth_headers,
    identify=client.identify,
    icon="github",
))
