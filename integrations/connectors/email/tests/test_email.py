"""The Email connector against a loopback SMTP sink and a loopback IMAP server, over real sockets.

Calls go through `integrations.calls.call`, as the run loop makes them: the connection is bound,
scopes are checked, the tool runs in its own thread and the call is recorded. Both fakes count the
TCP connections they accept, so "refused before connecting" is checked at the socket, not assumed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from email.message import EmailMessage

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError

from integrations import calls, catalog, crypto, services, tools
from integrations.connectors.email import transport
from integrations.models import Connection, ConnectionCall
from tests.fakes.imap_server import FakeImapServer
from tests.fakes.smtp_sink import SmtpSink

ADDRESS = "ada@example.com"
PASSWORD = "mailbox-password"


@pytest.fixture(autouse=True)
def loopback_allowed(settings):
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture
def sink():
    server = SmtpSink(credentials=(ADDRESS, PASSWORD)).start()
    yield server
    server.stop()


@pytest.fixture
def imap():
    server = FakeImapServer(username=ADDRESS, password=PASSWORD).start()
    yield server
    server.stop()


def settings_for(sink: SmtpSink, imap: FakeImapServer | None, **overrides) -> dict:
    values = {"smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_security": "none", "username": ADDRESS,
              "password": PASSWORD, "from_address": ADDRESS}
    if imap is not None:
        values |= {"imap_host": "127.0.0.1", "imap_port": imap.port, "imap_security": "none"}
    return values | overrides


@pytest.fixture
def mailbox(organization, owner, sink, imap) -> Connection:
    return services.connection_create(organization=organization, actor=owner, integration="email",
                                      values=settings_for(sink, imap))


def run_tool(name: str, arguments: dict, *, connection: Connection, runner, scopes: list[str] | None = None):
    setting: dict = {"connection": str(connection.id)}
    if scopes is not None:
        setting["scopes"] = scopes
    result, _extra = calls.call(config={"tools": [name], "integrations": {"email": setting}},
                                organization_id=connection.organization_id, runner_id=runner.id, run_id=None,
                                tool=tools.get(name), arguments=arguments, timeout=30)
    return result


def letter(*, sender="Bob <bob@example.com>", subject="Hello", body="Hi Ada", **headers) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ADDRESS
    message["Subject"] = subject
    message["Date"] = "Tue, 14 May 2024 09:30:00 +0000"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def listing(result) -> dict:
    import json

    assert not result.is_error, result.output
    return json.loads(result.output)


# ---------------------------------------------------------------------------- the catalog entry

def test_it_is_in_the_catalog_with_a_send_and_a_read_scope_and_three_tools():
    email = catalog.get("email")
    assert email.auth_types == ("api_key",)
    assert email.scope("mail:send").write and not email.scope("mail:read").write
    by_name = {t.name: t for t in catalog.tools_of(email)}
    assert set(by_name) == {"email_send", "email_list_messages", "email_read_message"}
    assert by_name["email_send"].side_effect == "write" and by_name["email_send"].scopes == ("mail:send",)
    assert by_name["email_read_message"].side_effect == "read"
    assert [f.name for f in email.credential_fields if f.secret] == ["password"]


# ---------------------------------------------------------------------------- saving a connection

def test_it_logs_in_to_both_servers_before_saving_and_stores_only_the_password_as_a_secret(mailbox, sink, imap):
    assert sink.auth_attempts == [(ADDRESS, True)]
    assert imap.login_attempts == [(ADDRESS, True)]
    assert mailbox.account == {"email": ADDRESS}
    assert mailbox.name == f"Email ({ADDRESS})"
    assert mailbox.scopes == ["mail:send", "mail:read"]
    assert PASSWORD not in str(mailbox.options) and PASSWORD not in mailbox.secret
    assert crypto.decrypt(mailbox.secret) == {"password": PASSWORD}
    assert mailbox.options["smtp_port"] == sink.port and mailbox.options["imap_host"] == "127.0.0.1"
    assert sink.messages == []


def test_a_wrong_smtp_password_on_save_is_a_validation_error_naming_the_servers_reason(organization, owner, sink):
    with pytest.raises(ValidationError) as caught:
        services.connection_create(organization=organization, actor=owner, integration="email",
                                   values=settings_for(sink, None, password="wrong-password"))
    message = caught.value.message_dict["credentials"][0]
    assert "refused the username or password" in message
    assert "535 5.7.8 Authentication credentials invalid" in message
    assert "wrong-password" not in message
    assert not Connection.objects.exists()


def test_a_wrong_imap_password_on_save_is_a_validation_error_too(organization, owner, sink):
    elsewhere = FakeImapServer(username=ADDRESS, password="another-password").start()
    try:
        with pytest.raises(ValidationError) as caught:
            services.connection_create(organization=organization, actor=owner, integration="email",
                                       values=settings_for(sink, elsewhere))
    finally:
        elsewhere.stop()
    message = caught.value.message_dict["credentials"][0]
    assert f"IMAP server 127.0.0.1:{elsewhere.port} refused the username or password" in message
    assert "[AUTHENTICATIONFAILED]" in message


def test_impossible_settings_are_reported_on_their_field(organization, owner, sink):
    cases = [({"smtp_security": "tls"}, "smtp_security"), ({"smtp_host": "smtp example.com"}, "smtp_host"),
             ({"imap_host": "127.0.0.1", "imap_port": 70000}, "imap_port"),
             ({"from_address": "not an address"}, "from_address"),
             ({"username": "ada", "from_address": ""}, "from_address")]
    for overrides, field in cases:
        with pytest.raises(ValidationError) as caught:
            services.connection_create(organization=organization, actor=owner, integration="email",
                                       values=settings_for(sink, None, **overrides))
        assert field in caught.value.message_dict, (overrides, caught.value.message_dict)
    assert sink.connections == 0


def test_a_server_without_starttls_is_not_silently_downgraded_when_starttls_is_chosen(organization, owner, sink):
    with pytest.raises(ValidationError) as caught:
        services.connection_create(organization=organization, actor=owner, integration="email",
                                   values=settings_for(sink, None, smtp_security="starttls"))
    assert "doesn't offer STARTTLS" in caught.value.message_dict["credentials"][0]
    assert sink.connections == 1 and sink.auth_attempts == []  # the password never went out


def test_a_server_offering_only_auth_login_works(organization, owner):
    login_only = SmtpSink(credentials=(ADDRESS, PASSWORD), auth_methods=("LOGIN",)).start()
    try:
        services.connection_create(organization=organization, actor=owner, integration="email",
                                   values=settings_for(login_only, None))
    finally:
        login_only.stop()
    assert login_only.auth_attempts == [(ADDRESS, True)]


# ---------------------------------------------------------------------------- sending

def test_it_sends_a_message_whose_recipients_subject_and_body_arrive(mailbox, owner, sink):
    result = run_tool("email_send", {"to": ["Bob Builder <bob@example.com>"], "cc": ["carol@example.com"],
                                     "subject": "Quarterly\nreport", "body": "Numbers attached.\nCheers, Ada",
                                     "reply_to": "team@example.com"}, connection=mailbox, runner=owner)
    assert not result.is_error, result.output
    assert result.output.startswith('Sent "Quarterly report" from ada@example.com to bob@example.com, carol@')
    [received] = sink.wait_for(1)
    assert received.user == ADDRESS
    assert received.sender == ADDRESS
    assert received.recipients == ["bob@example.com", "carol@example.com"]
    assert received.message["From"] == ADDRESS
    assert received.message["To"] == "Bob Builder <bob@example.com>"
    assert received.message["Cc"] == "carol@example.com"
    assert received.message["Reply-To"] == "team@example.com"
    assert received.message["Subject"] == "Quarterly report"
    assert received.message["Message-ID"].endswith("@example.com>")
    assert received.body.replace("\r\n", "\n") == "Numbers attached.\nCheers, Ada\n"
    [record] = ConnectionCall.objects.filter(connection=mailbox)
    assert (record.tool, record.outcome, record.status_code) == ("email_send", "ok", None)


def test_it_refuses_to_send_without_the_mail_send_scope_and_never_connects(organization, owner, sink, imap, mailbox):
    read_only = services.connection_create(organization=organization, actor=owner, integration="email",
                                           values=settings_for(sink, imap), scopes=["mail:read"], name="Read only")
    connections_before = sink.connections

    not_held = run_tool("email_send", {"to": ["bob@example.com"], "subject": "Hi", "body": "x"},
                        connection=read_only, runner=owner, scopes=["mail:send", "mail:read"])
    not_granted = run_tool("email_send", {"to": ["bob@example.com"], "subject": "Hi", "body": "x"},
                           connection=mailbox, runner=owner, scopes=["mail:read"])

    assert not_held.is_error and "Refused: email_send needs the Email scope mail:send" in not_held.output
    assert "does not hold" in not_held.output
    assert not_granted.is_error and "builder did not grant it" in not_granted.output
    assert sink.connections == connections_before
    assert sink.messages == []
    assert ConnectionCall.objects.filter(outcome="refused").count() == 2


def test_it_refuses_malformed_addresses_and_header_injection_before_connecting(mailbox, owner, sink):
    connections_before = sink.connections
    for to, problem in [(["bob@example.com\r\nBcc: eve@example.net"], "line break"),
                        (["bob@example.com, eve@example.net"], "exactly one email address"),
                        (["not-an-address"], "not a valid email address")]:
        result = run_tool("email_send", {"to": to, "subject": "Hi", "body": "x"}, connection=mailbox, runner=owner)
        assert result.is_error and problem in result.output, result.output
    too_many = run_tool("email_send", {"to": [f"r{i}@example.com" for i in range(30)],
                                       "cc": [f"c{i}@example.com" for i in range(30)], "subject": "Hi", "body": "x"},
                        connection=mailbox, runner=owner)
    assert too_many.is_error and "at most 50" in too_many.output
    assert sink.connections == connections_before and sink.messages == []


# ---------------------------------------------------------------------------- listing and searching

def test_it_lists_messages_newest_first_a_page_at_a_time(mailbox, owner, imap):
    for number in range(1, 6):
        imap.add(letter(subject=f"Message {number}", body=f"Body of message {number}."), seen=number == 1)

    first = listing(run_tool("email_list_messages", {"limit": 2}, connection=mailbox, runner=owner))
    last = listing(run_tool("email_list_messages", {"limit": 2, "offset": 4}, connection=mailbox, runner=owner))

    assert first["matched"] == 5 and first["next_offset"] == 2 and first["folder"] == "INBOX"
    assert [m["uid"] for m in first["messages"]] == [5, 4]
    assert first["messages"][0] == {"uid": 5, "from": "Bob <bob@example.com>", "subject": "Message 5",
                                    "date": "2024-05-14T09:30:00+00:00", "unread": True,
                                    "snippet": "Body of message 5."}
    assert [m["uid"] for m in last["messages"]] == [1] and last["next_offset"] is None
    assert last["messages"][0]["unread"] is False
    assert imap.flags(5) == set()  # listing peeks: nothing was marked read
    assert [name for name, _ in imap.commands if name == "EXAMINE"] == ["EXAMINE", "EXAMINE", "EXAMINE"]


def test_it_filters_by_sender_subject_date_and_unread(mailbox, owner, imap):
    may = dt.datetime(2024, 5, 20, 12, tzinfo=dt.UTC)
    imap.add(letter(sender="Bob <bob@example.com>", subject="Weekly report"), received=may, seen=True)
    bob_unread = imap.add(letter(sender="Bob <bob@example.com>", subject="Monthly report"), received=may)
    imap.add(letter(sender="Carol <carol@example.com>", subject="Monthly report"), received=may)
    imap.add(letter(sender="Bob <bob@example.com>", subject="Old report"), received=may - dt.timedelta(days=60))

    def uids(**filters) -> list[int]:
        return [m["uid"] for m in listing(run_tool("email_list_messages", filters, connection=mailbox,
                                                   runner=owner))["messages"]]

    assert uids(sender="bob") == [4, 2, 1]
    assert uids(subject="monthly") == [3, 2]
    assert uids(since="2024-05-01") == [3, 2, 1]
    assert uids(unseen=True) == [4, 3, 2]
    assert uids(sender="bob", subject="report", since="2024-05-01", unseen=True) == [bob_unread]
    assert imap.commands_named("UID SEARCH")[-1] == ["SINCE", "1-May-2024", "UNSEEN", "FROM", "bob",
                                                     "SUBJECT", "report"]
    assert imap.commands_named("UID SEARCH")[0] == ["FROM", "bob"]


def test_search_text_is_quoted_so_the_model_cannot_write_imap_syntax(mailbox, owner, imap):
    imap.add(letter(subject="Réunion lundi"))
    imap.add(letter(subject="Plain"))
    sneaky = 'x" OR ALL UID 1:* ("'

    injected = listing(run_tool("email_list_messages", {"subject": sneaky}, connection=mailbox, runner=owner))
    accented = listing(run_tool("email_list_messages", {"subject": "réunion", "sender": "bob"},
                                connection=mailbox, runner=owner))

    assert injected["matched"] == 0
    assert imap.commands_named("UID SEARCH")[0] == ["SUBJECT", sneaky]  # one value, not search keys
    assert [m["subject"] for m in accented["messages"]] == ["Réunion lundi"]
    assert imap.commands_named("UID SEARCH")[1] == ["CHARSET", "UTF-8", "FROM", "bob", "SUBJECT", "réunion"]
    bad = run_tool("email_list_messages", {"sender": "bob\r\nA1 DELETE INBOX"}, connection=mailbox, runner=owner)
    assert bad.is_error and "line breaks" in bad.output


def test_it_opens_other_folders_by_name_and_explains_a_missing_one(mailbox, owner, imap):
    imap.add(letter(subject="Filed away"), folder="Old Mail/Réunions & co")
    found = listing(run_tool("email_list_messages", {"folder": "Old Mail/Réunions & co"}, connection=mailbox,
                             runner=owner))
    missing = run_tool("email_list_messages", {"folder": "Nope"}, connection=mailbox, runner=owner)

    assert [m["subject"] for m in found["messages"]] == ["Filed away"]
    assert ["Old Mail/R&AOk-unions &- co"] in imap.commands_named("EXAMINE")
    assert missing.is_error and "can't open the folder 'Nope'" in missing.output and "[NONEXISTENT]" in missing.output


# ---------------------------------------------------------------------------- reading

def test_it_reads_a_multipart_message_with_decoded_headers_and_lists_its_attachments(mailbox, owner, imap):
    message = letter(sender="Zoë Café <zoe@example.com>", subject="Résumé ☕ and figures", body="The plain text.",
                     cc="Carol <carol@example.com>")
    message.add_alternative("<p>The <b>HTML</b> text.</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4 " + b"x" * 1991, maintype="application", subtype="pdf", filename="figures.pdf")
    message.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(92), maintype="image", subtype="png", filename="chart.png")
    uid = imap.add(message)

    result = run_tool("email_read_message", {"uid": uid}, connection=mailbox, runner=owner)

    assert not result.is_error, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Folder: INBOX · UID {uid} · unread"
    assert "From: Zoë Café <zoe@example.com>" in lines
    assert "Subject: Résumé ☕ and figures" in lines
    assert "Cc: Carol <carol@example.com>" in lines
    assert "Date: Tue, 14 May 2024 09:30:00 +0000" in lines
    assert "Attachments (2): figures.pdf (application/pdf, 2000 bytes); chart.png (image/png, 100 bytes)" in lines
    assert "--- body (text/plain) ---" in lines and "The plain text." in lines
    assert "HTML" not in result.output
    assert imap.flags(uid) == set()  # still unread


def test_html_only_mail_is_read_as_text(mailbox, owner, imap):
    message = letter()
    message.set_content("<html><body><h1>Invoice</h1><p>Amount: 12&nbsp;EUR</p><script>x()</script></body></html>",
                        subtype="html")
    uid = imap.add(message)
    result = run_tool("email_read_message", {"uid": uid}, connection=mailbox, runner=owner)
    assert "--- body (text/html) ---" in result.output
    assert "Invoice" in result.output and "Amount: 12" in result.output and "x()" not in result.output


def test_a_long_message_is_cut_at_the_size_cap_and_says_so(mailbox, owner, imap, settings):
    settings.INTEGRATIONS_MAX_RESPONSE_BYTES = 4096
    uid = imap.add(letter(body="A long line of text.\n" * 3000))

    result = run_tool("email_read_message", {"uid": uid, "max_chars": 1000}, connection=mailbox, runner=owner)

    assert not result.is_error, result.output
    assert "A long line of text." in result.output
    assert "[body cut at 1000 of " in result.output
    assert "[message truncated: it is " in result.output and "only the first 4096 were fetched" in result.output
    assert imap.commands_named("UID FETCH")[-1] == [str(uid), ["UID", "RFC822.SIZE", "FLAGS", "BODY.PEEK[]<0.4096>"]]


def test_a_server_that_ignores_the_requested_size_is_cut_off(organization, owner, sink, settings):
    settings.INTEGRATIONS_MAX_RESPONSE_BYTES = 4096
    greedy = FakeImapServer(username=ADDRESS, password=PASSWORD, ignore_partial=True).start()
    try:
        connection = services.connection_create(organization=organization, actor=owner, integration="email",
                                                values=settings_for(sink, greedy))
        uid = greedy.add(letter(body="x" * 50_000))
        result = run_tool("email_read_message", {"uid": uid}, connection=connection, runner=owner)
    finally:
        greedy.stop()
    assert result.is_error
    assert "more than the 4096-byte limit" in result.output


def test_reading_a_uid_that_is_gone_says_what_to_do(mailbox, owner, imap):
    result = run_tool("email_read_message", {"uid": 42}, connection=mailbox, runner=owner)
    assert result.is_error and "no message with uid 42 in 'INBOX'" in result.output
    assert "list the folder" in result.output


def test_a_connection_without_an_imap_server_explains_it_cannot_read(organization, owner, sink):
    send_only = services.connection_create(organization=organization, actor=owner, integration="email",
                                           values=settings_for(sink, None))
    result = run_tool("email_list_messages", {}, connection=send_only, runner=owner)
    assert result.is_error and "no IMAP server configured" in result.output


# ---------------------------------------------------------------------------- the address guard

def test_a_loopback_server_not_on_the_allow_list_is_refused_before_connecting(mailbox, owner, sink, imap, settings,
                                                                              organization):
    settings.INTEGRATIONS_ALLOWED_HOSTS = []
    smtp_before, imap_before = sink.connections, imap.connections

    sent = run_tool("email_send", {"to": ["bob@example.com"], "subject": "Hi", "body": "x"},
                    connection=mailbox, runner=owner)
    listed = run_tool("email_list_messages", {}, connection=mailbox, runner=owner)
    with pytest.raises(ValidationError) as caught:
        services.connection_create(organization=organization, actor=owner, integration="email",
                                   values=settings_for(sink, imap))

    hint = "an operator can allow it with AGENTRY_INTEGRATIONS_ALLOWED_HOSTS"
    assert sent.is_error and f"not connecting to the SMTP server 127.0.0.1:{sink.port}" in sent.output
    assert "refused: 127.0.0.1 is a loopback address" in sent.output and hint in sent.output
    assert listed.is_error and f"not connecting to the IMAP server 127.0.0.1:{imap.port}" in listed.output
    assert "loopback" in caught.value.message_dict["credentials"][0]
    assert (sink.connections, imap.connections) == (smtp_before, imap_before)


def test_a_private_address_is_refused_too(settings):
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["127.0.0.1"]
    with pytest.raises(tools.ToolError, match="10.1.2.3 is a private address"):
        transport.vet(transport.Server("SMTP", "10.1.2.3", 25, "none"))
    with pytest.raises(tools.ToolError, match="fd00::1 is a private address"):
        transport.vet(transport.Server("IMAP", "fd00::1", 993, "ssl"))


# ---------------------------------------------------------------------------- a password that stops working

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("tool,arguments", [("email_send", {"to": ["bob@example.com"], "subject": "Hi", "body": "x"}),
                                            ("email_list_messages", {})])
def test_a_password_changed_after_saving_marks_the_connection_as_needing_reauthorization(
        tool, arguments, mailbox, owner, sink, imap, mailoutbox):
    sink.credentials = (ADDRESS, "changed-password")
    imap.password = "changed-password"

    first = run_tool(tool, arguments, connection=mailbox, runner=owner)
    smtp_seen, imap_seen = sink.connections, imap.connections
    second = run_tool(tool, arguments, connection=mailbox, runner=owner)

    assert first.is_error and "refused the username or password" in first.output
    assert "now marked as needing re-authorization" in first.output and "changed-password" not in first.output
    mailbox.refresh_from_db()
    assert mailbox.status == Connection.Status.NEEDS_REAUTH
    assert "refused the username or password" in mailbox.last_error
    assert [m.to for m in mailoutbox] == [[owner.email]] and "Reconnect" in mailoutbox[0].subject
    assert second.is_error and second.output.startswith("Refused: the Email connection")
    assert "needs re-authorization" in second.output
    assert (sink.connections, imap.connections) == (smtp_seen, imap_seen)  # refused before connecting
    assert list(ConnectionCall.objects.filter(connection=mailbox).order_by("created_at")
                .values_list("outcome", flat=True)) == ["error", "refused"]


def test_the_test_button_marks_a_refused_password_as_needing_reauthorization(mailbox, sink):
    sink.credentials = (ADDRESS, "changed-password")
    tested = services.connection_test(connection=mailbox, actor=None)
    assert tested.status == Connection.Status.NEEDS_REAUTH and tested.last_check_ok is False
    assert "refused the username or password" in tested.last_error


# ---------------------------------------------------------------------------- TLS

@pytest.fixture
def certificate(tmp_path, monkeypatch) -> ssl.SSLContext:
    """A self-signed certificate for "localhost" that the client trusts (through SSL_CERT_FILE, the
    way an operator trusts a private CA), and a server context serving it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_implicit_tls_connects_to_the_vetted_ip_and_verifies_the_certificate_for_the_real_name(
        organization, owner, certificate, settings):
    settings.INTEGRATIONS_ALLOWED_HOSTS = ["localhost", "127.0.0.1", "::1"]
    smtps = SmtpSink(credentials=(ADDRESS, PASSWORD), ssl_context=certificate).start()
    imaps = FakeImapServer(username=ADDRESS, password=PASSWORD, ssl_context=certificate).start()
    try:
        values = settings_for(smtps, imaps, smtp_host="localhost", smtp_security="ssl", imap_host="localhost",
                              imap_security="ssl")
        connection = services.connection_create(organization=organization, actor=owner, integration="email",
                                                values=values)
        imaps.add(letter(subject="Over TLS"))
        sent = run_tool("email_send", {"to": ["bob@example.com"], "subject": "Over TLS", "body": "x"},
                        connection=connection, runner=owner)
        listed = listing(run_tool("email_list_messages", {}, connection=connection, runner=owner))
        # The same servers by IP: the certificate names localhost, so verification must fail.
        with pytest.raises(ValidationError) as caught:
            services.connection_create(organization=organization, actor=owner, integration="email",
                                       values=values | {"smtp_host": "127.0.0.1"})
    finally:
        smtps.stop()
        imaps.stop()
    assert not sent.is_error, sent.output
    assert smtps.wait_for(1)[0].message["Subject"] == "Over TLS"
    assert [m["subject"] for m in listed["messages"]] == ["Over TLS"]
    message = caught.value.message_dict["credentials"][0]
    assert f"the certificate of the SMTP server 127.0.0.1:{smtps.port} could not be verified" in message
    assert "IP address mismatch" in message


