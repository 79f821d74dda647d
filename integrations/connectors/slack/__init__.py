"""Slack: list channels, read history and post messages, as the person who connected it.

OAuth asks for *user* token scopes (`user_scope`), so an agent acts as the person running it and
sees only what they can see. Pasting a bot (xoxb-) or user (xoxp-) token works too."""

from __future__ import annotations

from integrations import catalog
from integrations.catalog import AuthType, Category, CredentialField, Integration, Maturity, OAuthSpec, Scope
from integrations.connectors.slack import client, tools  # noqa: F401 - importing tools registers them

SLACK = catalog.register(Integration(
    slug="slack",
    name="Slack",
    category=Category.COMMUNICATION,
    status=Maturity.ACTIVE,
    summary="List channels, read channel history and post messages in a Slack workspace.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    scopes=(
        Scope("channels:read", "See the workspace's public channels: names, topics and member counts.",
              provider_scopes=("channels:read",)),
        Scope("groups:read", "Also see the private channels the person is a member of (names and topics).",
              provider_scopes=("groups:read",)),
        Scope("channels:history", "Read the messages posted in public channels.",
              provider_scopes=("channels:history",)),
        Scope("chat:write", "Post messages in channels, as the person who connected Slack.",
              provider_scopes=("chat:write",), write=True),
    ),
    setup_notes=(
        "OAuth: create a Slack app (api.slack.com/apps), add Agentry's OAuth callback URL under OAuth & "
        "Permissions, add the user token scopes channels:read, groups:read, channels:history and chat:write, and "
        "set AGENTRY_SLACK_CLIENT_ID and AGENTRY_SLACK_CLIENT_SECRET. Turn on token rotation so tokens expire "
        "after 12 hours and Agentry refreshes them. Without an app, paste a bot token (xoxb-, acts as the bot "
        "and must be invited to channels) or a user token (xoxp-)."
    ),
    oauth=OAuthSpec(
        authorize_url=lambda app: f"{app['auth_url']}/oauth/v2/authorize",
        token_url=lambda app: f"{app['api_url']}/oauth.v2.access",
        scope_param="user_scope",
        scope_separator=",",
        parse_token=client.parse_token,
    ),
    credential_fields=(
        CredentialField("token", "Bot or user token", help="Starts with xoxb- (bot) or xoxp- (user).",
                        kind="password"),
    ),
    auth_headers=client.headers,
    identify=client.identify,
))
