"""Email: send through the mailbox's SMTP server, read and search it over IMAP.

A connection is a mailbox's server settings plus its password (an "API key" connection: checked
by logging in before it is saved). There is no OAuth here; providers that only allow OAuth for
mail (Gmail, Microsoft 365 without app passwords) need an app password or a relay.
"""

from __future__ import annotations

from integrations import catalog
from integrations.catalog import AuthType, Category, CredentialField, Integration, Maturity, Scope
from integrations.connectors.email import tools

INTEGRATION = catalog.register(Integration(
    slug="email",
    name="Email",
    category=Category.COMMUNICATION,
    status=Maturity.ACTIVE,
    summary="Send email from a mailbox over SMTP, and list, search and read its messages over IMAP.",
    auth_types=(AuthType.API_KEY,),
    scopes=(
        Scope("mail:send", "Send messages as this mailbox, to any address.", write=True),
        Scope("mail:read", "Read and search the messages in this mailbox's folders (without marking them read)."),
    ),
    setup_notes=(
        "Enter the mailbox's SMTP server (and its IMAP server to let agents read mail), the login and the "
        "password; many providers want an app password here rather than the account password. Agentry logs "
        "in to both servers before saving. Security \"starttls\" (port 587) or \"ssl\" (port 465) for SMTP, "
        "\"ssl\" (port 993) or \"starttls\" (port 143) for IMAP; \"none\" sends the password unencrypted and is "
        "only for a trusted network. A mail server on a private network must be allowed by an operator with "
        "AGENTRY_INTEGRATIONS_ALLOWED_HOSTS."
    ),
    credential_fields=(
        CredentialField("smtp_host", "SMTP host", secret=False, help="e.g. smtp.example.com"),
        CredentialField("smtp_port", "SMTP port", secret=False, required=False, kind="integer",
                        help="587 for starttls (the default), 465 for ssl."),
        CredentialField("smtp_security", "SMTP security", secret=False, required=False,
                        help="starttls (default), ssl or none."),
        CredentialField("imap_host", "IMAP host", secret=False, required=False,
                        help="e.g. imap.example.com; leave empty if agents only send."),
        CredentialField("imap_port", "IMAP port", secret=False, required=False, kind="integer",
                        help="993 for ssl (the default), 143 for starttls."),
        CredentialField("imap_security", "IMAP security", secret=False, required=False,
                        help="ssl (default), starttls or none."),
        CredentialField("username", "Username", secret=False, help="The mailbox login, often the address."),
        CredentialField("from_address", "From address", secret=False, required=False, kind="email",
                        help="The address mail is sent from; defaults to the username."),
        CredentialField("password", "Password", kind="password", help="The mailbox password or an app password."),
    ),
    identify=tools.identify,
))