# ---------------------------------------------------------------------------- building blocks

def test_search_criteria_and_folder_names_are_built_from_fields():
    assert transport.Search().arguments() == (["ALL"], None)
    assert transport.Search(sender='a"b\\c', since=dt.date(2024, 1, 5)).arguments() == (
        ["SINCE", "5-Jan-2024", "FROM", '"a\\"b\\\\c"'], None)
    with pytest.raises(tools.ToolError, match="only one of sender and subject"):
        transport.Search(sender="zoë", subject="café").arguments()
    assert transport.mailbox_name("Entwürfe") == '"Entw&APw-rfe"'
    assert transport.mailbox_name("A&B") == '"A&-B"'


def test_ipv6_literals_are_vetted_in_brackets():
    with pytest.raises(tools.ToolError, match="::1 is a loopback address"):
        transport.vet(transport.Server("SMTP", str(ipaddress.ip_address("::1")), 25, "none"))


def test_fetch_data_is_matched_by_uid_whatever_order_the_server_uses():
    data = [(b"3 (FLAGS (\\Seen) BODY[]<0> {5}", b"hello"), b" UID 12 RFC822.SIZE 99)",
            b"4 (UID 13 FLAGS ())",  # an unsolicited flag update: no body, not an answer
            (b"5 (UID 14 RFC822.SIZE 3 BODY[]<0> {3}", b"abc"), b")"]
    found = transport.parse_fetch(data)
    assert [(f.uid, f.size, f.flags, f.body) for f in found] == [(12, 99, ("\\Seen",), b"hello"), (14, 3, (), b"abc")]


def test_a_server_that_never_answers_times_out_with_a_clear_message(organization, owner, settings):
    settings.INTEGRATIONS_TIMEOUT = 1.0
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never says a word
    try:
        port = silent.getsockname()[1]
        with pytest.raises(ValidationError) as caught:
            services.connection_create(organization=organization, actor=owner, integration="email",
                                       values={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none",
                                               "username": ADDRESS, "password": PASSWORD})
    finally:
        silent.close()
    assert f"the SMTP server 127.0.0.1:{port} did not answer within 1 s" in caught.value.message_dict["credentials"][0]


def test_nothing_listening_is_a_clear_refusal(organization, owner):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ValidationError) as caught:
        services.connection_create(organization=organization, actor=owner, integration="email",
                                   values={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none",
                                           "username": ADDRESS, "password": PASSWORD})
    assert "refused the connection; check the host and port" in caught.value.message_dict["credentials"][0]
